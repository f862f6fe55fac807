package sink

import (
	"strconv"
	"sync"

	"github.com/segmentio/kafka-go"
)

// fetched is a message between fetch and done.
type fetched struct {
	msg kafka.Message
	*progress
}

func (m *fetched) where() string {
	return m.msg.Topic + "/" + strconv.Itoa(m.msg.Partition) + "@" + strconv.FormatInt(m.msg.Offset, 10)
}

// progress is a message on its way to done. Safe for concurrent use.
type progress struct {
	mu       sync.Mutex
	claimed  bool // a dead letter is being written, and its writer finishes
	finished bool
	done     func() // marks the offset done and frees the in-flight slot
	// unslot frees the in-flight slot early, without the offset being
	// done; later calls, and done's, do nothing.
	unslot func()
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

// finish marks the message done. Later calls do nothing.
func (p *progress) finish() {
	p.mu.Lock()
	if p.finished {
		p.mu.Unlock()
		return
	}
	p.finished = true
	done := p.done
	p.done = nil
	p.mu.Unlock()
	done()
}
