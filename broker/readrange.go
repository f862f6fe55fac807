package broker

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// ReadRange calls fn with the messages of topic/partition from offset
// first up to last (exclusive), outside any consumer group: the readers
// of dead letters (`dlq replay`) and of a target's records (`explain`).
// A compacted topic may lack offsets in the range; a message at or past
// last ends the read.
func (c Cluster) ReadRange(ctx context.Context, topic string, partition int, first, last int64, fn func(kafka.Message)) error {
	if first >= last {
		return nil
	}
	r := c.NewReader(kafka.ReaderConfig{Topic: topic, Partition: partition, MaxBytes: 4 << 20, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	if err := r.SetOffset(first); err != nil {
		return fmt.Errorf("read %s/%d: %w", topic, partition, err)
	}
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return fmt.Errorf("read %s/%d from offset %d: %w", topic, partition, first, err)
		}
		if m.Offset >= last {
			return nil
		}
		fn(m)
		if m.Offset >= last-1 {
			return nil
		}
	}
}
