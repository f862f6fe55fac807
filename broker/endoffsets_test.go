package broker_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
)

// TestOffsetsAndPartitionCountsAskedOftenLeaveNoConnectionsBehind: the sink's
// lag is read every 2 s; each read must close what it opened, or a
// process that runs for days piles up connections and their buffers.
func TestOffsetsAndPartitionCountsAskedOftenLeaveNoConnectionsBehind(t *testing.T) {
	b := kafkatest.Start(t)
	c := broker.Plain(b.Brokers())
	ctx := context.Background()
	if err := c.EnsureTopics(ctx, 3, "lagged"); err != nil {
		t.Fatal(err)
	}
	parts := []broker.TopicPartition{{Topic: "lagged", Partition: 0}, {Topic: "lagged", Partition: 1}, {Topic: "lagged", Partition: 2}}
	if _, err := c.EndOffsets(ctx, parts); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	before := runtime.NumGoroutine()
	for range 50 {
		ends, err := c.EndOffsets(ctx, parts)
		if err != nil || len(ends) != 3 {
			t.Fatalf("ends %v, %v", ends, err)
		}
		if _, err := c.EndOffset(ctx, "lagged", 1); err != nil {
			t.Fatal(err)
		}
		if n, err := c.PartitionCount(ctx, "lagged"); err != nil || n != 3 {
			t.Fatalf("%d partitions, %v", n, err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+5 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+5 {
		t.Errorf("%d goroutines after 50 reads of each kind, %d before", n, before)
	}
}
