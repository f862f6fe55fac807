package connector_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap/zaptest"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/connector"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
)

// startConnector runs a connector for db's users table; the returned
// function stops it (and is also called at cleanup).
func startConnector(t *testing.T, db *pgtest.DB, kafka *broker.Embedded) (stop func()) {
	t.Helper()
	return startConnectorWith(t, db, kafka, testConfig(db))
}

// testConfig is the connector configuration of these tests.
func testConfig(db *pgtest.DB) connector.Config {
	return connector.Config{
		DSN:            db.DSN,
		Slot:           db.Name,
		Publication:    "cdc",
		Tables:         []string{"public.users"},
		TopicPrefix:    "cdc",
		StatusInterval: 200 * time.Millisecond,
	}
}

// startConnectorWith runs a connector with cfg; see startConnector.
func startConnectorWith(t *testing.T, db *pgtest.DB, kafka *broker.Embedded, cfg connector.Config) (stop func()) {
	t.Helper()
	if err := broker.EnsureTopics(context.Background(), kafka.Brokers(), 3, "cdc.public.users"); err != nil {
		t.Fatal(err)
	}
	w := broker.NewConnectorWriter(kafka.Brokers())
	t.Cleanup(func() { w.Close() }) // cleanups run last-in first-out: after the stop below
	return runConnector(t, db, cfg, w)
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func decodeAll(t *testing.T, recs []kafkatest.Record) []*event.Envelope {
	t.Helper()
	out := make([]*event.Envelope, len(recs))
	for i, r := range recs {
		ev, err := event.Decode(r.Value)
		if err != nil {
			t.Fatalf("record %s/%d@%d: %v", r.Topic, r.Partition, r.Offset, err)
		}
		out[i] = ev
	}
	return out
}

func atLeast(n int) func([]kafkatest.Record) bool {
	return func(rs []kafkatest.Record) bool { return len(rs) >= n }
}

func TestConnectorStreamsEveryCommittedChangeAsOneEvent(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY, plan text, score int)`)
	kafka := kafkatest.Start(t)
	startConnector(t, db, kafka)

	db.Exec(t, `INSERT INTO users SELECT 'u' || i, 'free', i FROM generate_series(1, 50) i`)
	db.Exec(t, `UPDATE users SET plan = 'pro' WHERE score <= 10`)
	db.Exec(t, `DELETE FROM users WHERE score > 45`)
	db.Exec(t, `BEGIN; INSERT INTO users VALUES ('rolled-back', 'x', 0); ROLLBACK`)

	recs := kafkatest.ReadUntil(t, kafka.Brokers(), []string{"cdc.public.users"}, 30*time.Second, atLeast(65))
	time.Sleep(500 * time.Millisecond) // anything beyond 65 would be a bug
	recs = kafkatest.ReadUntil(t, kafka.Brokers(), []string{"cdc.public.users"}, 30*time.Second, atLeast(65))
	if len(recs) != 65 {
		t.Fatalf("got %d events, want 50 inserts + 10 updates + 5 deletes", len(recs))
	}
	counts := map[event.Op]int{}
	for i, ev := range decodeAll(t, recs) {
		counts[ev.Op]++
		id := ev.After
		if ev.Op == event.OpDelete {
			id = ev.Before
		}
		v, _ := id.Get("external_id")
		if want := `{"external_id":` + string(v) + `}`; string(recs[i].Key) != want {
			t.Errorf("key %s, want %s", recs[i].Key, want)
		}
		if ev.Source.Table != "users" || ev.Source.Schema != "public" || ev.Source.LSN == 0 || ev.Source.TxID == 0 {
			t.Errorf("source block incomplete: %+v", ev.Source)
		}
	}
	if counts[event.OpCreate] != 50 || counts[event.OpUpdate] != 10 || counts[event.OpDelete] != 5 {
		t.Errorf("ops %v, want c:50 u:10 d:5", counts)
	}
}

func TestConnectorNeverConfirmsAnLSNKafkaHasNotAcknowledged(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY, plan text, score int)`)
	kafka := kafkatest.Start(t)
	startConnector(t, db, kafka)

	// Hold every produce request until released: Kafka receives the
	// events but acknowledges none.
	release := make(chan struct{})
	cluster := kafka.Cluster()
	cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		cluster.SleepControl(func() { <-release })
		return nil, nil, false
	})
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()

	db.Exec(t, `INSERT INTO users SELECT 'u' || i, 'free', i FROM generate_series(1, 100) i`)

	// Many status intervals pass while Kafka acknowledges nothing. The slot
	// may move (past WAL of other databases on the server) but never to the
	// transaction's commit.
	var seen []pglogrepl.LSN
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		seen = append(seen, confirmed(t, db))
		time.Sleep(100 * time.Millisecond)
	}

	close(release)
	released = true
	recs := kafkatest.ReadUntil(t, kafka.Brokers(), []string{"cdc.public.users"}, 30*time.Second, atLeast(100))
	commit := pglogrepl.LSN(decodeAll(t, recs)[0].Source.CommitLSN)
	for _, c := range seen {
		if c >= commit {
			t.Fatalf("confirmed_flush_lsn reached %s, the transaction's commit at %s, while Kafka had acknowledged nothing", c, commit)
		}
	}
	waitFor(t, 30*time.Second, "the slot to confirm the transaction once Kafka acknowledged it", func() bool {
		return confirmed(t, db) > commit
	})
}

func TestConnectorResumesFromTheSlotAfterAStop(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY, plan text, score int)`)
	kafka := kafkatest.Start(t)

	stop := startConnector(t, db, kafka)
	db.Exec(t, `INSERT INTO users VALUES ('a', 'free', 1)`)
	kafkatest.ReadUntil(t, kafka.Brokers(), []string{"cdc.public.users"}, 30*time.Second, atLeast(1))
	stop()
	// Written while the connector is down.
	db.Exec(t, `INSERT INTO users VALUES ('b', 'free', 2)`)
	startConnector(t, db, kafka)
	recs := kafkatest.ReadUntil(t, kafka.Brokers(), []string{"cdc.public.users"}, 30*time.Second, atLeast(2))
	seen := map[string]int{}
	for _, ev := range decodeAll(t, recs) {
		v, _ := ev.After.Get("external_id")
		var id string
		json.Unmarshal(v, &id)
		seen[id]++
	}
	if seen["a"] != 1 || seen["b"] != 1 {
		t.Errorf("events per row %v, want a and b once each (a clean stop confirms what it sent)", seen)
	}
}

func lsn(t *testing.T, s string) pglogrepl.LSN {
	t.Helper()
	l, err := pglogrepl.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func confirmed(t *testing.T, db *pgtest.DB) pglogrepl.LSN {
	t.Helper()
	s, ok := db.SlotConfirmedFlush(t, db.Name)
	if !ok {
		t.Fatal(errors.New("slot vanished"))
	}
	return lsn(t, s)
}

func TestConnectorLetsAnIdleSlotAdvanceWhileOnlyUnpublishedTablesAreWritten(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY, plan text, score int)`)
	db.Exec(t, `CREATE TABLE audit_log (id bigserial PRIMARY KEY, line text)`)
	kafka := kafkatest.Start(t)
	cfg := testConfig(db)
	const heartbeat = 500 * time.Millisecond
	cfg.HeartbeatInterval = heartbeat
	startConnectorWith(t, db, kafka, cfg)

	before := confirmed(t, db)
	db.Exec(t, `INSERT INTO audit_log (line) SELECT repeat('x', 200) FROM generate_series(1, 1000)`)
	written := lsn(t, db.CurrentLSN(t))
	start := time.Now()
	waitFor(t, 2*heartbeat, "confirmed_flush_lsn to pass the unpublished writes within two heartbeats", func() bool {
		return confirmed(t, db) >= written
	})
	t.Logf("slot advanced %d kB in %s with no published change", (written-before)>>10, time.Since(start).Round(10*time.Millisecond))
}

// externalIDs reads the external ids of the events in recs, counting copies.
func externalIDs(t *testing.T, recs []kafkatest.Record) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for _, ev := range decodeAll(t, recs) {
		v, ok := ev.After.Get("external_id")
		if !ok {
			continue // a delete or a truncate
		}
		var id string
		if err := json.Unmarshal(v, &id); err != nil {
			t.Fatal(err)
		}
		seen[id]++
	}
	return seen
}

func allOf(t *testing.T, ids ...string) func([]kafkatest.Record) bool {
	return func(rs []kafkatest.Record) bool {
		seen := externalIDs(t, rs)
		for _, id := range ids {
			if seen[id] == 0 {
				return false
			}
		}
		return true
	}
}

func TestConnectorReconnectsWithoutAGapWhenTheWalsenderIsTerminated(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY, plan text, score int)`)
	kafka := kafkatest.Start(t)
	startConnector(t, db, kafka)

	var ids []string
	for round := range 3 {
		db.Exec(t, `INSERT INTO users SELECT 'r' || $1::int || '-' || i, 'free', i FROM generate_series(1, 200) i`, round)
		for i := 1; i <= 200; i++ {
			ids = append(ids, fmt.Sprintf("r%d-%d", round, i))
		}
		db.Exec(t, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active`, db.Name)
	}
	kafkatest.ReadUntil(t, kafka.Brokers(), []string{"cdc.public.users"}, 60*time.Second, allOf(t, ids...))
}

func TestASecondConnectorStandsByAndTakesOverTheSlot(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY, plan text, score int)`)
	kafka := kafkatest.Start(t)
	stopFirst := startConnector(t, db, kafka)

	w := broker.NewConnectorWriter(kafka.Brokers())
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	standbyDone := make(chan error, 1)
	go func() { standbyDone <- connector.New(testConfig(db), w, zaptest.NewLogger(t)).Run(ctx) }()

	db.Exec(t, `INSERT INTO users VALUES ('before', 'free', 1)`)
	kafkatest.ReadUntil(t, kafka.Brokers(), []string{"cdc.public.users"}, 30*time.Second, allOf(t, "before"))
	select {
	case err := <-standbyDone:
		t.Fatalf("the standby gave up while the slot was busy: %v", err)
	default:
	}

	stopFirst()
	db.Exec(t, `INSERT INTO users VALUES ('after', 'free', 2)`)
	kafkatest.ReadUntil(t, kafka.Brokers(), []string{"cdc.public.users"}, 30*time.Second, allOf(t, "before", "after"))
	cancel()
	if err := <-standbyDone; err != nil {
		t.Fatal(err)
	}
}
