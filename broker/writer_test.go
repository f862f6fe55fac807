package broker_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
)

// Keyless events (a table without a key) keep their order: they all go to
// one partition instead of a random one each.
func TestTheWriterPutsKeylessMessagesInOnePartitionInOrder(t *testing.T) {
	b := kafkatest.Start(t)
	if err := broker.EnsureTopics(t.Context(), b.Brokers(), 6, "keyless"); err != nil {
		t.Fatal(err)
	}
	w := broker.NewWriter(b.Brokers(), broker.WriterBatchSize)
	defer w.Close()
	for i := range 20 {
		if err := w.WriteMessages(t.Context(), kafka.Message{Topic: "keyless", Value: fmt.Appendf(nil, "%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	recs := kafkatest.ReadUntil(t, b.Brokers(), []string{"keyless"}, 20*time.Second, func(rs []kafkatest.Record) bool { return len(rs) == 20 })
	for i, r := range recs {
		if r.Partition != recs[0].Partition {
			t.Fatalf("keyless messages in partitions %d and %d", recs[0].Partition, r.Partition)
		}
		if string(r.Value) != fmt.Sprint(i) {
			t.Fatalf("message %d is %s: out of order", i, r.Value)
		}
	}
}
