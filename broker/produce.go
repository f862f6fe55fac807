package broker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	metadataAPI "github.com/segmentio/kafka-go/protocol/metadata"
	produceAPI "github.com/segmentio/kafka-go/protocol/produce"
)

// ProduceWriter is the connector's writer. A write's messages go to Kafka
// in one produce request per partition leader, carrying every partition of
// the write that broker leads, as Kafka's own producer sends them; each
// message's partition is what NewWriter's balancer gives it (murmur2 of the
// key, as the Java client computes it; keyless messages all to one
// partition), every request is acknowledged by all in-sync replicas, and
// nothing is retried here: WriteMessages returns nil only once Kafka has
// acknowledged every message, and a kafka.WriteErrors naming each message's
// error otherwise, as kafka-go's Writer does, so that the caller retries
// the write whole.
//
// kafka-go's Writer sends one request per partition, each from a batch of
// its own (a goroutine, a timer, room set aside for BatchSize messages),
// and asks for the topic's metadata once per message: a fifth of the
// connector's CPU in its snapshot benchmark (`go run ./bench -phases
// snapshot`), and six requests per write for the broker to answer where
// one does.
//
// A partition's messages in one write are sent in order; past maxRecordSet
// bytes they go in later requests, each sent once the one before it was
// acknowledged.
type ProduceWriter struct {
	addr      net.Addr
	transport *kafka.Transport
	meta      *partitionCounts // the transport, its metadata answers kept for a second
	timeout   time.Duration

	requests, batches, messages atomic.Int64
}

// maxRecordSet is the most bytes of keys and values one request carries
// for one partition: under Kafka's default message.max.bytes (1 MiB) for
// the record batch they make. A single message over it is refused.
const maxRecordSet = 1000 << 10

// NewConnectorWriter is the connector's writer on c.
func (c Cluster) NewConnectorWriter() *ProduceWriter {
	t := c.Transport()
	return &ProduceWriter{
		addr:      kafka.TCP(c.Brokers...),
		transport: t,
		meta:      &partitionCounts{RoundTripper: t, ttl: time.Second},
		timeout:   10 * time.Second,
	}
}

// NewConnectorWriter is Cluster.NewConnectorWriter on a plaintext cluster.
func NewConnectorWriter(brokers []string) *ProduceWriter {
	return Plain(brokers).NewConnectorWriter()
}

// ProduceStats counts what a ProduceWriter sent.
type ProduceStats struct {
	Requests int64 // produce requests acknowledged or failed
	Batches  int64 // partitions' record batches in them
	Messages int64 // acknowledged
}

// Stats returns the counts so far.
func (w *ProduceWriter) Stats() ProduceStats {
	return ProduceStats{Requests: w.requests.Load(), Batches: w.batches.Load(), Messages: w.messages.Load()}
}

// Close closes the writer's connections. A write in flight fails.
func (w *ProduceWriter) Close() error {
	w.transport.CloseIdleConnections()
	return nil
}

// WriteMessages writes msgs, each to its Topic, and returns once Kafka
// holds them all, or with the error of each message that it may not hold.
func (w *ProduceWriter) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	wr := write{msgs: msgs}
	// A message no record batch holds fails the write before anything is
	// sent, as with kafka-go's Writer: the caller cannot mend it by trying
	// again.
	for i := range msgs {
		if size(&msgs[i]) > maxRecordSet {
			wr.fail(i, kafka.MessageSizeTooLarge)
		}
	}
	if wr.errs != nil {
		return wr.errs
	}
	for i := range msgs {
		m := &msgs[i]
		t := wr.topic(ctx, w, m.Topic)
		if t.err != nil {
			wr.fail(i, t.err)
			continue
		}
		p := balancer.Balance(*m, t.ids...)
		if t.errs[p] != nil {
			wr.fail(i, t.errs[p])
			continue
		}
		t.pending[p] = append(t.pending[p], int32(i))
	}
	for wr.more() {
		wr.send(ctx, w)
	}
	if wr.errs != nil {
		w.meta.forget() // ask again: a leader may have moved
		return wr.errs
	}
	return nil
}

// balancer is NewWriter's.
var balancer = kafka.Murmur2Balancer{Consistent: true}

func size(m *kafka.Message) int {
	n := len(m.Key) + len(m.Value)
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// write is one WriteMessages call.
type write struct {
	msgs   []kafka.Message
	topics []*topicWrite
	errs   kafka.WriteErrors // made at the first failure
}

// topicWrite is a write's messages of one topic, by partition.
type topicWrite struct {
	name    string
	err     error   // the topic takes no messages now
	ids     []int   // 0 … partitions-1, for the balancer
	leaders []int32 // by partition
	errs    []error // by partition: why it takes no messages now
	pending [][]int32
}

func (wr *write) fail(i int, err error) {
	if wr.errs == nil {
		wr.errs = make(kafka.WriteErrors, len(wr.msgs))
	}
	wr.errs[i] = err
}

// topic returns the write's part for a topic, laid out from its metadata
// (asked once per write and topic, a failure too).
func (wr *write) topic(ctx context.Context, w *ProduceWriter, name string) *topicWrite {
	for _, t := range wr.topics {
		if t.name == name {
			return t
		}
	}
	t, err := layoutOf(ctx, w, name)
	if err != nil {
		t = &topicWrite{name: name, err: err}
	}
	wr.topics = append(wr.topics, t)
	return t
}

// layoutOf is a topic's part of a write, empty, laid out from the topic's
// metadata.
func layoutOf(ctx context.Context, w *ProduceWriter, name string) (*topicWrite, error) {
	resp, err := w.meta.RoundTrip(ctx, w.addr, &metadataAPI.Request{TopicNames: []string{name}})
	if err != nil {
		return nil, err
	}
	meta, ok := resp.(*metadataAPI.Response)
	if !ok {
		return nil, fmt.Errorf("kafka answered a metadata request with %T", resp)
	}
	var layout *metadataAPI.ResponseTopic
	for i, t := range meta.Topics {
		if t.Name == name {
			layout = &meta.Topics[i]
		}
	}
	switch {
	case layout == nil:
		return nil, kafka.UnknownTopicOrPartition
	case layout.ErrorCode != 0:
		return nil, kafka.Error(layout.ErrorCode)
	case len(layout.Partitions) == 0:
		return nil, kafka.UnknownTopicOrPartition
	}
	n := len(layout.Partitions)
	t := &topicWrite{name: name, ids: make([]int, n), leaders: make([]int32, n), errs: make([]error, n), pending: make([][]int32, n)}
	for i := range t.ids {
		t.ids[i] = i
		t.errs[i] = kafka.UnknownTopicOrPartition
	}
	for _, p := range layout.Partitions {
		if p.PartitionIndex < 0 || int(p.PartitionIndex) >= n {
			continue
		}
		switch {
		case p.ErrorCode != 0:
			t.errs[p.PartitionIndex] = kafka.Error(p.ErrorCode)
		case p.LeaderID < 0:
			t.errs[p.PartitionIndex] = kafka.LeaderNotAvailable
		default:
			t.errs[p.PartitionIndex] = nil
			t.leaders[p.PartitionIndex] = p.LeaderID
		}
	}
	return t, nil
}

func (wr *write) more() bool {
	for _, t := range wr.topics {
		for _, p := range t.pending {
			if len(p) > 0 {
				return true
			}
		}
	}
	return false
}

// request is one produce request of a round, to one leader, and the
// messages of each of its record batches. Once sent, req belongs to the
// transport: a request abandoned on cancellation may still be prepared and
// sent after RoundTrip returned, so its answer is read from parts and sent.
type request struct {
	leader int32
	req    produceAPI.Request
	parts  []topicPartition // the request's partitions, in order
	sent   [][]int32        // their messages
}

type topicPartition struct {
	topic     string
	partition int32
}

// send sends one round: to each leader, one request with up to
// maxRecordSet bytes of each of its pending partitions. A partition that
// fails keeps no messages pending: its later messages fail with it.
func (wr *write) send(ctx context.Context, w *ProduceWriter) {
	var reqs []*request
	for _, t := range wr.topics {
		for p, idx := range t.pending {
			if len(idx) == 0 {
				continue
			}
			n, held := 0, 0
			for n < len(idx) && (n == 0 || held+size(&wr.msgs[idx[n]]) <= maxRecordSet) {
				held += size(&wr.msgs[idx[n]])
				n++
			}
			batch := idx[:n:n]
			t.pending[p] = idx[n:]
			var r *request
			for _, q := range reqs {
				if q.leader == t.leaders[p] {
					r = q
				}
			}
			if r == nil {
				r = &request{leader: t.leaders[p], req: produceAPI.Request{Acks: int16(kafka.RequireAll), Timeout: int32(w.timeout.Milliseconds())}}
				reqs = append(reqs, r)
			}
			if k := len(r.req.Topics); k == 0 || r.req.Topics[k-1].Topic != t.name {
				r.req.Topics = append(r.req.Topics, produceAPI.RequestTopic{Topic: t.name})
			}
			rt := &r.req.Topics[len(r.req.Topics)-1]
			rt.Partitions = append(rt.Partitions, produceAPI.RequestPartition{Partition: int32(p)})
			rt.Partitions[len(rt.Partitions)-1].RecordSet.Records = &records{msgs: wr.msgs, idx: batch}
			r.parts = append(r.parts, topicPartition{t.name, int32(p)})
			r.sent = append(r.sent, batch)
		}
	}
	if len(reqs) == 0 {
		return
	}
	resps, errs := make([]kafka.Response, len(reqs)), make([]error, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs[1:] {
		wg.Go(func() { resps[i+1], errs[i+1] = w.transport.RoundTrip(ctx, w.addr, &r.req) })
	}
	resps[0], errs[0] = w.transport.RoundTrip(ctx, w.addr, &reqs[0].req)
	wg.Wait()
	for i, r := range reqs {
		w.requests.Add(1)
		w.batches.Add(int64(len(r.sent)))
		wr.answer(r, resps[i], errs[i], &w.messages)
	}
}

// answer fails the messages of each of r's batches that Kafka did not
// acknowledge, and what is still pending of their partitions.
func (wr *write) answer(r *request, resp kafka.Response, err error, acknowledged *atomic.Int64) {
	res, _ := resp.(*produceAPI.Response)
	if err == nil && res == nil {
		err = fmt.Errorf("kafka answered a produce request with %T", resp)
	}
	for k, tp := range r.parts {
		batch := r.sent[k]
		perr := err
		if perr == nil {
			perr = partitionError(res, tp.topic, tp.partition)
		}
		if perr == nil {
			acknowledged.Add(int64(len(batch)))
			continue
		}
		for _, i := range batch {
			wr.fail(int(i), perr)
		}
		t := wr.topicOf(tp.topic)
		for _, i := range t.pending[tp.partition] {
			wr.fail(int(i), perr)
		}
		t.pending[tp.partition] = nil
	}
}

func (wr *write) topicOf(name string) *topicWrite {
	for _, t := range wr.topics {
		if t.name == name {
			return t
		}
	}
	return nil
}

// partitionError is Kafka's answer for one partition of a request.
func partitionError(res *produceAPI.Response, topic string, partition int32) error {
	for _, t := range res.Topics {
		if t.Topic != topic {
			continue
		}
		for _, p := range t.Partitions {
			if p.Partition == partition {
				if p.ErrorCode != 0 {
					return kafka.Error(p.ErrorCode)
				}
				return nil
			}
		}
	}
	return fmt.Errorf("kafka's produce answer left out %s partition %d", topic, partition)
}

// records reads a batch's messages as records, in order.
type records struct {
	msgs       []kafka.Message
	idx        []int32
	rec        kafka.Record
	key, value bytesReader
}

func (r *records) ReadRecord() (*kafka.Record, error) {
	if len(r.idx) == 0 {
		return nil, io.EOF
	}
	m := &r.msgs[r.idx[0]]
	r.idx = r.idx[1:]
	r.rec = kafka.Record{Time: m.Time, Headers: m.Headers}
	if m.Key != nil {
		r.key.Reset(m.Key)
		r.rec.Key = &r.key
	}
	if m.Value != nil {
		r.value.Reset(m.Value)
		r.rec.Value = &r.value
	}
	return &r.rec, nil
}

type bytesReader struct{ bytes.Reader }

func (*bytesReader) Close() error { return nil }
