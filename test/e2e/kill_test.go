package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
)

// change names one committed row change: the row, the operation and the
// score it left, which the workload makes unique per row.
type change struct {
	id    string
	op    event.Op
	score int
}

// TestConnectorKilledMidStreamLosesNothing SIGKILLs the connector process
// twice while transactions commit, restarts it, and checks that Kafka holds
// every committed change, with duplicates only as exact repeats.
func TestConnectorKilledMidStreamLosesNothing(t *testing.T) {
	t.Parallel()
	st := daemontest.NewStack(t, daemontest.StackOptions{})
	db, kafka := st.DB, st.Kafka
	db.Exec(t, schema)
	cfg := daemontest.WriteConfig(t, baseConfig(st))

	connector := daemontest.Start(t, daemontest.Connector, cfg)
	daemontest.WaitForSlot(t, db, db.Name)

	const txns = 600
	kills := map[int]bool{150: true, 380: true}
	rng := rand.New(rand.NewPCG(1, 2))
	conn := db.Conn(t)
	ctx := context.Background()
	var committed []change
	scores := map[string]int{}
	var ids []string
	for i := range txns {
		if kills[i] {
			connector.Kill(t)
			connector = daemontest.Start(t, daemontest.Connector, cfg)
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var pending []change
		for range 1 + rng.IntN(3) {
			if len(ids) == 0 || rng.IntN(2) == 0 {
				id := fmt.Sprintf("k-%d", len(ids))
				if _, err := tx.Exec(ctx, `INSERT INTO users VALUES ($1, 'free', 0, 'FR')`, id); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, id)
				pending = append(pending, change{id, event.OpCreate, 0})
				scores[id] = 0
				continue
			}
			id := ids[rng.IntN(len(ids))]
			scores[id]++
			if _, err := tx.Exec(ctx, `UPDATE users SET score = $2 WHERE external_id = $1`, id, scores[id]); err != nil {
				t.Fatal(err)
			}
			pending = append(pending, change{id, event.OpUpdate, scores[id]})
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		committed = append(committed, pending...)
		if i%10 == 0 {
			time.Sleep(5 * time.Millisecond) // let the stream interleave with the kills
		}
	}

	var missing []change
	recs := kafkatest.ReadUntil(t, kafka.Brokers(), []string{"cdc.public.users"}, 2*time.Minute, func(rs []kafkatest.Record) bool {
		seen := indexByChange(t, rs)
		missing = missing[:0]
		for _, c := range committed {
			if _, ok := seen[c]; !ok {
				missing = append(missing, c)
			}
		}
		return len(missing) == 0
	})
	dups, changes := 0, indexByChange(t, recs)
	for c, copies := range changes {
		for _, other := range copies[1:] {
			dups++
			if other != copies[0] {
				t.Errorf("change %+v was written twice with different content:\n%s\n%s", c, copies[0], other)
			}
		}
	}
	if len(changes) != len(committed) {
		t.Errorf("%d distinct changes in Kafka for %d committed changes", len(changes), len(committed))
	}
	t.Logf("%d committed changes, %d events in Kafka (%d exact repeats after 2 kills)", len(committed), len(recs), dups)
}

// indexByChange groups records by the change they carry; each copy is the
// event without its processing time, which is the only field a replay may
// change.
func indexByChange(t *testing.T, rs []kafkatest.Record) map[change][]string {
	t.Helper()
	out := map[change][]string{}
	for _, r := range rs {
		ev, err := event.Decode(r.Value)
		if err != nil {
			t.Fatalf("record %d: %v", r.Offset, err)
		}
		if ev.Op == event.OpSnapshot {
			continue // the initial snapshot may read rows the workload already wrote
		}
		var row struct {
			ID    string `json:"external_id"`
			Score int    `json:"score"`
		}
		b, _ := json.Marshal(ev.After)
		if err := json.Unmarshal(b, &row); err != nil {
			t.Fatal(err)
		}
		c := change{row.ID, ev.Op, row.Score}
		ev.TsMs = 0
		out[c] = append(out[c], string(r.Key)+" "+string(ev.Encode(nil)))
	}
	return out
}
