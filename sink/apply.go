package sink

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/onesignal-cdc/onesignal-cdc/retry"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// work applies the targets handed to it, one attempt at a time, until ctx
// ends. A failure that must stop the sink is passed to stop. A request
// that fails for now goes back to the scheduler to wait out its backoff
// there, so the worker moves on to other targets meanwhile.
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
		err := s.attempt(ctx, t, r)
		if ctx.Err() != nil {
			return // stopping: the request's messages stay not done
		}
		if err == nil {
			s.sched.release(t, r, applied)
			r.applied()
			continue
		}
		if f, ok := errors.AsType[fatalError](err); ok && f.Fatal() {
			what, fix := "OneSignal refused the credentials", "check onesignal.app_id and onesignal.api_key (and onesignal.model and onesignal.identity_verification)"
			if h, ok := errors.AsType[statusError](err); ok && h.HTTPStatus() >= 300 && h.HTTPStatus() < 400 {
				what, fix = "OneSignal's address answered with a redirect", "set onesignal.base_url to the API's address"
			}
			if re, ok := errors.AsType[refusalError](err); ok && re.Refusal() != "" {
				// Which credential, for which app, and its fix: the same words as validate --online.
				stop(fmt.Errorf("%s. The sink stops with message %s and everything after it uncommitted: %w", re.Refusal(), r.from[0].where(), err))
				return
			}
			stop(fmt.Errorf("%s, so the sink stops with message %s and everything after it uncommitted: %s: %w", what, r.from[0].where(), fix, err))
			return
		}
		if retry.Retryable(err) {
			wait := s.backoff(r, err)
			s.stats.retries.Add(1)
			s.log.Warn("onesignal call failed; retrying", zap.Stringer("target", t.key), zap.Stringer("op", r),
				zap.Int("messages", len(r.from)), zap.String("first_message", r.from[0].where()), zap.Error(err), zap.Duration("wait", wait))
			s.sched.retry(t, r, wait)
			continue
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

// backoff is how long r waits before its next attempt after err: an
// exponential schedule with jitter (Config.Retry), or the server's
// Retry-After when that is longer. The target's one-second window comes
// on top, in the scheduler.
func (s *Sink) backoff(r *request, err error) time.Duration {
	r.attempts++
	initial, most := s.cfg.Retry.Initial, s.cfg.Retry.Max
	if initial <= 0 {
		initial = 200 * time.Millisecond
	}
	if most <= 0 {
		most = 30 * time.Second
	}
	d := initial
	for i := 1; i < r.attempts && d < most; i++ {
		d = d * 3 / 2
	}
	d = min(d, most)
	d = time.Duration(float64(d) * (0.5 + rand.Float64())) // ±50 %, as cenkalti/backoff
	return max(d, retry.RetryAfter(err))
}

// attempt makes one attempt at r: it waits for the target's window and a
// token, then calls OneSignal.
func (s *Sink) attempt(ctx context.Context, t *target, r *request) error {
	if err := s.sched.window(ctx, t); err != nil {
		return err
	}
	if err := s.limiter.wait(ctx); err != nil {
		return err
	}
	sent := s.cfg.Clock.Now()
	s.stats.requests.Add(1)
	err := s.call(ctx, t.key, r)
	s.sched.attempted(t)
	if isTooManyRequests(err) {
		s.limiter.slowDown(sent)
	}
	return err
}

// call sends r. With a parked-tags store (the player model), the tags
// parked for the request's user go along: under a tag change, beneath the
// request's own values, and with a link or a record, which gives the user
// a device. Once OneSignal took them they are forgotten; a tag change
// that finds no device for its user parks its tags instead. Calls about
// one user hold its lock throughout, so a link never reads the parked
// tags while a tag change is about to park or clear them.
func (s *Sink) call(ctx context.Context, to targetKey, r *request) error {
	user := r.user(to)
	if s.cfg.Parked == nil || user == "" {
		if err := s.checkTagLimit(to, r, r.tags, nil); err != nil {
			return err
		}
		return r.send(ctx, s.api, to, r.tags, nil)
	}
	unlock := s.users.lock(user)
	defer unlock()
	parked := s.cfg.Parked.Get(user)
	tags, carry := r.tags, parked
	if r.kind == transform.SetTags && len(r.records) == 0 {
		tags, carry = make(map[string]string, len(parked)+len(r.tags)), nil
		maps.Copy(tags, parked)
		maps.Copy(tags, r.tags)
	}
	if err := s.checkTagLimit(to, r, tags, carry); err != nil {
		return err
	}
	err := r.send(ctx, s.api, to, tags, carry)
	if nd, ok := errors.AsType[noDeviceError](err); ok && nd.NoDevice() && carry == nil {
		// Nowhere to put the tags yet: keep them for the device linked
		// later. The message is done once the store holds them.
		s.stats.parked.Add(1)
		return s.park(ctx, user, tags)
	}
	if err == nil && len(parked) > 0 {
		return s.park(ctx, user, nil)
	}
	return err
}

// park stores tags as user's parked tags; deletions alone are not worth
// keeping (a device linked later has no mapped tags to delete), so they
// forget the user's entry like nil does. It retries until the store holds
// them or ctx ends.
func (s *Sink) park(ctx context.Context, user string, tags map[string]string) error {
	if nonEmpty(tags) == 0 {
		tags = nil
	}
	err := s.cfg.Retry.Do(ctx, func() error { return retry.Transient(s.cfg.Parked.Put(ctx, user, tags)) }, func(err error, wait time.Duration) {
		s.log.Warn("storing parked tags failed; retrying", zap.Error(err), zap.Duration("wait", wait))
	})
	if err != nil {
		return fmt.Errorf("park the tags of user %s: %w", user, err)
	}
	return nil
}

// tagLimitError is a request that would give a user more tags than
// onesignal.tag_limit: permanent, so its messages are dead-lettered.
type tagLimitError struct {
	to           targetKey
	count, limit int
}

func (e *tagLimitError) Error() string {
	return fmt.Sprintf("the change would give %s %d tags, more than onesignal.tag_limit %d: map fewer tag columns, or raise the limit with your OneSignal plan",
		e.to, e.count, e.limit)
}

// checkTagLimit refuses a request whose tags number more than the tag
// limit: the non-empty tags the call writes (tags, or carry with a link or
// record), or those of the whole request before it was split, whichever is
// more. Tags the user got elsewhere are not known here; OneSignal's own
// refusal covers them.
func (s *Sink) checkTagLimit(to targetKey, r *request, tags, carry map[string]string) error {
	if s.cfg.TagLimit <= 0 {
		return nil
	}
	n := max(r.tagCount, nonEmpty(carry))
	if r.kind == transform.SetTags && len(r.records) == 0 {
		n = max(n, nonEmpty(tags))
	}
	if n > s.cfg.TagLimit {
		return &tagLimitError{to: to, count: n, limit: s.cfg.TagLimit}
	}
	return nil
}

// nonEmpty counts the tags that are set rather than deleted.
func nonEmpty(tags map[string]string) int {
	n := 0
	for _, v := range tags {
		if v != "" {
			n++
		}
	}
	return n
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
		rej := &rejected{stage: "onesignal", status: status, err: fmt.Errorf("message %s: %s for %s (one request for %d operations): %w", m.where(), r, to, len(r.from), err)}
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
