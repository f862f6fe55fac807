package e2e

import (
	"context"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/explain"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// The CRM-shaped schema of issue 11: users keyed by a surrogate "Contact
// ID", the external id in a column of its own, tag columns with quoted
// mixed-case names; devices keyed by (owner, device), naming their owner's
// external id in ext_id. Both foreign keys cascade updates, so a change of
// a user's primary key changes its devices' keys too, and a change of its
// external id moves its devices in the same transaction; deleting a user
// deletes its devices.
const crmSchema = `
CREATE TABLE users (
	"Contact ID" bigint PRIMARY KEY,
	"External Id" text UNIQUE,
	"Plan Tier" text,
	"Score" int,
	"Country" text
);
CREATE TABLE devices (
	contact_id bigint REFERENCES users ("Contact ID") ON UPDATE CASCADE ON DELETE CASCADE,
	device_id text,
	ext_id text REFERENCES users ("External Id") ON UPDATE CASCADE,
	PRIMARY KEY (contact_id, device_id)
);
`

// extID is the external id of contact i, in one of the shapes CRMs hold:
// a slash, a percent escape, a space and a non-ASCII letter, an emoji, or
// 120 characters.
func extID(i int) string {
	switch i % 5 {
	case 0:
		return fmt.Sprintf("team/ops-%d", i)
	case 1:
		return fmt.Sprintf("pct%%20-%d", i)
	case 2:
		return fmt.Sprintf("Müller %d", i)
	case 3:
		return fmt.Sprintf("🦊 %d", i)
	}
	s := fmt.Sprintf("long-%d-", i)
	return s + strings.Repeat("x", 120-len(s))
}

// quote is s as an SQL string literal, for statements that run as one
// simple query (several statements, a transaction) and so take no
// parameters.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// crmRun is one run of a CRM case: a database with the CRM schema under
// one replica identity, a Kafka broker, an emulator with OneSignal's rate
// limits, and, once started, `onesignal-cdc run` in one API model.
type crmRun struct {
	t       *testing.T
	model   string
	st      *daemontest.Stack
	db      *pgtest.DB
	emu     *emulator.Emulator
	brokers []string
	// ids and devices are every external id and device id the rows have
	// held: OneSignal must show what the final rows say of each, nothing
	// for those the rows no longer hold.
	ids, devices map[string]bool
	// sinks, when set before start, runs the connector and that many sink
	// processes of one group instead of onesignal-cdc run; sinkProcs are
	// those processes, cfg their configuration file.
	sinks     int
	sinkProcs []*daemontest.Process
	cfg       string
}

const (
	crmAppID  = "3c1e8f9a-0000-4000-8000-00000000c7a1"
	crmAPIKey = "e2e-crm-key"
	// crmDevices is how many devices the emulator has from the start, as
	// the SDKs make them on install: crmDevice(1) … crmDevice(crmDevices).
	crmDevices = 40
)

func crmDevice(i int) string { return playerID(i) }

// forEachCRMRun runs test four times, in parallel: in the user and in the
// player model, each with REPLICA IDENTITY DEFAULT and FULL on both tables.
// test writes the rows before start (the snapshot) and after, then calls
// converge.
func forEachCRMRun(t *testing.T, test func(t *testing.T, r *crmRun)) {
	t.Parallel()
	for _, model := range []string{sink.ModelUser, sink.ModelPlayer} {
		for _, identity := range []string{"DEFAULT", "FULL"} {
			t.Run(model+"/"+identity, func(t *testing.T) {
				t.Parallel()
				test(t, newCRMRun(t, model, identity))
			})
		}
	}
}

func newCRMRun(t *testing.T, model, identity string) *crmRun {
	st := daemontest.NewStack(t, daemontest.StackOptions{Emulator: emulator.Config{
		AppID: crmAppID, APIKey: crmAPIKey,
		RateLimits: emulator.RateLimits{Enabled: true},
	}})
	db := st.DB
	db.Exec(t, crmSchema)
	db.Exec(t, fmt.Sprintf(`ALTER TABLE users REPLICA IDENTITY %[1]s; ALTER TABLE devices REPLICA IDENTITY %[1]s`, identity))
	r := &crmRun{t: t, model: model, st: st, db: db, emu: st.Emulator, brokers: st.Kafka.Brokers(), ids: map[string]bool{}, devices: map[string]bool{}}
	r.addDevices(1, crmDevices)
	return r
}

// addDevices gives the emulator the devices crmDevice(from) …
// crmDevice(to).
func (r *crmRun) addDevices(from, to int) {
	for i := from; i <= to; i++ {
		r.emu.AddSubscription(emulator.Subscription{ID: crmDevice(i), Type: "AndroidPush", Token: "token-" + crmDevice(i)})
	}
}

// config is the daemon's configuration for the CRM, in the run's model.
func (r *crmRun) config() config.Config {
	c := r.st.Config()
	e2eSettings(&c)
	c.OneSignal.Model = r.model
	c.OneSignal.Concurrency = 16
	c.Mapping = transform.Mapping{
		Users: &transform.UsersMapping{Table: "public.users", ExternalID: "External Id",
			Tags: map[string]string{"Plan Tier": "plan", "Score": "", "Country": "country"}},
		Devices: &transform.DevicesMapping{Table: "public.devices", DeviceID: "device_id", ExternalID: "ext_id"},
	}
	return c
}

// start runs the daemon and waits until it streams and its snapshot (the
// rows written before) is in Kafka.
func (r *crmRun) start() {
	t := r.t
	t.Helper()
	r.cfg = daemontest.WriteConfig(t, r.config())
	if r.sinks == 0 {
		daemontest.Start(t, daemontest.Run, r.cfg)
	} else {
		daemontest.Start(t, daemontest.Connector, r.cfg)
		for range r.sinks {
			r.sinkProcs = append(r.sinkProcs, daemontest.Start(t, daemontest.Sink, r.cfg))
		}
	}
	daemontest.WaitForSlot(t, r.db, r.db.Name)
	r.waitForSnapshot()
}

// waitForSnapshot waits until the event topics hold the snapshot of every
// row. The connector snapshots while it streams, so a change written
// before then can reach Kafka ahead of its row's snapshot: a delete that
// carries only the key (REPLICA IDENTITY DEFAULT), of a row the sink has
// not seen, is then dead-lettered, since it names no user or device. The
// cases here are about rows the sink has seen; once the snapshot is in,
// each row's later changes follow its snapshot row in its partition.
func (r *crmRun) waitForSnapshot() {
	t := r.t
	t.Helper()
	c, done := broker.Plain(r.brokers).Client(10 * time.Second)
	defer done()
	deadline := time.Now().Add(30 * time.Second)
	for _, table := range []string{"users", "devices"} {
		var rows int64
		if err := r.db.Conn(t).QueryRow(context.Background(), `SELECT count(*) FROM `+table).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		for {
			held, err := heldBy(c, "cdc.public."+table)
			if err == nil && held >= rows {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the snapshot of %s (%d rows) is not in Kafka after 30 s: %d messages (%v)", table, rows, held, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// heldBy counts the messages topic has held, an error while it does not
// exist yet.
func heldBy(c *kafka.Client, topic string) (int64, error) {
	md, err := c.Metadata(context.Background(), &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, err
	}
	var reqs []kafka.OffsetRequest
	for _, tp := range md.Topics {
		if tp.Error != nil {
			return 0, tp.Error
		}
		for _, p := range tp.Partitions {
			reqs = append(reqs, kafka.LastOffsetOf(p.ID))
		}
	}
	resp, err := c.ListOffsets(context.Background(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return 0, err
	}
	var n int64
	for _, po := range resp.Topics[topic] {
		if po.Error != nil {
			return 0, po.Error
		}
		n += po.LastOffset
	}
	return n, nil
}

// exec runs sql (one or more statements, as one transaction unless they
// say otherwise) and notes the ids the rows hold afterwards.
func (r *crmRun) exec(sql string, args ...any) {
	r.t.Helper()
	r.db.Exec(r.t, sql, args...)
	r.remember()
}

// fails runs sql, which must fail: nothing of it is committed.
func (r *crmRun) fails(sql string) {
	r.t.Helper()
	if _, err := r.db.Conn(r.t).Exec(context.Background(), sql); err == nil {
		r.t.Fatalf("%q succeeded; the test wants it to fail and roll back", sql)
	}
}

// note adds external ids that only a transaction's middle held.
func (r *crmRun) note(ids ...string) {
	for _, id := range ids {
		r.ids[id] = true
	}
}

func (r *crmRun) remember() {
	r.t.Helper()
	want := r.expected()
	for id := range want.tags {
		r.ids[id] = true
	}
	for d := range want.owners {
		r.devices[d] = true
	}
}

// expected is what the rows say OneSignal should hold now: the mapped tags
// of every external id the rows hold (the ids the rows held before but no
// longer have none: tags of {}), and every device's owner ("": none).
func (r *crmRun) expected() oneSignalState {
	t := r.t
	t.Helper()
	s := oneSignalState{tags: map[string]map[string]string{}, owners: map[string]string{}}
	for id := range r.ids {
		s.tags[id] = map[string]string{}
	}
	for d := range r.devices {
		s.owners[d] = ""
	}
	conn := r.db.Conn(t)
	ctx := context.Background()
	rows, err := conn.Query(ctx, `SELECT "External Id", "Plan Tier", "Score"::text, "Country" FROM users WHERE "External Id" <> ''`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var plan, score, country *string
		if err := rows.Scan(&id, &plan, &score, &country); err != nil {
			t.Fatal(err)
		}
		tags := map[string]string{}
		for name, v := range map[string]*string{"plan": plan, "Score": score, "country": country} {
			if v != nil && *v != "" {
				tags[name] = *v
			}
		}
		s.tags[id] = tags
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows, err = conn.Query(ctx, `SELECT device_id, coalesce(ext_id, '') FROM devices`)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for rows.Next() {
		var d, owner string
		if err := rows.Scan(&d, &owner); err != nil {
			t.Fatal(err)
		}
		if seen[d] {
			t.Fatalf("the workload gave device %s two rows: which owner OneSignal should show is not the rows' to say", d)
		}
		seen[d] = true
		s.owners[d] = owner
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return s
}

// differences compares the emulator's state with want. In the user model
// that is every user's tags (a user OneSignal does not have holds none) and
// every device's owner. The player model has no user objects, only devices
// that carry an external_user_id and their owner's tags, so it is every
// device's owner and the tags it shows: its owner's, none when it has no
// owner (unlinking clears the mapped tags).
func (r *crmRun) differences(st emulator.State, want oneSignalState) []string {
	var lines []string
	if r.model == sink.ModelUser {
		for id, w := range want.tags {
			got := map[string]string{}
			if u, ok := st.UserByExternalID(id); ok {
				got = u.Tags
			}
			if !reflect.DeepEqual(got, w) {
				lines = append(lines, fmt.Sprintf("user %q: tags %v, want %v", id, got, w))
			}
		}
	}
	for d, owner := range want.owners {
		got := st.ExternalIDOf(d)
		if got != owner {
			lines = append(lines, fmt.Sprintf("device %s: owner %q, want %q", d, got, owner))
		}
		if r.model != sink.ModelPlayer {
			continue
		}
		p, _ := st.Player(d)
		tags := p.Tags
		if tags == nil {
			tags = map[string]string{}
		}
		w := map[string]string{}
		if owner != "" {
			w = want.tags[owner]
		}
		if !reflect.DeepEqual(tags, w) {
			lines = append(lines, fmt.Sprintf("device %s (owner %q): tags %v, want %v", d, got, tags, w))
		}
	}
	slices.Sort(lines)
	return lines
}

// converge waits until OneSignal says what the rows say, then until the
// sink has committed everything, and checks that it still does, with
// nothing dead-lettered. It returns what the rows say.
func (r *crmRun) converge() oneSignalState {
	t := r.t
	t.Helper()
	want := r.expected()
	patience := 60 * time.Second
	if r.sinks > 0 {
		// A killed member holds its partitions until the group's
		// rebalance lets it go (docs/operations.md: failover): the wait
		// is the group's, not the sink's.
		patience = 4 * time.Minute
	}
	deadline := time.Now().Add(patience)
	for {
		d := r.differences(r.emu.State(), want)
		if len(d) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("OneSignal is not in step with the rows after %s:\n%s\nemulator: %s\n%s", patience, describeDifferences(d), describeStats(r.emu.Stats()), r.explainDifferences(d))
		}
		time.Sleep(200 * time.Millisecond)
	}
	r.settle()
	if d := r.differences(r.emu.State(), want); len(d) != 0 {
		t.Errorf("OneSignal left the rows' state once the sink had committed everything:\n%s", describeDifferences(d))
	}
	if n := kafkatest.MessagesIn(t, r.brokers, "cdc.dlq"); n != 0 {
		recs := kafkatest.ReadUntil(t, r.brokers, []string{"cdc.dlq"}, 10*time.Second, func(rs []kafkatest.Record) bool { return len(rs) >= int(n) })
		for _, rec := range recs {
			t.Errorf("dead letter of %s@%s: %s", headerValue(rec, sink.HeaderTopic), headerValue(rec, sink.HeaderOffset), headerValue(rec, sink.HeaderMessage))
		}
		t.Fatalf("the dead-letter topic holds %d messages, want none", n)
	}
	return want
}

// settle waits until the sink has committed every message of its topics:
// each event is in its targets' states, and each target's state is in
// OneSignal.
func (r *crmRun) settle() {
	r.t.Helper()
	waitForGroupCaughtUp(r.t, r.brokers, "e2e", sinkTopics)
}

// explainDifferences is what `onesignal-cdc explain` says of the first
// targets the differences name (a device, its owner, the owner it should
// have), for a failure's report.
func (r *crmRun) explainDifferences(lines []string) string {
	quoted := regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	var targets []transform.Target
	seen := map[transform.Target]bool{}
	add := func(t transform.Target) {
		if !seen[t] && t.ID != "" && len(targets) < 6 {
			seen[t] = true
			targets = append(targets, t)
		}
	}
	for _, l := range lines {
		if id, ok := strings.CutPrefix(l, "device "); ok {
			add(transform.Device(strings.Fields(id)[0]))
		}
		for i, q := range quoted.FindAllString(l, -1) {
			if id, err := strconv.Unquote(q); err == nil && (i < 2 || strings.HasPrefix(l, "user ")) {
				add(transform.User(id))
			}
		}
	}
	var b strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, t := range targets {
		rep, err := explain.Explain(ctx, explain.Config{Cluster: broker.Plain(r.brokers), TargetsTopic: "cdc.sink-targets", DeadLetterTopic: "cdc.dlq", Group: "e2e"}, t)
		if err != nil {
			fmt.Fprintf(&b, "explain %s: %v\n", t.Key(), err)
			continue
		}
		rep.WriteText(&b)
		b.WriteString("\n")
	}
	return b.String()
}

func describeDifferences(lines []string) string {
	n := len(lines)
	if n > 20 {
		lines = append(lines[:20:20], fmt.Sprintf("… and %d more", n-20))
	}
	return fmt.Sprintf("%d differences:\n  %s", n, strings.Join(lines, "\n  "))
}

// seedUsers inserts contacts from … to, each with tags, and, for those
// up to withDevices, the device of the same number.
func (r *crmRun) seedUsers(from, to, withDevices int) {
	r.t.Helper()
	for i := from; i <= to; i++ {
		r.db.Exec(r.t, `INSERT INTO users VALUES ($1, $2, $3, $4, $5)`, i, extID(i), []string{"free", "pro", "team"}[i%3], i, []string{"DE", "FR", "US", "JP"}[i%4])
		if i <= withDevices {
			r.db.Exec(r.t, `INSERT INTO devices VALUES ($1, $2, $3)`, i, crmDevice(i), extID(i))
		}
	}
	r.remember()
}

// TestAnUpdateOfTheUsersPrimaryKeyLeavesTheUserItsTags: an UPDATE of
// "Contact ID" reaches Kafka as a delete of the old key and a create of
// the new one, on two partitions, and cascades into the devices' keys;
// whichever half the sink takes in last, the user keeps its tags and its
// devices.
func TestAnUpdateOfTheUsersPrimaryKeyLeavesTheUserItsTags(t *testing.T) {
	forEachCRMRun(t, func(t *testing.T, r *crmRun) {
		r.seedUsers(1, 6, 6)
		r.start()
		r.seedUsers(7, 8, 8) // rows the sink sees as events, not in the snapshot
		r.exec(`UPDATE users SET "Contact ID" = "Contact ID" + 100 WHERE "Contact ID" IN (1, 2, 7)`)
		r.exec(`UPDATE users SET "Contact ID" = 203, "Score" = 42 WHERE "Contact ID" = 3`) // a tag changed with the key
		// A key changed twice in a row, and one changed in a savepoint
		// that is rolled back.
		r.exec(`UPDATE users SET "Contact ID" = 108 WHERE "Contact ID" = 8`)
		r.exec(`UPDATE users SET "Contact ID" = 1008 WHERE "Contact ID" = 108`)
		r.exec(`BEGIN;
			UPDATE users SET "Contact ID" = 304 WHERE "Contact ID" = 4;
			SAVEPOINT s;
			UPDATE users SET "Contact ID" = 404 WHERE "Contact ID" = 304;
			UPDATE users SET "Plan Tier" = NULL WHERE "Contact ID" = 5;
			ROLLBACK TO SAVEPOINT s;
			COMMIT`)
		// A key change and a NULLed tag in one statement.
		r.exec(`UPDATE users SET "Contact ID" = 506, "Country" = NULL WHERE "Contact ID" = 6`)
		r.converge()
	})
}

// TestADeviceMovedToAnotherOwnerEndsWithItsNewOwner: a device moves by a
// change of its composite key (a delete of the old key and a create of the
// new, on two partitions), by a change of ext_id alone, twice in one
// transaction; a move in an aborted transaction changes nothing.
func TestADeviceMovedToAnotherOwnerEndsWithItsNewOwner(t *testing.T) {
	forEachCRMRun(t, func(t *testing.T, r *crmRun) {
		r.seedUsers(1, 4, 4)
		r.db.Exec(t, `INSERT INTO devices VALUES (1, $1, $2)`, crmDevice(5), extID(1))
		r.start()
		r.exec(`UPDATE devices SET contact_id = 2, ext_id = $1 WHERE device_id = $2`, extID(2), crmDevice(1))
		r.exec(`UPDATE devices SET ext_id = $1 WHERE device_id = $2`, extID(3), crmDevice(5))
		r.exec(fmt.Sprintf(`BEGIN;
			UPDATE devices SET contact_id = 3, ext_id = %[1]s WHERE device_id = %[3]s;
			UPDATE devices SET contact_id = 4, ext_id = %[2]s WHERE device_id = %[3]s;
			COMMIT`, quote(extID(3)), quote(extID(4)), quote(crmDevice(2))))
		r.exec(fmt.Sprintf(`BEGIN;
			UPDATE devices SET contact_id = 1, ext_id = %s WHERE device_id = %s;
			ROLLBACK`, quote(extID(1)), quote(crmDevice(3))))
		// A device the sink knows from an event, moved by its key.
		r.exec(`INSERT INTO devices VALUES (4, $1, $2)`, crmDevice(6), extID(4))
		r.exec(`UPDATE devices SET contact_id = 1, ext_id = $1 WHERE device_id = $2`, extID(1), crmDevice(6))
		want := r.converge()
		if want.owners[crmDevice(1)] != extID(2) || want.owners[crmDevice(2)] != extID(4) || want.owners[crmDevice(3)] != extID(3) {
			t.Fatalf("the workload did not move the devices as meant: %v", want.owners)
		}
	})
}

// TestDeletesUntagTheUserAndUnlinkTheDeviceTheRowFed: under REPLICA
// IDENTITY DEFAULT a delete carries only the primary key ("Contact ID";
// contact_id and device_id), which names no user or device: the sink
// finds them through what it saw of the row. A deleted user's mapped tags
// go; a deleted device row unlinks its device; a row deleted and
// inserted again in one transaction ends as inserted; an aborted delete
// changes nothing.
func TestDeletesUntagTheUserAndUnlinkTheDeviceTheRowFed(t *testing.T) {
	forEachCRMRun(t, func(t *testing.T, r *crmRun) {
		r.seedUsers(1, 6, 6)
		r.seedUsers(7, 8, 0)
		r.start()
		r.exec(`DELETE FROM devices WHERE device_id = $1`, crmDevice(1))
		r.exec(`DELETE FROM users WHERE "Contact ID" IN (2, 7)`) // 2's device goes with it
		r.exec(fmt.Sprintf(`BEGIN;
			DELETE FROM users WHERE "Contact ID" = 3;
			INSERT INTO users VALUES (3, %[1]s, 'gold', 33, NULL);
			INSERT INTO devices VALUES (3, %[2]s, %[1]s);
			COMMIT`, quote(extID(3)), quote(crmDevice(3))))
		// Deleted and inserted again under another external id.
		r.exec(fmt.Sprintf(`BEGIN;
			DELETE FROM users WHERE "Contact ID" = 4;
			INSERT INTO users VALUES (4, %[1]s, 'gold', 44, 'NL');
			INSERT INTO devices VALUES (4, %[2]s, %[1]s);
			COMMIT`, quote(extID(40)), quote(crmDevice(4))))
		r.exec(`BEGIN; DELETE FROM users WHERE "Contact ID" = 5; ROLLBACK`)
		r.fails(fmt.Sprintf(`DELETE FROM devices WHERE device_id = %s; INSERT INTO users VALUES (1, 'a duplicate key')`, quote(crmDevice(6))))
		// Rows the sink knows from events only.
		r.seedUsers(9, 9, 9)
		r.exec(`DELETE FROM devices WHERE contact_id = 9`)
		r.exec(`DELETE FROM users WHERE "Contact ID" IN (8, 9)`)
		want := r.converge()
		if len(want.tags[extID(2)]) != 0 || want.owners[crmDevice(1)] != "" || want.owners[crmDevice(6)] != extID(6) {
			t.Fatalf("the workload did not delete as meant: %v, %v", want.tags, want.owners)
		}
	})
}

// TestTagsWrittenBeforeTheUsersDeviceExistsReachTheDeviceWithTheLink: in
// the player model tags live on devices, and a user without one has
// nowhere to hold them: the sink keeps them in the user's desired state,
// and the link of its first device carries them. In the user model the
// same rows give the user its tags at once, and the device later.
func TestTagsWrittenBeforeTheUsersDeviceExistsReachTheDeviceWithTheLink(t *testing.T) {
	forEachCRMRun(t, func(t *testing.T, r *crmRun) {
		r.seedUsers(1, 4, 0)
		r.start()
		r.seedUsers(5, 8, 0)
		r.exec(`UPDATE users SET "Plan Tier" = 'pro', "Score" = "Score" * 10`)
		r.exec(`UPDATE users SET "Country" = NULL WHERE "Contact ID" % 2 = 0`)
		// The sink has taken in every change, and written what it could.
		r.settle()
		for i := 1; i <= 8; i++ {
			r.db.Exec(t, `INSERT INTO devices VALUES ($1, $2, $3)`, i, crmDevice(i), extID(i))
		}
		// A tag change racing the links.
		r.exec(`UPDATE users SET "Score" = 0 WHERE "Contact ID" IN (1, 2)`)
		r.converge()
	})
}

// TestAnExternalIDChangeLeavesTheNewIDTheTagsAndTheDevicesAndTheOldNone: an
// UPDATE of "External Id" (A becomes B) moves the devices through ON
// UPDATE CASCADE in the same transaction; B ends with the mapped tags and
// the devices, A with none of the mapped tags. In the player model A has
// nothing left to show: its devices are B's.
func TestAnExternalIDChangeLeavesTheNewIDTheTagsAndTheDevicesAndTheOldNone(t *testing.T) {
	forEachCRMRun(t, func(t *testing.T, r *crmRun) {
		r.seedUsers(1, 5, 5)
		r.db.Exec(t, `INSERT INTO devices VALUES (1, $1, $2)`, crmDevice(6), extID(1)) // a second device of A
		r.start()
		r.exec(`UPDATE users SET "External Id" = 'renamed/' || "External Id" WHERE "Contact ID" = 1`)
		r.exec(`UPDATE users SET "External Id" = $1, "Country" = NULL WHERE "Contact ID" = 2`, extID(20)) // and a NULLed tag
		// A → B → C in one transaction.
		r.note(extID(30))
		r.exec(fmt.Sprintf(`BEGIN;
			UPDATE users SET "External Id" = %s WHERE "Contact ID" = 3;
			UPDATE users SET "External Id" = %s WHERE "Contact ID" = 3;
			COMMIT`, quote(extID(30)), quote(extID(31))))
		// A → B, then back to A.
		r.exec(`UPDATE users SET "External Id" = $1 WHERE "Contact ID" = 4`, extID(41))
		r.exec(`UPDATE users SET "External Id" = $1 WHERE "Contact ID" = 4`, extID(4))
		// A row the sink knows from an event.
		r.seedUsers(7, 7, 7)
		r.exec(`UPDATE users SET "External Id" = $1 WHERE "Contact ID" = 7`, extID(70))
		want := r.converge()
		if len(want.tags[extID(1)]) != 0 || want.owners[crmDevice(6)] != "renamed/"+extID(1) || len(want.tags[extID(41)]) != 0 {
			t.Fatalf("the workload did not rename as meant: %v, %v", want.tags, want.owners)
		}
	})
}

// TestABulkInsertOfNewUsersCostsOneRequestPerUserWithNo429: in the user
// model new users, from the snapshot and from one INSERT, cost one request
// each (create user, with the tags) under the emulator's rate limits, and
// no 429. In the player model a user without a device is not written at
// all, so each user has one: its device is linked with one PUT
// /players/{id}, which carries the user's tags. When the device's row
// reaches the sink before the user's, the link carries the tags of then
// (none), and the user writes its tags by external id once the link is in:
// at most one such write per user, none before a link (it would find no
// device: 404).
func TestABulkInsertOfNewUsersCostsOneRequestPerUserWithNo429(t *testing.T) {
	const n = 200
	forEachCRMRun(t, func(t *testing.T, r *crmRun) {
		devices := 0
		if r.model == sink.ModelPlayer {
			devices = n
			r.addDevices(crmDevices+1, n)
		}
		r.seedUsers(1, n/2, devices)
		r.start()
		r.exec(`INSERT INTO users SELECT i, 'bulk-' || i, 'free', i, 'DE' FROM generate_series($1::int, $2::int) i`, n/2+1, n)
		if devices > 0 {
			// crmDevice(i), as SQL.
			r.exec(`INSERT INTO devices SELECT i, '00000000-0000-4000-8000-' || lpad(i::text, 12, '0'), 'bulk-' || i FROM generate_series($1::int, $2::int) i`, n/2+1, n)
		}
		r.converge()
		st := r.emu.Stats()
		requests := 0
		for _, byStatus := range st.Requests {
			for _, c := range byStatus {
				requests += c
			}
		}
		t.Logf("%d users: %d requests, %.3f per user; %v", n, requests, float64(requests)/n, st.Requests)
		if st.TooManyRequests != 0 {
			t.Errorf("the emulator answered 429 %d times, want none: %v", st.TooManyRequests, st.Requests)
		}
		if r.model == sink.ModelUser {
			if perUser := float64(requests) / n; perUser > 1.05 {
				t.Errorf("%d new users cost %d requests, %.2f per user, want at most 1.05: %v", n, requests, perUser, st.Requests)
			}
			return
		}
		links, tags := st.Requests["PUT /players/{player_id}"], st.Requests["PUT /apps/{app_id}/users/{external_user_id}"]
		if links[200] != n || len(links) != 1 {
			t.Errorf("%d devices were linked with %v (by status), want %d requests, each 200", n, links, n)
		}
		if tags[200] > n || len(tags) > 1 || (len(tags) == 1 && tags[200] == 0) {
			t.Errorf("%d users wrote their tags by external id with %v (by status), want at most %d requests, each 200", n, tags, n)
		}
		if requests != links[200]+tags[200] {
			t.Errorf("the sink made requests other than links and tags: %v", st.Requests)
		}
	})
}

// TestARowWhoseMappedTagsAreAllNullCreatesItsUser: in the user model an
// inserted or snapshot row with every mapped tag NULL (or empty) creates
// its user, with no tags (issue 17, point 5). The player model has no user
// object apart from devices: such a row with no device writes nothing, and
// its device, when it comes, is linked with no tags.
func TestARowWhoseMappedTagsAreAllNullCreatesItsUser(t *testing.T) {
	forEachCRMRun(t, func(t *testing.T, r *crmRun) {
		r.exec(`INSERT INTO users VALUES (1, $1, NULL, NULL, NULL)`, extID(1)) // in the snapshot
		r.start()
		r.exec(`INSERT INTO users VALUES (2, $1, NULL, NULL, NULL)`, extID(2))
		r.exec(`INSERT INTO users VALUES (3, $1, '', NULL, '')`, extID(3)) // empty strings are no tags either
		r.exec(fmt.Sprintf(`INSERT INTO users VALUES (4, %[1]s, NULL, NULL, NULL); INSERT INTO devices VALUES (4, %[2]s, %[1]s)`, quote(extID(4)), quote(crmDevice(4))))
		// Tags NULLed after the user exists: it keeps existing, with none.
		r.exec(`INSERT INTO users VALUES (5, $1, 'pro', 5, 'DE')`, extID(5))
		r.converge()
		r.exec(`UPDATE users SET "Plan Tier" = NULL, "Score" = NULL, "Country" = NULL WHERE "Contact ID" = 5`)
		r.converge()
		if r.model != sink.ModelUser {
			return
		}
		st := r.emu.State()
		for i := 1; i <= 5; i++ {
			if _, ok := st.UserByExternalID(extID(i)); !ok {
				t.Errorf("OneSignal has no user %q, whose row has no tags", extID(i))
			}
		}
	})
}

// TestThreeSinksInOneGroupConvergeThroughAKillOfAnyOfThem: sinks are a
// consumer group, and a user's state is kept by whichever member holds its
// partition of the targets topic; a sink killed with SIGKILL (no leave, no
// commit) loses nothing, and the member that takes its partitions picks up
// its state from Kafka.
func TestThreeSinksInOneGroupConvergeThroughAKillOfAnyOfThem(t *testing.T) {
	t.Parallel()
	for _, model := range []string{sink.ModelUser, sink.ModelPlayer} {
		t.Run(model, func(t *testing.T) {
			t.Parallel()
			r := newCRMRun(t, model, "DEFAULT")
			r.sinks = 3
			r.seedUsers(1, 30, 20)
			r.start()
			for round := range 3 {
				base := 100 + 40*round
				r.addDevices(base+1, base+10)
				r.seedUsers(base+1, base+20, base+10)
				r.exec(`UPDATE users SET "Score" = "Score" + 1000 WHERE "Contact ID" % 3 = $1`, round)
				r.exec(`UPDATE devices SET ext_id = $1 WHERE contact_id % 4 = $2`, extID(base+1), round)
				r.exec(`DELETE FROM users WHERE "Contact ID" = $1`, base+2)
				// SIGKILL one sink mid-stream, and start another in its place.
				// The kill waits for the group to be stable with every sink
				// in it: kfake keeps a member killed while it joins in the
				// group for minutes (docs/reliability.md), a real Kafka
				// drops it after its session.
				waitForGroupStable(t, r.brokers, "e2e", r.sinks)
				r.sinkProcs[round].Kill(t)
				r.exec(`UPDATE users SET "Contact ID" = "Contact ID" + 1000 WHERE "Contact ID" = $1`, base+3)
				r.sinkProcs[round] = daemontest.Start(t, daemontest.Sink, r.cfg)
				r.remember()
			}
			r.converge()
		})
	}
}

// waitForGroupStable waits until the consumer group is stable with
// members members.
func waitForGroupStable(t *testing.T, brokers []string, group string, members int) {
	t.Helper()
	c, done := broker.Plain(brokers).Client(5 * time.Second)
	defer done()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := c.DescribeGroups(context.Background(), &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
		if err == nil && len(resp.Groups) == 1 && resp.Groups[0].GroupState == "Stable" && len(resp.Groups[0].Members) == members {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer group %s not stable with %d members after 2 minutes (%v, %+v)", group, members, err, resp)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
