package sink_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
)

// OneSignal's limits: one write a second per user or device, an app-wide
// rate, 429s; and the sink's own bound on what it holds.

// allWaiting reports whether every message fetched is done or waits in the
// scheduler, and want were fetched: nothing is on its way there any more.
func allWaiting(s *sink.Sink, want int64) error {
	st := s.Stats()
	waiting := int64(s.Waiting())
	if st.Fetched != want || st.Done+waiting != st.Fetched {
		return fmt.Errorf("%d messages fetched of %d, %d done, %d waiting", st.Fetched, want, st.Done, waiting)
	}
	return nil
}

func TestABusyUsersChangesWithinASecondBecomeOneRequest(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	clock := sink.NewFakeClock()
	rec := newRecorder(clock, nil)
	r := st.startWith(crm, options{clock: clock, api: rec.wrap})
	const users, updates = 20, 50
	var cs []change
	for i := range updates {
		for u := range users {
			op := event.OpUpdate
			if i == 0 {
				op = event.OpCreate
			}
			cs = append(cs, change{topic: contactsTopic, op: op, key: contactKey(u), after: contact(u, fmt.Sprintf("u%d", u), fmt.Sprintf("v%d", i), u)})
		}
	}
	st.produce(cs...)
	// The clock stands still: each user gets one request now, and every
	// later change waits for the user's window to open. Each event gives
	// one contribution: twice as many messages as events.
	waitFor(t, "every change waiting and each user's first request answered", func() error {
		if n := rec.count(); n < users {
			return fmt.Errorf("%d requests answered", n)
		}
		return allWaiting(r.sink, 2*users*updates)
	})
	clock.Advance(time.Second)
	st.waitDrained()
	calls := rec.recorded()
	for target, cs := range byTarget(calls) {
		if len(cs) > 2 {
			t.Errorf("%s: %d requests for %d changes, want at most 2", target, len(cs), updates)
		}
	}
	s := st.emu.State()
	for u := range users {
		if got, _ := s.UserByExternalID(fmt.Sprintf("u%d", u)); got.Tags["plan"] != fmt.Sprintf("v%d", updates-1) {
			t.Errorf("u%d has tags %v, want the last value v%d", u, got.Tags, updates-1)
		}
	}
	t.Logf("%d changes, %d requests: %.3f requests per change", users*updates, len(calls), float64(len(calls))/float64(users*updates))
}

func TestAUsersFirstChangeInAQuietSecondGoesOutAtOnceAndTheNextWaitsForItsWindow(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	clock := sink.NewFakeClock()
	rec := newRecorder(clock, nil)
	r := st.startWith(crm, options{clock: clock, api: rec.wrap})
	calls := func(n int) func() error {
		return func() error {
			if got := rec.count(); got != n {
				return fmt.Errorf("%d requests answered, want %d", got, n)
			}
			return nil
		}
	}
	update := func(plan string) change {
		return change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(0), after: contact(0, "u0", plan, 0)}
	}
	start := clock.Now()
	st.produce(change{topic: contactsTopic, op: event.OpCreate, key: contactKey(0), after: contact(0, "u0", "a", 0)})
	waitFor(t, "the first change sent with the clock standing still", calls(1))

	st.produce(update("b"))
	waitFor(t, "the second change waiting for the window", func() error {
		if n := r.sink.Waiting(); n != 1 {
			return fmt.Errorf("%d messages waiting", n)
		}
		return nil
	})
	if n := rec.count(); n != 1 {
		t.Fatalf("%d requests within the user's second, want 1", n)
	}
	clock.Advance(time.Second)
	waitFor(t, "the second change sent once the window opened", calls(2))

	clock.Advance(10 * time.Second) // a quiet while
	quiet := clock.Now()
	st.produce(update("c"))
	waitFor(t, "the third change sent at once", calls(3))
	cs := rec.of("user u0")
	if cs[0].start != start || cs[2].start != quiet {
		t.Errorf("requests started at %s and %s, want %s and %s: a first change in a quiet second does not wait", cs[0].start, cs[2].start, start, quiet)
	}
	if gap := cs[1].start.Sub(cs[0].end); gap < time.Second {
		t.Errorf("the second request started %s after the first one's answer, want at least 1s", gap)
	}
	st.eventually("u0's last plan", st.hasTags("u0", map[string]string{"plan": "c", "score": "0"}))
}

func TestATargetIsSentToAtMostOnceASecondAndNeverTwiceAtOnce(t *testing.T) {
	t.Parallel()
	clock := sink.NewFakeClock()
	clock.Run(t, 20*time.Millisecond, time.Millisecond)
	// The emulator enforces OneSignal's limits on the sink's clock: any
	// write to a user or device within a second of the last is a 429.
	st := newStack(t, sink.ModelUser, emulator.Config{Clock: clock.Now, RateLimits: emulator.RateLimits{Enabled: true}})
	const users, devices, rounds, batches = 10, 5, 5, 4
	for d := range devices {
		st.addDevices(fmt.Sprintf("d%d", d))
	}
	var attempts atomic.Int64
	rec := newRecorder(clock, func(_ context.Context, _ call, next func() error) error {
		if attempts.Add(1)%3 == 0 {
			return unavailable503{} // a retry must wait for the window too
		}
		return next()
	})
	st.startWith(crm, options{clock: clock, api: rec.wrap})
	owner := func(d, batch, round int) string { return fmt.Sprintf("u%d", (d+batch+round)%users) }
	for batch := range batches {
		var cs []change
		for round := range rounds {
			for u := range users {
				cs = append(cs, change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(u), after: contact(u, fmt.Sprintf("u%d", u), fmt.Sprintf("b%dr%d", batch, round), u)})
			}
			if batch == 0 {
				continue // the users first: a link to a user the emulator lacks is refused
			}
			for d := range devices {
				dev := fmt.Sprintf("d%d", d)
				cs = append(cs, change{topic: devicesTopic, op: event.OpUpdate, key: deviceKey(0, dev), after: device(0, dev, owner(d, batch, round))})
			}
		}
		st.produce(cs...)
		st.waitDrained()
	}
	if n := rec.overlapping(); n > 0 {
		t.Errorf("%d requests started while another to their target was in flight", n)
	}
	for target, cs := range byTarget(rec.recorded()) {
		for i := 1; i < len(cs); i++ {
			if gap := cs[i].start.Sub(cs[i-1].end); gap < time.Second {
				t.Errorf("%s: request %d started %s after the previous one's answer, want at least 1s", target, i, gap)
			}
		}
	}
	if n := st.emu.Stats().RateLimited; n > 0 {
		t.Errorf("the emulator's rate limits refused %d requests", n)
	}
	s := st.emu.State()
	for u := range users {
		if got, _ := s.UserByExternalID(fmt.Sprintf("u%d", u)); got.Tags["plan"] != fmt.Sprintf("b%dr%d", batches-1, rounds-1) {
			t.Errorf("u%d has tags %v, want the last", u, got.Tags)
		}
	}
	for d := range devices {
		if got, want := s.ExternalIDOf(fmt.Sprintf("d%d", d)), owner(d, batches-1, rounds-1); got != want {
			t.Errorf("d%d belongs to %q, want %q", d, got, want)
		}
	}
}

func TestTheAppWideRateLimitHoldsForEveryHTTPRequest(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	var mu sync.Mutex
	var arrivals []time.Time
	st.emu.OnArrival(func(a emulator.Arrival) {
		mu.Lock()
		defer mu.Unlock()
		arrivals = append(arrivals, a.At)
	})
	// A third of the users exist already: the client's create answers 200
	// and it updates them with a second request, which takes a token too.
	const n, existing, rate, burst = 150, 50, 100, 10
	for i := range existing {
		st.emu.AddUser(fmt.Sprintf("u%d", i), nil)
	}
	r := st.startWith(crm, options{rate: rate})
	st.produce(users(n, "free")...)
	st.waitDrained()
	stats := r.sink.Stats()
	mu.Lock()
	defer mu.Unlock()
	if len(arrivals) != n+existing {
		t.Errorf("%d requests arrived, want %d: one per new user, two per existing one", len(arrivals), n+existing)
	}
	slices.SortFunc(arrivals, time.Time.Compare)
	most := 0
	for i, a := range arrivals {
		n, _ := slices.BinarySearchFunc(arrivals[i:], a.Add(time.Second), time.Time.Compare)
		most = max(most, n)
	}
	// Requests arrive a little after the limiter lets them go, some later
	// than others, which bunches them a little: a tolerance of a tenth.
	if most > rate+burst+rate/10 {
		t.Errorf("%d requests arrived in one second, want at most %d (rate_limit) + %d (burst)", most, rate, burst)
	}
	if took := arrivals[len(arrivals)-1].Sub(arrivals[0]); took < time.Duration(len(arrivals)-burst)*time.Second/rate-100*time.Millisecond {
		t.Errorf("%d requests took %s, too fast for %d/s", len(arrivals), took, rate)
	}
	if stats.RateLimitWaits == 0 || stats.RateLimitWaited == 0 {
		t.Errorf("stats %+v count no waits for the limiter", stats)
	}
	t.Logf("%d requests, at most %d in one second; %d waits for the limiter, %s in all", len(arrivals), most, stats.RateLimitWaits, stats.RateLimitWaited)
}

func TestA429SlowsTheAppDownAndItsRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	clock := sink.NewFakeClock()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	if err := st.emu.SetAnswers(emulator.Answer{Status: 429, Times: 3, Header: map[string]string{"Retry-After": "30"},
		Body: `{"errors":["API rate limit exceeded"]}`}); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(clock, nil)
	r := st.startWith(crm, options{clock: clock, api: rec.wrap})
	st.produce(users(10, "free")...)
	waitFor(t, "three 429s and the other users applied", func() error {
		if n := st.emu.Stats().TooManyRequests; n != 3 {
			return fmt.Errorf("%d 429s", n)
		}
		if n := rec.count(); n != 10 {
			return fmt.Errorf("%d requests answered", n)
		}
		return nil
	})
	if s := r.sink.Stats(); s.SlowDowns == 0 || s.Rate >= 900 {
		t.Errorf("%d slow-downs, rate %.0f/s after 429s, want it lowered from 900/s", s.SlowDowns, s.Rate)
	}
	waitFor(t, "everything committed once Retry-After passed", func() error {
		clock.Advance(time.Second)
		return st.drained()
	})
	refused := 0
	for target, cs := range byTarget(rec.recorded()) {
		if _, ok := errors.AsType[*onesignal.APIError](cs[0].err); !ok {
			continue
		}
		refused++
		if len(cs) < 2 || cs[1].start.Sub(cs[0].end) < 30*time.Second {
			t.Errorf("%s: requests %+v, want the retry 30s (Retry-After) after the 429", target, cs)
		}
	}
	if refused != 3 {
		t.Errorf("%d users had a 429, want 3", refused)
	}
	clock.Advance(time.Minute)
	if s := r.sink.Stats(); s.Rate != 900 {
		t.Errorf("rate %.0f/s a minute after the 429s, want 900/s again", s.Rate)
	}
}

func TestARetryWaitingForRetryAfterLeavesTheWorkerToOtherUsers(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	clock := sink.NewFakeClock()
	var refused atomic.Bool
	rec := newRecorder(clock, func(_ context.Context, c call, next func() error) error {
		if c.id == "u0" && refused.CompareAndSwap(false, true) {
			return tooMany429{after: time.Minute}
		}
		return next()
	})
	r := st.startWith(crm, options{clock: clock, api: rec.wrap, config: func(c *sink.Config) { c.Concurrency = 1 }})
	st.produce(users(1, "a")...)
	waitFor(t, "u0's 429", func() error {
		if !refused.Load() {
			return errors.New("no 429 yet")
		}
		return nil
	})
	st.produce(users(4, "x")[1:]...)
	waitFor(t, "u1, u2 and u3 applied while u0 waits a minute", func() error {
		for _, u := range []string{"u1", "u2", "u3"} {
			if len(rec.of("user "+u)) != 1 {
				return fmt.Errorf("%s not applied", u)
			}
		}
		return nil
	})
	if n := len(rec.of("user u0")); n != 1 {
		t.Fatalf("u0 was called %d times before its Retry-After passed, want once", n)
	}
	if n := r.sink.Stats().Retries; n != 1 {
		t.Errorf("Stats().Retries = %d, want 1", n)
	}
	clock.Advance(time.Minute)
	st.waitDrained()
	if cs := rec.of("user u0"); len(cs) != 2 || cs[1].start.Sub(cs[0].end) < time.Minute {
		t.Errorf("u0's requests %+v, want the retry at least its Retry-After of a minute after the 429", cs)
	}
}

func TestAtMostMaxInFlightMessagesAreFetchedAndNotDone(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	release := make(chan struct{})
	var inFlight, most atomic.Int64
	rec := newRecorder(nil, func(ctx context.Context, _ call, next func() error) error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		select {
		case <-release:
			return next()
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	const limit, concurrency = 20, 4
	r := st.startWith(crm, options{api: rec.wrap, config: func(c *sink.Config) { c.MaxInFlight, c.Concurrency = limit, concurrency }})
	st.produce(users(200, "free")...)
	inFlightNow := func() int64 { s := r.sink.Stats(); return s.Fetched - s.Done }
	// Every request is held: the sink fills up, to no more than its cap.
	waitFor(t, "the sink holding many messages", func() error {
		if n := inFlightNow(); n < limit/2 {
			return fmt.Errorf("%d messages fetched and not done", n)
		}
		if n := most.Load(); n != concurrency {
			return fmt.Errorf("%d requests in flight", n)
		}
		return nil
	})
	for range 20 {
		time.Sleep(10 * time.Millisecond)
		// Each stage holds at most max_in_flight: the row stage's events
		// on their way to the targets topic, the target stage's records.
		if n := inFlightNow(); n > 2*limit {
			t.Fatalf("%d messages fetched and not done with every request held, want at most %d (max_in_flight per stage)", n, 2*limit)
		}
	}
	if n := most.Load(); n != concurrency {
		t.Errorf("%d requests in flight at most, want %d (concurrency)", n, concurrency)
	}

	close(release)
	var worst atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			default:
			}
			worst.Store(max(worst.Load(), inFlightNow()))
			time.Sleep(100 * time.Microsecond)
		}
	}()
	st.waitDrained()
	close(stop)
	<-sampled
	// Draining, each stage still holds at most max_in_flight.
	if w := worst.Load(); w > 2*limit {
		t.Errorf("%d messages fetched and not done at once, want at most %d (max_in_flight per stage)", w, 2*limit)
	}
	if n := most.Load(); n > concurrency {
		t.Errorf("%d requests in flight at once, want at most %d", n, concurrency)
	}
}
