package e2e

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"
	"go.yaml.in/yaml/v3"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
	"github.com/onesignal-cdc/onesignal-cdc/secret"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// The three-table CRM of issue 12 (docs/examples/crm.yaml maps the same
// tables): contacts keyed by a surrogate "Contact ID", the external id in a
// column of its own, soft-deleted by deleted_at, with a password the
// mapping must never let out of PostgreSQL; subscriptions naming their
// contact by foreign key, several per contact; devices keyed by (contact,
// device), their owner found by the same foreign key. Subscriptions are
// REPLICA IDENTITY FULL, so their filter is pushed down into the
// publication; the contacts' filter reads columns outside their key, so the
// transform evaluates it.
const crm12Schema = `
CREATE TABLE contacts (
	"Contact ID" bigint PRIMARY KEY,
	"External Id" text UNIQUE,
	plan text,
	score int,
	deleted_at timestamptz,
	signed_up timestamptz,
	"Lang" text,
	country_code text,
	password text NOT NULL
);
CREATE TABLE subscriptions (
	id bigint PRIMARY KEY,
	contact bigint NOT NULL REFERENCES contacts ("Contact ID") ON UPDATE CASCADE ON DELETE CASCADE,
	status text NOT NULL,
	product text
);
ALTER TABLE subscriptions REPLICA IDENTITY FULL;
CREATE TABLE devices (
	contact bigint REFERENCES contacts ("Contact ID") ON UPDATE CASCADE ON DELETE CASCADE,
	device_id text,
	active boolean NOT NULL DEFAULT true,
	PRIMARY KEY (contact, device_id)
);
`

// crm12Tags is how many tags the mapping can give a user: plan, score,
// tier, days_since_signup, active_subscriptions, pro_subscriptions.
const crm12Tags = 6

// crm12ID is the external id of contact i, in the shapes CRMs hold: a
// slash and a query, a percent sign, spaces and umlauts, CJK with a
// question mark, all of them at once.
func crm12ID(i int) string {
	switch i % 5 {
	case 0:
		return fmt.Sprintf("acme/sales?id=%d", i)
	case 1:
		return fmt.Sprintf("100%% real %d", i)
	case 2:
		return fmt.Sprintf("Jörg Müller %d", i)
	case 3:
		return fmt.Sprintf("客户 %d?", i)
	}
	return fmt.Sprintf("a b/c?d%%2Fe #%d", i)
}

// contactKey is contact i's "Contact ID": a surrogate that is not the
// external id.
func contactKey(i int) int64 { return int64(7000 + i) }

// crm12Secret is contact i's password: a value no Kafka record may hold.
func crm12Secret(i int) string { return fmt.Sprintf("pw-Never-Leaves-%d", i) }

// crm12Run is one run of the CRM: a database with its schema, a broker, an
// emulator holding crmDevices devices, and, once started, onesignal-cdc run
// in one API model.
type crm12Run struct {
	t        *testing.T
	model    string
	onDelete string // the user model's on_delete
	maxTags  int
	db       *pgtest.DB
	emu      *emulator.Emulator
	url      string
	brokers  []string
	// ids and devices are every external id and device id the rows have
	// held: OneSignal must show what the final rows say of each, but for
	// the ids in skip, and their devices.
	ids, devices map[string]bool
	skip         map[string]bool
	conn         *pgx.Conn // the test's queries; see pg
}

// pg is the run's connection for the test's queries, one for the whole
// run: a connection per query would hold dozens open until the test ends.
func (r *crm12Run) pg() *pgx.Conn {
	r.t.Helper()
	if r.conn == nil {
		r.conn = r.db.Conn(r.t)
	}
	return r.conn
}

// crm12Options change a run from the defaults: on_delete not set
// (remove_tags), max_tags the mapping's count, OneSignal with no tag cap.
type crm12Options struct {
	onDelete         string
	maxTags          int
	contactsIdentity string // REPLICA IDENTITY of contacts: DEFAULT unless set
	emulatorTagCap   int
}

func newCRM12Run(t *testing.T, model string, o crm12Options) *crm12Run {
	t.Helper()
	st := daemontest.NewStack(t, daemontest.StackOptions{Emulator: emulator.Config{
		AppID: crmAppID, APIKey: crmAPIKey, TagLimit: o.emulatorTagCap,
		RateLimits: emulator.RateLimits{Enabled: true},
	}})
	db, emu := st.DB, st.Emulator
	db.Exec(t, crm12Schema)
	if o.contactsIdentity != "" {
		db.Exec(t, `ALTER TABLE contacts REPLICA IDENTITY `+o.contactsIdentity)
	}
	r := &crm12Run{t: t, model: model, onDelete: o.onDelete, maxTags: cmp.Or(o.maxTags, crm12Tags), db: db, emu: emu, url: st.APIURL, brokers: st.Kafka.Brokers(),
		ids: map[string]bool{}, devices: map[string]bool{}, skip: map[string]bool{}}
	for i := 1; i <= crmDevices; i++ {
		emu.AddSubscription(emulator.Subscription{ID: crmDevice(i), Type: "AndroidPush", Token: "token-" + crmDevice(i)})
	}
	return r
}

// forEachModel12 runs test in the user and in the player model, in
// parallel.
func forEachModel12(t *testing.T, o crm12Options, test func(t *testing.T, r *crm12Run)) {
	t.Parallel()
	for _, model := range []string{sink.ModelUser, sink.ModelPlayer} {
		t.Run(model, func(t *testing.T) {
			t.Parallel()
			test(t, newCRM12Run(t, model, o))
		})
	}
}

// config writes the run's configuration file: the CRM's mapping, in the
// run's model. Aliases and on_delete are the user model's: the player
// model has no aliases, and refuses delete_user.
func (r *crm12Run) config() string {
	t := r.t
	t.Helper()
	c := config.Default()
	c.Postgres.DSN, c.Postgres.Slot = secret.Value(r.db.DSN), r.db.Name
	c.Kafka.Brokers = r.brokers
	c.OneSignal.BaseURL, c.OneSignal.AppID, c.OneSignal.APIKey = r.url, crmAppID, crmAPIKey
	e2eSettings(&c)
	c.OneSignal.Model = r.model
	c.OneSignal.Concurrency = 16
	c.OneSignal.MaxTags = r.maxTags
	contact := &transform.Reference{Column: "contact", Table: "public.contacts", Key: "Contact ID"}
	c.Mapping = transform.Mapping{
		Users: &transform.UsersMapping{
			Table: "public.contacts", ExternalID: "External Id",
			Filter: `row.deleted_at == null && row.plan != "internal"`,
			Tags:   map[string]string{"plan": "", "score": ""},
			Computed: map[string]string{
				"tier":              `row.score == null ? null : row.score >= 100 ? "gold" : row.score >= 50 ? "silver" : "bronze"`,
				"days_since_signup": `days_since(row.signed_up)`,
			},
			Properties: map[string]string{"language": "Lang", "country": `=row.country_code == null ? null : row.country_code.upperAscii()`},
			OnDelete:   r.onDelete,
		},
		Sources: []transform.SourceMapping{{
			Name: "subscriptions", Table: "public.subscriptions",
			User:     transform.SourceUser{References: contact},
			Filter:   `row.status == "active"`,
			Tags:     map[string]string{"product": "active_subscriptions"},
			Computed: map[string]string{"pro_subscriptions": `row.product == "pro" ? 1 : null`},
			Many:     transform.ManyCount,
		}},
		Devices: &transform.DevicesMapping{
			Table: "public.devices", DeviceID: "device_id",
			Owner:  &transform.DeviceOwner{References: contact},
			Filter: `row.active`,
		},
	}
	if r.model == config.ModelUser {
		c.Mapping.Users.Aliases = map[string]string{"crm_id": "Contact ID"}
	}
	return daemontest.WriteConfig(t, c)
}

// start runs the daemon and waits until it streams and its snapshot of the
// rows written before is in Kafka.
func (r *crm12Run) start() {
	t := r.t
	t.Helper()
	daemontest.Start(t, daemontest.Run, r.config())
	daemontest.WaitForSlot(t, r.db, r.db.Name)
	// The initial snapshot reads only the subscriptions the pushed-down
	// filter keeps.
	c, done := broker.Plain(r.brokers).Client(10 * time.Second)
	defer done()
	deadline := time.Now().Add(30 * time.Second)
	for table, where := range map[string]string{"contacts": "", "subscriptions": " WHERE status = 'active'", "devices": ""} {
		var rows int64
		if err := r.pg().QueryRow(context.Background(), `SELECT count(*) FROM `+table+where).Scan(&rows); err != nil {
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

// exec runs sql and notes the ids the rows hold afterwards.
func (r *crm12Run) exec(sql string, args ...any) {
	r.t.Helper()
	r.db.Exec(r.t, sql, args...)
	r.remember()
}

// contact inserts contact i as the tests mostly want it: a plan, a score,
// signed up i days and 12 hours ago (so that the days since stay the same
// for the rest of the test), a language and a country, and a password.
func (r *crm12Run) contact(i int) {
	r.t.Helper()
	r.db.Exec(r.t, `INSERT INTO contacts ("Contact ID", "External Id", plan, score, signed_up, "Lang", country_code, password)
		VALUES ($1, $2, $3, $4, now() - make_interval(days => $5) - interval '12 hours', $6, $7, $8)`,
		contactKey(i), crm12ID(i), []string{"free", "pro", "team"}[i%3], (i*37)%150, i,
		[]string{"de", "fr", "en", "pt", "ja"}[i%5], []string{"de", "fr", "us", "br", "jp"}[i%5], crm12Secret(i))
}

// contacts inserts contacts from … to, each with its device crmDevice(i).
func (r *crm12Run) contacts(from, to int) {
	r.t.Helper()
	for i := from; i <= to; i++ {
		r.contact(i)
		r.db.Exec(r.t, `INSERT INTO devices (contact, device_id) VALUES ($1, $2)`, contactKey(i), crmDevice(i))
	}
	r.remember()
}

// subscription inserts subscription id of contact i.
func (r *crm12Run) subscription(id, i int, status string, product any) {
	r.t.Helper()
	r.db.Exec(r.t, `INSERT INTO subscriptions VALUES ($1, $2, $3, $4)`, id, contactKey(i), status, product)
}

// remember notes every external id and device id the rows hold now.
func (r *crm12Run) remember() {
	r.t.Helper()
	conn := r.pg()
	rows, err := conn.Query(context.Background(), `SELECT "External Id" FROM contacts WHERE "External Id" <> ''`)
	if err != nil {
		r.t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			r.t.Fatal(err)
		}
		r.ids[id] = true
	}
	if err := rows.Err(); err != nil {
		r.t.Fatal(err)
	}
	var devices []string
	if err := conn.QueryRow(context.Background(), `SELECT coalesce(array_agg(device_id), '{}') FROM devices`).Scan(&devices); err != nil {
		r.t.Fatal(err)
	}
	for _, d := range devices {
		r.devices[d] = true
	}
}

// crm12User is what OneSignal should hold of one live contact.
type crm12User struct {
	tags              map[string]string
	language, country string // "": not set
	crmID             string // the alias crm_id
}

// crm12State is what the rows say OneSignal should hold: every live
// contact's user by external id, and every device's owner ("": none).
type crm12State struct {
	users  map[string]crm12User
	owners map[string]string
}

// crm12Oracle is the state the final rows say, computed here in SQL from
// the tables and the mapping's meaning, without the sink's code: a
// contact is live when it is not soft-deleted and not internal; its tags
// are its plan and score, the tier and days since sign-up the mapping
// computes, and the number of its active subscriptions with a product and
// of those for "pro"; its language is "Lang" when that is a language code
// (the tests' one bad value is "english"), its country the upper-cased
// country_code; a device belongs to its contact's user when both are live
// (active, for the device).
const crm12Oracle = `
WITH live AS (
	SELECT * FROM contacts
	WHERE "External Id" <> '' AND deleted_at IS NULL AND plan IS DISTINCT FROM 'internal'
)
SELECT c."External Id", c."Contact ID"::text,
	jsonb_strip_nulls(jsonb_build_object(
		'plan', nullif(c.plan, ''),
		'score', c.score::text,
		'tier', CASE WHEN c.score >= 100 THEN 'gold' WHEN c.score >= 50 THEN 'silver' WHEN c.score IS NOT NULL THEN 'bronze' END,
		'days_since_signup', floor((extract(epoch FROM now()) - extract(epoch FROM c.signed_up)) / 86400)::bigint::text,
		'active_subscriptions', (SELECT nullif(count(*), 0)::text FROM subscriptions s
			WHERE s.contact = c."Contact ID" AND s.status = 'active' AND s.product <> ''),
		'pro_subscriptions', (SELECT nullif(count(*), 0)::text FROM subscriptions s
			WHERE s.contact = c."Contact ID" AND s.status = 'active' AND s.product = 'pro')
	))::text,
	CASE WHEN c."Lang" ~ '^[a-z]{2}$' THEN c."Lang" ELSE '' END,
	coalesce(upper(c.country_code), '')
FROM live c`

const crm12OracleDevices = `
SELECT d.device_id, CASE WHEN d.active THEN coalesce(c."External Id", '') ELSE '' END
FROM devices d LEFT JOIN (
	SELECT * FROM contacts WHERE deleted_at IS NULL AND plan IS DISTINCT FROM 'internal'
) c ON c."Contact ID" = d.contact`

func (r *crm12Run) expected() crm12State {
	t := r.t
	t.Helper()
	s := crm12State{users: map[string]crm12User{}, owners: map[string]string{}}
	conn := r.pg()
	ctx := context.Background()
	rows, err := conn.Query(ctx, crm12Oracle)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, key, tags string
		var u crm12User
		if err := rows.Scan(&id, &key, &tags, &u.language, &u.country); err != nil {
			t.Fatal(err)
		}
		u.crmID = key
		u.tags = map[string]string{}
		if err := json.Unmarshal([]byte(tags), &u.tags); err != nil {
			t.Fatal(err)
		}
		s.users[id] = u
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for d := range r.devices {
		s.owners[d] = ""
	}
	rows, err = conn.Query(ctx, crm12OracleDevices)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var d, owner string
		if err := rows.Scan(&d, &owner); err != nil {
			t.Fatal(err)
		}
		s.owners[d] = owner
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return s
}

// differences compares the emulator's state with want. User model: each
// live contact's user with its tags, language, country and crm_id alias;
// an id the rows no longer hold live has no tags (remove_tags) or no user
// at all (delete_user); each device's owner. Player model: each device's
// owner, and, on a linked device, its owner's tags, language and country;
// an unlinked device shows no tags.
func (r *crm12Run) differences(st emulator.State, want crm12State) []string {
	var lines []string
	if r.model == sink.ModelUser {
		for id := range r.ids {
			if r.skip[id] {
				continue
			}
			u, exists := st.UserByExternalID(id)
			w, live := want.users[id]
			switch {
			case !live && r.onDelete == "delete_user":
				if exists {
					lines = append(lines, fmt.Sprintf("user %q: exists with tags %v, want it deleted", id, u.Tags))
				}
			case !live:
				if exists && len(u.Tags) != 0 {
					lines = append(lines, fmt.Sprintf("user %q: tags %v, want none", id, u.Tags))
				}
			case !exists:
				lines = append(lines, fmt.Sprintf("user %q: missing, want tags %v", id, w.tags))
			default:
				if !reflect.DeepEqual(u.Tags, w.tags) {
					lines = append(lines, fmt.Sprintf("user %q: tags %v, want %v", id, u.Tags, w.tags))
				}
				if u.Language != w.language || u.Country != w.country {
					lines = append(lines, fmt.Sprintf("user %q: language %q country %q, want %q %q", id, u.Language, u.Country, w.language, w.country))
				}
				if got := u.Identity["crm_id"]; got != w.crmID {
					lines = append(lines, fmt.Sprintf("user %q: alias crm_id %q, want %q", id, got, w.crmID))
				}
			}
		}
	}
	for d, owner := range want.owners {
		if r.skip[owner] {
			continue
		}
		if got := st.ExternalIDOf(d); got != owner {
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
		w := crm12User{tags: map[string]string{}}
		if owner != "" {
			w = want.users[owner]
			if p.Language != w.language || p.Country != w.country {
				lines = append(lines, fmt.Sprintf("device %s (owner %q): language %q country %q, want %q %q", d, owner, p.Language, p.Country, w.language, w.country))
			}
		}
		if !reflect.DeepEqual(tags, w.tags) {
			lines = append(lines, fmt.Sprintf("device %s (owner %q): tags %v, want %v", d, owner, tags, w.tags))
		}
	}
	slices.Sort(lines)
	return lines
}

// crm12Topics are the topics the sink's group reads.
var crm12Topics = []string{"cdc.public.contacts", "cdc.public.subscriptions", "cdc.public.devices", "cdc.sink-targets"}

// converge waits until OneSignal says what the rows say, then until the
// sink has committed everything, and checks that it still does. Every
// dead letter must have a reason holding one of deadLetters, and each of
// deadLetters must be in one: none when none is given. It returns what the
// rows say, and the dead letters' reasons.
func (r *crm12Run) converge(deadLetters ...string) (crm12State, []string) {
	t := r.t
	t.Helper()
	want := r.expected()
	const patience = 60 * time.Second
	deadline := time.Now().Add(patience)
	for polls := 0; ; polls++ {
		d := r.differences(r.emu.State(), want)
		if len(d) == 0 {
			break
		}
		if polls%5 == 4 {
			r.noUnexpectedDeadLetters(d, deadLetters)
		}
		if time.Now().After(deadline) {
			t.Fatalf("OneSignal is not in step with the rows after %s:\n%s\nemulator: %s", patience, describeDifferences(d), describeStats(r.emu.Stats()))
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitForGroupCaughtUp(t, r.brokers, "e2e", crm12Topics)
	if d := r.differences(r.emu.State(), want); len(d) != 0 {
		t.Errorf("OneSignal left the rows' state once the sink had committed everything:\n%s", describeDifferences(d))
	}
	reasons := r.deadLetters()
	matched := map[string]bool{}
	for _, reason := range reasons {
		ok := false
		for _, w := range deadLetters {
			if strings.Contains(reason, w) {
				ok, matched[w] = true, true
			}
		}
		if !ok {
			t.Errorf("an unexpected dead letter: %s", reason)
		}
	}
	for _, w := range deadLetters {
		if !matched[w] {
			t.Errorf("no dead letter says %q; the dead letters: %q", w, reasons)
		}
	}
	return want, reasons
}

// noUnexpectedDeadLetters fails the test at once when the dead-letter
// topic holds a message that none of expected names, while OneSignal still
// differs from the rows (d): what a dead letter did not apply will not
// come.
func (r *crm12Run) noUnexpectedDeadLetters(d, expected []string) {
	r.t.Helper()
	if kafkatest.MessagesIn(r.t, r.brokers, "cdc.dlq") == 0 {
		return
	}
	for _, reason := range r.deadLetters() {
		if !slices.ContainsFunc(expected, func(w string) bool { return strings.Contains(reason, w) }) {
			r.t.Fatalf("OneSignal is not in step with the rows, and an unexpected dead letter says why: %s\n%s", reason, describeDifferences(d))
		}
	}
}

// deadLetters returns the reasons of every message in the dead-letter
// topic.
func (r *crm12Run) deadLetters() []string {
	n := kafkatest.MessagesIn(r.t, r.brokers, "cdc.dlq")
	if n == 0 {
		return nil
	}
	var reasons []string
	for _, rec := range kafkatest.ReadUntil(r.t, r.brokers, []string{"cdc.dlq"}, 10*time.Second, func(rs []kafkatest.Record) bool { return len(rs) >= int(n) }) {
		reasons = append(reasons, fmt.Sprintf("%s@%s: %s", headerValue(rec, sink.HeaderTopic), headerValue(rec, sink.HeaderOffset), headerValue(rec, sink.HeaderMessage)))
	}
	return reasons
}

// TestCRM12SeveralSourcesGiveAUserTheUnionOfTheirTags: a user's tags are
// its contact's and the counts of its active subscriptions, found by
// foreign key; deleting, cancelling (filtered out, which the pushed-down
// filter sends as a delete) or moving a subscription changes only the
// counts, and the last one going removes them; reactivating one (sent as an
// insert) counts it again; a contact's new external id takes the counts
// along. (The subscriptions come after the contacts' snapshot: those in it
// are TestCRM12PlayerModelDevicesShowEveryCountOfTheSnapshotsSubscriptions.)
func TestCRM12SeveralSourcesGiveAUserTheUnionOfTheirTags(t *testing.T) {
	forEachModel12(t, crm12Options{}, func(t *testing.T, r *crm12Run) {
		r.contacts(1, 7)
		r.start()
		r.converge()
		r.subscription(11, 1, "active", "pro")
		r.subscription(12, 1, "active", "basic")
		r.subscription(13, 1, "canceled", "pro")
		r.subscription(21, 2, "active", "basic")
		r.subscription(41, 4, "active", "pro")
		r.converge()
		r.subscription(31, 3, "active", "pro") // an event, not in the snapshot
		r.subscription(32, 3, "active", "pro")
		r.exec(`DELETE FROM subscriptions WHERE id = 11`)
		r.exec(`UPDATE subscriptions SET status = 'canceled' WHERE id = 21`) // the contact's last: its counts go
		r.exec(`UPDATE subscriptions SET contact = $1 WHERE id = 41`, contactKey(5))
		r.exec(`UPDATE subscriptions SET status = 'active' WHERE id = 13`)
		r.subscription(61, 6, "active", nil) // no product: counted in neither tag
		r.exec(`UPDATE contacts SET score = score + 1 WHERE "Contact ID" = $1`, contactKey(3))
		renamed := crm12ID(1)
		if r.model == sink.ModelPlayer {
			// The user model's external id change, with the crm_id alias
			// the user has, is TestCRM12AnExternalIDChangeTakesTheAliasToTheNewUser.
			r.exec(`UPDATE contacts SET "External Id" = 'renamed/' || "External Id" WHERE "Contact ID" = $1`, contactKey(1))
			renamed = "renamed/" + renamed
		}
		// A contact and its subscription in one transaction.
		r.db.Exec(t, fmt.Sprintf(`BEGIN;
			INSERT INTO contacts ("Contact ID", "External Id", plan, score, password) VALUES (%d, %s, 'team', 5, 'x');
			INSERT INTO devices (contact, device_id) VALUES (%[1]d, %[3]s);
			INSERT INTO subscriptions VALUES (81, %[1]d, 'active', 'pro');
			COMMIT`, contactKey(8), quote(crm12ID(8)), quote(crmDevice(8))))
		r.remember()
		want, _ := r.converge()
		check := map[string]map[string]string{
			renamed:    {"active_subscriptions": "2", "pro_subscriptions": "1"},
			crm12ID(2): {},
			crm12ID(3): {"active_subscriptions": "2", "pro_subscriptions": "2"},
			crm12ID(4): {},
			crm12ID(5): {"active_subscriptions": "1", "pro_subscriptions": "1"},
			crm12ID(6): {},
			crm12ID(8): {"active_subscriptions": "1", "pro_subscriptions": "1"},
		}
		for id, counts := range check {
			u := want.users[id]
			for _, tag := range []string{"active_subscriptions", "pro_subscriptions"} {
				if u.tags[tag] != counts[tag] {
					t.Errorf("the workload did not give %q the counts meant: %v", id, u.tags)
				}
			}
			if u.tags["plan"] == "" {
				t.Errorf("the workload left %q without its contact's tags: %v", id, u.tags)
			}
		}
	})
}

// TestCRM12AContactThatStopsMatchingTheFilterLosesItsTagsAndDevices: a
// contact soft-deleted or made internal counts as deleted for OneSignal: its
// tags (its subscriptions' counts with them) go and its devices are
// unlinked; one that starts matching (internal in the snapshot, or
// restored) is sent whole, the counts of the subscriptions it had all along
// and its devices included; a device made inactive is unlinked. The
// subscriptions' filter is pushed down into the publication (they are
// REPLICA IDENTITY FULL); the contacts' reads columns outside their primary
// key, so the transform evaluates it, and their column list leaves the
// password out.
func TestCRM12AContactThatStopsMatchingTheFilterLosesItsTagsAndDevices(t *testing.T) {
	forEachModel12(t, crm12Options{}, func(t *testing.T, r *crm12Run) {
		r.contacts(1, 7)
		r.db.Exec(t, `UPDATE contacts SET plan = 'internal' WHERE "Contact ID" = $1`, contactKey(5))
		r.db.Exec(t, `UPDATE contacts SET deleted_at = now() WHERE "Contact ID" = $1`, contactKey(6))
		for i := 1; i <= 6; i++ {
			r.subscription(10*i, i, "active", "pro")
		}
		r.start()
		r.checkPublication()
		r.converge()
		r.exec(`UPDATE contacts SET plan = 'internal' WHERE "Contact ID" = $1`, contactKey(1))
		r.exec(`UPDATE contacts SET deleted_at = now() WHERE "Contact ID" = $1`, contactKey(2))
		r.exec(`UPDATE contacts SET plan = 'pro' WHERE "Contact ID" = $1`, contactKey(5))
		r.exec(`UPDATE contacts SET deleted_at = NULL WHERE "Contact ID" = $1`, contactKey(6))
		r.exec(`UPDATE devices SET active = false WHERE contact = $1`, contactKey(3))
		// Internal when inserted, with its device and a subscription; a
		// customer later.
		r.db.Exec(t, fmt.Sprintf(`BEGIN;
			INSERT INTO contacts ("Contact ID", "External Id", plan, score, "Lang", country_code, password) VALUES (%d, %s, 'internal', 120, 'en', 'gb', 'x');
			INSERT INTO devices (contact, device_id) VALUES (%[1]d, %[3]s);
			INSERT INTO subscriptions VALUES (80, %[1]d, 'active', 'pro');
			COMMIT`, contactKey(8), quote(crm12ID(8)), quote(crmDevice(8))))
		r.remember()
		r.exec(`UPDATE contacts SET plan = 'team' WHERE "Contact ID" = $1`, contactKey(8))
		want, _ := r.converge()
		for _, i := range []int{1, 2} {
			if _, live := want.users[crm12ID(i)]; live || want.owners[crmDevice(i)] != "" {
				t.Errorf("the workload left contact %d matching the filter", i)
			}
		}
		for _, i := range []int{5, 6, 8} {
			if u := want.users[crm12ID(i)]; u.tags["pro_subscriptions"] != "1" || want.owners[crmDevice(i)] != crm12ID(i) {
				t.Errorf("the workload did not make contact %d match the filter: %v, device owner %q", i, u.tags, want.owners[crmDevice(i)])
			}
		}
		if want.owners[crmDevice(3)] != "" {
			t.Errorf("the workload left device %s active", crmDevice(3))
		}
	})
}

// checkPublication checks what the connector made of the publication: the
// subscriptions' filter pushed down; under the contacts' REPLICA IDENTITY
// DEFAULT, their column list without the password and no filter (it reads
// columns outside the key), under FULL their filter pushed down.
func (r *crm12Run) checkPublication() {
	t := r.t
	t.Helper()
	got := map[string]string{}
	var identity string
	conn := r.pg()
	if err := conn.QueryRow(context.Background(), `SELECT relreplident::text FROM pg_class WHERE oid = 'contacts'::regclass`).Scan(&identity); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(context.Background(), `SELECT tablename, coalesce(rowfilter, ''), array_to_string(attnames, ',') FROM pg_publication_tables WHERE pubname = 'cdc'`)
	if err != nil {
		t.Fatal(err)
	}
	cols := map[string]string{}
	for rows.Next() {
		var table, filter, names string
		if err := rows.Scan(&table, &filter, &names); err != nil {
			t.Fatal(err)
		}
		got[table], cols[table] = filter, names
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got["subscriptions"], "'active'") {
		t.Errorf("the subscriptions' filter is not pushed down: their row filter is %q", got["subscriptions"])
	}
	switch {
	case identity == "d" && got["contacts"] != "":
		t.Errorf("the contacts have the row filter %q, which PostgreSQL refuses for updates under REPLICA IDENTITY DEFAULT", got["contacts"])
	case identity == "f" && !strings.Contains(got["contacts"], "'internal'"):
		t.Errorf("the contacts' filter is not pushed down under REPLICA IDENTITY FULL: their row filter is %q", got["contacts"])
	}
	if identity == "d" && (strings.Contains(cols["contacts"], "password") || !strings.Contains(cols["contacts"], "Contact ID")) {
		t.Errorf("the contacts' column list is %q, want the mapped columns and the key, without the password", cols["contacts"])
	}
}

// TestCRM12ComputedTagsFollowTheRowAtTheEventsTime: tier follows the
// score across its thresholds, and goes with a NULL score; the days since
// sign-up are counted at the time of each row's change (its snapshot, its
// commit), so a sign-up date set later gives its own; a subscription's
// computed tag (pro) counts with the product.
func TestCRM12ComputedTagsFollowTheRowAtTheEventsTime(t *testing.T) {
	forEachModel12(t, crm12Options{}, func(t *testing.T, r *crm12Run) {
		r.contacts(1, 6)
		r.db.Exec(t, `UPDATE contacts SET score = NULL, signed_up = NULL WHERE "Contact ID" = $1`, contactKey(6))
		r.subscription(11, 1, "active", "basic")
		r.subscription(12, 1, "active", "basic")
		r.start()
		r.exec(`UPDATE contacts SET score = 49 WHERE "Contact ID" = $1`, contactKey(1))
		r.exec(`UPDATE contacts SET score = 50 WHERE "Contact ID" = $1`, contactKey(2))
		r.exec(`UPDATE contacts SET score = 100 WHERE "Contact ID" = $1`, contactKey(3))
		r.exec(`UPDATE contacts SET score = NULL WHERE "Contact ID" = $1`, contactKey(4))
		r.exec(`UPDATE contacts SET score = 150, signed_up = now() - interval '400 days 12 hours' WHERE "Contact ID" = $1`, contactKey(6))
		r.exec(`UPDATE contacts SET signed_up = NULL WHERE "Contact ID" = $1`, contactKey(5))
		r.exec(`UPDATE subscriptions SET product = 'pro' WHERE id = 12`)
		want, _ := r.converge()
		for i, tags := range map[int]map[string]string{
			1: {"tier": "bronze", "days_since_signup": "1", "pro_subscriptions": "1", "active_subscriptions": "2"},
			2: {"tier": "silver", "days_since_signup": "2"},
			3: {"tier": "gold", "score": "100"},
			4: {"tier": "", "score": ""},
			6: {"tier": "gold", "days_since_signup": "400"},
			5: {"days_since_signup": ""},
		} {
			for tag, v := range tags {
				if got := want.users[crm12ID(i)].tags[tag]; got != v {
					t.Errorf("the workload gave contact %d %s %q, meant %q", i, tag, got, v)
				}
			}
		}
	})
}

// TestCRM12PropertiesAndAliasesReachTheUserOrItsDevices: the user model
// sets each user's language and country (an expression upper-cases the
// column's) with its tags, and its crm_id alias; the player model sets the
// language and country on each device its link reaches, and again when
// they change or the device moves to another contact. A language that is
// not ISO 639-1 is dead-lettered naming the setting and the rule, and the
// row's other fields still go.
func TestCRM12PropertiesAndAliasesReachTheUserOrItsDevices(t *testing.T) {
	forEachModel12(t, crm12Options{}, func(t *testing.T, r *crm12Run) {
		r.contacts(1, 5)
		r.start()
		r.converge()
		r.exec(`UPDATE contacts SET "Lang" = 'de' WHERE "Contact ID" = $1`, contactKey(1))
		r.exec(`UPDATE contacts SET country_code = 'ch' WHERE "Contact ID" = $1`, contactKey(2))
		r.exec(`UPDATE devices SET contact = $1 WHERE contact = $2`, contactKey(4), contactKey(3))
		r.exec(`INSERT INTO contacts ("Contact ID", "External Id", plan, score, "Lang", country_code, password) VALUES ($1, $2, 'pro', 70, 'english', 'at', 'x')`,
			contactKey(6), crm12ID(6))
		r.exec(`INSERT INTO devices (contact, device_id) VALUES ($1, $2)`, contactKey(6), crmDevice(6))
		want, _ := r.converge(`mapping.users.properties.language: "english" is not an ISO 639-1 language code`)
		if u := want.users[crm12ID(6)]; u.language != "" || u.country != "AT" || u.tags["plan"] != "pro" {
			t.Errorf("the workload did not give contact 6 a bad language and good fields: %+v", u)
		}
		if want.owners[crmDevice(3)] != crm12ID(4) {
			t.Errorf("the workload did not move device %s to contact 4", crmDevice(3))
		}
	})
}

// TestCRM12OnDeleteDeleteUserDeletesTheUserAndAnInsertCreatesItAgain: with
// on_delete: delete_user (the user model) a deleted contact, and one that
// stops matching the filter (soft-deleted, made internal), has its user
// deleted from OneSignal, with or without devices; a contact inserted again
// later, or restored, is a new user with its tags, properties and alias.
// The player model has no user to delete: the configuration is refused.
func TestCRM12OnDeleteDeleteUserDeletesTheUserAndAnInsertCreatesItAgain(t *testing.T) {
	t.Parallel()
	t.Run("user", func(t *testing.T) {
		t.Parallel()
		r := newCRM12Run(t, sink.ModelUser, crm12Options{onDelete: "delete_user"})
		// Users without devices: the devices of a deleted user are
		// TestCRM12TheDevicesOfAUserDeletedByOnDeleteAreNotDeadLettered.
		for i := 1; i <= 6; i++ {
			r.contact(i)
		}
		r.contacts(7, 7)
		r.remember()
		r.subscription(11, 1, "active", "pro")
		r.subscription(51, 5, "active", "basic")
		r.start()
		r.converge()
		r.exec(`DELETE FROM contacts WHERE "Contact ID" = $1`, contactKey(1)) // its subscription goes with it
		r.exec(`UPDATE contacts SET deleted_at = now() WHERE "Contact ID" = $1`, contactKey(2))
		r.exec(`DELETE FROM subscriptions WHERE id = 51`)
		r.exec(`DELETE FROM contacts WHERE "Contact ID" = $1`, contactKey(5))
		r.exec(`UPDATE contacts SET plan = 'internal' WHERE "Contact ID" = $1`, contactKey(6))
		r.converge()
		st := r.emu.State()
		for _, i := range []int{1, 2, 5, 6} {
			if _, ok := st.UserByExternalID(crm12ID(i)); ok {
				t.Errorf("user %q is still in OneSignal", crm12ID(i))
			}
		}
		r.contact(1)
		r.subscription(12, 1, "active", "pro")
		r.exec(`UPDATE contacts SET deleted_at = NULL WHERE "Contact ID" = $1`, contactKey(2))
		want, _ := r.converge()
		for _, i := range []int{1, 2} {
			if _, live := want.users[crm12ID(i)]; !live {
				t.Errorf("the workload did not bring contact %d back", i)
			}
		}
	})
	t.Run("player", func(t *testing.T) {
		t.Parallel()
		r := newCRM12Run(t, sink.ModelPlayer, crm12Options{onDelete: "delete_user"})
		r.refusedAtStart("mapping.users.on_delete")
	})
}

// refusedAtStart runs the daemon with the run's configuration, which it
// must refuse: exit status 2, the log saying each of parts.
func (r *crm12Run) refusedAtStart(parts ...string) {
	t := r.t
	t.Helper()
	p := daemontest.Start(t, daemontest.Run, r.config())
	if code := p.Wait(t, 30*time.Second); code != 2 {
		t.Errorf("onesignal-cdc run exited with status %d, want 2 (a configuration that does not load)", code)
	}
	out := p.Output()
	for _, part := range parts {
		if !strings.Contains(out, part) {
			t.Errorf("onesignal-cdc run does not say %q:\n%s", part, out)
		}
	}
}

// TestCRM12AMappingThatCanGiveMoreTagsThanMaxTagsIsRefusedAtStart: the
// mapping can give a user six tags; with onesignal.max_tags 5 the daemon
// does not start, and names them.
func TestCRM12AMappingThatCanGiveMoreTagsThanMaxTagsIsRefusedAtStart(t *testing.T) {
	forEachModel12(t, crm12Options{maxTags: crm12Tags - 1}, func(t *testing.T, r *crm12Run) {
		r.refusedAtStart("up to 6 tags (active_subscriptions, days_since_signup, plan, pro_subscriptions, score, tier), more than onesignal.max_tags 5")
	})
}

// TestCRM12AUserOverThePlansTagCapIsDeadLetteredAndTheOthersGo: the
// mapping fits onesignal.max_tags (6), but a user holds two tags from
// elsewhere (the dashboard, an SDK), which the sink does not know: with
// its six from the rows OneSignal's cap of 6 refuses the write, which is
// dead-lettered with OneSignal's reason; every other user (player model:
// device) gets its tags.
func TestCRM12AUserOverThePlansTagCapIsDeadLetteredAndTheOthersGo(t *testing.T) {
	forEachModel12(t, crm12Options{emulatorTagCap: crm12Tags}, func(t *testing.T, r *crm12Run) {
		r.contacts(1, 4)
		r.subscription(11, 1, "active", "pro")
		r.subscription(21, 2, "active", "pro")
		r.emu.AddUser(crm12ID(1), map[string]string{"from_dashboard": "yes", "from_sdk": "yes"})
		r.skip[crm12ID(1)] = true
		r.start()
		r.exec(`UPDATE contacts SET score = score + 1`)
		r.converge("maximum of 6 tags")
		u, ok := r.emu.State().UserByExternalID(crm12ID(1))
		if !ok || len(u.Tags) > crm12Tags || u.Tags["from_dashboard"] != "yes" {
			t.Errorf("the user over the cap holds %v (found: %t), want its own tags and at most %d", u.Tags, ok, crm12Tags)
		}
	})
}

// TestCRM12AnUnmappedColumnNeverReachesKafka: the contacts' password is in
// no column the mapping reads. Under REPLICA IDENTITY DEFAULT the
// publication's column list leaves it in PostgreSQL; under FULL (no column
// list) the connector leaves it out of its events. Either way no record of
// any topic holds it: the snapshot's, an insert's, an update of the
// password alone, a delete's.
func TestCRM12AnUnmappedColumnNeverReachesKafka(t *testing.T) {
	t.Parallel()
	for _, identity := range []string{"DEFAULT", "FULL"} {
		t.Run(identity, func(t *testing.T) {
			t.Parallel()
			r := newCRM12Run(t, sink.ModelUser, crm12Options{contactsIdentity: identity})
			r.contacts(1, 3)
			r.start()
			r.checkPublication()
			r.contacts(4, 4)
			r.exec(`UPDATE contacts SET password = password || '-rotated'`)
			r.exec(`UPDATE contacts SET password = password || '-again', score = 1 WHERE "Contact ID" = $1`, contactKey(2))
			r.exec(`DELETE FROM contacts WHERE "Contact ID" = $1`, contactKey(3))
			r.converge()
			recs := r.everyRecord()
			n := 0
			for _, rec := range recs {
				if rec.Topic == "cdc.public.contacts" {
					n++
				}
				for _, b := range append([][]byte{rec.Key, rec.Value}, headerValues(rec)...) {
					if bytes.Contains(b, []byte("password")) || bytes.Contains(b, []byte("pw-Never-Leaves")) {
						t.Errorf("%s/%d@%d holds the password: %s", rec.Topic, rec.Partition, rec.Offset, b)
					}
				}
			}
			if n < 8 {
				t.Errorf("read %d records of the contacts' topic, want the snapshot's 3 and 5 changes", n)
			}
		})
	}
}

// everyRecord reads every record of every topic of the run's prefix.
func (r *crm12Run) everyRecord() []kafkatest.Record {
	t := r.t
	t.Helper()
	c, done := broker.Plain(r.brokers).Client(10 * time.Second)
	defer done()
	md, err := c.Metadata(context.Background(), &kafka.MetadataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var topics []string
	var total int64
	for _, tp := range md.Topics {
		if !strings.HasPrefix(tp.Name, "cdc.") {
			continue
		}
		topics = append(topics, tp.Name)
		total += kafkatest.MessagesIn(t, r.brokers, tp.Name)
	}
	return kafkatest.ReadUntil(t, r.brokers, topics, 20*time.Second, func(rs []kafkatest.Record) bool { return int64(len(rs)) >= total })
}

func headerValues(r kafkatest.Record) [][]byte {
	var out [][]byte
	for _, h := range r.Headers {
		out = append(out, []byte(h.Key), h.Value)
	}
	return out
}

// TestCRM12AnExternalIDChangeTakesTheAliasToTheNewUser: in the user model
// a contact whose external id changes (A becomes B) gives B its tags,
// properties and crm_id alias, and A keeps none of its tags. OneSignal
// lets one alias belong to one user only: the alias has to leave A for B
// to have it.
func TestCRM12AnExternalIDChangeTakesTheAliasToTheNewUser(t *testing.T) {
	t.Parallel()
	r := newCRM12Run(t, sink.ModelUser, crm12Options{})
	r.contacts(1, 3)
	r.subscription(11, 1, "active", "pro")
	r.start()
	r.converge()
	r.exec(`UPDATE contacts SET "External Id" = 'renamed/' || "External Id" WHERE "Contact ID" = $1`, contactKey(1))
	r.converge()
}

// TestCRM12TheDevicesOfAUserDeletedByOnDeleteAreNotDeadLettered: OneSignal
// deletes a user with its subscriptions. A contact deleted with its device
// rows (ON DELETE CASCADE), or soft-deleted with its device rows left,
// deletes its user (on_delete: delete_user) and unlinks its devices: the
// unlink of a device that went with its user has nothing left to do, and is
// no dead letter, whichever of the two requests OneSignal gets first.
func TestCRM12TheDevicesOfAUserDeletedByOnDeleteAreNotDeadLettered(t *testing.T) {
	t.Parallel()
	r := newCRM12Run(t, sink.ModelUser, crm12Options{onDelete: "delete_user"})
	r.contacts(1, 5)
	r.start()
	r.converge()
	r.exec(`DELETE FROM contacts WHERE "Contact ID" IN ($1, $2)`, contactKey(1), contactKey(2))
	r.exec(`UPDATE contacts SET deleted_at = now() WHERE "Contact ID" IN ($1, $2)`, contactKey(3), contactKey(4))
	r.converge()
}

// TestCRM12PlayerModelDevicesShowEveryCountOfTheSnapshotsSubscriptions: in
// the player model a device's link carries its owner's tags, and tags that
// come after the link (a subscription's counts, which reach the user
// through its contact's row) are sent once the link is in. Contacts with
// devices and several active subscriptions each, all in the initial
// snapshot: every device ends with every count.
func TestCRM12PlayerModelDevicesShowEveryCountOfTheSnapshotsSubscriptions(t *testing.T) {
	t.Parallel()
	r := newCRM12Run(t, sink.ModelPlayer, crm12Options{})
	r.contacts(1, 30)
	for i := 1; i <= 30; i++ {
		r.subscription(10*i+1, i, "active", "pro")
		r.subscription(10*i+2, i, "active", "basic")
		r.subscription(10*i+3, i, "active", "pro")
	}
	r.start()
	r.converge()
}

// TestCRM12TheDocumentedCRMExampleMapsTheTablesAsTheseTestsDo: the mapping
// of docs/examples/crm.yaml is the one these tests run in the user model
// with on_delete: delete_user, so the example is known to work on the
// schema its comments show.
func TestCRM12TheDocumentedCRMExampleMapsTheTablesAsTheseTestsDo(t *testing.T) {
	// Not parallel: it sets the secrets the example takes from the
	// environment.
	t.Setenv("ONESIGNAL_CDC_POSTGRES_DSN", "postgres://cdc@db/app")
	t.Setenv("ONESIGNAL_CDC_ONESIGNAL_API_KEY", "key")
	example, err := config.Load(filepath.Join("..", "..", "docs", "examples", "crm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r := &crm12Run{t: t, model: sink.ModelUser, onDelete: "delete_user", maxTags: crm12Tags,
		db: &pgtest.DB{Name: "slot", DSN: "postgres://cdc@db/app"}, url: "http://127.0.0.1:9", brokers: []string{"127.0.0.1:9"}}
	tested, err := config.Load(r.config())
	if err != nil {
		t.Fatal(err)
	}
	a, _ := yaml.Marshal(example.Mapping)
	b, _ := yaml.Marshal(tested.Mapping)
	if !bytes.Equal(a, b) {
		t.Errorf("docs/examples/crm.yaml maps\n%s\nand the tests map\n%s", a, b)
	}
}
