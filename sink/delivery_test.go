package sink_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// The acknowledgement chain at the sink's end: what is committed, and when
// the sink stops instead.

// users are n contacts, each its own user "u<i>", on plan.
func users(n int, plan string) []change {
	cs := make([]change, 0, n)
	for i := range n {
		cs = append(cs, change{topic: contactsTopic, op: event.OpCreate, key: contactKey(i), after: contact(i, fmt.Sprintf("u%d", i), plan, i)})
	}
	return cs
}

func TestTheSinkAppliesEveryEventAndCommitsEveryMessage(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	st.start(crm)
	st.produce(users(100, "free")...)
	// A later change of a row wins.
	st.produce(change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(7), after: contact(7, "u7", "pro", 7)})
	st.waitDrained()
	s := st.emu.State()
	if len(s.Users) != 100 {
		t.Errorf("%d users, want 100", len(s.Users))
	}
	if u, _ := s.UserByExternalID("u7"); u.Tags["plan"] != "pro" {
		t.Errorf("u7 has tags %v, want plan pro", u.Tags)
	}
}

// heldUp returns a recorder answer that holds every call to user ext until
// release is closed.
func heldUp(ext string, release <-chan struct{}) func(context.Context, call, func() error) error {
	return func(ctx context.Context, c call, next func() error) error {
		if c.target == "user "+ext {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return next()
	}
}

// notCommittedPast fails the test if the group committed the targets
// partition of rec past it.
func (st *stack) notCommittedPast(rec record, why string) {
	st.t.Helper()
	if got := st.committed(st.topics.Targets)[int(rec.Partition)]; got > rec.Offset {
		st.t.Fatalf("%s partition %d is committed up to %d, past %s at %d", st.topics.Targets, rec.Partition, got, why, rec.Offset)
	}
}

func TestNothingIsCommittedPastAMessageWhoseRequestIsInFlight(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	release := make(chan struct{})
	rec := newRecorder(nil, heldUp("u10", release))
	st.startWith(crm, options{api: rec.wrap})
	st.produce(users(50, "free")...)
	waitFor(t, "every user but u10 applied", func() error {
		if n := rec.count(); n < 49 {
			return fmt.Errorf("%d calls answered", n)
		}
		return nil
	})
	st.commitsCatchUp()
	held := st.contributionsTo(transform.User("u10"))[0]
	st.notCommittedPast(held, "u10's contribution, whose request is in flight")
	close(release)
	st.waitDrained()
}

func TestTransientErrorsAreRetriedUntilTheyPass(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	clock := sink.NewFakeClock()
	clock.Run(t, 20*time.Millisecond, time.Millisecond)
	var mu sync.Mutex
	tries := map[string]int{}
	rec := newRecorder(clock, func(_ context.Context, c call, next func() error) error {
		mu.Lock()
		tries[c.id]++
		n := tries[c.id]
		mu.Unlock()
		if n < 3 {
			return unavailable503{}
		}
		return next()
	})
	r := st.startWith(crm, options{clock: clock, api: rec.wrap})
	st.produce(users(5, "free")...)
	st.waitDrained()
	mu.Lock()
	defer mu.Unlock()
	for i := range 5 {
		if n := tries[fmt.Sprintf("u%d", i)]; n != 3 {
			t.Errorf("u%d was tried %d times, want 3: two failures, then success", i, n)
		}
	}
	if n := r.sink.Stats().Retries; n != 10 {
		t.Errorf("Stats().Retries = %d, want 10", n)
	}
	st.eventually("every user", st.hasTags("u4", map[string]string{"plan": "free", "score": "4"}))
}

func TestNothingIsCommittedPastAMessageWhoseRequestIsRetrying(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	clock := sink.NewFakeClock()
	clock.Run(t, 20*time.Millisecond, time.Millisecond)
	var released atomic.Bool
	var failures atomic.Int64
	rec := newRecorder(clock, func(_ context.Context, c call, next func() error) error {
		if c.id == "u0" && c.tags["plan"] != "a" && !released.Load() {
			failures.Add(1)
			return unavailable503{}
		}
		return next()
	})
	st.startWith(crm, options{clock: clock, api: rec.wrap})
	st.produce(
		change{topic: contactsTopic, op: event.OpCreate, key: contactKey(0), after: contact(0, "u0", "a", 0)},
		change{topic: contactsTopic, op: event.OpCreate, key: contactKey(1), after: contact(1, "u1", "x", 1)},
		change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(0), after: contact(0, "u0", "b", 0)},
		change{topic: contactsTopic, op: event.OpCreate, key: contactKey(2), after: contact(2, "u2", "x", 2)},
		change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(0), after: contact(0, "u0", "c", 0)},
		change{topic: contactsTopic, op: event.OpCreate, key: contactKey(3), after: contact(3, "u3", "x", 3)},
	)
	waitFor(t, "u0's request to fail three times", func() error {
		if n := failures.Load(); n < 3 {
			return fmt.Errorf("%d failures", n)
		}
		return nil
	})
	st.commitsCatchUp()
	// Plan a may have gone out alone and been accepted; b cannot have.
	st.notCommittedPast(st.contributionsTo(transform.User("u0"))[1], "u0's change to b, whose request is retrying")
	released.Store(true)
	st.waitDrained()
	if got := lastTags(rec.recorded())["user u0"]["plan"]; got != "c" {
		t.Errorf("u0's last request set plan %q, want c", got)
	}
	st.eventually("u0's last plan", st.hasTags("u0", map[string]string{"plan": "c", "score": "0"}))
}

// noContributionCommitted fails the test if the targets topic is committed
// past any contribution to the targets (none: to any target).
func (st *stack) noContributionCommitted(targets ...transform.Target) {
	st.t.Helper()
	first := map[int]int64{}
	for _, r := range st.read(st.topics.Targets) {
		if r.rec == nil || r.rec.Kind != "contribution" || (len(targets) > 0 && !slices.Contains(targets, r.rec.Target)) {
			continue
		}
		if o, ok := first[int(r.Partition)]; !ok || r.Offset < o {
			first[int(r.Partition)] = r.Offset
		}
	}
	if len(first) == 0 {
		st.t.Fatal("the targets topic holds no contribution")
	}
	for p, o := range first {
		if got := st.committed(st.topics.Targets)[p]; got > o {
			st.t.Errorf("%s partition %d is committed up to %d, past the contribution at %d that OneSignal never accepted", st.topics.Targets, p, got, o)
		}
	}
}

func TestWrongCredentialsStopTheSinkNamingTheFixWithNothingCommitted(t *testing.T) {
	t.Parallel()
	forEachModel(t, func(t *testing.T, st *stack) {
		st.addDevices("p-0")
		r := st.startWith(crm, options{apiKey: "wrong-key"})
		st.produce(
			change{topic: contactsTopic, op: event.OpCreate, key: contactKey(0), after: contact(0, "u0", "free", 0)},
			change{topic: devicesTopic, op: event.OpCreate, key: deviceKey(0, "p-0"), after: device(0, "p-0", "u0")},
		)
		err := r.wait(t)
		for _, want := range []string{"OneSignal refused the API key for app " + appID, "onesignal.api_key", "The sink stops with message " + st.topics.Targets + "/"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("the sink stopped with %v, want %q in it", err, want)
			}
		}
		if strings.Contains(err.Error(), "wrong-key") {
			t.Errorf("the error shows the key: %v", err)
		}
		if st.model == sink.ModelPlayer {
			// The user, without a device linked yet, is sent nothing: its
			// tags wait in its state for the link, which is refused.
			st.noContributionCommitted(transform.Device("p-0"))
			return
		}
		st.noContributionCommitted()
	})
}

func TestARedirectStopsTheSinkNamingTheBaseURLInsteadOfFollowingIt(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	// What base_url: http://… gets from a server that wants https.
	if err := st.emu.SetAnswers(emulator.Answer{Status: 301, Header: map[string]string{"Location": "https://api.example/"}}); err != nil {
		t.Fatal(err)
	}
	r := st.start(crm)
	st.produce(users(2, "free")...)
	err := r.wait(t)
	if err == nil || !strings.Contains(err.Error(), "set onesignal.base_url") || !strings.Contains(err.Error(), "https://api.example") {
		t.Fatalf("the sink stopped with %v, want onesignal.base_url and the redirect named", err)
	}
	st.noContributionCommitted()
	if s := st.emu.State(); len(s.Users) != 0 {
		t.Errorf("the emulator holds %d users: a redirected write was applied", len(s.Users))
	}
}

func TestWithoutADeadLetterTopicTheSinkStopsAtAMessageItCannotReadAndCommitsNothingPastIt(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	r := st.startWith(crm, options{config: func(c *sink.Config) { c.DeadLetters = nil }})
	st.produce(users(1, "free")...)
	st.produceMessages(kafka.Message{Topic: contactsTopic, Key: []byte(`{"Contact ID":1}`), Value: []byte(`{"not":"an envelope"}`)})
	st.produce(change{topic: contactsTopic, op: event.OpCreate, key: contactKey(2), after: contact(2, "u2", "free", 2)})
	err := r.wait(t)
	var bad record
	for _, m := range st.read(contactsTopic) {
		if string(m.Value) == `{"not":"an envelope"}` {
			bad = m
		}
	}
	if where := fmt.Sprintf("%s/%d@%d", contactsTopic, bad.Partition, bad.Offset); err == nil || !strings.Contains(err.Error(), where) {
		t.Fatalf("the sink stopped with %v, want an error naming the message's place, %s", err, where)
	}
	if got := st.committed(contactsTopic)[int(bad.Partition)]; got > bad.Offset {
		t.Errorf("%s partition %d is committed up to %d, past the message at %d that the sink could not read", contactsTopic, bad.Partition, got, bad.Offset)
	}
}

func TestTheSinkStopsCleanlyWhenTheDaemonStopsItForAnotherComponentsFailure(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	r := st.start(crm)
	st.produce(users(1, "free")...)
	waitFor(t, "the event fetched", func() error {
		if r.sink.Stats().Fetched == 0 {
			return errors.New("nothing fetched")
		}
		return nil
	})
	if err := r.stopWith(errors.New(`connector: password authentication failed for user "cdc"`)); err != nil {
		t.Errorf("the sink returned %q, its parent's cause: the daemon would report the connector's failure as the sink's", err)
	}
}

func TestWrongCredentialsForACoalescedRequestStopTheSinkAtItsFirstMessage(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	clock := sink.NewFakeClock()
	rec := newRecorder(clock, func(_ context.Context, c call, next func() error) error {
		if c.id == "u0" && c.tags["plan"] != "ok" {
			return unauthorized401{}
		}
		return next()
	})
	r := st.startWith(crm, options{clock: clock, api: rec.wrap})
	st.produce(
		change{topic: contactsTopic, op: event.OpCreate, key: contactKey(0), after: contact(0, "u0", "ok", 0)},
		change{topic: contactsTopic, op: event.OpCreate, key: contactKey(1), after: contact(1, "u1", "x", 1)},
	)
	st.waitDrained()
	// Two changes within u0's second: one request, which OneSignal refuses.
	st.produce(
		change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(0), after: contact(0, "u0", "a", 0)},
		change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(0), after: contact(0, "u0", "b", 0)},
	)
	waitFor(t, "both changes waiting for u0's window", func() error {
		if n := r.sink.Waiting(); n != 2 {
			return fmt.Errorf("%d messages waiting", n)
		}
		return nil
	})
	clock.Advance(time.Second)
	err := r.wait(t)
	first := st.contributionsTo(transform.User("u0"))[1]
	if err == nil || !strings.Contains(err.Error(), "check onesignal.app_id and onesignal.api_key") || !strings.Contains(err.Error(), "message "+at(first.Record)) {
		t.Fatalf("the sink stopped with %v, want the credentials and message %s named", err, at(first.Record))
	}
	st.notCommittedPast(first, "the first message of the request OneSignal refused")
}
