package retry

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/internal/errclass"
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
			return errclass.Mark(errors.New("connection reset"), errclass.Retryable)
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
		return errclass.Mark(errors.New("broker down"), errclass.Retryable)
	}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err=%v, want context.Canceled", err)
	}
}

func TestDoReturnsAFatalErrorAtOnce(t *testing.T) {
	calls := 0
	err := Policy{}.Do(context.Background(), func() error {
		calls++
		return errclass.Mark(errors.New("permission denied"), errclass.Fatal)
	}, nil)
	if err == nil || calls != 1 {
		t.Fatalf("err=%v calls=%d, want the fatal error after 1 call", err, calls)
	}
}

func TestEveryWaitLiesWithinHalfAndOneAndAHalfOfItsStep(t *testing.T) {
	p := Policy{Initial: 100 * time.Millisecond, Max: time.Second}
	steps := []time.Duration{100, 150, 225, 337, 506, 759, 1000, 1000} // ms: ×1.5 up to Max
	for i, step := range steps {
		step *= time.Millisecond
		for range 50 {
			d := p.Delay(i + 1)
			if d < step/2-time.Millisecond || d > step*3/2+time.Millisecond {
				t.Fatalf("Delay(%d) = %s, want within ±50%% of %s", i+1, d, step)
			}
		}
	}
	if d := p.Delay(1_000_000); d < p.Max/2 || d > p.Max*3/2 {
		t.Errorf("Delay after a million failures = %s, want about Max", d)
	}
}

func TestTheZeroPolicyIsTheSinkPreset(t *testing.T) {
	for range 50 {
		if d := (Policy{}).Delay(1); d < Sink.Initial/2 || d > Sink.Initial*3/2 {
			t.Fatalf("the zero policy's first wait = %s, want about %s", d, Sink.Initial)
		}
	}
}

func TestABackoffStartsOverAfterALongSessionOnly(t *testing.T) {
	p := Policy{Initial: 10 * time.Millisecond, Max: time.Hour, ResetAfter: time.Hour}
	b := p.Start()
	for range 20 {
		b.Next(nil)
	}
	b.Begin()
	b.Done() // a short session: the schedule goes on
	if d := b.Next(nil); d < time.Second {
		t.Fatalf("after 20 steps and a short session the wait is %s, want it grown", d)
	}
	b.started = time.Now().Add(-2 * time.Hour) // a session that lasted two hours
	b.Done()
	if d := b.Next(nil); d > 15*time.Millisecond {
		t.Errorf("after a long session the wait is %s, want the first step again", d)
	}
}
