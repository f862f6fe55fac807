package sink_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
)

// manyUsers returns one event for each of n users.
func manyUsers(n int) []kafka.Message {
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = userEvent(fmt.Sprintf("u%d", i), "free")
	}
	return msgs
}

func TestSinkFetchesNoMoreThanMaxInFlightMessages(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	produce(t, b, manyUsers(200)...)
	cfg := testConfig(t)
	cfg.MaxInFlight, cfg.Concurrency = 20, 4
	release := make(chan struct{})
	var inFlight, most atomic.Int64
	api := newRecordingAPI(cfg.Clock, func(ctx context.Context, _ call) error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	run := startSink(t, b, "g", api, cfg)

	waitFor(t, "the sink to fetch up to its cap", func() bool { return run.sink.Stats().Fetched == 20 })
	for range 20 { // while the API holds every request
		time.Sleep(10 * time.Millisecond)
		if st := run.sink.Stats(); st.Fetched != 20 {
			t.Fatalf("fetched %d messages with none done, want 20 (max_in_flight)", st.Fetched)
		}
	}
	if n := most.Load(); n != 4 {
		t.Errorf("%d requests in flight at most, want 4 (concurrency)", n)
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
			st := run.sink.Stats()
			worst.Store(max(worst.Load(), st.Fetched-st.Done))
			time.Sleep(100 * time.Microsecond)
		}
	}()
	waitFor(t, "everything to be committed", func() bool { return committed(t, b, "g") == 200 })
	close(stop)
	<-sampled
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}
	if w := worst.Load(); w > 20 {
		t.Errorf("%d messages fetched and not done at once, want at most 20", w)
	}
	if n := most.Load(); n > 4 {
		t.Errorf("%d requests in flight at once, want at most 4", n)
	}
}

func TestSinkKeepsToTheAppRateLimit(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	const users, rate, burst = 400, 50, 5
	produce(t, b, manyUsers(users)...)
	cfg := testConfig(t)
	cfg.RateLimit, cfg.Concurrency = rate, 32
	api := newRecordingAPI(cfg.Clock, nil)
	run := startSink(t, b, "g", api, cfg)
	waitFor(t, "everything to be committed", func() bool { return committed(t, b, "g") == users })
	st := run.sink.Stats()
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}

	var starts []time.Time
	for _, c := range api.recorded() {
		starts = append(starts, c.start)
	}
	slices.SortFunc(starts, time.Time.Compare)
	most := 0
	for i, s := range starts {
		n, _ := slices.BinarySearchFunc(starts[i:], s.Add(time.Second), time.Time.Compare)
		most = max(most, n)
	}
	// The calls start a little after the limiter lets them go, by the
	// clock that keeps running meanwhile: a tolerance of a few.
	if most > rate+burst+3 {
		t.Errorf("%d requests in one second, want at most %d (rate_limit) + %d (burst)", most, rate, burst)
	}
	if took := starts[len(starts)-1].Sub(starts[0]); took < (users-burst)*time.Second/rate-time.Second {
		t.Errorf("%d requests took %s, too fast for %d/s", users, took, rate)
	}
	if st.RateLimitWaits == 0 || st.RateLimitWaited == 0 {
		t.Errorf("stats %+v count no waits for the limiter", st)
	}
	t.Logf("at most %d requests in one second; %d waits for the limiter, %s in all", most, st.RateLimitWaits, st.RateLimitWaited)
}

// tooMany429 is OneSignal's rate limit answer.
type tooMany429 struct{}

func (tooMany429) Error() string   { return "HTTP 429 Too Many Requests" }
func (tooMany429) Retryable() bool { return true }
func (tooMany429) HTTPStatus() int { return 429 }

func TestSinkSlowsDownWhenOneSignalAnswers429(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	produce(t, b, manyUsers(10)...)
	cfg, clock := manualConfig()
	var calls atomic.Int64
	api := newRecordingAPI(clock, func(context.Context, call) error {
		if calls.Add(1) <= 3 {
			return tooMany429{}
		}
		return nil
	})
	run := startSink(t, b, "g", api, cfg)
	waitFor(t, "a 429 to lower the rate", func() bool { return run.sink.Stats().SlowDowns > 0 })
	if st := run.sink.Stats(); st.Rate >= 900 {
		t.Errorf("rate %.0f/s after a 429, want it lowered from 900/s", st.Rate)
	}
	clock.Advance(time.Minute) // windows open, and the rate recovers
	// A retry requeued after the advance waits on the clock again: keep it
	// moving until everything is in.
	waitFor(t, "everything to be committed", func() bool {
		clock.Advance(time.Second)
		return committed(t, b, "g") == 10
	})
	clock.Advance(time.Minute)
	if st := run.sink.Stats(); st.Rate != 900 {
		t.Errorf("rate %.0f/s a minute after the 429s, want 900/s again", st.Rate)
	}
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}
}
