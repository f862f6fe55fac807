package sink

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
)

// ParkedStore is the player model's ParkedTags, kept in a compacted,
// one-partition Kafka topic keyed by external ID: a record holds a user's
// parked tags as JSON ({"tags": {…}}), an empty value forgets them. Like
// the connector's state, it lives beside the events, so a restart, or
// another machine, finds it.
//
// Every sink instance holds the whole topic in memory: one entry per user
// whose tags reached no device yet, removed when a link or record of the
// user takes them (see docs/architecture.md for the bound). Open loads it;
// Run follows what other instances of the consumer group write. Safe for
// concurrent use.
type ParkedStore struct {
	cluster broker.Cluster
	topic   string
	id      string // this instance's, in a header of what it writes
	w       *kafka.Writer
	log     *zap.Logger

	mu   sync.Mutex
	tags map[string]map[string]string
	next int64 // the offset Run follows from
}

// parkedHeader names the instance that wrote a record: Run skips its own
// records, which Put has applied already, in order.
const parkedHeader = "onesignal_cdc.writer"

type parkedValue struct {
	Tags map[string]string `json:"tags"`
}

// OpenParkedStore creates the topic when missing and loads what it holds.
func OpenParkedStore(ctx context.Context, cluster broker.Cluster, topic string, log *zap.Logger) (*ParkedStore, error) {
	if err := cluster.EnsureCompactedTopic(ctx, topic, 1); err != nil {
		return nil, err
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	w := cluster.NewWriter(100)
	w.BatchTimeout = time.Millisecond
	p := &ParkedStore{
		cluster: cluster, topic: topic, id: hex.EncodeToString(id[:]), log: log.Named("parked"),
		tags: make(map[string]map[string]string),
		w:    w,
	}
	if err := p.load(ctx); err != nil {
		p.w.Close()
		return nil, err
	}
	return p, nil
}

// load reads the topic from its first offset to its end.
func (p *ParkedStore) load(ctx context.Context) error {
	conn, err := p.cluster.Dialer().DialLeader(ctx, "tcp", p.cluster.Brokers[0], p.topic, 0)
	if err != nil {
		return fmt.Errorf("read parked-tags topic %q: %w", p.topic, err)
	}
	first, last, err := conn.ReadOffsets()
	conn.Close()
	if err != nil {
		return fmt.Errorf("read parked-tags topic %q offsets: %w", p.topic, err)
	}
	p.next = first
	if last <= first {
		p.next = last
		return nil
	}
	r := p.reader(first)
	defer r.Close()
	for p.next < last {
		msg, err := r.FetchMessage(ctx)
		if err != nil {
			return fmt.Errorf("read parked-tags topic %q: %w", p.topic, err)
		}
		p.apply(msg, true)
	}
	p.log.Info("parked tags loaded", zap.String("topic", p.topic), zap.Int("users", p.Len()))
	return nil
}

func (p *ParkedStore) reader(offset int64) *kafka.Reader {
	r := p.cluster.NewReader(kafka.ReaderConfig{Topic: p.topic, Partition: 0, MaxBytes: 1 << 20, MaxWait: 200 * time.Millisecond})
	_ = r.SetOffset(offset) // fails only on a reader already in use
	return r
}

// apply takes in a record read from the topic; own records count only
// when loading (Put applied them while running).
func (p *ParkedStore) apply(msg kafka.Message, loading bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next = msg.Offset + 1
	if !loading {
		for _, h := range msg.Headers {
			if h.Key == parkedHeader && string(h.Value) == p.id {
				return
			}
		}
	}
	var v parkedValue
	if len(msg.Value) == 0 || json.Unmarshal(msg.Value, &v) != nil || len(v.Tags) == 0 {
		delete(p.tags, string(msg.Key))
		return
	}
	p.tags[string(msg.Key)] = v.Tags
}

// Run follows the topic until ctx ends, taking in what other sink
// instances park and clear.
func (p *ParkedStore) Run(ctx context.Context) error {
	p.mu.Lock()
	next := p.next
	p.mu.Unlock()
	r := p.reader(next)
	defer r.Close()
	for {
		msg, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("follow parked-tags topic %q: %w", p.topic, err)
		}
		p.apply(msg, false)
	}
}

// Get returns the user's parked tags, nil when none.
func (p *ParkedStore) Get(externalID string) map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tags[externalID]
}

// Put stores the user's parked tags (empty: forgets them) and returns once
// Kafka acknowledged the record.
func (p *ParkedStore) Put(ctx context.Context, externalID string, tags map[string]string) error {
	msg := kafka.Message{Topic: p.topic, Key: []byte(externalID), Headers: []kafka.Header{{Key: parkedHeader, Value: []byte(p.id)}}}
	if len(tags) > 0 {
		b, err := json.Marshal(parkedValue{Tags: tags})
		if err != nil {
			return err
		}
		msg.Value = b
	}
	if err := p.w.WriteMessages(ctx, msg); err != nil {
		return fmt.Errorf("write parked tags to %q: %w", p.topic, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(tags) == 0 {
		delete(p.tags, externalID)
	} else {
		p.tags[externalID] = maps.Clone(tags)
	}
	return nil
}

// Len is how many users have parked tags.
func (p *ParkedStore) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.tags)
}

// Close releases the writer.
func (p *ParkedStore) Close() error { return p.w.Close() }
