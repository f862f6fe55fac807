// Package checkpoint holds the two trackers of the acknowledgement chain.
//
// LSNs: the connector tells Postgres that WAL is flushed only up to the
// commit of the newest transaction whose events, and those of every earlier
// transaction, Kafka has acknowledged. Offsets: the sink commits, per
// partition, only the highest offset below which every message was applied
// to OneSignal (or dead-lettered). Both hand out a position only when
// everything before it is done, whatever order the acknowledgements arrive in.
package checkpoint

import (
	"sync"

	"github.com/jackc/pglogrepl"
)

// LSNTracker turns per-event Kafka acknowledgements into the LSN the
// connector may confirm to Postgres. Transactions are begun and committed by
// one goroutine (the replication reader), in commit order; events may be
// acknowledged from any goroutine, in any order.
type LSNTracker struct {
	mu        sync.Mutex
	open      []*Txn // begun and not yet fully acknowledged, in commit order
	confirmed pglogrepl.LSN
}

// Txn is one source transaction in flight.
type Txn struct {
	t         *LSNTracker
	pending   int           // events handed out and not yet acknowledged
	committed bool          // Commit was seen: no more events will come
	end       pglogrepl.LSN // the commit record's end LSN
}

// NewLSNTracker starts with confirmed as the already-confirmed position
// (the slot's confirmed_flush_lsn when streaming resumes).
func NewLSNTracker(confirmed pglogrepl.LSN) *LSNTracker {
	return &LSNTracker{confirmed: confirmed}
}

// Begin opens a transaction. Its events are counted with Add.
func (t *LSNTracker) Begin() *Txn {
	x := &Txn{t: t}
	t.mu.Lock()
	t.open = append(t.open, x)
	t.mu.Unlock()
	return x
}

// Add counts one more event of x that Kafka must acknowledge with Ack.
func (x *Txn) Add() {
	x.t.mu.Lock()
	x.pending++
	x.t.mu.Unlock()
}

// Ack records that Kafka acknowledged one event of x.
func (x *Txn) Ack() {
	t := x.t
	t.mu.Lock()
	x.pending--
	if x.pending < 0 {
		t.mu.Unlock()
		panic("checkpoint: more acknowledgements than events in a transaction")
	}
	t.advanceLocked()
	t.mu.Unlock()
}

// Commit closes x at the end LSN of its commit record. From then on, x is
// confirmable once all its events are acknowledged and every earlier
// transaction is.
func (t *LSNTracker) Commit(x *Txn, end pglogrepl.LSN) {
	t.mu.Lock()
	x.committed = true
	x.end = end
	t.advanceLocked()
	t.mu.Unlock()
}

func (t *LSNTracker) advanceLocked() {
	n := 0
	for _, x := range t.open {
		if !x.committed || x.pending > 0 {
			break
		}
		if x.end > t.confirmed {
			t.confirmed = x.end
		}
		n++
	}
	if n > 0 {
		clear(t.open[:n])
		t.open = t.open[n:]
	}
}

// Confirmed returns the highest LSN whose transactions are all in Kafka.
func (t *LSNTracker) Confirmed() pglogrepl.LSN {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.confirmed
}

// AdvanceIdle moves the confirmed LSN to lsn when no transaction is in
// flight, and reports whether it did. The reader calls it with the server's
// WAL end from a keepalive: every transaction committed before that point
// has already been received, and with none in flight all of them are in
// Kafka, so Postgres may forget the WAL in between (written by tables we
// do not publish, or by other databases). Transactions still running there
// are resent after a restart, since Postgres resends every transaction
// committing after the confirmed point.
func (t *LSNTracker) AdvanceIdle(lsn pglogrepl.LSN) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.open) > 0 || lsn <= t.confirmed {
		return false
	}
	t.confirmed = lsn
	return true
}

// InFlight returns how many transactions are begun and not yet confirmable.
func (t *LSNTracker) InFlight() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.open)
}
