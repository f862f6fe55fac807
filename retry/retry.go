// Package retry runs an operation until it succeeds, fails for good, or its
// context ends. Errors decide for themselves: an error (anywhere in its
// chain) with a Retryable() bool method that returns true is retried, every
// other error is returned at once. A server's Retry-After, carried by an
// error's RetryAfterDuration(), wins over the backoff schedule.
//
// There is deliberately no give-up time: a transient fault (Kafka down, the
// API answering 503) is waited out, never turned into data loss. Callers end
// the wait by cancelling the context.
package retry

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Policy is the backoff schedule. The zero value means the defaults.
type Policy struct {
	Initial time.Duration // first wait; default 200ms
	Max     time.Duration // longest wait; default 30s
}

// Retryable reports whether err says it is worth trying again.
func Retryable(err error) bool {
	var r interface{ Retryable() bool }
	return errors.As(err, &r) && r.Retryable()
}

// RetryAfter returns the wait the server asked for, or 0.
func RetryAfter(err error) time.Duration {
	var r interface{ RetryAfterDuration() time.Duration }
	if errors.As(err, &r) {
		return r.RetryAfterDuration()
	}
	return 0
}

// Transient marks err as retryable.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return transient{err}
}

type transient struct{ err error }

func (t transient) Error() string   { return t.err.Error() }
func (t transient) Unwrap() error   { return t.err }
func (t transient) Retryable() bool { return true }

// Do calls op until it returns nil or a non-retryable error, or ctx ends.
// notify, if not nil, is called before each wait with the error and the wait.
// It returns op's last error, or ctx's error when the wait was cut short.
func (p Policy) Do(ctx context.Context, op func() error, notify func(err error, wait time.Duration)) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = orDefault(p.Initial, 200*time.Millisecond)
	b.MaxInterval = orDefault(p.Max, 30*time.Second)
	b.MaxElapsedTime = 0 // never give up on a transient error
	b.Reset()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		err := op()
		if err == nil || !Retryable(err) {
			return err
		}
		wait := max(b.NextBackOff(), RetryAfter(err))
		if notify != nil {
			notify(err, wait)
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-timer.C:
		}
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
