// Package kafkatest gives tests a real Kafka wire protocol: the embedded
// kfake broker the daemon also uses, a reader that collects what a topic
// holds through franz-go's client, and the ends of a topic's partitions.
package kafkatest

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
)

// Start runs an embedded broker for the test, closed at cleanup.
func Start(t testing.TB) *broker.Embedded {
	t.Helper()
	b, err := broker.StartEmbedded("127.0.0.1:0")
	if err != nil {
		t.Fatalf("kafkatest: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

// Record is a consumed message.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []kgo.RecordHeader
}

// ReadUntil reads topics from the start until done reports true for what
// was read so far, or timeout passes (a test failure).
func ReadUntil(t testing.TB, brokers []string, topics []string, timeout time.Duration, done func([]Record) bool) []Record {
	t.Helper()
	out, ok := Read(t, brokers, topics, timeout, done)
	if !ok {
		t.Fatalf("kafkatest: read %d records from %v in %s and the condition still does not hold", len(out), topics, timeout)
	}
	return out
}

// Read is ReadUntil that reports a timeout as ok == false instead of
// failing, for callers that explain the failure themselves.
func Read(t testing.TB, brokers []string, topics []string, timeout time.Duration, done func([]Record) bool) (out []Record, ok bool) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatalf("kafkatest: client: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for !done(out) {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return out, false
		}
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value, Headers: r.Headers})
		})
	}
	return out, true
}

// EndOffsets returns each partition's high watermark, waiting up to 10 s
// for the topic to exist.
func EndOffsets(t testing.TB, brokers []string, topic string) map[int]int64 {
	t.Helper()
	c, done := broker.Plain(brokers).Client(10 * time.Second)
	defer done()
	var reqs []kafka.OffsetRequest
	for deadline := time.Now().Add(10 * time.Second); len(reqs) == 0; time.Sleep(100 * time.Millisecond) {
		md, err := c.Metadata(context.Background(), &kafka.MetadataRequest{Topics: []string{topic}})
		if err != nil {
			t.Fatalf("kafkatest: metadata of %s: %v", topic, err)
		}
		for _, tp := range md.Topics {
			if tp.Error != nil && time.Now().After(deadline) {
				t.Fatalf("kafkatest: metadata of %s: %v", topic, tp.Error)
			}
			for _, p := range tp.Partitions {
				reqs = append(reqs, kafka.LastOffsetOf(p.ID))
			}
		}
	}
	resp, err := c.ListOffsets(context.Background(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		t.Fatalf("kafkatest: list offsets of %s: %v", topic, err)
	}
	out := map[int]int64{}
	for _, po := range resp.Topics[topic] {
		if po.Error != nil {
			t.Fatalf("kafkatest: list offsets of %s/%d: %v", topic, po.Partition, po.Error)
		}
		out[po.Partition] = po.LastOffset
	}
	return out
}

// MessagesIn returns how many messages topic has ever held: the sum of
// its partitions' high watermarks.
func MessagesIn(t testing.TB, brokers []string, topic string) int64 {
	t.Helper()
	var n int64
	for _, end := range EndOffsets(t, brokers, topic) {
		n += end
	}
	return n
}
