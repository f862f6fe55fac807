package sink_test

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
)

// call is one call a recorder received.
type call struct {
	target     string // "user <external id>" or "device <id>"
	op         string // set_tags, add_email, add_sms, link, unlink or delete_user
	id         string // the external id or device id
	tags       map[string]string
	props      map[string]string   // link: the device's properties (player model)
	create     bool                // set_tags: the user is probably new
	user       onesignal.UserWrite // set_tags: the whole write, passed on
	owner      string              // link: the new owner; unlink: the previous one
	identifier string              // add_email, add_sms: the address or number
	start, end time.Time           // by the recorder's clock
	err        error
}

// recorder is a OneSignal double that records every call with its clock's
// time at the call's start and end, and counts calls that start while
// another to the same target is in flight. answer gives each call's
// result (it may block); next passes the call on to the client the
// recorder wraps (or succeeds, when it wraps none). A nil answer passes
// every call on.
type recorder struct {
	clock  sink.Clock
	answer func(ctx context.Context, c call, next func() error) error
	client sink.OneSignal

	mu       sync.Mutex
	calls    []call
	inFlight map[string]int
	overlaps int
}

func newRecorder(clock sink.Clock, answer func(ctx context.Context, c call, next func() error) error) *recorder {
	if clock == nil {
		clock = sink.SystemClock{}
	}
	return &recorder{clock: clock, answer: answer, inFlight: map[string]int{}}
}

// wrap makes the recorder pass calls on to client; it is options.api.
func (r *recorder) wrap(client sink.OneSignal) sink.OneSignal {
	r.client = client
	return r
}

func (r *recorder) SetUser(ctx context.Context, ext string, w onesignal.UserWrite) error {
	w.Tags = maps.Clone(w.Tags)
	return r.do(ctx, call{target: "user " + ext, op: "set_tags", id: ext, tags: w.Tags, create: w.Create, user: w})
}

func (r *recorder) AddRecord(ctx context.Context, ext, channel, identifier string, tags map[string]string) error {
	return r.do(ctx, call{target: "user " + ext, op: "add_" + channel, id: ext, identifier: identifier, tags: maps.Clone(tags)})
}

func (r *recorder) LinkDevice(ctx context.Context, dev, ext string, w onesignal.DeviceWrite) error {
	return r.do(ctx, call{target: "device " + dev, op: "link", id: dev, owner: ext, tags: maps.Clone(w.Tags), props: maps.Clone(w.Properties)})
}

func (r *recorder) DeleteUser(ctx context.Context, ext string) error {
	return r.do(ctx, call{target: "user " + ext, op: "delete_user", id: ext})
}

func (r *recorder) UnlinkSubscription(ctx context.Context, dev, previous string, tags map[string]string) error {
	return r.do(ctx, call{target: "device " + dev, op: "unlink", id: dev, owner: previous, tags: maps.Clone(tags)})
}

// forward makes c on the wrapped client.
func (r *recorder) forward(ctx context.Context, c call) error {
	api := r.client
	if api == nil {
		return nil
	}
	switch c.op {
	case "set_tags":
		return api.SetUser(ctx, c.id, c.user)
	case "add_email", "add_sms":
		return api.AddRecord(ctx, c.id, c.op[len("add_"):], c.identifier, c.tags)
	case "link":
		return api.LinkDevice(ctx, c.id, c.owner, onesignal.DeviceWrite{Tags: c.tags, Properties: c.props})
	case "delete_user":
		return api.DeleteUser(ctx, c.id)
	}
	return api.UnlinkSubscription(ctx, c.id, c.owner, c.tags)
}

func (r *recorder) do(ctx context.Context, c call) error {
	r.mu.Lock()
	c.start = r.clock.Now()
	if r.inFlight[c.target] > 0 {
		r.overlaps++
	}
	r.inFlight[c.target]++
	r.mu.Unlock()
	next := func() error { return r.forward(ctx, c) }
	var err error
	if r.answer != nil {
		err = r.answer(ctx, c, next)
	} else {
		err = next()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inFlight[c.target]--
	c.end, c.err = r.clock.Now(), err
	r.calls = append(r.calls, c)
	return err
}

// recorded returns the calls that ended, in the order they ended.
func (r *recorder) recorded() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// of returns the calls to target that ended, in start order.
func (r *recorder) of(target string) []call {
	return byTarget(r.recorded())[target]
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

func (r *recorder) overlapping() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.overlaps
}

// byTarget groups calls by target, each group in start order.
func byTarget(calls []call) map[string][]call {
	out := map[string][]call{}
	for _, c := range calls {
		out[c.target] = append(out[c.target], c)
	}
	for _, cs := range out {
		slices.SortStableFunc(cs, func(a, b call) int { return a.start.Compare(b.start) })
	}
	return out
}

// lastTags returns the tags of the last successful set_tags of each user.
func lastTags(calls []call) map[string]map[string]string {
	out := map[string]map[string]string{}
	for target, cs := range byTarget(calls) {
		for _, c := range cs {
			if c.err == nil && c.op == "set_tags" {
				out[target] = c.tags
			}
		}
	}
	return out
}

// The errors OneSignal's client returns, as the sink sees them.

// unavailable503 is a transient failure.
type unavailable503 struct{}

func (unavailable503) Error() string   { return "HTTP 503 Service Unavailable" }
func (unavailable503) Retryable() bool { return true }
func (unavailable503) HTTPStatus() int { return 503 }

// unauthorized401 is OneSignal refusing the key.
type unauthorized401 struct{}

func (unauthorized401) Error() string   { return "HTTP 401 Unauthorized" }
func (unauthorized401) Fatal() bool     { return true }
func (unauthorized401) HTTPStatus() int { return 401 }

// badRequest400 is OneSignal refusing a request for good.
type badRequest400 struct{}

func (badRequest400) Error() string {
	return "HTTP 400: Please limit your tag updates to 100 per request"
}
func (badRequest400) HTTPStatus() int { return 400 }

// tooMany429 is OneSignal's rate limit answer, with its Retry-After.
type tooMany429 struct{ after time.Duration }

func (tooMany429) Error() string                       { return "HTTP 429 Too Many Requests" }
func (tooMany429) Retryable() bool                     { return true }
func (tooMany429) HTTPStatus() int                     { return 429 }
func (e tooMany429) RetryAfterDuration() time.Duration { return e.after }
