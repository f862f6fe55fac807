package checkpoint

import (
	"sort"
	"sync"
)

// Position is a Kafka partition and the offset of the last message that may
// be committed in it (kafka-go commits Offset+1, the next to read).
type Position struct {
	Topic     string
	Partition int
	Offset    int64
}

// Offsets tracks the messages a consumer has fetched and finished, per
// partition, and reports for each the highest offset below which every
// fetched message is finished. Track is called by the fetching goroutine in
// fetch order; the returned done functions may be called from any goroutine.
type Offsets struct {
	mu    sync.Mutex
	parts map[partitionKey]*partition
}

type partitionKey struct {
	topic     string
	partition int
}

type partition struct {
	epoch     uint64  // bumped when the consumer rewinds; stale done calls are ignored
	queue     []entry // fetched and not yet committable, in offset order
	last      int64   // offset of the last Track call
	committed int64   // last offset handed out by Committable (-1: none)
	ready     int64   // highest offset that may be committed (-1: none)
}

type entry struct {
	offset int64
	done   bool
}

// NewOffsets returns an empty tracker.
func NewOffsets() *Offsets {
	return &Offsets{parts: make(map[partitionKey]*partition)}
}

// Track records a fetched message and returns the function that marks it
// finished. Fetching an offset at or below one already tracked means the
// consumer rewound (a rebalance handed the partition back, or a restart):
// everything tracked for the partition is forgotten, since those messages
// will be fetched and finished again.
func (o *Offsets) Track(topic string, part int, offset int64) (done func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	k := partitionKey{topic, part}
	p := o.parts[k]
	if p == nil {
		p = &partition{last: -1, committed: -1, ready: -1}
		o.parts[k] = p
	}
	if offset <= p.last {
		p.epoch++
		clear(p.queue)
		p.queue = p.queue[:0]
		p.ready, p.committed = -1, -1
	}
	p.last = offset
	p.queue = append(p.queue, entry{offset: offset})
	epoch := p.epoch
	return func() { o.done(k, epoch, offset) }
}

func (o *Offsets) done(k partitionKey, epoch uint64, offset int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.parts[k]
	if p == nil || p.epoch != epoch {
		return
	}
	i := sort.Search(len(p.queue), func(i int) bool { return p.queue[i].offset >= offset })
	if i == len(p.queue) || p.queue[i].offset != offset {
		return
	}
	p.queue[i].done = true
	n := 0
	for n < len(p.queue) && p.queue[n].done {
		p.ready = p.queue[n].offset
		n++
	}
	if n > 0 {
		p.queue = append(p.queue[:0], p.queue[n:]...)
	}
}

// Continues reports whether offset directly follows the last offset
// tracked in its partition. It does not when the partition is new to this
// consumer, or was away (a rebalance gave it to another member meanwhile),
// or rewound.
func (o *Offsets) Continues(topic string, part int, offset int64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.parts[partitionKey{topic, part}]
	return p != nil && p.last >= 0 && offset == p.last+1
}

// Committable returns, for every partition whose committable offset moved
// past the last one marked with Committed, the new position.
func (o *Offsets) Committable() []Position {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []Position
	for k, p := range o.parts {
		if p.ready > p.committed {
			out = append(out, Position{Topic: k.topic, Partition: k.partition, Offset: p.ready})
		}
	}
	return out
}

// Committed records that Kafka accepted the commit of ps, so Committable
// stops returning them. Positions of a partition that rewound since are
// ignored.
func (o *Offsets) Committed(ps []Position) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, pos := range ps {
		if p := o.parts[partitionKey{pos.Topic, pos.Partition}]; p != nil && pos.Offset <= p.ready && pos.Offset > p.committed {
			p.committed = pos.Offset
		}
	}
}

// Pending returns how many tracked messages are not yet committable.
func (o *Offsets) Pending() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, p := range o.parts {
		n += len(p.queue)
	}
	return n
}

// Partition names a Kafka partition.
type Partition struct {
	Topic     string
	Partition int
}
