package sink_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// What the sink cannot apply for good goes to the dead-letter topic, with
// the reason in Kafka Connect's headers, and the sink moves on.

// at is where a message is, as the sink names it: topic/partition@offset.
func at(r kafkatest.Record) string { return fmt.Sprintf("%s/%d@%d", r.Topic, r.Partition, r.Offset) }

// origin is where a dead letter says its message was.
func origin(d kafkatest.Record) string {
	return header(d, sink.HeaderTopic) + "/" + header(d, sink.HeaderPartition) + "@" + header(d, sink.HeaderOffset)
}

// source is where a dead-lettered contribution says its event was.
func source(d kafkatest.Record) string {
	return header(d, sink.HeaderSourceTopic) + "/" + header(d, sink.HeaderSourcePartition) + "@" + header(d, sink.HeaderSourceOffset)
}

// eventOf returns the message of contactsTopic whose key is contactKey(id),
// the last when there are several.
func (st *stack) eventOf(id int) record {
	st.t.Helper()
	key, _ := row(contactKey(id)).MarshalJSON()
	var found record
	for _, m := range st.read(contactsTopic) {
		if string(m.Key) == string(key) {
			found = m
		}
	}
	if found.Topic == "" {
		st.t.Fatalf("no event of contact %d", id)
	}
	return found
}

func TestAnEventTheSinkCannotReadOrMapIsDeadLetteredWithItsReasonAndTheSinkMovesOn(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	r := st.start(crm)
	notJSON, _ := row(contactKey(1)).MarshalJSON()
	st.produce(change{topic: contactsTopic, op: event.OpCreate, key: contactKey(0), after: contact(0, "u0", "free", 0)})
	st.produceMessages(kafka.Message{Topic: contactsTopic, Key: notJSON, Value: []byte(`<html>oops</html>`)})
	st.produce(
		change{topic: contactsTopic, op: event.OpCreate, key: contactKey(2), after: contact(2, "u2", map[string]any{"nested": 1}, 2)},
		change{topic: contactsTopic, op: event.OpCreate, key: contactKey(3), after: contact(3, "u3", "pro", 3)},
	)
	dead := st.deadLetters(2)
	st.waitDrained()
	if err := r.stop(); err != nil {
		t.Fatalf("the sink stopped with %v; a message it cannot apply must not stop it", err)
	}
	want := map[string]string{at(st.eventOf(1).Record): "decode", at(st.eventOf(2).Record): "transform"}
	for _, d := range dead {
		if stage, ok := want[origin(d)]; !ok || header(d, sink.HeaderStage) != stage {
			t.Errorf("dead letter of %s at stage %q, want one of %v", origin(d), header(d, sink.HeaderStage), want)
		}
		if header(d, sink.HeaderMessage) == "" {
			t.Errorf("dead letter of %s has no reason", origin(d))
		}
		if header(d, sink.HeaderStage) == "decode" && string(d.Value) != `<html>oops</html>` {
			t.Errorf("dead letter value %q, want the original message", d.Value)
		}
	}
	st.eventually("the users around them", all(
		st.hasTags("u0", map[string]string{"plan": "free", "score": "0"}),
		st.hasTags("u3", map[string]string{"plan": "pro", "score": "3"})))
}

func TestARowThatLacksAMappedColumnIsDeadLetteredWithTheReasonAndCounted(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	r := st.start(crm)
	misnamed := contact(1, "u1", nil, 1)
	delete(misnamed, "Plan")
	misnamed["Plans"] = "pro"
	st.produce(
		change{topic: contactsTopic, op: event.OpCreate, key: contactKey(0), after: contact(0, "u0", "free", 0)},
		change{topic: contactsTopic, op: event.OpCreate, key: contactKey(1), after: misnamed},
		change{topic: contactsTopic, op: event.OpCreate, key: contactKey(2), after: contact(2, "u2", "pro", 2)},
	)
	dead := st.deadLetters(1)
	st.waitDrained()
	if len(dead) != 1 || origin(dead[0]) != at(st.eventOf(1).Record) || header(dead[0], sink.HeaderStage) != "transform" {
		t.Fatalf("dead letters %v, want the misnamed row's event at stage transform", dead)
	}
	reason := header(dead[0], sink.HeaderMessage)
	for _, want := range []string{`the crm.Contacts row has no column "Plan", which mapping.users.tags names.`, `Did you mean "Plans"?`} {
		if !strings.Contains(reason, want) {
			t.Errorf("reason %q lacks %q", reason, want)
		}
	}
	if n := r.sink.Stats().DeadLettered; n != 1 {
		t.Errorf("Stats().DeadLettered = %d, want 1", n)
	}
	s := st.emu.State()
	if u, ok := s.UserByExternalID("u1"); ok {
		t.Errorf("the row without its mapped column reached OneSignal: %+v", u)
	}
	for _, id := range []string{"u0", "u2"} {
		if _, ok := s.UserByExternalID(id); !ok {
			t.Errorf("%s, beside the bad row, was not applied", id)
		}
	}
}

// refusing is a recorder answer that refuses with a 400 every call for
// which refuse says so, and passes the others on.
func refusing(refuse func(c call) bool) func(context.Context, call, func() error) error {
	return func(_ context.Context, c call, next func() error) error {
		if refuse(c) {
			return badRequest400{}
		}
		return next()
	}
}

func TestOneSignalsRefusalDeadLettersTheMessageWithItsStatusAndItsEventsPlace(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	var mu sync.Mutex
	var told []sink.DeadLetter
	rec := newRecorder(nil, refusing(func(call) bool { return true }))
	st.startWith(crm, options{api: rec.wrap, config: func(c *sink.Config) {
		c.DeadLettered = func(d sink.DeadLetter) {
			mu.Lock()
			defer mu.Unlock()
			told = append(told, d)
		}
	}})
	st.produce(users(1, "free")...)
	dead := st.deadLetters(1)
	st.waitDrained()
	d := dead[0]
	if got := header(d, sink.HeaderStatus); got != "400" || header(d, sink.HeaderStage) != "onesignal" {
		t.Errorf("status header %q stage %q, want 400 and onesignal", got, header(d, sink.HeaderStage))
	}
	if got := header(d, sink.HeaderClass); got != "onesignal_cdc.OneSignalRejection" {
		t.Errorf("class header %q, want onesignal_cdc.OneSignalRejection, not a Go type", got)
	}
	if !strings.Contains(header(d, sink.HeaderMessage), "HTTP 400") {
		t.Errorf("reason %q, want OneSignal's answer in it", header(d, sink.HeaderMessage))
	}
	// The dead letter is the targets topic's contribution, for dlq replay,
	// and names the event it came from.
	contribution := st.contributionsTo(transform.User("u0"))[0]
	ev := st.eventOf(0)
	if origin(d) != at(contribution.Record) || string(d.Value) != string(contribution.Value) {
		t.Errorf("dead letter of %s holding %s, want the contribution at %s", origin(d), d.Value, at(contribution.Record))
	}
	if source(d) != at(ev.Record) {
		t.Errorf("dead letter names the event at %s, want %s", source(d), at(ev.Record))
	}
	mu.Lock()
	defer mu.Unlock()
	want := sink.DeadLetter{Topic: contactsTopic, Partition: int(ev.Partition), Offset: ev.Offset, Stage: "onesignal", Reason: header(d, sink.HeaderMessage), Status: 400}
	if len(told) != 1 || told[0] != want {
		t.Errorf("DeadLettered was told %+v, want once %+v", told, want)
	}
}

func TestEveryMessageOfARequestOneSignalRefusedIsDeadLettered(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	clock := sink.NewFakeClock()
	rec := newRecorder(clock, refusing(func(c call) bool { return c.id == "u0" && c.tags["plan"] != "ok" }))
	r := st.startWith(crm, options{clock: clock, api: rec.wrap})
	st.produce(
		change{topic: contactsTopic, op: event.OpCreate, key: contactKey(0), after: contact(0, "u0", "ok", 0)},
		change{topic: contactsTopic, op: event.OpCreate, key: contactKey(1), after: contact(1, "u1", "x", 1)},
	)
	st.waitDrained()
	// u0 was just written to, so its next changes wait for its window,
	// and go in one request, which OneSignal refuses.
	st.produce(
		change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(0), after: contact(0, "u0", "bad1", 0)},
		change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(0), after: contact(0, "u0", "bad2", 0)},
	)
	waitFor(t, "both changes waiting for u0's window", func() error {
		if n := r.sink.Waiting(); n != 2 {
			return fmt.Errorf("%d messages waiting", n)
		}
		return nil
	})
	clock.Advance(time.Second)
	dead := st.deadLetters(2)
	st.waitDrained()
	var got []string
	for _, d := range dead {
		got = append(got, source(d))
		if header(d, sink.HeaderStatus) != "400" || header(d, sink.HeaderStage) != "onesignal" {
			t.Errorf("dead letter of %s: status %q stage %q, want 400 and onesignal", source(d), header(d, sink.HeaderStatus), header(d, sink.HeaderStage))
		}
	}
	var want []string
	for _, c := range st.contributionsTo(transform.User("u0"))[1:] {
		want = append(want, fmt.Sprintf("%s/%d@%d", c.rec.Source.Topic, c.rec.Source.Partition, c.rec.Source.Offset))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("dead letters of the events %v, want %v, the events of the refused request", got, want)
	}
	if calls := rec.of("user u0"); len(calls) != 2 || calls[1].tags["plan"] != "bad2" {
		t.Errorf("u0's requests %+v, want 2: the accepted one, then one with both changes, refused", calls)
	}
}

func TestAMessageTooLargeForTheDeadLetterTopicIsDeadLetteredWithoutItsValue(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	client, done := st.cluster.Client(10 * time.Second)
	defer done()
	resp, err := client.CreateTopics(context.Background(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: "crm.small-dlq", NumPartitions: 1, ReplicationFactor: -1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "max.message.bytes", ConfigValue: "2000"}},
	}}})
	if err != nil || resp.Errors["crm.small-dlq"] != nil {
		t.Fatalf("create crm.small-dlq: %v %v", err, resp.Errors)
	}
	rec := newRecorder(nil, refusing(func(call) bool { return true }))
	st.startWith(crm, options{api: rec.wrap, config: func(c *sink.Config) { c.DeadLetterTopic = "crm.small-dlq" }})
	st.produce(
		change{topic: contactsTopic, op: event.OpCreate, key: contactKey(0), after: contact(0, "u0", strings.Repeat("x", 5000), 0)},
		change{topic: contactsTopic, op: event.OpCreate, key: contactKey(1), after: contact(1, "u1", "free", 1)},
	)
	dead := st.deadLettersIn("crm.small-dlq", 2)
	st.waitDrained()
	large, small := st.contributionsTo(transform.User("u0"))[0], st.contributionsTo(transform.User("u1"))[0]
	byOrigin := map[string]kafkatest.Record{}
	for _, d := range dead {
		byOrigin[origin(d)] = d
	}
	d, ok := byOrigin[at(large.Record)]
	if !ok {
		t.Fatalf("no dead letter of u0's contribution at %s among %v", at(large.Record), slices.Collect(maps.Keys(byOrigin)))
	}
	if len(d.Value) != 0 || header(d, sink.HeaderValueDropped) != strconv.Itoa(len(large.Value)) {
		t.Errorf("the dead letter holds %d bytes of value and says %q dropped, want none and %d", len(d.Value), header(d, sink.HeaderValueDropped), len(large.Value))
	}
	where := fmt.Sprintf("%s, partition %d, offset %d", st.topics.Targets, large.Partition, large.Offset)
	if reason := header(d, sink.HeaderMessage); !strings.Contains(reason, "HTTP 400") || !strings.Contains(reason, "is left out of this dead letter") || !strings.Contains(reason, where) {
		t.Errorf("reason %q: want the refusal, and where the original is (%s)", reason, where)
	}
	if u1 := byOrigin[at(small.Record)]; string(u1.Value) != string(small.Value) || header(u1, sink.HeaderValueDropped) != "" {
		t.Errorf("u1's dead letter holds %q, want its contribution whole: only the message too large goes without", u1.Value)
	}
}

func TestADesiredStateOverTheTagLimitIsDeadLetteredWithTheReason(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	st.startWith(crm, options{config: func(c *sink.Config) { c.TagLimit = 1 }})
	st.produce(
		change{topic: contactsTopic, op: event.OpCreate, key: contactKey(1), after: contact(1, "u1", "pro", 3)},
		change{topic: contactsTopic, op: event.OpCreate, key: contactKey(2), after: contact(2, "u2", "free", nil)},
	)
	dead := st.deadLetters(1)
	st.waitDrained()
	if reason := header(dead[0], sink.HeaderMessage); !strings.Contains(reason, "2 tags (plan, score), more than onesignal.max_tags 1") {
		t.Errorf("dead letter reason %q, want the count and the limit", reason)
	}
	if source(dead[0]) != at(st.eventOf(1).Record) {
		t.Errorf("the dead letter names the event at %s, want u1's at %s", source(dead[0]), at(st.eventOf(1).Record))
	}
	if _, ok := st.emu.State().UserByExternalID("u1"); ok {
		t.Error("u1 reached OneSignal despite the tag limit")
	}
	st.eventually("u2, within the limit", st.hasTags("u2", map[string]string{"plan": "free"}))
}

func TestOneSignalsTagCapRefusalIsDeadLetteredWithoutRetrying(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{TagLimit: 1})
	r := st.start(crm)
	st.produce(change{topic: contactsTopic, op: event.OpCreate, key: contactKey(1), after: contact(1, "u1", "pro", 3)})
	dead := st.deadLetters(1)
	st.waitDrained()
	if got := header(dead[0], sink.HeaderStatus); got != "400" || !strings.Contains(header(dead[0], sink.HeaderMessage), "maximum of 1 tags") {
		t.Errorf("dead letter status %q reason %q, want OneSignal's 400", got, header(dead[0], sink.HeaderMessage))
	}
	if n := r.sink.Stats().Retries; n != 0 {
		t.Errorf("Stats().Retries = %d, want 0: the cap is permanent", n)
	}
}

// redeliver writes the dead letters back where they came from, marked as
// `onesignal-cdc dlq replay` marks them.
func (st *stack) redeliver(dead ...kafkatest.Record) {
	st.t.Helper()
	w := st.cluster.NewWriter(10)
	w.Balancer = broker.MessagePartition{}
	defer w.Close()
	var msgs []kafka.Message
	for _, d := range dead {
		p, err := strconv.Atoi(header(d, sink.HeaderPartition))
		if err != nil {
			st.t.Fatal(err)
		}
		msgs = append(msgs, kafka.Message{Topic: header(d, sink.HeaderTopic), Partition: p, Key: d.Key, Value: d.Value,
			Headers: []kafka.Header{{Key: sink.HeaderRedelivery, Value: []byte(at(d))}}})
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		st.t.Fatal(err)
	}
}

func TestARedeliveredDeadLetterIsAppliedThoughItsPositionWasSeenButAStaleOneIsNot(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	var refuse atomic.Bool
	refuse.Store(true)
	rec := newRecorder(nil, refusing(func(c call) bool {
		return refuse.Load() && (c.id == "u0" || c.id == "u1" && c.tags["plan"] == "pro")
	}))
	r := st.startWith(crm, options{api: rec.wrap})
	st.produce(
		change{topic: contactsTopic, op: event.OpCreate, key: contactKey(0), after: contact(0, "u0", "pro", 0)},
		change{topic: contactsTopic, op: event.OpCreate, key: contactKey(1), after: contact(1, "u1", "pro", 1)},
	)
	dead := st.deadLetters(2)
	// u1 changes again: its dead letter is stale now.
	st.produce(change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(1), after: contact(1, "u1", "gold", 1)})
	st.waitDrained()

	refuse.Store(false) // the fix
	st.redeliver(dead...)
	st.waitDrained()
	st.eventually("u0 applied from its dead letter", st.hasTags("u0", map[string]string{"plan": "pro", "score": "0"}))
	st.eventually("u1 still gold", st.hasTags("u1", map[string]string{"plan": "gold", "score": "1"}))
	for _, c := range rec.of("user u1") {
		if c.err == nil && c.tags["plan"] == "pro" {
			t.Errorf("u1 was sent its stale plan pro after gold: %+v", rec.of("user u1"))
		}
	}
	if n := r.sink.Stats().Stale; n != 1 {
		t.Errorf("Stats().Stale = %d, want 1: u1's redelivered contribution, older than its row's newest", n)
	}
}

func TestAnEventRedeliveredAtItsRowsPositionIsAppliedAgainWhereAReplayIsSkipped(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	r := st.start(crm)
	first := change{topic: contactsTopic, op: event.OpCreate, key: contactKey(0), after: contact(0, "u0", "pro", 0), commit: 500}
	st.produce(first)
	st.waitDrained()
	st.produce(first) // the connector repeating a transaction
	st.waitDrained()
	if n := r.sink.Stats().Replays; n != 1 {
		t.Fatalf("Stats().Replays = %d after a repeat, want 1", n)
	}
	before := r.sink.Stats().Contributions
	redelivered := first
	redelivered.headers = []kafka.Header{{Key: sink.HeaderRedelivery, Value: []byte("crm.dlq/0@0")}}
	st.produce(redelivered)
	st.waitDrained()
	if s := r.sink.Stats(); s.Replays != 1 || s.Contributions != before+1 {
		t.Errorf("after a redelivery: %d replays and %d contributions written, want 1 and %d: it is applied, not skipped", s.Replays, s.Contributions, before+1)
	}
	st.eventually("u0", st.hasTags("u0", map[string]string{"plan": "pro", "score": "0"}))
}
