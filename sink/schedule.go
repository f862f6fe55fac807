package sink

import (
	"container/heap"
	"context"
	"crypto/sha256"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/sink/desired"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// targetInterval is the least time between two requests to one target:
// OneSignal allows one write per second per user and per device.
const targetInterval = time.Second

// target is a user or device with messages not yet done. Its fields are
// guarded by the scheduler's mutex.
type target struct {
	key       transform.Target
	partition int        // of the targets topic, where its state is kept
	pending   []*fetched // messages folded into its state, not yet done
	created   bool       // a pending message is a contribution of an insert or a snapshot row
	force     uint64     // links that asked for the user's tags to be sent again
	forced    uint64     // how many of them a send accepted since covered
	busy      bool       // a worker holds the target
	queued    bool       // in the due queue, or being handed to a worker
	waiting   bool       // a device waiting for its owner's tags (player model)
	attempts  int        // failed attempts in a row, for the backoff
	backoff   bool       // queued to wait out a backoff after a failed attempt
	window    time.Time  // when its one-second window opens, backoff aside
	due       time.Time  // when the queue hands it out
	seq       uint64     // queue order among targets due at once
	repair    bool       // the next plan forgets what the memory says was applied (repair.go)
	memo
}

// memo is what the scheduler remembers of a target, also while it is
// idle (in a bounded LRU): enough to skip a request that would change
// nothing, and to keep the target's one-second window.
type memo struct {
	partition int       // of the targets topic: the memory is good while this member holds it
	next      time.Time // the earliest the next attempt may start
	// applied holds, per part of a target's desired state (a chunk of a
	// user's tags, a device's owner), the digest of the value last
	// accepted by OneSignal.
	applied map[string][sha256.Size]byte
	records map[transform.Record]bool // a user's records accepted
	// again are a user's records whose write in flight, if one is, is not
	// to count as the user's last: another user wrote the record after
	// this one did. Cleared when a worker next takes the target.
	again map[transform.Record]bool
	// Player model, a user: answered holds the devices whose membership
	// it answered while no older write of its tags was in flight; sending
	// is the version of the tags in the write in flight.
	answered map[string]bool
	sending  desired.Position
	// Player model, a device: memberFor and memberOf are the owner
	// version and owner whose membership it wrote; carried the tags its
	// last link carried.
	memberFor desired.Position
	memberOf  string
	carried   []string
}

// scheduler hands out targets whose window is open, one worker per target
// at a time. Memory is bounded by the messages in flight: a target is
// active only while it has messages not done; idle ones are remembered in
// the sink's bounded LRU. Safe for concurrent use.
type scheduler struct {
	s     *Sink
	clock Clock
	wake  chan struct{} // the head of the queue changed

	mu     sync.Mutex
	active map[transform.Target]*target
	queue  dueQueue
	seq    uint64
	// lastSuccess and failedSince are when OneSignal last accepted a
	// request and whether one failed since: an outage ends with the first
	// success after a failure and outageAfter without a success.
	lastSuccess time.Time
	failedSince bool
	// written notes the targets OneSignal accepted a request for while a
	// drift sweep runs (drift.go); nil when none does.
	written map[uint64]struct{}
}

// outageAfter is how long requests must have failed, with no success,
// for the next success to end an outage: the targets waiting out their
// backoffs are then due at once (resume).
const outageAfter = 2 * time.Second

func newScheduler(s *Sink) *scheduler {
	return &scheduler{s: s, clock: s.cfg.Clock, wake: make(chan struct{}, 1), active: make(map[transform.Target]*target),
		lastSuccess: s.cfg.Clock.Now()}
}

// activate returns t's active entry, making one from its memory. The
// caller holds mu.
func (s *scheduler) activate(key transform.Target, partition int) *target {
	t := s.active[key]
	if t == nil {
		t = &target{key: key, partition: partition}
		s.s.idleMu.Lock()
		t.memo, _ = s.s.idle.lend(key) // while active, its memo is the one that knows
		s.s.idleMu.Unlock()
		t.memo.partition = partition
		s.active[key] = t
	}
	return t
}

// submit adds m, folded into key's state, to the target's messages, and
// queues the target unless a worker holds it (which plans again when it
// is done). created says m is a contribution of an insert or a snapshot
// row: until m is done, the user is probably new, even once a later
// update replaced m's contribution in the state. force asks for the user's
// tags to be sent again.
func (s *scheduler) submit(key transform.Target, partition int, m *fetched, created, force bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.activate(key, partition)
	t.pending = append(t.pending, m)
	t.created = t.created || created
	if force {
		t.force++
	}
	t.waiting = false
	if !t.busy && !t.queued {
		s.enqueue(t)
	}
}

// again makes user write record once more: its memory of having written
// it goes, also from an attempt in flight.
func (s *scheduler) again(user transform.Target, partition int, r transform.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.activate(user, partition)
	delete(t.records, r)
	if t.busy {
		if t.again == nil {
			t.again = make(map[transform.Record]bool)
		}
		t.again[r] = true
	}
}

// answered records that user answered device's membership with its tags
// of version: safely when no write of older tags is in flight, which
// could land after the device's link.
func (s *scheduler) answered(user transform.Target, device string, version desired.Position) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.active[user]
	var m *memo
	if t != nil {
		m = &t.memo
	} else {
		s.s.idleMu.Lock()
		defer s.s.idleMu.Unlock()
		mm, _ := s.s.idle.get(user)
		m = &mm
		defer func() { s.s.idle.put(user, mm) }()
	}
	if m.answered == nil {
		m.answered = make(map[string]bool)
	}
	m.answered[device] = t == nil || !t.busy || !version.After(m.sending)
}

// linkedSafely reports whether device's link, which carried user's tags
// of version linked, needs no further write of the user's tags: it was
// answered safely and the user's tags are still of that version.
func (s *scheduler) linkedSafely(user transform.Target, device string, linked, current desired.Position) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	var m memo
	if t := s.active[user]; t != nil {
		m = t.memo
		defer delete(t.answered, device)
	} else {
		s.s.idleMu.Lock()
		m, _ = s.s.idle.get(user)
		s.s.idleMu.Unlock()
	}
	return m.answered[device] && linked == current
}

// enqueue queues t to be handed out once its window opens. The caller
// holds mu.
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

// dispatch hands each target to ready when it is due, until ctx ends.
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
		var fired <-chan time.Time
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

// taken is what a worker takes with a target: a copy of its memory, how
// many forced sends of the user's tags were asked for (see accepted), and
// whether a pending message is a new row's.
type taken struct {
	memo
	force   uint64
	created bool
}

// take gives the worker handed t what it needs to plan, and marks t held.
func (s *scheduler) take(t *target) taken {
	s.mu.Lock()
	defer s.mu.Unlock()
	t.queued, t.busy, t.backoff = false, true, false
	t.again = nil // it spoke of the attempt before
	if t.repair {
		t.repair = false
		t.forgetApplied()
	}
	tk := taken{memo: t.memo.clone(), created: t.created}
	if t.force != t.forced {
		tk.force = t.force
	}
	return tk
}

// sendingTags notes the version of the user's tags a worker is about to
// send. A worker holds t.
func (s *scheduler) sendingTags(t *target, v desired.Position) {
	s.mu.Lock()
	t.sending = v
	s.mu.Unlock()
}

// window waits until t may be sent to again. A worker holds t.
func (s *scheduler) window(ctx context.Context, t *target) error {
	s.mu.Lock()
	next := t.next
	s.mu.Unlock()
	return sleep(ctx, s.clock, next.Sub(s.clock.Now()))
}

// attempted records that an attempt at t ended now: the next may start
// targetInterval later, counted from the answer so that two requests
// also arrive a second apart. A worker holds t.
func (s *scheduler) attempted(t *target) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t.next = s.clock.Now().Add(targetInterval)
	t.window = t.next
	t.sending = desired.Position{}
}

// accepted records what OneSignal accepted of r. A worker holds t.
func (s *scheduler) accepted(t *target, r *request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.succeeded()
	s.noteWritten(t.key)
	t.attempts = 0
	if r.part != "" {
		if t.applied == nil {
			t.applied = make(map[string][sha256.Size]byte)
		}
		t.applied[r.part] = r.digest
	}
	switch r.kind {
	case callDeleteUser:
		// Nothing of the user is in OneSignal now: what is sent next is
		// sent whole.
		t.applied = map[string][sha256.Size]byte{partUser: r.digest}
		t.records, t.created = nil, false
	case callSetUser, callAddRecord:
		delete(t.applied, partUser)
	}
	switch r.kind {
	case callAddRecord:
		if len(r.tags) > 0 {
			forgetTags(t.applied, r.tags)
		}
		if t.again[r.record] {
			delete(t.again, r.record) // asked for again while on its way
			break
		}
		if t.records == nil {
			t.records = make(map[transform.Record]bool)
		}
		t.records[r.record] = true
	case callLink:
		t.carried = r.carried
	case callUnlink:
		t.carried = nil
	case callSetUser:
		t.forced = max(t.forced, r.force)
		if r.create {
			t.created = false // it exists now
		}
	}
}

// forget drops what t's memory says was applied, after OneSignal refused
// part of it: its state there is unknown. A worker holds t.
func (s *scheduler) forget(t *target, part string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(t.applied, part)
}

// forgetTagsOf is forgetTags for t, under mu.
func (s *scheduler) forgetTagsOf(t *target) {
	s.mu.Lock()
	defer s.mu.Unlock()
	forgetTags(t.applied, nil)
}

// forgetTags drops what the memory says of t's tags parts unless they
// are tags, the tags a record was written with (player model: a device of
// the user's, which then carries them). A record written with other tags
// than the parts last sent (a rewrite after a stale write, its user's
// tags gone meanwhile) set that device's tags to them, so the parts are
// sent again even if the desired tags go back to what they say. A nil
// tags forgets them all. A worker holds t, or mu is held.
func forgetTags(applied map[string][sha256.Size]byte, tags map[string]string) {
	same := tags != nil
	chunks := chunkTags(tags)
	for i, c := range chunks {
		if applied[fmt.Sprintf("tags/%d", i)] != digestOf("tags", c, nil, nil) {
			same = false
		}
	}
	for part := range applied {
		if n, ok := strings.CutPrefix(part, "tags/"); ok {
			if i, err := strconv.Atoi(n); !same || err != nil || i >= len(chunks) {
				delete(applied, part)
			}
		}
	}
}

// pendingNow is how many messages t has; a plan made after it covers
// them. A worker holds t.
func (s *scheduler) pendingNow(t *target) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(t.pending)
}

// await notes that device t wrote its membership of owner at version v and
// waits for the owner's tags; the worker lets go of it, its messages
// staying not done. covered is how many of its messages the plan saw: if
// more came since, it is queued to plan again instead. A worker holds t.
func (s *scheduler) await(t *target, owner string, v desired.Position, covered int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t.memberFor, t.memberOf = v, owner
	t.busy = false
	if len(t.pending) > covered {
		s.enqueue(t)
		return
	}
	t.waiting = true
	// Its messages let go of their in-flight slots while it waits: the
	// owner's answer comes through the same partitions, and must not wait
	// for a slot that waiting devices hold.
	for _, m := range t.pending {
		m.unslot()
	}
}

// retry lets go of t, which failed for now, to be taken again no sooner
// than wait from now; its messages stay not done. A worker holds t.
func (s *scheduler) retry(t *target, wait time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failedSince = true
	if at := s.clock.Now().Add(wait); at.After(t.next) {
		t.next = at
	}
	t.busy = false
	t.backoff = true
	s.enqueue(t)
}

// succeeded notes that OneSignal accepted a request. The first success
// after an outage makes every target waiting out a backoff due at once,
// its one-second window kept: OneSignal is back, and the rate limiter,
// not the backoffs grown during the outage, paces the queued retries.
// The caller holds mu.
func (s *scheduler) succeeded() {
	now := s.clock.Now()
	outage := s.failedSince && now.Sub(s.lastSuccess) >= outageAfter
	s.lastSuccess, s.failedSince = now, false
	if !outage {
		return
	}
	resumed := 0
	for _, t := range s.queue {
		if !t.backoff {
			continue
		}
		t.backoff = false
		t.next = t.window
		t.due = now
		if t.window.After(now) {
			t.due = t.window
		}
		resumed++
	}
	if resumed == 0 {
		return
	}
	heap.Init(&s.queue)
	s.s.stats.resumed.Add(int64(resumed))
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// failures counts a failed attempt at t and returns how many failed in a
// row. A worker holds t.
func (s *scheduler) failures(t *target) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	t.attempts++
	return t.attempts
}

// release lets go of t. Its first covered messages, which a plan that
// found nothing more to send saw, are done and returned. With more to
// send, or messages or a forced send that came since, it is queued for
// its next window; otherwise it goes idle. A worker holds t.
func (s *scheduler) release(t *target, covered int, more bool) (done []*fetched) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t.busy = false
	if !more {
		done = t.pending[:covered:covered]
		t.pending = t.pending[covered:]
		if len(t.pending) == 0 {
			t.created = false
		}
	}
	if more || len(t.pending) > 0 || t.force != t.forced {
		s.enqueue(t)
		return done
	}
	t.pending = nil
	s.s.idleMu.Lock()
	if t.memo.worthKeeping(s.clock.Now()) {
		s.s.idle.put(t.key, t.memo)
	} else {
		s.s.idle.remove(t.key)
	}
	s.s.idleMu.Unlock()
	delete(s.active, t.key)
	return done
}

// worthKeeping reports whether m says more than a target never seen: a
// window still closed, something applied, a membership answered or
// written. The LRU keeps only such memos, so targets the sink never wrote
// (a user with no device, in the player model) cost it nothing.
func (m *memo) worthKeeping(now time.Time) bool {
	return m.next.After(now) || len(m.applied) > 0 || len(m.records) > 0 || len(m.answered) > 0 ||
		!m.memberFor.IsZero() || len(m.carried) > 0
}

// takePending removes and returns t's messages, to dead-letter them. A
// worker holds t.
func (s *scheduler) takePending(t *target) []*fetched {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := t.pending
	t.pending = nil
	return p
}

// forgetEffects drops what the memory says was applied to the targets of
// the partitions given, keeping their windows: another member may have
// written them meanwhile.
func (s *Sink) forgetEffects(partitions map[int]bool) {
	if len(partitions) == 0 {
		return
	}
	s.idleMu.Lock()
	defer s.idleMu.Unlock()
	s.idle.forgetEffects(partitions)
}

// clone returns a copy of m's maps, so a worker's copy of a memo never
// shares them.
func (m memo) clone() memo {
	m.applied = maps.Clone(m.applied)
	m.records = maps.Clone(m.records)
	m.again = maps.Clone(m.again)
	m.answered = maps.Clone(m.answered)
	return m
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

// peek returns t's first message not done, nil when none. A worker holds t.
func (s *scheduler) peek(t *target) *fetched {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(t.pending) == 0 {
		return nil
	}
	return t.pending[0]
}
