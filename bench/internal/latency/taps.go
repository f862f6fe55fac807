package latency

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/sink/desired"
)

// tap reads a topic of the daemon's as any consumer would, outside its
// consumer group, and notes when each seq first became readable there:
// the change topic shows when the connector's write was acknowledged and
// fetchable, the sink's targets topic when its row stage had turned the
// change into the user's contribution. The two split the pipeline's delay
// into its hops.
type tap struct {
	seq func(key, value []byte) (int64, bool) // the seq a message carries

	mu   sync.Mutex
	seen map[int64]time.Time
	err  error
}

// startTap reads every partition of topic from its start until ctx ends.
func startTap(ctx context.Context, wg *sync.WaitGroup, broker, topic string, seq func(key, value []byte) (int64, bool)) (*tap, error) {
	conn, err := kafka.DialContext(ctx, "tcp", broker)
	if err != nil {
		return nil, fmt.Errorf("tap %s: %w", topic, err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		return nil, fmt.Errorf("tap %s: %w", topic, err)
	}
	t := &tap{seq: seq, seen: map[int64]time.Time{}}
	for _, p := range parts {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{broker}, Topic: topic, Partition: p.ID,
			MinBytes: 1, MaxBytes: 4 << 20, MaxWait: 100 * time.Millisecond})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.Close()
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					if ctx.Err() == nil && !errors.Is(err, context.Canceled) {
						t.fail(fmt.Errorf("tap %s partition %d: %w", topic, p.ID, err))
					}
					return
				}
				now := time.Now()
				if s, ok := t.seq(m.Key, m.Value); ok {
					t.mu.Lock()
					if _, dup := t.seen[s]; !dup {
						t.seen[s] = now
					}
					t.mu.Unlock()
				}
			}
		}()
	}
	return t, nil
}

func (t *tap) fail(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err == nil {
		t.err = err
	}
}

// times returns when each seq was first seen, and the tap's error.
func (t *tap) times() (map[int64]time.Time, error) {
	if t == nil {
		return nil, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[int64]time.Time, len(t.seen))
	for k, v := range t.seen {
		out[k] = v
	}
	return out, t.err
}

// eventSeq reads the seq of a change event's new row.
func eventSeq(_, value []byte) (int64, bool) {
	var e struct {
		After struct {
			Seq json.Number `json:"seq"`
		} `json:"after"`
	}
	if json.Unmarshal(value, &e) != nil || e.After.Seq == "" {
		return 0, false
	}
	n, err := e.After.Seq.Int64()
	return n, err == nil
}

// contributionSeq reads the seq tag of a user's contribution in the sink's
// targets topic.
func contributionSeq(key, value []byte) (int64, bool) {
	r, err := desired.Decode(key, value)
	if err != nil || r.Kind != desired.KindContribution {
		return 0, false
	}
	s, ok := r.Tags["seq"]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}
