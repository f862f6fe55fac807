package broker

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// StateStore keeps small records by key in a compacted, one-partition
// topic, the way Kafka Connect keeps connector offsets: what the connector
// must remember across restarts lives beside its events, not in the source
// database and not on a local disk.
type StateStore struct {
	cluster Cluster
	topic   string
	w       *Writer
}

// OpenStateStore creates the topic when missing and returns the store.
func OpenStateStore(ctx context.Context, brokers []string, topic string) (*StateStore, error) {
	return Plain(brokers).OpenStateStore(ctx, topic)
}

// OpenStateStore is the package's OpenStateStore on c.
func (c Cluster) OpenStateStore(ctx context.Context, topic string) (*StateStore, error) {
	if err := c.EnsureCompactedTopic(ctx, topic, 1); err != nil {
		return nil, c.Explain(ctx, err)
	}
	w := c.NewWriter(1)
	w.BatchTimeout = time.Millisecond
	return &StateStore{cluster: c, topic: topic, w: w}, nil
}

// Load returns the newest value stored under key, or nil when there is none.
func (s *StateStore) Load(ctx context.Context, key string) ([]byte, error) {
	conn, err := s.cluster.Dialer().DialLeader(ctx, "tcp", s.cluster.Brokers[0], s.topic, 0)
	if err != nil {
		return nil, fmt.Errorf("read state topic %q: %w", s.topic, s.cluster.Explain(ctx, err))
	}
	first, last, err := conn.ReadOffsets()
	conn.Close()
	if err != nil {
		return nil, fmt.Errorf("read state topic %q offsets: %w", s.topic, err)
	}
	if last <= first {
		return nil, nil
	}
	r := s.cluster.NewReader(kafka.ReaderConfig{Topic: s.topic, Partition: 0, MaxBytes: 1 << 20, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	if err := r.SetOffset(first); err != nil {
		return nil, err
	}
	var value []byte
	for {
		msg, err := r.ReadMessage(ctx)
		if err != nil {
			return nil, fmt.Errorf("read state topic %q: %w", s.topic, s.cluster.Explain(ctx, err))
		}
		if string(msg.Key) == key {
			value = msg.Value // newer records win; an empty value deletes
		}
		if msg.Offset >= last-1 {
			break
		}
	}
	if len(value) == 0 {
		return nil, nil
	}
	return value, nil
}

// Save stores value under key, returning once every in-sync replica has it.
func (s *StateStore) Save(ctx context.Context, key string, value []byte) error {
	if err := s.w.WriteMessages(ctx, kafka.Message{Topic: s.topic, Key: []byte(key), Value: value}); err != nil {
		return fmt.Errorf("save state to %q: %w", s.topic, s.cluster.Explain(ctx, err))
	}
	return nil
}

// Close releases the writer.
func (s *StateStore) Close() error { return s.w.Close() }
