package broker_test

import (
	"context"
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
	for name, newWriter := range map[string]func([]string) writer{
		"NewWriter":          func(b []string) writer { return broker.NewWriter(b, broker.WriterBatchSize) },
		"NewEagerWriter":     func(b []string) writer { return broker.NewEagerWriter(b) },
		"NewConnectorWriter": func(b []string) writer { return broker.NewConnectorWriter(b) },
	} {
		t.Run(name, func(t *testing.T) { testKeylessInOrder(t, newWriter) })
	}
}

// writer is what the package's writers have in common.
type writer interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
	Close() error
}

func testKeylessInOrder(t *testing.T, newWriter func([]string) writer) {
	b := kafkatest.Start(t)
	if err := broker.EnsureTopics(t.Context(), b.Brokers(), 6, "keyless"); err != nil {
		t.Fatal(err)
	}
	w := newWriter(b.Brokers())
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

// The connector's writer sends each write's batches at once and counts a
// topic's partitions from a cached answer, and still puts a key's messages
// in the partition murmur2 gives it, as the plain writer does.
func TestTheConnectorWriterPartitionsKeysAsThePlainWriterDoes(t *testing.T) {
	b := kafkatest.Start(t)
	if err := broker.EnsureTopics(t.Context(), b.Brokers(), 6, "plain", "connector"); err != nil {
		t.Fatal(err)
	}
	plain, conn := broker.NewWriter(b.Brokers(), broker.WriterBatchSize), broker.NewConnectorWriter(b.Brokers())
	defer plain.Close()
	defer conn.Close()
	var msgs [2][]kafka.Message
	for i := range 200 {
		for j, topic := range []string{"plain", "connector"} {
			msgs[j] = append(msgs[j], kafka.Message{Topic: topic, Key: fmt.Appendf(nil, `{"id":%d}`, i), Value: fmt.Appendf(nil, "%d", i)})
		}
	}
	started := time.Now()
	for i := 0; i < 200; i += 50 {
		if err := conn.WriteMessages(t.Context(), msgs[1][i:i+50]...); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(started); took > 2*time.Second {
		t.Errorf("four writes took %s", took)
	}
	if err := plain.WriteMessages(t.Context(), msgs[0]...); err != nil {
		t.Fatal(err)
	}
	recs := kafkatest.ReadUntil(t, b.Brokers(), []string{"plain", "connector"}, 20*time.Second, func(rs []kafkatest.Record) bool { return len(rs) == 400 })
	partition := map[string]map[string]int32{}
	for _, r := range recs {
		if partition[r.Topic] == nil {
			partition[r.Topic] = map[string]int32{}
		}
		partition[r.Topic][string(r.Key)] = r.Partition
	}
	for key, p := range partition["plain"] {
		if got := partition["connector"][key]; got != p {
			t.Errorf("key %s: partition %d from the connector's writer, %d from the plain one", key, got, p)
		}
	}
}
