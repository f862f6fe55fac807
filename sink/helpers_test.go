package sink_test

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// usersAndDevices maps both tables. The tests put devices' events on the
// users' topic too: the mapping goes by the event's table, not its topic.
var usersAndDevices = &transform.Mapping{
	Users:   mapping.Users,
	Devices: &transform.DevicesMapping{Table: "public.devices", DeviceID: "player_id", ExternalID: "user_external_id"},
}

// userEventAt is userEvent with a source position.
func userEventAt(id, plan string, commitLSN, lsn int64) kafka.Message {
	m := userEvent(id, plan)
	ev, err := event.Decode(m.Value)
	if err != nil {
		panic(err)
	}
	ev.Source.CommitLSN, ev.Source.LSN = commitLSN, lsn
	m.Value = ev.Encode(nil)
	return m
}

// deviceEvent is the event of a devices row: the device belongs to owner.
func deviceEvent(device, owner string, lsn int64) kafka.Message {
	ev := event.Envelope{
		Op:     event.OpCreate,
		After:  event.Row{{Name: "player_id", Value: event.AppendString(nil, device)}, {Name: "user_external_id", Value: event.AppendString(nil, owner)}},
		Source: event.Source{Connector: "postgresql", Schema: "public", Table: "devices", Snapshot: "false", LSN: lsn, CommitLSN: lsn},
	}
	return kafka.Message{Topic: topic, Key: event.AppendString(nil, device), Value: ev.Encode(nil)}
}

// call is one call a recordingAPI received.
type call struct {
	target     string // "user <external id>" or "device <subscription id>"
	op         string // set_tags, link or unlink
	id         string // the external ID or subscription ID in the path
	tags       map[string]string
	owner      string
	previous   string // unlink: the previous owner
	channel    string // add_email, add_sms
	identifier string
	start, end time.Time // by the sink's clock
	err        error
}

// forward makes c against api.
func (c call) forward(ctx context.Context, api sink.OneSignal) error {
	switch c.op {
	case "set_tags":
		return api.SetTags(ctx, c.id, c.tags)
	case "link":
		return api.LinkSubscription(ctx, c.id, c.owner, c.tags)
	case "add_email", "add_sms":
		return api.AddRecord(ctx, c.id, c.channel, c.identifier, c.tags)
	}
	return api.UnlinkSubscription(ctx, c.id, c.previous)
}

// recordingAPI is a OneSignal double that records every call with the
// fake clock's time at its start and end, and notes any call that starts
// while another to the same target is in flight. answer, when set, gives
// each call's result (it may block); otherwise every call succeeds.
type recordingAPI struct {
	clock  sink.Clock
	answer func(ctx context.Context, c call) error

	mu       sync.Mutex
	calls    []call
	inFlight map[string]int
	overlaps int
}

func newRecordingAPI(clock sink.Clock, answer func(context.Context, call) error) *recordingAPI {
	return &recordingAPI{clock: clock, answer: answer, inFlight: map[string]int{}}
}

func (r *recordingAPI) SetTags(ctx context.Context, id string, tags map[string]string) error {
	return r.do(ctx, call{target: "user " + id, op: "set_tags", id: id, tags: maps.Clone(tags)})
}

func (r *recordingAPI) LinkSubscription(ctx context.Context, dev, owner string, tags map[string]string) error {
	return r.do(ctx, call{target: "device " + dev, op: "link", id: dev, owner: owner, tags: maps.Clone(tags)})
}

func (r *recordingAPI) UnlinkSubscription(ctx context.Context, dev, previous string) error {
	return r.do(ctx, call{target: "device " + dev, op: "unlink", id: dev, previous: previous})
}

func (r *recordingAPI) AddRecord(ctx context.Context, id, channel, identifier string, tags map[string]string) error {
	return r.do(ctx, call{target: "user " + id, op: "add_" + channel, id: id, channel: channel, identifier: identifier, tags: maps.Clone(tags)})
}

func (r *recordingAPI) do(ctx context.Context, c call) error {
	r.mu.Lock()
	c.start = r.clock.Now()
	if r.inFlight[c.target] > 0 {
		r.overlaps++
	}
	r.inFlight[c.target]++
	r.mu.Unlock()
	var err error
	if r.answer != nil {
		err = r.answer(ctx, c)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inFlight[c.target]--
	c.end, c.err = r.clock.Now(), err
	r.calls = append(r.calls, c)
	return err
}

// recorded returns the calls that ended, in the order they ended.
func (r *recordingAPI) recorded() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

func (r *recordingAPI) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

// byTarget groups calls by target, each group in start order.
func byTarget(calls []call) map[string][]call {
	out := map[string][]call{}
	for _, c := range calls {
		out[c.target] = append(out[c.target], c)
	}
	for _, cs := range out {
		slices.SortFunc(cs, func(a, b call) int { return a.start.Compare(b.start) })
	}
	return out
}

// lastTags returns the tags of the last successful call to each user.
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

// manualConfig is testConfig with a clock that moves only when the test
// moves it.
func manualConfig() (sink.Config, *sink.FakeClock) {
	cfg := baseConfig()
	clock := sink.NewFakeClock()
	cfg.Clock = clock
	return cfg, clock
}
