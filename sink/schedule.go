package sink

import (
	"container/heap"
	"context"
	"crypto/sha256"
	"slices"
	"sync"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// targetInterval is the least time between two requests to one target:
// OneSignal allows one write per second per user and per device.
const targetInterval = time.Second

// target is a user or device with operations pending or a request in
// flight. Its fields are guarded by the scheduler's mutex.
type target struct {
	key     targetKey
	pending *request  // merged operations not yet sent
	retry   *request  // a request that failed for now: sent again before pending
	busy    bool      // a worker holds the target: a request is in flight
	queued  bool      // in the due queue, or being handed to a worker
	due     time.Time // when the queue hands it out
	seq     uint64    // queue order among targets due at once
	next    time.Time // the earliest the next attempt may start
	last    memo      // the effect last applied
}

// memo is what the scheduler remembers of an idle target.
type memo struct {
	next   time.Time
	effect [sha256.Size]byte
	known  bool // effect holds the last applied request's effect
}

// outcome is how a request ended, for the target's memory.
type outcome int

const (
	applied   outcome = iota // OneSignal accepted it
	unchanged                // not sent: the last applied request had its effect
	refused                  // OneSignal refused it: the target's state is unknown
)

// scheduler merges operations per target and hands out targets whose
// window is open, one request per target at a time. Memory is bounded by
// the messages in flight: a target is active only while it has pending
// operations or a request in flight, each held by unfinished messages;
// idle targets are remembered in a bounded LRU. Safe for concurrent use.
type scheduler struct {
	clock Clock
	wake  chan struct{} // the head of the queue changed

	mu     sync.Mutex
	active map[targetKey]*target
	queue  dueQueue
	seq    uint64
	idle   *lru[targetKey, memo]
	// records are the email and SMS records applied lately, by user,
	// channel and identifier: adding one again changes nothing.
	records *lru[string, struct{}]
}

func newScheduler(c Clock, memory int) *scheduler {
	return &scheduler{
		clock: c, wake: make(chan struct{}, 1), active: make(map[targetKey]*target),
		idle: newLRU[targetKey, memo](memory), records: newLRU[string, struct{}](memory),
	}
}

func recordKey(user string, rec record) string {
	return user + "\x00" + rec.channel + "\x00" + rec.identifier
}

// submit merges op, produced by m, into its target's pending request.
func (s *scheduler) submit(op transform.Op, m *fetched) {
	key := targetOf(op)
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.active[key]
	if t == nil {
		t = &target{key: key}
		t.last, _ = s.idle.get(key)
		t.next = t.last.next
		s.active[key] = t
	}
	if t.pending == nil {
		t.pending = &request{}
	}
	t.pending.merge(op, m)
	if !t.busy && !t.queued {
		s.enqueue(t)
	}
}

// enqueue queues t to be handed out once its window opens, behind the
// targets that were due before. The caller holds mu.
func (s *scheduler) enqueue(t *target) {
	t.queued = true
	t.due = s.clock.Now()
	if t.next.After(t.due) {
		t.due = t.next
	}
	s.seq++
	t.seq = s.seq
	heap.Push(&s.queue, t)
	if s.queue[0] == t {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// dispatch hands each target to ready when it is due, until ctx ends. The
// channel is unbuffered, so a target waits in the queue, still merging
// operations, until a worker is free.
func (s *scheduler) dispatch(ctx context.Context, ready chan<- *target) {
	for {
		s.mu.Lock()
		var t *target
		var wait time.Duration
		if len(s.queue) > 0 {
			if wait = s.queue[0].due.Sub(s.clock.Now()); wait <= 0 {
				t = heap.Pop(&s.queue).(*target)
			}
		}
		s.mu.Unlock()
		if t != nil {
			select {
			case ready <- t:
				continue
			case <-ctx.Done():
				return
			}
		}
		var timer Timer
		var fired <-chan time.Time // nil, blocking, when nothing is queued
		if wait > 0 {
			timer = s.clock.NewTimer(wait)
			fired = timer.C()
		}
		select {
		case <-ctx.Done():
		case <-s.wake:
		case <-fired:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// take gives the worker handed t its request: the one to retry, else the
// pending one. unchanged is true when the request would set what the last
// applied one set, or adds only records applied before.
func (s *scheduler) take(t *target) (r *request, unchanged bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t.queued, t.busy = false, true
	if r = t.retry; r != nil {
		t.retry = nil
		return r, false
	}
	r, t.pending = t.pending, nil
	if len(r.records) > 0 {
		r.records = slices.DeleteFunc(r.records, func(rec record) bool {
			_, done := s.records.get(recordKey(t.key.id, rec))
			return done
		})
		if len(r.records) == 0 && len(r.tags) == 0 {
			return r, true
		}
	}
	r.tagCount = nonEmpty(r.tags)
	// More than one call's worth: the rest waits for the target's next
	// window, merging whatever arrives meanwhile.
	t.pending = r.split()
	r.digest = r.effect()
	return r, t.last.known && t.last.effect == r.digest
}

// retry puts r, which failed for now, back to be sent again no sooner
// than wait from now, ahead of what is pending for t. The worker lets go
// of t, so other targets use it meanwhile. A worker holds t.
func (s *scheduler) retry(t *target, r *request, wait time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if at := s.clock.Now().Add(wait); at.After(t.next) {
		t.next = at
	}
	t.retry, t.busy = r, false
	s.enqueue(t)
}

// window waits until t may be sent to again. A worker holds t.
func (s *scheduler) window(ctx context.Context, t *target) error {
	s.mu.Lock()
	next := t.next
	s.mu.Unlock()
	return sleep(ctx, s.clock, next.Sub(s.clock.Now()))
}

// attempted records that an attempt at t ended now: the next may start
// targetInterval later. Counting from the answer rather than from the
// send keeps two requests a second apart on arrival too, however long the
// first one travelled. A worker holds t.
func (s *scheduler) attempted(t *target) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t.next = s.clock.Now().Add(targetInterval)
}

// forgetEffects drops what the scheduler remembers of applied effects.
// After a partition changed hands, another consumer may have changed the
// targets meanwhile, and an equal effect no longer means nothing to do.
func (s *scheduler) forgetEffects() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.active {
		t.last.known = false
	}
	for _, e := range s.idle.items {
		e.Value.(*lruEntry[targetKey, memo]).val.known = false // keep when each may next be written
	}
	s.records = newLRU[string, struct{}](s.records.size)
}

// release ends the worker's hold on t after request r ended with o. The
// target is queued again when operations arrived meanwhile, else it goes
// idle.
func (s *scheduler) release(t *target, r *request, o outcome) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch o {
	case applied:
		t.last.effect, t.last.known = r.digest, true
		for _, rec := range r.records {
			s.records.put(recordKey(t.key.id, rec), struct{}{})
		}
	case refused:
		t.last.known = false
	}
	t.busy = false
	if t.pending != nil {
		s.enqueue(t)
		return
	}
	t.last.next = t.next
	s.idle.put(t.key, t.last)
	delete(s.active, t.key)
}

// dueQueue orders targets by when they are due, then by arrival.
type dueQueue []*target

func (q dueQueue) Len() int { return len(q) }
func (q dueQueue) Less(i, j int) bool {
	if !q[i].due.Equal(q[j].due) {
		return q[i].due.Before(q[j].due)
	}
	return q[i].seq < q[j].seq
}
func (q dueQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *dueQueue) Push(x any)   { *q = append(*q, x.(*target)) }
func (q *dueQueue) Pop() any {
	old := *q
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return t
}
