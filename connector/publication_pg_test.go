package connector_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/connector"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
)

// contactsTable is a CRM's contacts: a surrogate key with a quoted,
// mixed-case name, the external id in a column of its own, and a column
// that must never leave the database.
const contactsTable = `CREATE TABLE contacts ("Contact ID" bigserial PRIMARY KEY, crm_ref text, plan text, status text, password text)`

// crmConfig is snapshotConfig for the given tables, creating their topics.
func crmConfig(t *testing.T, db *pgtest.DB, kafka *broker.Embedded, tables ...string) connector.Config {
	t.Helper()
	cfg := snapshotConfig(t, db, kafka)
	cfg.Tables = tables
	cfg.HeartbeatInterval = 300 * time.Millisecond
	cfg.CreateTopic = func(ctx context.Context, topic string) error {
		return broker.EnsureTopics(ctx, kafka.Brokers(), 1, topic)
	}
	for _, table := range []string{"contacts", "devices", "subscriptions"} {
		// Up front, as the daemon does: a writer's first write to a topic
		// created a moment before waits for the broker to know it.
		if err := broker.EnsureTopics(context.Background(), kafka.Brokers(), 1, "cdc.public."+table); err != nil {
			t.Fatal(err)
		}
	}
	return cfg
}

// runCRM runs a connector with cfg, logging to the test and to the
// returned observer; stop stops it.
func runCRM(t *testing.T, db *pgtest.DB, kafka *broker.Embedded, cfg connector.Config) (logs *observer.ObservedLogs, stop func()) {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	w := broker.NewConnectorWriter(kafka.Brokers())
	t.Cleanup(func() { w.Close() })
	log := zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core))
	return logs, runConnectorLogging(t, db, cfg, w, log)
}

// snapshotted waits until the connector logged the end of table's initial
// snapshot: a change made before then may land in a chunk's window, where
// the snapshot's rules (rightly) turn the chunk's read into the stream's
// newer state, which a test that counts the reads does not expect.
func snapshotted(t *testing.T, logs *observer.ObservedLogs, table string) {
	t.Helper()
	waitFor(t, 30*time.Second, "the initial snapshot of "+table, func() bool {
		return logs.FilterMessage("snapshot finished").FilterField(zap.String("table", table)).Len() > 0
	})
}

// settled reads topics once an event that marker picks out is in Kafka
// and the slot confirmed its transaction, so that every event of earlier
// transactions is in too (the connector writes rows of different keys
// side by side, not in order), and returns every event, in WAL order
// (snapshot reads first), with the topic of each.
func settled(t *testing.T, db *pgtest.DB, kafka *broker.Embedded, topics []string, marker func(*event.Envelope) bool) (evs []*event.Envelope, topicOf map[*event.Envelope]string) {
	t.Helper()
	var commit int64
	seen := 0
	kafkatest.ReadUntil(t, kafka.Brokers(), topics, 30*time.Second, func(rs []kafkatest.Record) bool {
		for _, ev := range decodeAll(t, rs) {
			if marker(ev) {
				commit, seen = ev.Source.CommitLSN, len(rs)
				return true
			}
		}
		return false
	})
	waitFor(t, 30*time.Second, "the slot to confirm the marker's transaction", func() bool {
		return int64(confirmed(t, db)) > commit
	})
	// Everything read up to the marker, and what else came within a
	// second of it (events of other keys are written side by side): a
	// busy machine may take more than a second to fetch anything.
	recs, _ := kafkatest.Read(t, kafka.Brokers(), topics, 30*time.Second, func(rs []kafkatest.Record) bool { return len(rs) >= seen })
	more, _ := kafkatest.Read(t, kafka.Brokers(), topics, time.Second, func(rs []kafkatest.Record) bool { return false })
	if len(more) > len(recs) {
		recs = more
	}
	evs = decodeAll(t, recs)
	topicOf = map[*event.Envelope]string{}
	for i, ev := range evs {
		topicOf[ev] = recs[i].Topic
	}
	slices.SortStableFunc(evs, func(a, b *event.Envelope) int {
		if a.Source.CommitLSN != b.Source.CommitLSN {
			return int(a.Source.CommitLSN - b.Source.CommitLSN)
		}
		return int(a.Source.LSN - b.Source.LSN)
	})
	return evs, topicOf
}

// contactEvents returns the events of the contacts topic before the
// insert of the row whose crm_ref is last, once every one is in Kafka.
func contactEvents(t *testing.T, db *pgtest.DB, kafka *broker.Embedded, last string) []*event.Envelope {
	t.Helper()
	evs, _ := settled(t, db, kafka, []string{"cdc.public.contacts"}, func(ev *event.Envelope) bool { return crmRef(ev) == last })
	i := slices.IndexFunc(evs, func(ev *event.Envelope) bool { return crmRef(ev) == last })
	return evs[:i]
}

// crmRef is the crm_ref of an event's row, "" when its images lack it.
func crmRef(ev *event.Envelope) string {
	for _, row := range []event.Row{ev.After, ev.Before} {
		if v, ok := row.Get("crm_ref"); ok {
			var s string
			json.Unmarshal(v, &s)
			return s
		}
	}
	return ""
}

// names are the column names of a row image.
func names(row event.Row) []string {
	out := []string{}
	for _, f := range row {
		out = append(out, f.Name)
	}
	return out
}

// entry is the publication's entry of a table: its columns (all of them
// without a list, as pg_publication_tables shows it), whether it has a
// list, and its row filter.
func entry(t *testing.T, db *pgtest.DB, pub, table string) (columns []string, listed bool, filter string) {
	t.Helper()
	var f *string
	err := db.Conn(t).QueryRow(context.Background(), `
		SELECT pt.attnames::text[], pr.prattrs IS NOT NULL, pt.rowfilter
		FROM pg_publication_tables pt
		JOIN pg_publication p ON p.pubname = pt.pubname
		JOIN pg_publication_rel pr ON pr.prpubid = p.oid AND pr.prrelid = (quote_ident(pt.schemaname) || '.' || quote_ident(pt.tablename))::regclass
		WHERE pt.pubname = $1 AND pt.schemaname || '.' || pt.tablename = $2`, pub, table).Scan(&columns, &listed, &f)
	if err != nil {
		t.Fatalf("read publication %s's entry of %s: %v", pub, table, err)
	}
	if f != nil {
		filter = *f
	}
	return columns, listed, filter
}

func logged(logs *observer.ObservedLogs, text string) bool {
	for _, e := range logs.All() {
		if strings.Contains(e.Message, text) {
			return true
		}
	}
	return false
}

func TestThePublicationCarriesOnlyTheMappedColumns(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, contactsTable)
	db.Exec(t, `INSERT INTO contacts (crm_ref, plan, status, password) SELECT 'c' || i, 'free', 'active', 'hunter2-' || i FROM generate_series(1, 20) i`)
	kafka := kafkatest.Start(t)
	cfg := crmConfig(t, db, kafka, "public.contacts")
	cfg.Publish = map[string]connector.Publish{"public.contacts": {Columns: []string{"crm_ref", "plan"}}}
	logs, _ := runCRM(t, db, kafka, cfg)
	snapshotted(t, logs, "public.contacts")

	db.Exec(t, `INSERT INTO contacts (crm_ref, plan, password) VALUES ('c21', 'pro', 's3cret')`)
	db.Exec(t, `UPDATE contacts SET plan = 'pro', password = 's3cret-too' WHERE crm_ref = 'c1'`)
	db.Exec(t, `UPDATE contacts SET password = 's3cret-only' WHERE crm_ref = 'c2'`)
	db.Exec(t, `DELETE FROM contacts WHERE crm_ref = 'c3'`)
	db.Exec(t, `INSERT INTO contacts (crm_ref) VALUES ('last')`)
	evs := contactEvents(t, db, kafka, "last")

	if cols, listed, _ := entry(t, db, "cdc", "public.contacts"); !listed || !slices.Equal(cols, []string{"Contact ID", "crm_ref", "plan"}) {
		t.Errorf("the publication lists %q (a list: %v), want the key and the mapped columns", cols, listed)
	}
	ops := map[event.Op]int{}
	for _, ev := range evs {
		ops[ev.Op]++
		want := []string{"Contact ID", "crm_ref", "plan"}
		got := names(ev.After)
		if ev.Op == event.OpDelete {
			want, got = []string{"Contact ID"}, names(ev.Before)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s event of %q carries %q, want %q", ev.Op, crmRef(ev), got, want)
		}
	}
	recs, _ := kafkatest.Read(t, kafka.Brokers(), []string{"cdc.public.contacts"}, time.Second, func([]kafkatest.Record) bool { return false })
	for _, r := range recs {
		if strings.Contains(string(r.Value), "password") || strings.Contains(string(r.Value), "s3cret") || strings.Contains(string(r.Value), "hunter2") {
			t.Errorf("an event in Kafka carries the password: %s", r.Value)
		}
	}
	if ops[event.OpSnapshot] != 20 || ops[event.OpCreate] != 1 || ops[event.OpUpdate] != 2 || ops[event.OpDelete] != 1 {
		t.Errorf("ops %v, want 20 snapshot reads, 1 insert, 2 updates and 1 delete", ops)
	}
}

func TestAPushedDownFilterTurnsAnUpdateThatStopsMatchingIntoADelete(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, contactsTable)
	db.Exec(t, `ALTER TABLE contacts REPLICA IDENTITY FULL`) // the filter reads status: every column is in the identity
	db.Exec(t, `INSERT INTO contacts (crm_ref, status, password) VALUES ('active', 'active', 'pw'), ('inactive', 'inactive', 'pw')`)
	kafka := kafkatest.Start(t)
	cfg := crmConfig(t, db, kafka, "public.contacts")
	cfg.Publish = map[string]connector.Publish{"public.contacts": {Columns: []string{"crm_ref", "status"}, RowFilter: `"status" = 'active'`}}
	logs, _ := runCRM(t, db, kafka, cfg)
	snapshotted(t, logs, "public.contacts")

	if _, listed, filter := entry(t, db, "cdc", "public.contacts"); listed || filter != "(status = 'active'::text)" {
		t.Errorf("the publication has a column list: %v, row filter %q; want no list (REPLICA IDENTITY FULL) and the filter", listed, filter)
	}
	if !logged(logs, "REPLICA IDENTITY FULL, and PostgreSQL 15 refuses every UPDATE and DELETE of a table whose publication lists columns") {
		t.Error("no log line says why the table's publication lists no columns")
	}
	db.Exec(t, `UPDATE contacts SET status = 'inactive' WHERE crm_ref = 'active'`)    // stops matching: a delete
	db.Exec(t, `UPDATE contacts SET status = 'active' WHERE crm_ref = 'inactive'`)    // starts matching: an insert
	db.Exec(t, `INSERT INTO contacts (crm_ref, status) VALUES ('never', 'inactive')`) // never published
	db.Exec(t, `UPDATE contacts SET password = 'x' WHERE crm_ref = 'never'`)          // nor its updates
	db.Exec(t, `INSERT INTO contacts (crm_ref, status) VALUES ('last', 'active')`)    // the end of the test
	var got []string
	for _, ev := range contactEvents(t, db, kafka, "last") {
		got = append(got, string(ev.Op)+" "+crmRef(ev))
		for _, row := range []event.Row{ev.Before, ev.After} {
			if _, ok := row.Get("password"); ok {
				t.Errorf("%s event of %q carries the password", ev.Op, crmRef(ev))
			}
		}
	}
	// The initial snapshot applies the filter too: "inactive" is not in it.
	want := []string{"r active", "d active", "c inactive"}
	if !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}

func TestAFilterOnANonIdentityColumnIsNotPushedDown(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, contactsTable) // REPLICA IDENTITY DEFAULT: the primary key
	kafka := kafkatest.Start(t)
	cfg := crmConfig(t, db, kafka, "public.contacts")
	cfg.Publish = map[string]connector.Publish{"public.contacts": {Columns: []string{"crm_ref", "status"}, RowFilter: `"status" = 'active'`}}
	logs, _ := runCRM(t, db, kafka, cfg)

	if cols, listed, filter := entry(t, db, "cdc", "public.contacts"); !listed || filter != "" || !slices.Equal(cols, []string{"Contact ID", "crm_ref", "status"}) {
		t.Errorf("the publication lists %q (%v) with row filter %q; want the columns and no filter", cols, listed, filter)
	}
	if !logged(logs, `the filter reads "status", which the replica identity (DEFAULT: the primary key "Contact ID") does not hold`) {
		t.Error("no log line says why the filter is not pushed down")
	}
	// With such a row filter PostgreSQL would refuse these.
	db.Exec(t, `INSERT INTO contacts (crm_ref, status) VALUES ('a', 'active')`)
	db.Exec(t, `UPDATE contacts SET status = 'inactive' WHERE crm_ref = 'a'`)
	db.Exec(t, `DELETE FROM contacts WHERE crm_ref = 'a'`)
	db.Exec(t, `INSERT INTO contacts (crm_ref) VALUES ('last')`)
	var ops []event.Op
	for _, ev := range contactEvents(t, db, kafka, "last") {
		ops = append(ops, ev.Op)
	}
	// Every change reaches Kafka; the transform applies the filter.
	if want := []event.Op{event.OpCreate, event.OpUpdate, event.OpDelete}; !slices.Equal(ops, want) {
		t.Errorf("ops %q, want %q", ops, want)
	}
}

func TestTheConnectorMendsAPublicationItOwnsAndLeavesItsOtherTablesAlone(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, contactsTable)
	db.Exec(t, `CREATE TABLE audit (id int PRIMARY KEY, line text)`)
	// As an older connector created it, with another table someone added.
	db.Exec(t, `CREATE PUBLICATION cdc FOR TABLE contacts, audit`)
	kafka := kafkatest.Start(t)
	cfg := crmConfig(t, db, kafka, "public.contacts")
	cfg.Publish = map[string]connector.Publish{"public.contacts": {Columns: []string{"crm_ref", "plan"}}}
	logs, _ := runCRM(t, db, kafka, cfg)

	if cols, listed, _ := entry(t, db, "cdc", "public.contacts"); !listed || !slices.Equal(cols, []string{"Contact ID", "crm_ref", "plan"}) {
		t.Errorf("the publication lists %q of contacts (%v), want the key and the mapped columns", cols, listed)
	}
	if cols, listed, _ := entry(t, db, "cdc", "public.audit"); listed || len(cols) != 2 {
		t.Errorf("the publication lists %q of audit (%v): a table the mapping does not name must stay as it was", cols, listed)
	}
	if !logged(logs, "changed the publication's column list and row filter of a mapped table") {
		t.Error("no log line says the publication was changed")
	}

	// REPLICA IDENTITY FULL takes a column list away: the connector drops
	// it within a heartbeat, and leaves the password out of its events.
	db.Exec(t, `ALTER TABLE contacts REPLICA IDENTITY FULL`)
	waitFor(t, 10*time.Second, "the connector to drop the column list", func() bool {
		_, listed, _ := entry(t, db, "cdc", "public.contacts")
		return !listed
	})
	db.Exec(t, `INSERT INTO contacts (crm_ref, plan, password) VALUES ('a', 'free', 'pw')`)
	db.Exec(t, `UPDATE contacts SET plan = 'pro' WHERE crm_ref = 'a'`)
	db.Exec(t, `DELETE FROM contacts WHERE crm_ref = 'a'`)
	db.Exec(t, `INSERT INTO contacts (crm_ref) VALUES ('last')`)
	var ops []event.Op
	for _, ev := range contactEvents(t, db, kafka, "last") {
		ops = append(ops, ev.Op)
		for _, row := range []event.Row{ev.Before, ev.After} {
			if row != nil && !slices.Equal(names(row), []string{"Contact ID", "crm_ref", "plan"}) {
				t.Errorf("%s event carries %q, want the key and the mapped columns", ev.Op, names(row))
			}
		}
	}
	if want := []event.Op{event.OpCreate, event.OpUpdate, event.OpDelete}; !slices.Equal(ops, want) {
		t.Errorf("ops %q, want %q", ops, want)
	}
}

func TestAnEventDecodedBeforeTheColumnListGainedAColumnCarriesItAsNotSent(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, contactsTable)
	kafka := kafkatest.Start(t)
	cfg := crmConfig(t, db, kafka, "public.contacts")
	cfg.Publish = map[string]connector.Publish{"public.contacts": {Columns: []string{"crm_ref"}}}
	_, stop := runCRM(t, db, kafka, cfg)
	stop()

	// Written while the publication does not list plan; decoded after the
	// mapping of plan made the connector list it.
	db.Exec(t, `INSERT INTO contacts (crm_ref, plan) VALUES ('before', 'pro')`)
	cfg.Publish = map[string]connector.Publish{"public.contacts": {Columns: []string{"crm_ref", "plan"}}}
	runCRM(t, db, kafka, cfg)
	db.Exec(t, `INSERT INTO contacts (crm_ref, plan) VALUES ('after', 'pro')`)
	db.Exec(t, `INSERT INTO contacts (crm_ref) VALUES ('last')`)

	plans := map[string]string{}
	for _, ev := range contactEvents(t, db, kafka, "last") {
		v, ok := ev.After.Get("plan")
		if !ok {
			t.Fatalf("the event of %q has no plan: %q", crmRef(ev), names(ev.After))
		}
		plans[crmRef(ev)] = string(v)
	}
	if want := map[string]string{"before": string(event.UnavailableValue()), "after": `"pro"`}; !mapsEqual(plans, want) {
		t.Errorf("plan per row %v, want %v", plans, want)
	}
}

// snapshotReads counts the snapshot reads in each topic, once a streamed
// insert into public.contacts with crm_ref last is in.
func snapshotReads(t *testing.T, db *pgtest.DB, kafka *broker.Embedded, topics []string, last string) map[string]int {
	t.Helper()
	evs, topicOf := settled(t, db, kafka, topics, func(ev *event.Envelope) bool { return ev.Op == event.OpCreate && crmRef(ev) == last })
	reads := map[string]int{}
	for _, ev := range evs {
		// A marker row inserted while a snapshot runs may be read by it
		// too, or not: only the rows written before count.
		if ev.Op == event.OpSnapshot && !strings.HasSuffix(crmRef(ev), " run") && crmRef(ev) != "snapshots done" {
			reads[topicOf[ev]]++
		}
	}
	return reads
}

func TestAMappingChangeResnapshotsOnlyTheTablesItChanged(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, contactsTable)
	db.Exec(t, `CREATE TABLE devices (player_id text PRIMARY KEY, contact_id bigint, password text)`)
	db.Exec(t, `CREATE TABLE subscriptions (id int PRIMARY KEY, contact_id bigint, tier text)`)
	db.Exec(t, `INSERT INTO contacts (crm_ref, plan) SELECT 'c' || i, 'free' FROM generate_series(1, 10) i`)
	db.Exec(t, `INSERT INTO devices SELECT 'p' || i, i FROM generate_series(1, 5) i`)
	db.Exec(t, `INSERT INTO subscriptions SELECT i, i, 'gold' FROM generate_series(1, 3) i`)
	kafka := kafkatest.Start(t)
	topics := []string{"cdc.public.contacts", "cdc.public.devices", "cdc.public.subscriptions"}

	cfg := crmConfig(t, db, kafka, "public.contacts", "public.devices")
	cfg.Fingerprints = map[string]string{"public.contacts": "contacts-v1", "public.devices": "devices-v1"}
	_, stop := runCRM(t, db, kafka, cfg)
	db.Exec(t, `INSERT INTO contacts (crm_ref) VALUES ('first run')`)
	if got, want := snapshotReads(t, db, kafka, topics, "first run"), map[string]int{"cdc.public.contacts": 10, "cdc.public.devices": 5}; !mapsEqualInt(got, want) {
		t.Fatalf("after the initial snapshot: reads %v, want %v", got, want)
	}
	stop()

	// The contacts mapping changes, subscriptions joins the mapping, the
	// devices mapping stays.
	cfg.Tables = []string{"public.contacts", "public.devices", "public.subscriptions"}
	cfg.Fingerprints = map[string]string{"public.contacts": "contacts-v2", "public.devices": "devices-v1", "public.subscriptions": "subscriptions-v1"}
	logs, stop := runCRM(t, db, kafka, cfg)
	db.Exec(t, `INSERT INTO contacts (crm_ref) VALUES ('second run')`) // streamed beside the snapshots
	waitFor(t, 30*time.Second, "the snapshots to finish", func() bool {
		return logs.FilterMessage("snapshot finished").Len() == 2
	})
	db.Exec(t, `INSERT INTO contacts (crm_ref) VALUES ('snapshots done')`)
	if got, want := snapshotReads(t, db, kafka, topics, "snapshots done"), map[string]int{"cdc.public.contacts": 10 + 10, "cdc.public.devices": 5, "cdc.public.subscriptions": 3}; !mapsEqualInt(got, want) {
		t.Errorf("after the mapping change: reads %v, want %v (contacts again; subscriptions; not devices)", got, want)
	}
	why := map[string]string{}
	for _, e := range logs.FilterMessage("snapshotting a table again, beside the stream, for the new mapping").All() {
		why[e.ContextMap()["table"].(string)] = e.ContextMap()["why"].(string)
	}
	if want := map[string]string{"public.contacts": "the mapping of the table changed", "public.subscriptions": "the table is new to the mapping"}; !mapsEqual(why, want) {
		t.Errorf("logged re-snapshots %v, want %v", why, want)
	}
	stop()

	// Nothing changed: nothing is read again.
	runCRM(t, db, kafka, cfg)
	db.Exec(t, `INSERT INTO contacts (crm_ref) VALUES ('third run')`)
	if got, want := snapshotReads(t, db, kafka, topics, "third run"), map[string]int{"cdc.public.contacts": 20, "cdc.public.devices": 5, "cdc.public.subscriptions": 3}; !mapsEqualInt(got, want) {
		t.Errorf("after a restart with the same mapping: reads %v, want %v", got, want)
	}
}

func mapsEqualInt(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestTheFirstRunThatTracksTheMappingOnlyRecordsIt(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, contactsTable)
	db.Exec(t, `INSERT INTO contacts (crm_ref) SELECT 'c' || i FROM generate_series(1, 4) i`)
	kafka := kafkatest.Start(t)
	cfg := crmConfig(t, db, kafka, "public.contacts")
	logs, stop := runCRM(t, db, kafka, cfg) // a connector from before fingerprints
	waitFor(t, 30*time.Second, "the initial snapshot", func() bool { return logged(logs, "snapshot finished") })
	stop()

	cfg.Fingerprints = map[string]string{"public.contacts": "contacts-v1"}
	logs, _ = runCRM(t, db, kafka, cfg)
	db.Exec(t, `INSERT INTO contacts (crm_ref) VALUES ('last')`)
	if got := snapshotReads(t, db, kafka, []string{"cdc.public.contacts"}, "last"); got["cdc.public.contacts"] != 4 {
		t.Errorf("%d snapshot reads, want the 4 of the initial snapshot only", got["cdc.public.contacts"])
	}
	if !logged(logs, "recording what the mapping reads of each table") {
		t.Error("no log line says the fingerprints were recorded")
	}
}

func TestCheckReportsAPublicationWhoseColumnListDiffersWithTheStatementThatMendsIt(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, contactsTable)
	db.Exec(t, `CREATE TABLE audit (id int PRIMARY KEY, line text)`)
	// An admin's publication, which the connector's role does not own.
	db.Exec(t, `CREATE PUBLICATION cdc FOR TABLE contacts ("Contact ID", crm_ref), audit`)
	conn, _ := connectAs(t, db, "cdc", "REPLICATION")
	cfg := checkConfig(db.Name, "public.contacts")
	cfg.Publish = map[string]connector.Publish{"public.contacts": {Columns: []string{"crm_ref", "plan"}}}
	inspect := func() (problems, warnings connector.Findings) {
		t.Helper()
		problems, warnings, err := connector.Inspect(t.Context(), conn, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return problems, warnings
	}
	const fix = `BEGIN; ALTER PUBLICATION "cdc" DROP TABLE "public"."contacts"; ` +
		`ALTER PUBLICATION "cdc" ADD TABLE "public"."contacts" ("Contact ID", "crm_ref", "plan"); COMMIT;`

	// A mapped column left out: its changes would lack it.
	problems, warnings := inspect()
	expect(t, problems, finding{
		problem: `publication "cdc" differs from what the connector needs of table public.contacts: its column list leaves out "plan"`,
		fix:     "as the owner of the publication (postgres) and of the table (postgres) run " + fix,
	})
	expect(t, warnings)

	db.Exec(t, fix)
	problems, warnings = inspect()
	expect(t, problems)
	expect(t, warnings)
	if cols, listed, _ := entry(t, db, "cdc", "public.audit"); listed || len(cols) != 2 {
		t.Errorf("the fix changed the entry of audit, which the mapping does not name: %q (%v)", cols, listed)
	}

	// Every column: the connector works, and PostgreSQL decodes the
	// password for nothing.
	db.Exec(t, `BEGIN; ALTER PUBLICATION cdc DROP TABLE contacts; ALTER PUBLICATION cdc ADD TABLE contacts; COMMIT`)
	problems, warnings = inspect()
	expect(t, problems)
	expect(t, warnings, finding{
		problem: `it publishes every column, where the connector needs only "Contact ID", "crm_ref", "plan"`,
		fix:     fix,
	})

	// A row filter the mapping does not have: rows it leaves out never
	// reach OneSignal.
	db.Exec(t, `BEGIN; ALTER PUBLICATION cdc DROP TABLE contacts; ALTER PUBLICATION cdc ADD TABLE contacts ("Contact ID", crm_ref, plan) WHERE ("Contact ID" > 100); COMMIT`)
	problems, _ = inspect()
	expect(t, problems, finding{
		problem: `it publishes only the rows where ("Contact ID" > 100), and the mapping needs every row`,
		fix:     fix,
	})
}

func TestCheckReportsAColumnListOnAFullIdentityTableThatBreaksItsUpdates(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, contactsTable)
	db.Exec(t, `ALTER TABLE contacts REPLICA IDENTITY FULL`)
	db.Exec(t, `CREATE PUBLICATION cdc FOR TABLE contacts ("Contact ID", crm_ref, plan)`)
	conn, _ := connectAs(t, db, "cdc", "REPLICATION")
	cfg := checkConfig(db.Name, "public.contacts")
	cfg.Publish = map[string]connector.Publish{"public.contacts": {Columns: []string{"crm_ref", "plan"}}}
	problems, _, err := connector.Inspect(t.Context(), conn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, problems, finding{
		problem: "it lists columns of a table with REPLICA IDENTITY FULL, so PostgreSQL 15 refuses every UPDATE and DELETE of the table",
		fix:     `ALTER PUBLICATION "cdc" ADD TABLE "public"."contacts"; COMMIT;`,
	})
}

func TestCheckGivesTheColumnListsInTheStatementThatCreatesThePublication(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, contactsTable)
	conn, _ := connectAs(t, db, "cdc", "REPLICATION") // owns no table
	cfg := checkConfig(db.Name, "public.contacts")
	cfg.Publish = map[string]connector.Publish{"public.contacts": {Columns: []string{"crm_ref", "plan"}}}
	problems, _, err := connector.Inspect(t.Context(), conn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, problems, finding{
		problem: `publication "cdc" does not exist`,
		fix:     `an admin must run CREATE PUBLICATION "cdc" FOR TABLE "public"."contacts" ("Contact ID", "crm_ref", "plan");`,
	})
}

func TestARowFilterPostgreSQLRefusesIsLeftToTheTransform(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, contactsTable)
	db.Exec(t, `ALTER TABLE contacts REPLICA IDENTITY FULL`)
	kafka := kafkatest.Start(t)
	cfg := crmConfig(t, db, kafka, "public.contacts")
	// now() is not immutable: PostgreSQL refuses it in a row filter.
	cfg.Publish = map[string]connector.Publish{"public.contacts": {Columns: []string{"crm_ref", "status"}, RowFilter: `"status" = 'active' AND now() > '2000-01-01'`}}
	logs, _ := runCRM(t, db, kafka, cfg)

	if _, _, filter := entry(t, db, "cdc", "public.contacts"); filter != "" {
		t.Errorf("the publication has row filter %q, want none", filter)
	}
	if !logged(logs, "PostgreSQL refused a row filter") {
		t.Error("no log line says PostgreSQL refused the row filter")
	}
	db.Exec(t, `INSERT INTO contacts (crm_ref, status) VALUES ('inactive', 'inactive'), ('last', 'active')`)
	if evs := contactEvents(t, db, kafka, "last"); len(evs) != 1 || crmRef(evs[0]) != "inactive" {
		t.Errorf("%d events before the last, want the inactive row's", len(evs))
	}
}
