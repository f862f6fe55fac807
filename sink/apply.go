package sink

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// work applies the targets handed to it, one request at a time, until ctx
// ends. A failure that must stop the sink is passed to stop.
func (s *Sink) work(ctx context.Context, stop context.CancelCauseFunc, ready <-chan *target) {
	for {
		var t *target
		select {
		case <-ctx.Done():
			return
		case t = <-ready:
		}
		r, same := s.sched.take(t)
		if same {
			s.stats.unchanged.Add(1)
			s.sched.release(t, r, unchanged)
			r.applied()
			continue
		}
		err := s.send(ctx, t, r)
		if ctx.Err() != nil {
			return // stopping: the request's messages stay not done
		}
		if err == nil {
			s.sched.release(t, r, applied)
			r.applied()
			continue
		}
		if f, ok := errors.AsType[fatalError](err); ok && f.Fatal() {
			stop(fmt.Errorf("OneSignal refused the credentials, so the sink stops with message %s and everything after it uncommitted: check onesignal.app_id and onesignal.api_key: %w",
				r.from[0].where(), err))
			return
		}
		s.sched.release(t, r, refused)
		if err := s.refuse(ctx, t.key, r, err); err != nil {
			if ctx.Err() == nil {
				stop(err)
			}
			return
		}
	}
}

// send makes attempts at r until one succeeds, fails for good, or ctx
// ends. Each attempt waits for the target's window, then for a token.
func (s *Sink) send(ctx context.Context, t *target, r *request) error {
	attempt := func() error {
		if err := s.sched.window(ctx, t); err != nil {
			return err
		}
		if err := s.limiter.wait(ctx); err != nil {
			return err
		}
		sent := s.cfg.Clock.Now()
		s.stats.requests.Add(1)
		err := r.send(ctx, s.api, t.key)
		s.sched.attempted(t)
		if isTooManyRequests(err) {
			s.limiter.slowDown(sent)
		}
		return err
	}
	return s.cfg.Retry.Do(ctx, attempt, func(err error, wait time.Duration) {
		s.log.Warn("onesignal call failed; retrying", zap.Stringer("target", t.key), zap.Stringer("op", r.kind),
			zap.Int("messages", len(r.from)), zap.String("first_message", r.from[0].where()), zap.Error(err), zap.Duration("wait", wait))
	})
}

// refuse dead-letters every message that contributed to r, which
// OneSignal refused for good with err, and marks each done; without a
// dead-letter topic it returns the error that stops the sink.
func (s *Sink) refuse(ctx context.Context, to targetKey, r *request, err error) error {
	status := 0
	if h, ok := errors.AsType[statusError](err); ok {
		status = h.HTTPStatus()
	}
	for _, m := range r.from {
		rej := &rejected{stage: "onesignal", status: status, err: fmt.Errorf("message %s: %s for %s (one request for %d operations): %w", m.where(), r.kind, to, len(r.from), err)}
		if err := s.rejectMessage(ctx, m, rej); err != nil {
			return err
		}
	}
	return nil
}

// isTooManyRequests reports whether err is OneSignal's 429.
func isTooManyRequests(err error) bool {
	h, ok := errors.AsType[statusError](err)
	return ok && h.HTTPStatus() == http.StatusTooManyRequests
}
