package broker_test

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/internal/errclass"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
)

// produceRequests counts the produce requests c answers (kfake asks When
// more than once per request: once per topic and partition in it).
type produceRequests struct {
	mu       sync.Mutex
	last     kmsg.Request
	requests int
}

func observeProduce(c *kfake.Cluster) *produceRequests {
	p := &produceRequests{}
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Observe: true, Count: -1, When: func(req kmsg.Request) bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		if req != p.last {
			p.last = req
			p.requests++
		}
		return false
	}})
	return p
}

func (p *produceRequests) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests
}

// writerOn starts a broker with topic (6 partitions), and the connector's
// writer on it.
func writerOn(t *testing.T, topic string) (*broker.Embedded, *broker.ProduceWriter) {
	t.Helper()
	b := kafkatest.Start(t)
	if err := broker.EnsureTopics(t.Context(), b.Brokers(), 6, topic); err != nil {
		t.Fatal(err)
	}
	w := broker.NewConnectorWriter(b.Brokers())
	t.Cleanup(func() { w.Close() })
	return b, w
}

func keyed(topic string, n int) []kafka.Message {
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{Topic: topic, Key: fmt.Appendf(nil, `{"Contact ID":"c/%d ☃"}`, i), Value: fmt.Appendf(nil, "%d", i)}
	}
	return msgs
}

func TestTheConnectorWriterSendsAWriteInOneRequestPerLeader(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(6, "cdc.Sales.Contacts", "cdc.Sales.Devices"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seen := observeProduce(c)
	w := broker.NewConnectorWriter(c.ListenAddrs())
	defer w.Close()
	msgs := append(keyed("cdc.Sales.Contacts", 300), keyed("cdc.Sales.Devices", 300)...)
	if err := w.WriteMessages(t.Context(), msgs...); err != nil {
		t.Fatal(err)
	}
	// Three brokers lead the twelve partitions: three requests, one per
	// leader, each with its partitions of both topics.
	if requests := seen.count(); requests != 3 {
		t.Errorf("the broker answered %d produce requests, want 3", requests)
	}
	if st := w.Stats(); st.Requests != 3 || st.Batches != 12 || st.Messages != 600 {
		t.Errorf("stats %+v, want 3 requests, 12 batches, 600 messages", st)
	}
	recs := kafkatest.ReadUntil(t, c.ListenAddrs(), []string{"cdc.Sales.Contacts", "cdc.Sales.Devices"}, 20*time.Second, func(rs []kafkatest.Record) bool { return len(rs) >= 600 })
	if len(recs) != 600 {
		t.Fatalf("Kafka holds %d records, want 600", len(recs))
	}
}

func TestAPartitionsMessagesPastARecordBatchsWorthGoInLaterRequestsInOrder(t *testing.T) {
	b, w := writerOn(t, "big")
	seen := observeProduce(b.Cluster())
	// 3 MiB for one key: one partition, more than one record batch holds.
	var msgs []kafka.Message
	for i := range 30 {
		msgs = append(msgs, kafka.Message{Topic: "big", Key: []byte(`{"id":"one key"}`), Value: append(fmt.Appendf(nil, "%02d", i), bytes.Repeat([]byte("x"), 100<<10)...)})
	}
	if err := w.WriteMessages(t.Context(), msgs...); err != nil {
		t.Fatal(err)
	}
	if requests := seen.count(); requests < 3 {
		t.Errorf("3 MiB of one partition went in %d requests, want 3 or more", requests)
	}
	recs := kafkatest.ReadUntil(t, b.Brokers(), []string{"big"}, 20*time.Second, func(rs []kafkatest.Record) bool { return len(rs) >= 30 })
	for i, r := range recs {
		if got := string(r.Value[:2]); got != fmt.Sprintf("%02d", i) {
			t.Fatalf("record %d is message %s: out of order", i, got)
		}
	}
}

func TestAFailedPartitionFailsItsMessagesOnlyAndTheWriteIsRetryable(t *testing.T) {
	b, w := writerOn(t, "cdc.Sales.Contacts")
	msgs := keyed("cdc.Sales.Contacts", 200)
	h := b.Cluster().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Partitions: []int32{2}, Err: kerr.NotEnoughReplicas, Count: -1})
	err := w.WriteMessages(t.Context(), msgs...)
	h.Remove()
	var we kafka.WriteErrors
	if !errors.As(err, &we) || len(we) != len(msgs) {
		t.Fatalf("the write returned %v, want an error per message", err)
	}
	failed := 0
	for _, e := range we {
		if e != nil {
			failed++
			if !errors.Is(e, kafka.NotEnoughReplicas) {
				t.Errorf("a message failed with %v, want NOT_ENOUGH_REPLICAS", e)
			}
		}
	}
	if failed == 0 || failed == len(msgs) {
		t.Errorf("%d of %d messages failed, want those of partition 2 only", failed, len(msgs))
	}
	if c := broker.Classify(err); c != errclass.Retryable {
		t.Errorf("the write's error is %v, want retryable", c)
	}
	// The caller writes them all again, as the connector does.
	if err := w.WriteMessages(t.Context(), msgs...); err != nil {
		t.Fatal(err)
	}
	recs := kafkatest.ReadUntil(t, b.Brokers(), []string{"cdc.Sales.Contacts"}, 20*time.Second, func(rs []kafkatest.Record) bool { return len(rs) >= 2*len(msgs)-failed })
	if len(recs) != 2*len(msgs)-failed {
		t.Errorf("Kafka holds %d records, want %d", len(recs), 2*len(msgs)-failed)
	}
}

func TestTheConnectorWritersRefusalsAreClassifiedAsKafkaGosWriter(t *testing.T) {
	b, w := writerOn(t, "cdc.Sales.Contacts")
	t.Run("a user refused the topic stops the connector", func(t *testing.T) {
		h := b.Cluster().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.TopicAuthorizationFailed, Count: -1})
		defer h.Remove()
		err := w.WriteMessages(t.Context(), keyed("cdc.Sales.Contacts", 10)...)
		if c := broker.Classify(err); c != errclass.Fatal || broker.Fix(err) == "" {
			t.Errorf("%v: class %v, fix %q; want fatal, with its fix", err, c, broker.Fix(err))
		}
	})
	t.Run("a message over a record batch's limit is refused for good, nothing of its write sent", func(t *testing.T) {
		seen := observeProduce(b.Cluster())
		big := kafka.Message{Topic: "cdc.Sales.Contacts", Key: []byte("k"), Value: bytes.Repeat([]byte("x"), 1<<20)}
		err := w.WriteMessages(t.Context(), append(keyed("cdc.Sales.Contacts", 5), big)...)
		if c := broker.Classify(err); c != errclass.Permanent {
			t.Errorf("%v: class %v, want permanent", err, c)
		}
		if requests := seen.count(); requests != 0 {
			t.Errorf("%d produce requests sent", requests)
		}
	})
	t.Run("a topic that does not exist yet is waited for", func(t *testing.T) {
		err := w.WriteMessages(t.Context(), keyed("cdc.Sales.NotYet", 1)...)
		if c := broker.Classify(err); c != errclass.Retryable {
			t.Errorf("%v: class %v, want retryable", err, c)
		}
	})
}
