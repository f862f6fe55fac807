package e2e

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
)

// TestPipelineConvergesThroughOneSignalFaultsWithNothingDeadLettered runs
// `onesignal-cdc run` against an emulator that enforces OneSignal's rate
// limits and fails on purpose: 10 % 5xx, 5 % 429 with Retry-After, 3 %
// connections reset before the request is applied and 3 % reset after it
// was. Every one of those faults is transient, so OneSignal must end up
// saying what the rows say, and the dead-letter topic must stay empty.
func TestPipelineConvergesThroughOneSignalFaultsWithNothingDeadLettered(t *testing.T) {
	t.Parallel()
	// The broker runs in the test, not in the daemon, so that the test can
	// read the dead-letter topic and the consumer group's offsets.
	st := daemontest.NewStack(t, daemontest.StackOptions{Emulator: emulator.Config{
		AppID: "3c1e8f9a-0000-4000-8000-00000000fa17", APIKey: "e2e-faults-key",
		RateLimits: emulator.RateLimits{Enabled: true},
		Faults: emulator.Faults{
			Seed:       4,
			Status:     map[int]float64{500: 0.05, 503: 0.05, 429: 0.05},
			RetryAfter: 1,
			Reset:      0.03,
			Drop:       0.03,
		},
	}})
	db, kb, emu := st.DB, st.Kafka, st.Emulator
	db.Exec(t, schema)
	const devices = 60
	for i := 1; i <= devices; i++ {
		emu.AddSubscription(emulator.Subscription{ID: playerID(i)})
	}

	daemontest.Start(t, daemontest.Run, daemontest.WriteConfig(t, baseConfig(st)))
	daemontest.WaitForSlot(t, db, db.Name)

	began := time.Now()
	db.Exec(t, `INSERT INTO users SELECT 'user-' || i, 'free', i, 'DE' FROM generate_series(1, 300) i`)
	db.Exec(t, `UPDATE users SET plan = 'pro', score = score * 10, country = NULL WHERE score % 2 = 0`) // 150 rows
	db.Exec(t, `DELETE FROM users WHERE score % 10 = 1`)                                                // 30 rows
	for i := 1; i <= devices; i++ {
		db.Exec(t, `INSERT INTO devices VALUES ($1, $2)`, playerID(i), fmt.Sprintf("user-%d", i*3))
	}
	db.Exec(t, `UPDATE devices SET user_external_id = NULL WHERE player_id IN (SELECT player_id FROM devices ORDER BY player_id LIMIT 10)`)
	written := time.Since(began)

	want := expectedState(t, db)
	if live := countLive(want); live != 270 || len(want.owners) != devices {
		t.Fatalf("workload left %d users with tags and %d devices, want 270 and %d", live, len(want.owners), devices)
	}
	// It takes about 10 s on two cores under -race: a retry waits in the
	// sink's queue, not on one of the 8 workers.
	deadline := time.Now().Add(90 * time.Second)
	for {
		got := observedState(emu.State(), want)
		if reflect.DeepEqual(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("OneSignal is not in step with the rows 90 s after the workload began:\n%s\nemulator: %s", diff(want, got), describeStats(emu.Stats()))
		}
		time.Sleep(250 * time.Millisecond)
	}
	converged := time.Since(began)

	// A contribution is committed only once OneSignal took it or the
	// dead-letter topic holds it, an event once its contributions are in
	// the targets topic, so once every offset is committed the dead-letter
	// topic is final.
	waitForGroupCaughtUp(t, kb.Brokers(), "e2e", sinkTopics)
	if n := kafkatest.MessagesIn(t, kb.Brokers(), "cdc.dlq"); n != 0 {
		recs := kafkatest.ReadUntil(t, kb.Brokers(), []string{"cdc.dlq"}, 10*time.Second, func(rs []kafkatest.Record) bool { return len(rs) >= int(n) })
		for _, r := range recs {
			t.Errorf("dead letter of %s: %s", headerValue(r, sink.HeaderTopic)+"@"+headerValue(r, sink.HeaderOffset),
				headerValue(r, sink.HeaderMessage))
		}
		t.Fatalf("the dead-letter topic holds %d messages; every injected fault was transient", n)
	}

	stats := emu.Stats()
	injected := map[string]int{
		"500": stats.Faults.Status[500], "503": stats.Faults.Status[503], "429": stats.Faults.Status[429],
		"reset": stats.Faults.Resets, "drop": stats.Faults.Drops,
	}
	for kind, n := range injected {
		if n == 0 {
			t.Errorf("no %s fault was injected: the test proves nothing about it (%s)", kind, describeStats(stats))
		}
	}
	t.Logf("workload written in %s; OneSignal in step %s after it began; %s",
		written.Round(100*time.Millisecond), converged.Round(100*time.Millisecond), describeStats(stats))
}

// sinkTopics are the topics the sink's consumer group reads: the event
// topics of the e2e schema and the sink's targets topic.
var sinkTopics = []string{"cdc.public.users", "cdc.public.devices", "cdc.sink-targets"}

// countLive counts the users that should hold tags.
func countLive(s oneSignalState) int {
	n := 0
	for _, tags := range s.tags {
		if len(tags) > 0 {
			n++
		}
	}
	return n
}

// describeStats summarizes what the emulator served.
func describeStats(st emulator.Stats) string {
	total := 0
	byStatus := map[int]int{}
	for _, statuses := range st.Requests {
		for status, n := range statuses {
			total += n
			byStatus[status] += n
		}
	}
	statuses := make([]int, 0, len(byStatus))
	for s := range byStatus {
		statuses = append(statuses, s)
	}
	sort.Ints(statuses)
	var parts []string
	for _, s := range statuses {
		name := fmt.Sprint(s)
		if s == 0 {
			name = "cut"
		}
		parts = append(parts, fmt.Sprintf("%s=%d", name, byStatus[s]))
	}
	return fmt.Sprintf("%d requests (%s); injected: 500=%d 503=%d 429=%d resets=%d drops=%d; rate-limit 429s=%d",
		total, strings.Join(parts, " "), st.Faults.Status[500], st.Faults.Status[503], st.Faults.Status[429],
		st.Faults.Resets, st.Faults.Drops, st.RateLimited)
}

// waitForGroupCaughtUp waits until group has committed the end of every
// partition of topics, and the ends did not move meanwhile. Among topics
// belongs the sink's targets topic (cdc.sink-targets): an event's offset is
// committed once its contributions are there, a contribution's once
// OneSignal accepted it or the dead-letter topic holds it. The target stage
// writes records of its own to that topic, each before the record that
// caused it is done, so ends read again after the commits would show one.
func waitForGroupCaughtUp(t *testing.T, brokers []string, group string, topics []string) {
	t.Helper()
	c, done := broker.Plain(brokers).Client(10 * time.Second)
	defer done()
	ends := func() map[string]map[int]int64 {
		out := map[string]map[int]int64{}
		for _, topic := range topics {
			out[topic] = kafkatest.EndOffsets(t, brokers, topic)
		}
		return out
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var behind []string
		before := ends()
		for _, topic := range topics {
			parts := make([]int, 0, len(before[topic]))
			for p := range before[topic] {
				parts = append(parts, p)
			}
			resp, err := c.OffsetFetch(context.Background(), &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
			if err != nil {
				t.Fatalf("offsets of group %s: %v", group, err)
			}
			committed := map[int]int64{}
			for _, p := range resp.Topics[topic] {
				committed[p.Partition] = p.CommittedOffset
			}
			for p, end := range before[topic] {
				if end > 0 && committed[p] != end {
					behind = append(behind, fmt.Sprintf("%s/%d committed %d of %d", topic, p, committed[p], end))
				}
			}
		}
		if len(behind) == 0 {
			if reflect.DeepEqual(before, ends()) {
				return
			}
			behind = append(behind, "the topics grew while the commits were read")
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sink did not commit everything within 30 s: %s", strings.Join(behind, ", "))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func headerValue(r kafkatest.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
