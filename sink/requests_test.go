package sink_test

import (
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// What goes out to OneSignal for a target: in requests it takes, in the
// order it needs, and nothing it has already.

func TestMoreThanAHundredTagsGoOutInRequestsOfAHundredAndTheMessageWaitsForTheLast(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	wide := &transform.Mapping{Users: &transform.UsersMapping{Table: "crm.Contacts", ExternalID: "External Id", Tags: map[string]string{}}}
	after := map[string]any{"Contact ID": 1, "External Id": "wide"}
	want := map[string]string{}
	for i := range 150 {
		col := fmt.Sprintf("t%03d", i)
		wide.Users.Tags[col] = col
		after[col] = "v"
		want[col] = "v"
	}
	clock := sink.NewFakeClock()
	rec := newRecorder(clock, nil)
	r := st.startWith(wide, options{clock: clock, api: rec.wrap})
	st.produce(change{topic: contactsTopic, op: event.OpCreate, key: contactKey(1), after: after})
	waitFor(t, "the first request answered and the message waiting for the next", func() error {
		if n := rec.count(); n != 1 {
			return fmt.Errorf("%d requests answered", n)
		}
		if n := r.sink.Waiting(); n != 1 {
			return fmt.Errorf("%d messages waiting", n)
		}
		return nil
	})
	st.commitsCatchUp()
	st.notCommittedPast(st.contributionsTo(transform.User("wide"))[0], "the message whose last 50 tags are not sent yet")
	clock.Advance(time.Second)
	st.waitDrained()
	cs := rec.of("user wide")
	if len(cs) != 2 || len(cs[0].tags) != 100 || len(cs[1].tags) != 50 {
		t.Fatalf("requests %+v, want one of 100 tags, then one of 50", cs)
	}
	for k := range cs[0].tags {
		if _, dup := cs[1].tags[k]; dup {
			t.Fatalf("tag %s is in both requests", k)
		}
	}
	if !cs[0].create || cs[1].create {
		t.Errorf("create %v then %v: the first request creates the new user, the second updates it", cs[0].create, cs[1].create)
	}
	if gap := cs[1].start.Sub(cs[0].end); gap < time.Second {
		t.Errorf("the second request started %s after the first one's answer, want a window of its own", gap)
	}
	st.eventually("all 150 tags", st.hasTags("wide", want))
}

// TestANewUsersRecordFollowsItsCreateInAWindowOfItsOwnAndOnlyOnce: in the
// user model a new user is created with its tags, and its record, which
// the record's target gives it, goes a window later (first, it would cost
// a 404 and a create, and the tags an update); an update that repeats the
// address sends only the tags.
func TestANewUsersRecordFollowsItsCreateInAWindowOfItsOwnAndOnlyOnce(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	clock := sink.NewFakeClock()
	rec := newRecorder(clock, nil)
	r := st.startWith(crm, options{clock: clock, api: rec.wrap})
	withEmail := func(plan string) map[string]any {
		c := contact(1, "u1", plan, 1)
		c["E-mail"] = "a@example.com"
		return c
	}
	st.produce(change{topic: contactsTopic, op: event.OpCreate, key: contactKey(1), after: withEmail("free")})
	waitFor(t, "the user created and its record waiting for the window", func() error {
		if n := rec.count(); n != 1 {
			return fmt.Errorf("%d requests answered", n)
		}
		if n := r.sink.Waiting(); n == 0 {
			return fmt.Errorf("no message waiting")
		}
		return nil
	})
	clock.Advance(time.Second)
	st.waitDrained()
	// The same address again, as an update of another column repeats it.
	st.produce(change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(1), after: withEmail("pro")})
	waitFor(t, "the update waiting for the window", func() error {
		if n := r.sink.Waiting(); n != 1 {
			return fmt.Errorf("%d messages waiting", n)
		}
		return nil
	})
	clock.Advance(time.Second)
	st.waitDrained()
	cs := rec.of("user u1")
	var ops []string
	for _, c := range cs {
		ops = append(ops, c.op)
	}
	if got := strings.Join(ops, " "); got != "set_tags add_email set_tags" {
		t.Fatalf("u1's requests: %s, want set_tags add_email set_tags: the create, then the record, once", got)
	}
	if !cs[0].create || cs[1].identifier != "a@example.com" || cs[1].start.Sub(cs[0].end) < time.Second {
		t.Errorf("create %v, record %q %s after it; want the create, then the address a window later", cs[0].create, cs[1].identifier, cs[1].start.Sub(cs[0].end))
	}
	st.eventually("u1 with its email record", func(s emulator.State) error {
		for _, sub := range s.Subscriptions {
			if sub.Type == "Email" && sub.Token == "a@example.com" {
				if ext := s.ExternalIDOf(sub.ID); ext != "u1" {
					return fmt.Errorf("a@example.com belongs to %q", ext)
				}
				return st.hasTags("u1", map[string]string{"plan": "pro", "score": "1"})(s)
			}
		}
		return fmt.Errorf("no email record a@example.com among %v", s.Subscriptions)
	})
}

func TestARequestThatWouldChangeNothingIsNotSent(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	st.addDevices("d0")
	clock := sink.NewFakeClock()
	clock.Run(t, 20*time.Millisecond, time.Millisecond)
	rec := newRecorder(clock, nil)
	r := st.startWith(crm, options{clock: clock, api: rec.wrap})
	withNotes := func(id int, notes string) map[string]any {
		c := contact(id, "u0", "pro", 0)
		c["Notes"] = notes // a column the mapping does not read
		return c
	}
	st.produce(
		change{topic: contactsTopic, op: event.OpCreate, key: contactKey(0), after: withNotes(0, "a")},
		change{topic: devicesTopic, op: event.OpCreate, key: deviceKey(0, "d0"), after: device(0, "d0", "u0")},
	)
	st.waitDrained()
	users, devices := len(rec.of("user u0")), len(rec.of("device d0"))
	// Newer changes, so not replays, that leave OneSignal as it is: a
	// column the mapping does not read; a second row that gives u0 the
	// same tags; the device's row moved to another key, the same owner.
	pos := st.lsn.Add(10)
	st.produce(
		change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(0), after: withNotes(0, "b")},
		change{topic: contactsTopic, op: event.OpCreate, key: contactKey(9), after: withNotes(9, "c")},
		change{topic: devicesTopic, op: event.OpCreate, key: deviceKey(9, "d0"), after: device(9, "d0", "u0"), commit: pos},
		change{topic: devicesTopic, op: event.OpDelete, key: deviceKey(0, "d0"), commit: pos},
	)
	st.waitDrained()
	if n, m := len(rec.of("user u0")), len(rec.of("device d0")); n != users || m != devices {
		t.Errorf("%d requests for u0 and %d for d0 after changes that leave OneSignal as it is, want none", n-users, m-devices)
	}
	st.produce(change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(0), after: contact(0, "u0", "free", 0)})
	st.waitDrained()
	if cs := rec.of("user u0"); len(cs) != users+1 || cs[len(cs)-1].tags["plan"] != "free" {
		t.Errorf("requests for u0 %+v, want one more, setting plan free", cs)
	}
	if s := r.sink.Stats(); s.Unmapped != 1 || s.Replays != 0 {
		t.Errorf("%d events changed no mapped column and %d were replays, want 1 and 0", s.Unmapped, s.Replays)
	}
	st.eventually("u0 and its device", all(st.hasTags("u0", map[string]string{"plan": "free", "score": "0"}), ownedBy("d0", "u0")))
}

func TestReplayedAndStaleEventsAreSkipped(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	r := st.start(crm)
	u0 := func(op event.Op, plan string, commit, lsn int64) change {
		return change{topic: contactsTopic, op: op, key: contactKey(0), after: contact(0, "u0", plan, 0), commit: commit, lsn: lsn}
	}
	u1 := func(plan string) change { // no LSN: never skipped
		return change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(1), after: contact(1, "u1", plan, 1), commit: -1}
	}
	st.produce(
		u0(event.OpCreate, "pro", 200, 190),
		u1("a"),
		u0(event.OpCreate, "pro", 200, 190), // the connector repeating a transaction
		u0(event.OpUpdate, "free", 100, 90), // an older change
		u1("b"),
		u0(event.OpSnapshot, "free", 150, 150), // read at LSN 150: older than the change committed at 200
		u0(event.OpUpdate, "gold", 300, 290),
		u0(event.OpUpdate, "free", 250, 240), // older than gold
	)
	st.waitDrained()
	if n := r.sink.Stats().Replays; n != 4 {
		t.Errorf("%d events skipped, want 4", n)
	}
	st.eventually("the newest changes", all(
		st.hasTags("u0", map[string]string{"plan": "gold", "score": "0"}),
		st.hasTags("u1", map[string]string{"plan": "b", "score": "1"})))
	if u, _ := st.emu.State().UserByExternalID("u0"); !maps.Equal(u.Tags, map[string]string{"plan": "gold", "score": "0"}) {
		t.Errorf("u0 has tags %v: an older event overwrote a newer one", u.Tags)
	}
}
