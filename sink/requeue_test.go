package sink_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
)

// rateLimited429 is OneSignal's 429 with a Retry-After.
type rateLimited429 struct{ after time.Duration }

func (rateLimited429) Error() string                       { return "HTTP 429 Too Many Requests" }
func (rateLimited429) Retryable() bool                     { return true }
func (rateLimited429) HTTPStatus() int                     { return 429 }
func (e rateLimited429) RetryAfterDuration() time.Duration { return e.after }

// A regression test: a retry used to wait out its Retry-After on the
// worker, so with one worker every other user waited too.
func TestARetryWaitingForRetryAfterLeavesTheWorkerToOtherUsers(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	produce(t, b, userEvent("u0", "a"), userEvent("u1", "x"), userEvent("u2", "x"), userEvent("u3", "x"))
	cfg, clock := manualConfig()
	cfg.Concurrency = 1
	var refused atomic.Bool
	api := newRecordingAPI(clock, func(_ context.Context, c call) error {
		if c.id == "u0" && refused.CompareAndSwap(false, true) {
			return rateLimited429{after: time.Minute}
		}
		return nil
	})
	run := startSink(t, b, "g", api, cfg)

	waitFor(t, "u1, u2 and u3 to be applied while u0 waits a minute", func() bool {
		calls := byTarget(api.recorded())
		return len(calls["user u1"]) == 1 && len(calls["user u2"]) == 1 && len(calls["user u3"]) == 1
	})
	if n := len(byTarget(api.recorded())["user u0"]); n != 1 {
		t.Fatalf("u0 was called %d times before its Retry-After passed, want once", n)
	}
	if got := run.sink.Stats().Retries; got != 1 {
		t.Errorf("Stats().Retries = %d, want 1", got)
	}
	clock.Advance(time.Minute)
	waitFor(t, "u0's retry after a minute", func() bool { return len(byTarget(api.recorded())["user u0"]) == 2 })
	waitFor(t, "everything committed", func() bool { return committed(t, b, "g") == 4 })
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}
	if calls := byTarget(api.recorded())["user u0"]; calls[1].start.Sub(calls[0].end) < time.Minute {
		t.Errorf("u0 was retried %v after the 429, want at least its Retry-After of a minute", calls[1].start.Sub(calls[0].end))
	}
}
