package sink

import (
	"errors"
	"io"
	"net"
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

// retriableFetch reports whether a fetch error is one a broker answers
// during a disk or leadership hiccup, or a network fault: kafka-go hands
// the Kafka errors it has no case for (KAFKA_STORAGE_ERROR,
// UNKNOWN_SERVER_ERROR, …) to FetchMessage's caller, and the reader
// carries on after them.
func retriableFetch(err error) bool {
	var ke kafka.Error
	if errors.As(err, &ke) {
		return ke.Temporary() || ke == kafka.Unknown
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) // not io.EOF: a closed reader
}
