package connector_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
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

// snapshotConfig is testConfig with a state store and an initial snapshot
// in small chunks.
func snapshotConfig(t *testing.T, db *pgtest.DB, kafka *broker.Embedded) connector.Config {
	t.Helper()
	store, err := broker.OpenStateStore(context.Background(), kafka.Brokers(), "cdc.connector-state")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	cfg := testConfig(db)
	cfg.State = store
	cfg.InitialSnapshot = true
	cfg.SnapshotChunkSize = 500
	return cfg
}

// replay folds a topic's events into the rows they describe, by key, the
// way a consumer does: the last event of a key wins, a delete removes it.
func replay(t *testing.T, recs []kafkatest.Record) (rows map[string]string, ops map[event.Op]int) {
	t.Helper()
	f := newFold()
	f.add(t, recs)
	return f.rows, f.ops
}

// fold is replay kept up to date as records arrive: add folds in only
// the records after those it saw, so a wait that looks at the whole topic
// after each fetch costs the records read, not their square.
type fold struct {
	seen int
	rows map[string]string
	ops  map[event.Op]int
}

func newFold() *fold { return &fold{rows: map[string]string{}, ops: map[event.Op]int{}} }

// add folds in recs[f.seen:]; recs is the topic read so far, from its start.
func (f *fold) add(t *testing.T, recs []kafkatest.Record) {
	t.Helper()
	fresh := recs[f.seen:]
	f.seen = len(recs)
	for i, ev := range decodeAll(t, fresh) {
		f.ops[ev.Op]++
		switch ev.Op {
		case event.OpDelete:
			delete(f.rows, string(fresh[i].Key))
		case event.OpTruncate:
			clear(f.rows)
		default:
			plan, _ := ev.After.Get("plan")
			score, _ := ev.After.Get("score")
			f.rows[string(fresh[i].Key)] = string(plan) + "/" + string(score)
		}
	}
}

// tableRows reads the users table in replay's form.
func tableRows(t *testing.T, db *pgtest.DB) map[string]string {
	t.Helper()
	rows, err := db.Conn(t).Query(context.Background(), `SELECT external_id, plan, score FROM users`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for rows.Next() {
		var id, plan string
		var score int
		if err := rows.Scan(&id, &plan, &score); err != nil {
			t.Fatal(err)
		}
		key, _ := json.Marshal(map[string]string{"external_id": id})
		out[string(key)] = fmt.Sprintf("%q/%d", plan, score)
	}
	return out
}

// churn updates, deletes and inserts users rows until stop is closed.
func churn(t *testing.T, db *pgtest.DB, n int, stop <-chan struct{}) (done func()) {
	t.Helper()
	conn := db.Conn(t)
	var wg sync.WaitGroup
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(7, 8))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := fmt.Sprintf("u%06d", rng.IntN(n))
			var err error
			switch rng.IntN(4) {
			case 0:
				_, err = conn.Exec(context.Background(), `DELETE FROM users WHERE external_id = $1`, id)
			case 1:
				_, err = conn.Exec(context.Background(), `INSERT INTO users VALUES ($1, 'new', $2) ON CONFLICT (external_id) DO UPDATE SET plan = 'reborn'`, fmt.Sprintf("n%06d", i), i)
			default:
				_, err = conn.Exec(context.Background(), `UPDATE users SET score = score + 1, plan = 'pro' WHERE external_id = $1`, id)
			}
			if err != nil {
				t.Error(err)
				return
			}
		}
	})
	return wg.Wait
}

// converge reads the topic until replaying it gives the table's rows, and
// returns the events' count by op.
func converge(t *testing.T, db *pgtest.DB, kafka *broker.Embedded) map[event.Op]int {
	t.Helper()
	want := tableRows(t, db)
	f := newFold()
	_, ok := kafkatest.Read(t, kafka.Brokers(), []string{"cdc.public.users"}, 90*time.Second, func(rs []kafkatest.Record) bool {
		f.add(t, rs)
		return mapsEqual(f.rows, want)
	})
	if !ok {
		t.Fatalf("replaying the topic's %d events gives %d rows, the table has %d; %s", f.seen, len(f.rows), len(want), firstDifference(f.rows, want))
	}
	return f.ops
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func firstDifference(got, want map[string]string) string {
	for k, v := range want {
		if got[k] != v {
			return fmt.Sprintf("e.g. %s is %q in Kafka, %q in the table", k, got[k], v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			return fmt.Sprintf("e.g. %s (%q) is in Kafka but not in the table", k, v)
		}
	}
	return ""
}

func TestInitialSnapshotUnderConcurrentWritesEndsEqualToTheTable(t *testing.T) {
	t.Parallel()
	for _, parallel := range []int{1, 4} {
		t.Run(fmt.Sprintf("%d chunks at once", parallel), func(t *testing.T) {
			t.Parallel()
			testSnapshotUnderConcurrentWrites(t, parallel)
		})
	}
}

func testSnapshotUnderConcurrentWrites(t *testing.T, parallel int) {
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY, plan text, score int)`)
	const n = 20000
	db.Exec(t, `INSERT INTO users SELECT 'u' || lpad(i::text, 6, '0'), 'free', 0 FROM generate_series(0, $1 - 1) i`, n)
	kafka := kafkatest.Start(t)

	stop := make(chan struct{})
	cfg := snapshotConfig(t, db, kafka)
	cfg.SnapshotParallelism = parallel
	startConnectorWith(t, db, kafka, cfg)
	wait := churn(t, db, n, stop)
	time.Sleep(3 * time.Second) // the churn runs while the chunks are read
	close(stop)
	wait()

	ops := converge(t, db, kafka)
	if ops[event.OpSnapshot] < n/2 || ops[event.OpSnapshot] > n {
		t.Errorf("%d snapshot events for %d rows", ops[event.OpSnapshot], n)
	}
	t.Logf("events by op: %v", ops)
}

// A snapshot stopped part way, reading one chunk or several at once,
// resumes from the chunks Kafka held, not from the start, and ends equal
// to the table.
func TestAParallelSnapshotStoppedPartWayResumesWhereItWas(t *testing.T) {
	t.Parallel()
	for _, parallel := range []int{1, 4} {
		t.Run(fmt.Sprintf("%d chunks at once", parallel), func(t *testing.T) {
			t.Parallel()
			testSnapshotResumes(t, parallel)
		})
	}
}

func testSnapshotResumes(t *testing.T, parallel int) {
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY, plan text, score int)`)
	// Small enough that converge's replays of the whole topic (once per
	// fetch) finish in time on a loaded machine.
	const n = 12000
	db.Exec(t, `INSERT INTO users SELECT 'u' || lpad(i::text, 6, '0'), 'free', i FROM generate_series(0, $1 - 1) i`, n)
	kafka := kafkatest.Start(t)
	cfg := snapshotConfig(t, db, kafka)
	cfg.SnapshotParallelism = parallel
	stopConnector := startConnectorWith(t, db, kafka, cfg)
	kafkatest.ReadUntil(t, kafka.Brokers(), []string{"cdc.public.users"}, 60*time.Second, func(rs []kafkatest.Record) bool {
		return len(rs) >= n/3
	})
	stopConnector()

	// Where the stop left the snapshot: the rows Kafka held in whole
	// chunks, saved in the state; and a WAL position after every event of
	// the first run, since a snapshot event carries its low watermark's.
	data, err := cfg.State.Load(context.Background(), db.Name)
	if err != nil {
		t.Fatal(err)
	}
	var st connector.State
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	p := st.Snapshots["public.users"]
	if p == nil || p.Rows == 0 {
		t.Fatalf("after the stop the state holds %+v for the table: no progress saved to resume from", p)
	}
	var mark int64
	if err := db.Conn(t).QueryRow(context.Background(), `SELECT (pg_current_wal_lsn() - '0/0')::bigint`).Scan(&mark); err != nil {
		t.Fatal(err)
	}
	db.Exec(t, `UPDATE users SET plan = 'pro' WHERE score % 7 = 0`)

	startConnectorWith(t, db, kafka, cfg)
	ops := converge(t, db, kafka)
	recs := kafkatest.ReadUntil(t, kafka.Brokers(), []string{"cdc.public.users"}, 30*time.Second, func(rs []kafkatest.Record) bool { return len(rs) >= ops[event.OpSnapshot] })
	again := 0
	for _, ev := range decodeAll(t, recs) {
		if ev.Op == event.OpSnapshot && ev.Source.LSN > mark {
			again++
		}
	}
	if again == 0 || again > n-int(p.Rows) {
		t.Errorf("after the restart the snapshot read %d rows; %d of %d were in Kafka in whole chunks, so want 1 to %d", again, p.Rows, n, n-int(p.Rows))
	}
	t.Logf("events by op: %v; %d rows saved at the stop, %d read after it", ops, p.Rows, again)
}

func TestASignalResnapshotsATableWhileStreaming(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY, plan text, score int)`)
	db.Exec(t, `INSERT INTO users SELECT 'u' || i, 'free', i FROM generate_series(1, 1200) i`)
	kafka := kafkatest.Start(t)
	startConnectorWith(t, db, kafka, snapshotConfig(t, db, kafka))
	snapshots := func(n int) func([]kafkatest.Record) bool {
		f := newFold()
		return func(rs []kafkatest.Record) bool {
			f.add(t, rs)
			return f.ops[event.OpSnapshot] >= n
		}
	}
	kafkatest.ReadUntil(t, kafka.Brokers(), []string{"cdc.public.users"}, 60*time.Second, snapshots(1200))

	if err := connector.Signal(context.Background(), db.DSN, []string{"public.users"}); err != nil {
		t.Fatal(err)
	}
	// The stream goes on meanwhile; rows it carries while their chunk is
	// read are left out of the chunk.
	db.Exec(t, `UPDATE users SET plan = 'pro' WHERE score <= 10`)
	kafkatest.ReadUntil(t, kafka.Brokers(), []string{"cdc.public.users"}, 60*time.Second, snapshots(2400-10))
	converge(t, db, kafka)
}

func TestALostSlotStopsTheConnectorUntilAnExplicitReset(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY, plan text, score int)`)
	db.Exec(t, `INSERT INTO users VALUES ('a', 'free', 1)`)
	kafka := kafkatest.Start(t)
	cfg := snapshotConfig(t, db, kafka)
	stop := startConnectorWith(t, db, kafka, cfg)
	kafkatest.ReadUntil(t, kafka.Brokers(), []string{"cdc.public.users"}, 30*time.Second, atLeast(1))
	stop()

	// The walsender may hold the slot a moment after the connector stopped.
	conn := db.Conn(t)
	waitFor(t, 30*time.Second, "the stopped connector's slot to be dropped", func() bool {
		_, err := conn.Exec(context.Background(), `SELECT pg_drop_replication_slot($1)`, db.Name)
		return err == nil
	})
	db.Exec(t, `INSERT INTO users VALUES ('b', 'free', 2)`) // written while no slot kept the WAL

	w := broker.NewConnectorWriter(kafka.Brokers())
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := connector.New(cfg, w, zaptest.NewLogger(t)).Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "is gone") || !strings.Contains(err.Error(), "snapshot --reset") {
		t.Fatalf("Run returned %v, want a loud error naming the reset", err)
	}
	var exists bool
	db.Conn(t).QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, db.Name).Scan(&exists)
	if exists {
		t.Fatal("the connector silently created a new slot")
	}

	if err := connector.Reset(ctx, cfg.State, cfg.Slot); err != nil {
		t.Fatal(err)
	}
	startConnectorWith(t, db, kafka, cfg)
	converge(t, db, kafka) // b arrives through the re-snapshot
}

// A broker that lost what the connector wrote (here a new one; for a user,
// the embedded broker in memory after a restart, or a deleted state topic)
// while the slot kept its position: the rows not changed since would never
// reach Kafka again. The connector notices that its state does not know the
// slot, says so, and snapshots every table again; with snapshots turned
// off it says how to ask for one.
func TestAConnectorWhoseBrokerLostItsDataSnapshotsEveryTableAgain(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		snapshot bool
		warning  string
	}{
		{"with initial snapshots", true, "snapshotting every mapped table again"},
		{"with snapshot: never", false, "onesignal-cdc snapshot --all"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := pgtest.NewDB(t)
			db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY, plan text, score int)`)
			db.Exec(t, `CREATE TABLE devices (device_id text, external_id text); ALTER TABLE devices REPLICA IDENTITY FULL`)
			db.Exec(t, `INSERT INTO users SELECT 'u' || i, 'free', i FROM generate_series(1, 1200) i`)
			first := kafkatest.Start(t)
			cfg := snapshotConfig(t, db, first)
			stop := startConnectorWith(t, db, first, cfg) // snapshots once: the slot is new
			converge(t, db, first)
			stop()
			first.Close() // and everything the connector wrote is gone, while the slot stays past it

			db.Exec(t, `UPDATE users SET plan = 'pro' WHERE score <= 10`) // while no connector runs
			second := kafkatest.Start(t)
			cfg = snapshotConfig(t, db, second)
			cfg.InitialSnapshot = tc.snapshot
			cfg.Tables = []string{"public.users", "public.devices"}
			if err := broker.EnsureTopics(context.Background(), second.Brokers(), 3, "cdc.public.users", "cdc.public.devices"); err != nil {
				t.Fatal(err)
			}
			w := broker.NewConnectorWriter(second.Brokers())
			t.Cleanup(func() { w.Close() })
			core, logs := observer.New(zap.WarnLevel)
			log := zaptest.NewLogger(t, zaptest.WrapOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return zapcore.NewTee(c, core) })))
			runConnectorLogging(t, db, cfg, w, log)

			if tc.snapshot {
				ops := converge(t, db, second)
				if ops[event.OpSnapshot] < 1200-10 {
					t.Errorf("%d snapshot events for 1200 rows: %v", ops[event.OpSnapshot], ops)
				}
				if keyless := logs.FilterMessageSnippet("without a primary key cannot be snapshotted"); keyless.Len() != 1 {
					t.Errorf("logged %d warnings about the keyless devices table, want 1", keyless.Len())
				}
			} else {
				db.Exec(t, `UPDATE users SET score = -1 WHERE external_id = 'u1200'`)
				recs := kafkatest.ReadUntil(t, second.Brokers(), []string{"cdc.public.users"}, 30*time.Second, atLeast(11))
				if _, ops := replay(t, recs); ops[event.OpSnapshot] != 0 || ops[event.OpUpdate] != 11 {
					t.Errorf("events by op %v, want only the 11 updates", ops)
				}
			}
			lost := logs.FilterMessageSnippet("has no record of replication slot")
			if lost.Len() != 1 || !strings.Contains(lost.All()[0].Message, tc.warning) || !strings.Contains(lost.All()[0].Message, "lost") {
				t.Errorf("warnings %v, want one saying why and %q", lost.All(), tc.warning)
			}
		})
	}
}
