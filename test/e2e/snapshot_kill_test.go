package e2e

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
)

// TestSnapshotKilledTwiceResumesAndEndsEqualToTheTable SIGKILLs the
// connector twice during its initial snapshot while rows are updated and
// deleted, and checks that the snapshot resumed from its saved chunk (it did
// not start over) and that Kafka, replayed, equals the table.
func TestSnapshotKilledTwiceResumesAndEndsEqualToTheTable(t *testing.T) {
	t.Parallel()
	st := daemontest.NewStack(t, daemontest.StackOptions{})
	db, kafka := st.DB, st.Kafka
	db.Exec(t, schema)
	const rows = 30000
	db.Exec(t, `INSERT INTO users SELECT 'u' || lpad(i::text, 6, '0'), 'free', 0, 'DE' FROM generate_series(1, $1) i`, rows)
	cfg := daemontest.WriteConfig(t, baseConfig(st))
	topic := []string{"cdc.public.users"}

	// The workload: updates and deletes of random rows, until the end.
	ctx, stopWorkload := context.WithCancel(context.Background())
	workload := make(chan error, 1)
	go func() {
		conn := db.Conn(t)
		for i := 0; ctx.Err() == nil; i++ {
			id := fmt.Sprintf("u%06d", 1+(i*7919)%rows)
			sql := `UPDATE users SET score = score + 1, plan = 'pro' WHERE external_id = $1`
			if i%5 == 0 {
				sql = `DELETE FROM users WHERE external_id = $1`
			}
			if _, err := conn.Exec(context.Background(), sql, id); err != nil {
				workload <- err
				return
			}
			time.Sleep(time.Millisecond)
		}
		workload <- nil
	}()

	// Each wait counts only the records its last fetch added: counting all
	// of them again after every fetch made the waits quadratic.
	snapshotEvents := func(n int) func([]kafkatest.Record) bool {
		seen, count := 0, 0
		return func(rs []kafkatest.Record) bool {
			count += countOp(t, rs[seen:], event.OpSnapshot)
			seen = len(rs)
			return count >= n
		}
	}
	connector := daemontest.Start(t, daemontest.Connector, cfg)
	kafkatest.ReadUntil(t, kafka.Brokers(), topic, 2*time.Minute, snapshotEvents(5000))
	connector.Kill(t)
	connector = daemontest.Start(t, daemontest.Connector, cfg)
	kafkatest.ReadUntil(t, kafka.Brokers(), topic, 2*time.Minute, snapshotEvents(15000))
	connector.Kill(t)
	daemontest.Start(t, daemontest.Connector, cfg)
	kafkatest.ReadUntil(t, kafka.Brokers(), topic, 2*time.Minute, snapshotEvents(rows*4/5))
	stopWorkload()
	if err := <-workload; err != nil {
		t.Fatal(err)
	}

	want := usersInTable(t, db)
	got, seen := map[string]string{}, 0
	recs, ok := kafkatest.Read(t, kafka.Brokers(), topic, 2*time.Minute, func(rs []kafkatest.Record) bool {
		replayUsers(t, got, rs[seen:])
		seen = len(rs)
		return maps.Equal(got, want)
	})
	if !ok {
		t.Fatalf("replaying Kafka gives %d rows, the table has %d", len(got), len(want))
	}
	// Two kills cost at most the chunks in flight, not the snapshot so far.
	if n := countOp(t, recs, event.OpSnapshot); n > rows+2*2*1000 {
		t.Errorf("%d snapshot events for %d rows: the snapshot started over after a kill", n, rows)
	}
	t.Logf("%d events, %d of them snapshot rows, for %d rows", len(recs), countOp(t, recs, event.OpSnapshot), rows)
}

func countOp(t *testing.T, rs []kafkatest.Record, op event.Op) int {
	n := 0
	for _, r := range rs {
		ev, err := event.Decode(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Op == op {
			n++
		}
	}
	return n
}

// replayUsers folds users events by key into users as "plan/score", as a consumer
// would: the last event of a key wins, a delete removes it.
func replayUsers(t *testing.T, users map[string]string, rs []kafkatest.Record) {
	for _, r := range rs {
		ev, err := event.Decode(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Op == event.OpDelete {
			delete(users, string(r.Key))
			continue
		}
		plan, _ := ev.After.Get("plan")
		score, _ := ev.After.Get("score")
		users[string(r.Key)] = string(plan) + "/" + string(score)
	}
}

func usersInTable(t *testing.T, db *pgtest.DB) map[string]string {
	rows, err := db.Conn(t).Query(context.Background(), `SELECT json_build_object('external_id', external_id)::text, to_json(plan)::text || '/' || score FROM users`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		out[strings.ReplaceAll(k, " ", "")] = v
	}
	return out
}
