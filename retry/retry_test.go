package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

type serverErr struct {
	retryable bool
	after     time.Duration
}

func (e serverErr) Error() string                     { return "server said no" }
func (e serverErr) Retryable() bool                   { return e.retryable }
func (e serverErr) RetryAfterDuration() time.Duration { return e.after }

func TestDoRetriesTransientErrorsUntilSuccess(t *testing.T) {
	calls := 0
	err := Policy{Initial: time.Millisecond, Max: time.Millisecond}.Do(context.Background(), func() error {
		calls++
		if calls < 4 {
			return Transient(errors.New("connection reset"))
		}
		return nil
	}, nil)
	if err != nil || calls != 4 {
		t.Fatalf("err=%v calls=%d, want nil after 4 calls", err, calls)
	}
}

func TestDoReturnsPermanentErrorsAtOnce(t *testing.T) {
	calls := 0
	want := serverErr{retryable: false}
	err := Policy{}.Do(context.Background(), func() error { calls++; return want }, nil)
	if !errors.Is(err, want) || calls != 1 {
		t.Fatalf("err=%v calls=%d, want the permanent error after 1 call", err, calls)
	}
}

func TestDoHonoursRetryAfterOverTheSchedule(t *testing.T) {
	var waits []time.Duration
	calls := 0
	err := Policy{Initial: time.Millisecond, Max: time.Millisecond}.Do(context.Background(), func() error {
		calls++
		if calls == 1 {
			return serverErr{retryable: true, after: 50 * time.Millisecond}
		}
		return nil
	}, func(_ error, wait time.Duration) { waits = append(waits, wait) })
	if err != nil || len(waits) != 1 || waits[0] != 50*time.Millisecond {
		t.Fatalf("err=%v waits=%v, want one wait of 50ms", err, waits)
	}
}

func TestDoStopsWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	err := Policy{Initial: time.Hour}.Do(ctx, func() error {
		cancel()
		return Transient(errors.New("broker down"))
	}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err=%v, want context.Canceled", err)
	}
}
