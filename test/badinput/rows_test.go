package badinput

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// The tables of the row cases. users' key is an id, not the external id,
// so that the external id can be NULL. devices has no primary key at all,
// and REPLICA IDENTITY FULL; nokey and nokeyfull serve the last cases.
// users row 1901 is there before the daemon starts, and the daemon
// snapshots nothing: the sink never sees it.
const rowsSchema = `
CREATE TABLE users (
	id int PRIMARY KEY,
	external_id text,
	plan text,     -- a tag
	nick text,     -- a tag
	prefs jsonb,   -- a tag, not converted
	topics text[], -- a tag, not converted
	settings jsonb, -- a tag, flattened
	bio text       -- not a tag
);
CREATE TABLE devices (player_id text, user_external_id text, case_no int);
ALTER TABLE devices REPLICA IDENTITY FULL;
CREATE TABLE nokey (external_id text, plan text);
CREATE TABLE nokeyfull (external_id text, plan text);
ALTER TABLE nokeyfull REPLICA IDENTITY FULL;
INSERT INTO users (id, external_id, plan) VALUES (1901, 'case-19', 'unseen');
`

// rowCase is one case of table data. Its users rows have ids no*100+j;
// its devices rows carry case_no = no and owners named case-<no>…. Its first statement runs in one
// transaction between two rows of its own that must reach OneSignal
// (users "case-<no>-before" and "case-<no>-after", plan "kept"); the
// others run later, each in a transaction of its own, after every case's
// first statement.
type rowCase struct {
	name   string
	sql    []string
	reason []string                     // what the dead letter's reason holds; nil: no dead letter
	tags   map[string]map[string]string // tags users must end up with
	owners map[string]string            // owners devices must end up with ("" = none)
	check  func(t *testing.T, g *rowsGroup)
}

// rowsGroup is the daemon (`onesignal-cdc run`, user model) of the row
// cases.
type rowsGroup struct {
	*stack
	daemon *daemontest.Process
}

// twoMB is a value far over what an event may hold (256 KiB) and what
// Kafka takes by default (1 MiB).
const twoMB = 2 << 20

var rowCases = []rowCase{
	1: {
		name: "a 2 MB value in a column the mapping does not read never leaves PostgreSQL, and the row's tags reach OneSignal",
		sql:  []string{fmt.Sprintf(`INSERT INTO users (id, external_id, plan, bio) VALUES (101, 'case-1', 'big-bio', repeat('x', %d))`, twoMB)},
		tags: map[string]map[string]string{"case-1": {"plan": "big-bio"}},
		check: func(t *testing.T, g *rowsGroup) {
			ev, size := g.event(t, 101)
			if size > 256<<10 {
				t.Errorf("the event is %d bytes, over the 256 KiB an event may take", size)
			}
			// PostgreSQL 15's column list leaves it out of the publication.
			if bio, ok := ev.After.Get("bio"); ok {
				t.Errorf("the event carries bio (%.40s…), which the mapping does not read (event: %.300s)", bio, ev.Encode(nil))
			}
		},
	},
	2: {
		name:   "a 2 MB value in a tag column is dead-lettered with the reason",
		sql:    []string{fmt.Sprintf(`INSERT INTO users (id, external_id, plan, nick) VALUES (201, 'case-2', 'x', repeat('y', %d))`, twoMB)},
		reason: []string{"public.users.nick", event.Oversized, "over the connector's limit for an event (256 KiB)", "shorten the value, or leave the column out of the mapping"},
	},
	3: {
		name:   "a JSON object in a tag column is dead-lettered, naming convert: flatten",
		sql:    []string{`INSERT INTO users (id, external_id, plan, prefs) VALUES (301, 'case-3', 'x', '{"lang": "de"}')`},
		reason: []string{"public.users.prefs", "holds a JSON object or array", "set mapping.users.convert.prefs: flatten"},
	},
	4: {
		name:   "an array in a tag column is dead-lettered, naming convert: flatten",
		sql:    []string{`INSERT INTO users (id, external_id, plan, topics) VALUES (401, 'case-4', 'x', '{news,sports}')`},
		reason: []string{"public.users.topics", "holds a JSON object or array", "set mapping.users.convert.topics: flatten"},
	},
	5: {
		name: "a JSON object in a tag column mapped with flatten becomes one tag per scalar",
		sql:  []string{`INSERT INTO users (id, external_id, settings) VALUES (501, 'case-5', '{"lang": "de", "push": {"on": true}, "list": [1, "two"]}')`},
		tags: map[string]map[string]string{"case-5": {"settings_lang": "de", "settings_push_on": "true", "settings_list_0": "1", "settings_list_1": "two"}},
	},
	6: {
		name: "a tag key of 10,000 characters reaches OneSignal as it is",
		sql:  []string{`INSERT INTO users (id, external_id, settings) VALUES (601, 'case-6', jsonb_build_object(repeat('k', 10000), 'v'))`},
		tags: map[string]map[string]string{"case-6": {"settings_" + strings.Repeat("k", 10000): "v"}},
	},
	7: {
		name: "a NULL external id sends nothing and is no dead letter; the update that sets one sends the tags",
		sql: []string{
			`INSERT INTO users (id, external_id, plan) VALUES (701, NULL, 'waiting')`,
			`UPDATE users SET external_id = 'case-7-late' WHERE id = 701`,
		},
		tags: map[string]map[string]string{"case-7-late": {"plan": "waiting"}},
	},
	8: {
		name: "an empty external id is skipped like NULL, and is no dead letter",
		sql:  []string{`INSERT INTO users (id, external_id, plan) VALUES (801, '', 'nobody')`},
	},
	9:  externalIDCase(9, "case-9/with/slashes"),
	10: externalIDCase(10, "case-10 100% sure"),
	11: externalIDCase(11, "case-11?query=1&x"),
	12: externalIDCase(12, "case-12#fragment"),
	13: externalIDCase(13, "case 13 with spaces "),
	14: externalIDCase(14, "case-14 ünïcødé 用户 🎉"),
	15: externalIDCase(15, ".."),
	16: {
		name: "a delete from a users table keyed by another column, under REPLICA IDENTITY DEFAULT, finds its user through the row index and deletes the row's tags",
		sql: []string{
			`INSERT INTO users (id, external_id, plan) VALUES (1601, 'case-16', 'goes')`,
			`DELETE FROM users WHERE id = 1601`,
		},
		tags: map[string]map[string]string{"case-16": {"plan": ""}},
	},
	17: {
		name: "devices of a table without a primary key are linked, moved and unlinked under REPLICA IDENTITY FULL",
		sql: []string{
			`INSERT INTO devices VALUES ('dev-17-a', 'case-17-first', 17), ('dev-17-b', 'case-17-first', 17)`,
			`UPDATE devices SET user_external_id = 'case-17-second' WHERE player_id = 'dev-17-a'`,
			`DELETE FROM devices WHERE player_id = 'dev-17-b'`,
		},
		owners: map[string]string{"dev-17-a": "case-17-second", "dev-17-b": ""},
	},
	18: {
		name:   "a device row with a NULL device id is dead-lettered with the reason",
		sql:    []string{`INSERT INTO devices VALUES (NULL, 'case-18', 18)`},
		reason: []string{`a public.devices row has no "player_id" (it is NULL or empty): every device row needs its player_id or subscription id`},
	},
	19: {
		name: "a delete of a row the sink never saw, under REPLICA IDENTITY DEFAULT, is dead-lettered naming a new snapshot or REPLICA IDENTITY FULL",
		// Row 1901 was written before the daemon started, which snapshots
		// nothing (rowsSchema).
		sql: []string{`DELETE FROM users WHERE id = 1901`},
		reason: []string{
			`the delete of a public.users row that the sink has not seen carries no "external_id" column`,
			"run ALTER TABLE public.users REPLICA IDENTITY FULL", "snapshot the table again (onesignal-cdc snapshot --table public.users)",
		},
	},
}

// externalIDCase is the case of an external id with characters a URL
// path treats specially: written, then changed, it must reach OneSignal
// under exactly that id.
func externalIDCase(no int, id string) rowCase {
	quoted := "'" + strings.ReplaceAll(id, "'", "''") + "'"
	return rowCase{
		name: fmt.Sprintf("the external id %q reaches OneSignal under exactly that id, when created and when updated", id),
		sql: []string{
			fmt.Sprintf(`INSERT INTO users (id, external_id, plan) VALUES (%d, %s, 'v1')`, no*100+1, quoted),
			fmt.Sprintf(`UPDATE users SET plan = 'v2' WHERE id = %d`, no*100+1),
		},
		tags: map[string]map[string]string{id: {"plan": "v2"}},
	}
}

// TestTableDataThroughTheDaemon writes bad (and odd) rows into real
// PostgreSQL tables that `onesignal-cdc run` streams to the emulator.
func TestTableDataThroughTheDaemon(t *testing.T) {
	t.Parallel()
	g := &rowsGroup{stack: newStack(t)}
	g.DB.Exec(t, rowsSchema)
	for _, id := range []string{"dev-17-a", "dev-17-b"} {
		g.Emulator.AddSubscription(emulator.Subscription{ID: id})
	}
	// Changes without a key go to a random partition (kafka-go's murmur2
	// balancer, not Consistent), so the link and the unlink of one device
	// of a keyless table could be applied in the wrong order with more
	// partitions than one. Reported; until the writer sends keyless
	// changes to one partition, the devices topic has one.
	g.createTopic(t, "cdc.public.devices", 1, nil)
	// The devices table has no primary key, which the snapshot needs (see
	// the last case): the daemon streams only.
	c := g.config()
	c.Postgres.Snapshot = "never"
	c.Mapping.Users = usersMapping("public.users", map[string]string{"plan": "", "nick": "", "prefs": "", "topics": "", "settings": ""})
	c.Mapping.Users.Convert = map[string]string{"settings": transform.ConvertFlatten}
	c.Mapping.Devices = devicesMapping("public.devices")
	g.daemon = daemontest.Start(t, daemontest.Run, daemontest.WriteConfig(t, c))
	daemontest.WaitForSlot(t, g.DB, g.DB.Name, g.daemon)

	want := map[string]map[string]string{}
	for no, c := range rowCases {
		if c.name == "" {
			continue
		}
		g.DB.Exec(t, fmt.Sprintf(`BEGIN;
			INSERT INTO users (id, external_id, plan) VALUES (%d, 'case-%d-before', 'kept');
			%s;
			INSERT INTO users (id, external_id, plan) VALUES (%d, 'case-%d-after', 'kept');
			COMMIT`, no*100+98, no, c.sql[0], no*100+99, no))
		want[fmt.Sprintf("case-%d-before", no)] = map[string]string{"plan": "kept"}
		want[fmt.Sprintf("case-%d-after", no)] = map[string]string{"plan": "kept"}
		for id, tags := range c.tags {
			want[id] = tags
		}
	}
	for step := 1; ; step++ {
		more := false
		for _, c := range rowCases {
			if step < len(c.sql) {
				g.DB.Exec(t, c.sql[step])
				more = more || step+1 < len(c.sql)
			}
		}
		if !more {
			break
		}
	}
	// Every tag expected is in OneSignal, and every message committed: the
	// dead-letter topic is final.
	g.waitForTags(t, want, 90*time.Second)
	waitForCommitted(t, g.Kafka.Brokers(), "badinput", []string{"cdc.public.users", "cdc.public.devices"}, 60*time.Second)

	byCase := map[int][]deadLetter{}
	for _, dl := range g.deadLetters(t) {
		no := g.caseOf(t, dl)
		byCase[no] = append(byCase[no], dl)
	}
	for no, c := range rowCases {
		if c.name == "" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			dls := byCase[no]
			switch {
			case c.reason == nil && len(dls) > 0:
				t.Errorf("dead-lettered, want it applied: %v", dls)
			case c.reason != nil && len(dls) != 1:
				t.Errorf("%d dead letters, want 1: %v", len(dls), dls)
			case c.reason != nil:
				for _, r := range c.reason {
					if !strings.Contains(dls[0].reason, r) {
						t.Errorf("the dead letter's reason lacks %q:\n%s", r, dls[0].reason)
					}
				}
			}
			for id, tags := range c.tags {
				got := g.userTags(id)
				for k, v := range tags {
					if got[k] != v {
						t.Errorf("user %q: tag %.40q is %.40q, want %.40q", id, k, got[k], v)
					}
				}
			}
			st := g.Emulator.State()
			for dev, owner := range c.owners {
				if got := st.ExternalIDOf(dev); got != owner {
					t.Errorf("device %s belongs to %q, want %q", dev, got, owner)
				}
			}
			// The rows around it were written in its transaction.
			for _, side := range []string{"before", "after"} {
				if got := g.userTags(fmt.Sprintf("case-%d-%s", no, side)); got["plan"] != "kept" {
					t.Errorf("the row written %s it has tags %v, want plan kept", side, got)
				}
			}
			if c.check != nil {
				c.check(t, g)
			}
		})
	}
	if _, stray := byCase[-1]; stray {
		t.Errorf("dead letters of no case: %v", byCase[-1])
	}

	for _, c := range []struct {
		name, table, snapshot string
		want                  []string
	}{
		{
			name:  "a table without a primary key under REPLICA IDENTITY DEFAULT stops the connector at start-up, naming the fix",
			table: "public.nokey", snapshot: "never",
			want: []string{"table public.nokey has no primary key and REPLICA IDENTITY DEFAULT", `ALTER TABLE "public"."nokey" REPLICA IDENTITY FULL`},
		},
		{
			name:  "a table without a primary key stops the connector at start-up when an initial snapshot is due, naming the fix",
			table: "public.nokeyfull", snapshot: "initial",
			want: []string{"table public.nokeyfull has no primary key, which the initial snapshot needs", "postgres.snapshot: never"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := g.config()
			cfg.Postgres.Slot = strings.ReplaceAll(g.DB.Name+"_"+c.table, "public.", "")
			cfg.Postgres.Snapshot = c.snapshot
			cfg.Kafka.ConsumerGroup = "badinput-" + c.table
			cfg.Mapping.Users = usersMapping(c.table, map[string]string{"plan": ""})
			p := daemontest.Start(t, daemontest.Connector, daemontest.WriteConfig(t, cfg))
			if code := p.Wait(t, 60*time.Second); code == 0 {
				t.Errorf("the connector exited 0 with a table it cannot stream")
			}
			for _, want := range c.want {
				if !strings.Contains(p.Output(), want) {
					t.Errorf("the connector's log lacks %q:\n%s", want, p.Tail(4<<10))
				}
			}
		})
	}

	if !g.daemon.Running() {
		t.Fatalf("the daemon stopped:\n%s", g.daemon.Tail(4<<10))
	}
}

// caseOf tells which case a dead letter belongs to: from its key, the
// users row's id; from its value, a devices row's owner, case-<no>. -1:
// none.
func (g *rowsGroup) caseOf(t *testing.T, dl deadLetter) int {
	if id, err := strconv.Atoi(jsonField(dl.Key, "id")); err == nil {
		return id / 100
	}
	ev, err := event.Decode(dl.Value)
	if err == nil {
		row := ev.After
		if row == nil {
			row = ev.Before
		}
		// The events carry only the mapped columns (case_no is not):
		// the owner's external id, case-<no>…, tells.
		var owner string
		if v, ok := row.Get("user_external_id"); ok && json.Unmarshal(v, &owner) == nil {
			digits, _, _ := strings.Cut(strings.TrimPrefix(owner, "case-"), "-")
			if no, err := strconv.Atoi(digits); err == nil && strings.HasPrefix(owner, "case-") {
				return no
			}
		}
	}
	t.Logf("a dead letter of no case: %v", dl)
	return -1
}

// event returns the event of the users row with the id, as Kafka holds
// it, and its size.
func (g *rowsGroup) event(t *testing.T, id int) (*event.Envelope, int) {
	t.Helper()
	key := fmt.Sprintf(`{"id":%d}`, id)
	recs := kafkatest.ReadUntil(t, g.Kafka.Brokers(), []string{"cdc.public.users"}, 30*time.Second, func(rs []kafkatest.Record) bool {
		for _, r := range rs {
			if string(r.Key) == key {
				return true
			}
		}
		return false
	})
	for _, r := range recs {
		if string(r.Key) == key {
			ev, err := event.Decode(r.Value)
			if err != nil {
				t.Fatalf("the event of row %d does not decode: %v", id, err)
			}
			return ev, len(r.Value)
		}
	}
	return nil, 0
}
