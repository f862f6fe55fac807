package sink

import (
	"strconv"
	"sync"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// fetched is a message between fetch and done.
type fetched struct {
	msg kafka.Message
	*progress
}

func (m *fetched) where() string {
	return m.msg.Topic + "/" + strconv.Itoa(m.msg.Partition) + "@" + strconv.FormatInt(m.msg.Offset, 10)
}

// progress counts a message's operations until the message is done. It is
// kept apart from the message so that remembering it (see replays) does
// not keep the message's bytes alive. Safe for concurrent use.
type progress struct {
	mu        sync.Mutex
	open      int  // operations not yet applied; set before the first is scheduled
	claimed   bool // a dead letter is being written, and its writer finishes
	finished  bool
	followers []*progress // replays of this message, done when it is
	done      func()      // marks the offset done and frees the in-flight slot
}

// applied records that one operation was applied; the last one finishes
// the message, unless it is on its way to the dead-letter topic.
func (p *progress) applied() {
	p.mu.Lock()
	p.open--
	ready := p.open <= 0 && !p.claimed
	p.mu.Unlock()
	if ready {
		p.finish()
	}
}

// claim reports whether the caller is the one to dead-letter the message:
// the first to ask, while it is not finished.
func (p *progress) claim() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.claimed || p.finished {
		return false
	}
	p.claimed = true
	return true
}

// finish marks the message done, then its followers. Later calls do
// nothing.
func (p *progress) finish() {
	p.mu.Lock()
	if p.finished {
		p.mu.Unlock()
		return
	}
	p.finished = true
	done, followers := p.done, p.followers
	p.done, p.followers = nil, nil
	p.mu.Unlock()
	done()
	for _, f := range followers {
		f.finish()
	}
}

// follow finishes f when p finishes, or at once if p has.
func (p *progress) follow(f *progress) {
	p.mu.Lock()
	if !p.finished {
		p.followers = append(p.followers, f)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	f.finish()
}

// position orders the events of one row: by commit, then by WAL record.
type position struct{ commit, lsn int64 }

// positionOf returns the event's position; ok is false for an event
// without an LSN, which cannot be ordered. A snapshot row has no commit
// LSN and counts as committed at its LSN.
func positionOf(src event.Source) (p position, ok bool) {
	if src.LSN == 0 {
		return position{}, false
	}
	if src.CommitLSN == 0 && src.Sequence != "" {
		// Written by Debezium, whose lsn is where a change was written (for
		// a snapshot row, where the snapshot read), not where its
		// transaction committed: it cannot tell a replay from a change
		// committed later, so none is skipped. Every operation sets a
		// state, and Debezium keeps a key's messages in order.
		return position{}, false
	}
	p = position{commit: src.CommitLSN, lsn: src.LSN}
	if p.commit == 0 {
		p.commit = src.LSN
	}
	return p, true
}

func (p position) after(q position) bool {
	return p.commit > q.commit || (p.commit == q.commit && p.lsn > q.lsn)
}

// seen is the newest event of a key that was fetched.
type seen struct {
	pos position
	by  *progress
}

// replays remembers, per Kafka key, the newest event fetched. An event at
// or before it is a replay (the connector repeats a transaction after a
// crash) or stale: applying it would at best repeat a request and at worst
// put an older state over a newer one. The replay is done when the newer
// event is, so a commit never passes the replay while the event that
// covers it is still being applied (the consumer may also have rewound to
// fetch the very same message again). Used by the fetching goroutine only.
type replays struct{ keys *lru[string, seen] }

// HeaderRedelivery marks a message that `onesignal-cdc dlq replay` wrote
// back to its topic from the dead-letter topic; its value is where the
// dead letter was ("topic/partition@offset"). Such a message repeats an
// event the sink has seen, and must be applied all the same, unless a
// newer event of its key came since.
const HeaderRedelivery = "onesignal_cdc.redelivery.of"

func redelivered(m kafka.Message) bool {
	for _, h := range m.Headers {
		if h.Key == HeaderRedelivery {
			return true
		}
	}
	return false
}

// skip reports whether m, holding ev, is a replay; if so it is finished
// when the event that covers it is.
func (r replays) skip(m *fetched, ev *event.Envelope) bool {
	pos, ok := positionOf(ev.Source)
	if !ok || len(m.msg.Key) == 0 {
		// Unordered, or keyless (a table without a primary key): keyless
		// events of different rows spread over partitions, so their
		// positions say nothing about one another.
		return false
	}
	key := m.msg.Topic + "\x00" + string(m.msg.Key)
	if last, ok := r.keys.get(key); ok && !pos.after(last.pos) && !(pos == last.pos && redelivered(m.msg)) {
		last.by.follow(m.progress)
		return true
	}
	r.keys.put(key, seen{pos: pos, by: m.progress})
	return false
}
