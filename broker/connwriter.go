package broker

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	metadataAPI "github.com/segmentio/kafka-go/protocol/metadata"
)

// eagerBatchTimeout is how long NewEagerWriter lets a partition's batch
// wait for more messages. The connector batches itself
// (up to Config.BatchSize events per write, per lane), so kafka-go's own
// wait only delays each write: with the default 2 ms, every write waited
// out the timer (its share of a partition is below WriterBatchSize), which
// capped four lanes of 50-event writes at about 55,000 events/s in the
// connector's streaming benchmark (`go run ./bench -phases stream`). A
// microsecond is long enough for the call that started the batch to put
// all its messages of the partition in it: kafka-go holds the partition's
// lock while it does, and the timer needs that lock to send the batch.
const eagerBatchTimeout = time.Microsecond

// NewEagerWriter is kafka-go's Writer as the connector wrote through it
// before ProduceWriter, kept as the snapshot benchmark's baseline (the
// issue's minimal kafka-go producer): NewWriter with WriterBatchSize,
// batches sent as soon as the write that made them is in them, and the
// topic's partition count looked up once a second rather than once per
// message.
func (c Cluster) NewEagerWriter() *Writer {
	w := c.NewWriter(WriterBatchSize)
	w.BatchTimeout = eagerBatchTimeout
	w.Transport = &partitionCounts{RoundTripper: w.Transport, ttl: time.Second}
	return w
}

// NewEagerWriter is Cluster.NewEagerWriter on a plaintext cluster.
func NewEagerWriter(brokers []string) *Writer {
	return Plain(brokers).NewEagerWriter()
}

// partitionCounts answers kafka-go's writer, which asks the transport for
// the topic's metadata once for every message it writes (to count the
// topic's partitions), and ProduceWriter, which asks once per topic of a
// write, from a copy about ttl old at most. The transport
// caches metadata too, but builds a filtered copy of it for every question:
// a tenth of the connector's CPU in kafka-go under the streaming benchmark
// (`go run ./bench -phases stream`). Every other request goes through.
//
// The last topic asked about is answered without a lock, and the copy's
// age is read from the clock on every checkEvery-th answer only: a mutex,
// a map look-up and a clock read per message were 4 % of the connector's
// CPU in its snapshot benchmark. A copy is so at most checkEvery answers
// older than ttl.
type partitionCounts struct {
	kafka.RoundTripper
	ttl time.Duration

	last   atomic.Pointer[cachedMetadata]
	mu     sync.Mutex
	topics map[string]*cachedMetadata
}

// checkEvery is how many answers from a copy go between readings of its age.
const checkEvery = 64

type cachedMetadata struct {
	topic string
	resp  *metadataAPI.Response
	at    time.Time
	uses  atomic.Uint32
}

// fresh reports whether c may answer: young enough, as of the last reading.
func (c *cachedMetadata) fresh(ttl time.Duration) bool {
	return c.uses.Add(1)%checkEvery != 0 || time.Since(c.at) < ttl
}

func (p *partitionCounts) RoundTrip(ctx context.Context, addr net.Addr, req kafka.Request) (kafka.Response, error) {
	m, ok := req.(*metadataAPI.Request)
	if !ok || len(m.TopicNames) != 1 {
		return p.RoundTripper.RoundTrip(ctx, addr, req)
	}
	topic := m.TopicNames[0]
	if c := p.last.Load(); c != nil && c.topic == topic && c.fresh(p.ttl) {
		return c.resp, nil
	}
	p.mu.Lock()
	c := p.topics[topic]
	p.mu.Unlock()
	if c != nil && time.Since(c.at) < p.ttl {
		p.last.Store(c)
		return c.resp, nil
	}
	resp, err := p.RoundTripper.RoundTrip(ctx, addr, req)
	if err != nil {
		return nil, err
	}
	if r, ok := resp.(*metadataAPI.Response); ok && complete(r, topic) {
		c := &cachedMetadata{topic: topic, resp: r, at: time.Now()}
		p.mu.Lock()
		if p.topics == nil {
			p.topics = make(map[string]*cachedMetadata)
		}
		p.topics[topic] = c
		p.mu.Unlock()
		p.last.Store(c)
	}
	return resp, nil
}

// complete reports whether r describes topic without an error, which is
// all that may be kept: an error is asked again.
func complete(r *metadataAPI.Response, topic string) bool {
	for _, t := range r.Topics {
		if t.Name == topic {
			return t.ErrorCode == 0 && len(t.Partitions) > 0
		}
	}
	return false
}

// forget drops every copy: the next question of each topic goes through.
func (p *partitionCounts) forget() {
	p.last.Store(nil)
	p.mu.Lock()
	clear(p.topics)
	p.mu.Unlock()
}
