package sink

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// TargetView is what this member knows of one target right now, for
// `onesignal-cdc explain` (through the ops server's /debug/target): read
// under the scheduler's lock, it changes nothing. It holds no secret: ids,
// offsets, times, and the text of the last error, which the ops server
// redacts.
type TargetView struct {
	Target string `json:"target"` // the target's key: "user:<id>", "device:<id>"
	// Running says a generation is running; the fields below but Last
	// are about it.
	Running    bool   `json:"running"`
	Member     string `json:"member,omitempty"` // this member's name in the group
	Generation int32  `json:"generation,omitempty"`
	// Partition is the target's partition of the targets topic (-1 when
	// its partition count is not known), and Holds says this member holds
	// it in this generation.
	Partition int  `json:"partition"`
	Holds     bool `json:"holds"`
	// Active says the target has messages not done; Pending names them
	// (topic/partition@offset of the targets topic).
	Active  bool     `json:"active"`
	Pending []string `json:"pending,omitempty"`
	Busy    bool     `json:"busy,omitempty"`    // a worker holds it: a request may be in flight
	Queued  bool     `json:"queued,omitempty"`  // waiting for its window or a worker
	Waiting bool     `json:"waiting,omitempty"` // a device waiting for its owner's tags (player model)
	// Attempts is how many attempts failed in a row; Backoff says it
	// waits out a backoff after the last.
	Attempts int  `json:"attempts,omitempty"`
	Backoff  bool `json:"backoff,omitempty"`
	// Due is when the queue hands it out; Next the earliest its next
	// attempt may start (its one-second window, or its backoff).
	Due  *time.Time `json:"due,omitempty"`
	Next *time.Time `json:"next,omitempty"`
	// Remembered says the scheduler remembers the target while it is
	// idle (its window, what it applied); Applied names the parts of its
	// desired state it believes OneSignal holds ("user", "tags/0",
	// "owner", …) and Records the email and SMS records it wrote.
	Remembered bool     `json:"remembered,omitempty"`
	Applied    []string `json:"applied,omitempty"`
	Records    []string `json:"records,omitempty"`
	// Last is the target's last request and OneSignal's answer, when the
	// sink's client records them (RecordCalls) and still remembers it.
	Last *Call `json:"last,omitempty"`
}

// Inspect returns what the sink knows of target t now.
func (s *Sink) Inspect(t transform.Target) TargetView {
	v := TargetView{Target: t.Key(), Partition: -1}
	if r, ok := s.api.(*CallRecorder); ok {
		if c, ok := r.Last(t); ok {
			v.Last = &c
		}
	}
	s.gen.Lock()
	g := s.gen.generation
	s.gen.Unlock()
	if g == nil {
		s.idleMu.Lock()
		m, ok := s.idle.get(t)
		s.idleMu.Unlock()
		if ok {
			v.remembered(m)
		}
		return v
	}
	v.Running, v.Member, v.Generation = true, g.gen.MemberID, g.gen.ID
	if n := g.gen.Partitions[s.cfg.TargetsTopic]; n > 0 {
		v.Partition = TargetPartition(t, n)
		for _, a := range g.gen.Assigned {
			if a.Topic == s.cfg.TargetsTopic && a.Partition == v.Partition {
				v.Holds = true
			}
		}
	}
	g.sched.mu.Lock()
	defer g.sched.mu.Unlock()
	if at := g.sched.active[t]; at != nil {
		v.Active, v.Busy, v.Queued, v.Waiting = true, at.busy, at.queued, at.waiting
		v.Attempts, v.Backoff = at.attempts, at.backoff
		for _, m := range at.pending {
			v.Pending = append(v.Pending, m.where())
		}
		if at.queued {
			due := at.due
			v.Due = &due
		}
		v.remembered(at.memo)
		return v
	}
	s.idleMu.Lock()
	m, ok := s.idle.get(t)
	s.idleMu.Unlock()
	if ok {
		v.remembered(m)
	}
	return v
}

// remembered fills in what memo m says.
func (v *TargetView) remembered(m memo) {
	v.Remembered = true
	if !m.next.IsZero() {
		next := m.next
		v.Next = &next
	}
	v.Applied = slices.Sorted(maps.Keys(m.applied))
	for r := range m.records {
		v.Records = append(v.Records, r.Channel+" "+r.Identifier)
	}
	slices.Sort(v.Records)
}

// TargetPartition is the partition of the targets topic, of partitions,
// that holds target t's records: as the sink's writer partitions them
// (broker.KeyPrefixBalancer).
func TargetPartition(t transform.Target, partitions int) int {
	ps := make([]int, partitions)
	for i := range ps {
		ps[i] = i
	}
	return broker.KeyPrefixBalancer{}.Balance(kafka.Message{Key: []byte(t.Key())}, ps...)
}

// Call is one request the sink made to OneSignal for a target, and its
// outcome.
type Call struct {
	Time   time.Time `json:"time"`
	Method string    `json:"method"` // set_user, add_record, link_device, unlink, delete_user
	// Status is OneSignal's HTTP status, 0 when none came or the call
	// succeeded without one known; Error the failure, "" on success.
	Status int    `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`
	// Took is how long the call took.
	Took time.Duration `json:"took_ns"`
}

// CallRecorder is a OneSignal that remembers, per target, the last call
// made for it and its outcome, for Inspect: at most size targets, the
// least recently called forgotten first (about 200 bytes each). Safe for
// concurrent use; the cost per call is a map update under a mutex.
type CallRecorder struct {
	api   OneSignal
	clock func() time.Time

	mu   sync.Mutex
	last *lru[transform.Target, Call]
}

// RecordCalls returns api, recording each call's outcome for the last
// size targets called.
func RecordCalls(api OneSignal, size int) *CallRecorder {
	return &CallRecorder{api: api, clock: time.Now, last: newLRU[transform.Target, Call](size)}
}

// Last returns the last call made for t.
func (r *CallRecorder) Last(t transform.Target) (Call, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last.get(t)
}

func (r *CallRecorder) record(t transform.Target, method string, start time.Time, err error) {
	c := Call{Time: start, Method: method, Took: r.clock().Sub(start)}
	if err != nil {
		c.Error = err.Error()
		if h, ok := errors.AsType[statusError](err); ok {
			c.Status = h.HTTPStatus()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last.put(t, c)
}

// SetUser is OneSignal's.
func (r *CallRecorder) SetUser(ctx context.Context, externalID string, w onesignal.UserWrite) error {
	start := r.clock()
	err := r.api.SetUser(ctx, externalID, w)
	r.record(transform.User(externalID), "set_user", start, err)
	return err
}

// AddRecord is OneSignal's.
func (r *CallRecorder) AddRecord(ctx context.Context, externalID, channel, identifier string, tags map[string]string) error {
	start := r.clock()
	err := r.api.AddRecord(ctx, externalID, channel, identifier, tags)
	r.record(transform.User(externalID), "add_record", start, err)
	return err
}

// LinkDevice is OneSignal's.
func (r *CallRecorder) LinkDevice(ctx context.Context, deviceID, externalID string, w onesignal.DeviceWrite) error {
	start := r.clock()
	err := r.api.LinkDevice(ctx, deviceID, externalID, w)
	r.record(transform.Device(deviceID), "link_device", start, err)
	return err
}

// UnlinkSubscription is OneSignal's.
func (r *CallRecorder) UnlinkSubscription(ctx context.Context, deviceID, previousExternalID string, tags map[string]string) error {
	start := r.clock()
	err := r.api.UnlinkSubscription(ctx, deviceID, previousExternalID, tags)
	r.record(transform.Device(deviceID), "unlink", start, err)
	return err
}

// DeleteUser is OneSignal's.
func (r *CallRecorder) DeleteUser(ctx context.Context, externalID string) error {
	start := r.clock()
	err := r.api.DeleteUser(ctx, externalID)
	r.record(transform.User(externalID), "delete_user", start, err)
	return err
}
