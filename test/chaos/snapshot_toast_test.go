package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// TestTheSnapshotKeepsTheTOASTValueOfARowUpdatedInItsChunkWindow: the
// initial snapshot leaves out of a chunk the rows the stream changed
// between the chunk's watermarks, since the stream carries their newer
// state. But an UPDATE that leaves a TOASTed column alone carries it as
// __debezium_unavailable_value under REPLICA IDENTITY DEFAULT: unless the
// snapshot fills it in, the column's value never reaches Kafka and the
// sink never sets its tag. The test updates rows with TOAST values all
// through the snapshot and checks that every row's value is in Kafka.
// Found by the chaos harness (seed 1: bio tags missing on users seeded
// before the connector started and updated during the snapshot).
func TestTheSnapshotKeepsTheTOASTValueOfARowUpdatedInItsChunkWindow(t *testing.T) {
	st := daemontest.NewStack(t, daemontest.StackOptions{})
	db, kb := st.DB, st.Kafka
	db.Exec(t, externalIDKeyedSchema)
	const rows = 1000
	// 3.2 kB of text, stored out of line (STORAGE EXTERNAL): a TOAST value.
	db.Exec(t, `INSERT INTO users (external_id, plan, score, bio) SELECT 'u-' || i, 'free', 0, repeat(md5(i::text), 100) FROM generate_series(1, $1) i`, rows)
	c := st.Config()
	c.Postgres.Publication, c.Postgres.SnapshotChunkSize = "regress", 20
	c.Kafka.TopicPrefix = "cdc"
	c.Mapping.Users = &transform.UsersMapping{Table: "public.users", ExternalID: "external_id", Tags: map[string]string{"bio": ""}}
	c.Ops.Listen = ""
	cfg := daemontest.WriteConfig(t, c)

	// Updates of the score alone, ten rows round the table every 2 ms
	// while the snapshot runs: enough to land in many chunks' windows, few
	// enough for the snapshot to finish on a loaded machine.
	conn := db.Conn(t)
	ctx, stopUpdates := context.WithCancel(context.Background())
	updated := make(chan int, 1)
	go func() {
		pace := time.NewTicker(2 * time.Millisecond)
		defer pace.Stop()
		n := 0
		for ; ; n++ {
			select {
			case <-ctx.Done():
				updated <- n
				return
			case <-pace.C:
			}
			ids := make([]string, 10)
			for i := range ids {
				ids[i] = fmt.Sprintf("u-%d", 1+(n*len(ids)+i)*7%rows)
			}
			if _, err := conn.Exec(ctx, `UPDATE users SET score = score + 1 WHERE external_id = ANY($1)`, ids); err != nil && ctx.Err() == nil {
				t.Error(err)
				<-ctx.Done()
			}
		}
	}()
	// Before conn closes (cleanups run last first), also when the test fails.
	t.Cleanup(func() { stopUpdates(); <-updated })
	connector := daemontest.StartWith(t, opsOff, daemontest.Connector, "--config", cfg)
	waitUntil(t, 4*time.Minute, "the snapshot to finish", func() bool {
		return strings.Contains(connector.Output(), `"snapshot finished","table":"public.users"`)
	})
	stopUpdates()
	n := <-updated
	updated <- n // for the cleanup
	t.Logf("%d updates of ten rows during the snapshot", n)
	end, err := pglogrepl.ParseLSN(db.CurrentLSN(t))
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, time.Minute, "the slot to confirm the end of the WAL", func() bool {
		s, _ := db.SlotConfirmedFlush(t, db.Name)
		l, _ := pglogrepl.ParseLSN(s)
		return l >= end
	})

	// Every row's bio must be in Kafka in some event of its key.
	client, done := broker.Plain(kb.Brokers()).Client(0)
	defer done()
	held, err := messagesIn(context.Background(), client, "cdc.public.users")
	if err != nil {
		t.Fatal(err)
	}
	recs := kafkatest.ReadUntil(t, kb.Brokers(), []string{"cdc.public.users"}, time.Minute, func(rs []kafkatest.Record) bool { return int64(len(rs)) >= held })
	bio := map[string]bool{}
	snapshotRows := 0
	for _, r := range recs {
		ev, err := event.Decode(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Op == event.OpSnapshot {
			snapshotRows++
		}
		if v, ok := ev.After.Get("bio"); ok && !event.IsUnavailable(v) {
			bio[string(r.Key)] = true
		}
	}
	var missing []string
	for i := 1; i <= rows; i++ {
		key, _ := json.Marshal(map[string]string{"external_id": fmt.Sprintf("u-%d", i)})
		if !bio[string(key)] {
			missing = append(missing, fmt.Sprintf("u-%d", i))
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d rows never had their bio in Kafka (%d snapshot rows, %d events): %v",
			len(missing), rows, snapshotRows, len(recs), capList(missing, 10))
	}
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
