package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// arrivalsByPartition notes when each request for a user reached the
// emulator, by the user's partition of the targets topic.
type arrivalsByPartition struct {
	partitions int
	mu         sync.Mutex
	at         map[int][]time.Time
}

func (a *arrivalsByPartition) note(ar emulator.Arrival) {
	i := strings.LastIndex(ar.Path, "/external_id/")
	if i < 0 {
		return
	}
	ext := ar.Path[i+len("/external_id/"):]
	parts := make([]int, a.partitions)
	for p := range parts {
		parts[p] = p
	}
	p := broker.KeyPrefixBalancer{}.Balance(kafka.Message{Key: []byte("user:" + ext)}, parts...)
	a.mu.Lock()
	a.at[p] = append(a.at[p], ar.At)
	a.mu.Unlock()
}

// stall is the longest time, from `from` to `to`, that a partition of the
// targets topic went without a request to OneSignal, and that partition.
func (a *arrivalsByPartition) stall(from, to time.Time) (time.Duration, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var longest time.Duration
	which := -1
	for p := range a.partitions {
		last := from
		for _, at := range append(slices.Clone(a.at[p]), to) {
			if at.Before(from) {
				continue
			}
			if at.After(to) {
				at = to
			}
			if gap := at.Sub(last); gap > longest {
				longest, which = gap, p
			}
			last = at
		}
	}
	return longest, which
}

// TestASinkGroupTakesOverThePartitionsOfAKilledOrStoppedMember runs two
// sink processes in one group, with the configuration's defaults, under a
// steady stream of updates (every user about once a second, so every
// partition of the targets topic has requests to make all the time), and
// checks that after a SIGKILL of one sink, and after a SIGTERM of one,
// every partition of the targets topic has requests again: the other
// member took them over. It logs the failover, the longest time a
// partition went without a request (the surviving sink's own stall in the
// rebalance included); the figures are docs/operations.md's (7.0 s and
// 1.8 s measured on 2 shared cores with the defaults, session 6 s and
// heartbeat 500 ms), not asserted here: a test does not time a loaded
// machine.
func TestASinkGroupTakesOverThePartitionsOfAKilledOrStoppedMember(t *testing.T) {
	t.Parallel()
	st := daemontest.NewStack(t, daemontest.StackOptions{Emulator: emulator.Config{AppID: "3c1e8f9a-0000-4000-8000-0000000fa11e", APIKey: "e2e-failover-key"}})
	db, kb := st.DB, st.Kafka
	db.Exec(t, schema)
	const partitions = 4
	arrivals := &arrivalsByPartition{partitions: partitions, at: map[int][]time.Time{}}
	st.Emulator.OnArrival(arrivals.note)
	c := st.Config()
	c.Postgres.Publication = "cdc"
	c.Kafka.TopicPrefix, c.Kafka.Partitions, c.Kafka.ConsumerGroup = "cdc", partitions, "e2e"
	c.Mapping.Users = &transform.UsersMapping{Table: "public.users", ExternalID: "external_id", Tags: map[string]string{"plan": "", "score": "level"}}
	c.Ops.Listen = ""
	cfg := daemontest.WriteConfig(t, c)
	daemontest.Start(t, daemontest.Connector, cfg)
	sinks := []*daemontest.Process{daemontest.Start(t, daemontest.Sink, cfg), daemontest.Start(t, daemontest.Sink, cfg)}
	daemontest.WaitForSlot(t, db, db.Name)

	const users = 200
	ctx, stopWriting := context.WithCancel(context.Background())
	var writer sync.WaitGroup
	writer.Go(func() {
		conn := db.Conn(t)
		for i := 0; ctx.Err() == nil; i++ {
			_, err := conn.Exec(context.Background(), `INSERT INTO users VALUES ($1, 'free', $2, 'FR')
				ON CONFLICT (external_id) DO UPDATE SET score = excluded.score`, fmt.Sprintf("user-%d", i%users), i)
			if err != nil {
				t.Error(err)
				return
			}
			time.Sleep(5 * time.Millisecond) // about 200 updates/s: each user once a second
		}
	})
	defer func() { stopWriting(); writer.Wait() }()

	measure := func(what string, hit func() time.Time, window time.Duration) time.Duration {
		t.Helper()
		waitForGroupStable(t, kb.Brokers(), "e2e", 2)
		time.Sleep(3 * time.Second) // every partition busy again
		at := hit()
		time.Sleep(window)
		stall, p := arrivals.stall(at, time.Now())
		t.Logf("%s: the longest time a partition of the targets topic went without a request: %s (partition %d)", what, stall.Round(10*time.Millisecond), p)
		return stall
	}
	kill := measure("SIGKILL of one sink", func() time.Time {
		at := time.Now()
		sinks[0].Kill(t)
		return at
	}, killWindow)
	sinks[0] = daemontest.Start(t, daemontest.Sink, cfg)
	term := measure("SIGTERM of one sink", func() time.Time {
		at := time.Now()
		took := sinks[1].Stop(t)
		t.Logf("the sink stopped %s after SIGTERM", took.Round(10*time.Millisecond))
		return at
	}, termWindow)
	// A partition no member took over goes without requests to the end
	// of its window.
	if kill >= killWindow-time.Second {
		t.Errorf("after a SIGKILL a partition went %s without a request: the dead sink's partitions were not taken over", kill.Round(10*time.Millisecond))
	}
	if term >= termWindow-time.Second {
		t.Errorf("after a SIGTERM a partition went %s without a request: the stopped sink's partitions were not taken over", term.Round(10*time.Millisecond))
	}
}

// The windows a failover is watched for: long enough for a loaded CI
// machine, where the member taking over once needed 8.6 s to restore a
// partition's 1,063 target states after a SIGTERM, and a 10 s window
// failed the test though every partition was taken over.
const (
	killWindow = 25 * time.Second
	termWindow = 20 * time.Second
)
