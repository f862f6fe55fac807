package sink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/internal/errclass"
	"github.com/onesignal-cdc/onesignal-cdc/retry"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
)

// noDeviceError is a tag change by external id that found no device
// carrying the id (player model).
type noDeviceError interface {
	error
	NoDevice() bool
}

// statusError is an API error that knows its HTTP status.
type statusError interface {
	error
	HTTPStatus() int
}

// refusalError is an error that can say which credential OneSignal
// refused, naming the app and the fix; "" when it refused none.
type refusalError interface {
	error
	Refusal() string
}

// work brings the targets handed to it to their desired state, one
// request at a time, until ctx ends. A failure that must stop the sink is
// passed to stop. A request that fails for now puts its target back to
// wait out its backoff in the scheduler, so the worker serves others.
func (g *generation) work(ctx context.Context, stop context.CancelCauseFunc, ready <-chan *target) {
	for {
		var t *target
		select {
		case <-ctx.Done():
			return
		case t = <-ready:
		}
		if err := g.step(ctx, t); err != nil {
			if ctx.Err() == nil {
				stop(err)
			}
			return
		}
	}
}

// step makes one request for t, or finishes its messages when there is
// nothing left to send. It returns an error only when the sink must stop.
func (g *generation) step(ctx context.Context, t *target) error {
	s := g.s
	tk := g.sched.take(t)
	covered := g.sched.pendingNow(t)
	r, err := g.plan(t, tk)
	if err != nil {
		if _, ok := errors.AsType[*tagLimitError](err); ok {
			return g.refuse(ctx, t, "tags", err)
		}
		return err
	}
	if r == nil {
		g.finish(g.sched.release(t, covered, false))
		return nil
	}
	if len(r.before) > 0 {
		if err := g.write(g.writeCtx, s.cfg.Targets, "targets", r.before); err != nil {
			return stopped(ctx, err)
		}
	}
	if r.kind == callAwait {
		g.sched.await(t, r.owner, r.version, covered)
		return nil
	}
	if r.kind != callAnswer { // an answer is done once its records are written
		err = g.attempt(ctx, t, r)
	}
	if ctx.Err() != nil {
		return nil // stopping: the messages stay not done
	}
	if nd, ok := errors.AsType[noDeviceError](err); ok && nd.NoDevice() {
		// No device carries the user's id yet: the tags stay in the
		// state, and the link of its first device carries them.
		s.stats.noDevice.Add(1)
		err = nil
	}
	class := errclass.Of(err) // the OneSignal client's errors say it (sink/onesignal/errors.go)
	switch {
	case err == nil:
		if len(r.after) > 0 {
			if err := g.write(g.writeCtx, s.cfg.Targets, "targets", r.after); err != nil {
				return stopped(ctx, err)
			}
		}
		g.sched.accepted(t, r)
		// Plan again at once: when nothing is left, the messages are done
		// now rather than after the next window.
		tk = g.sched.take(t)
		covered = g.sched.pendingNow(t)
		next, err := g.plan(t, tk)
		if err != nil && !errors.Is(err, errTagLimit) {
			return err
		}
		if next == nil && err == nil {
			g.finish(g.sched.release(t, covered, false))
			return nil
		}
		g.sched.release(t, 0, true)
		return nil
	case class == errclass.Fatal:
		what, fix := "OneSignal refused the credentials", "check onesignal.app_id and onesignal.api_key (and onesignal.model)"
		if h, ok := errors.AsType[statusError](err); ok && h.HTTPStatus() >= 300 && h.HTTPStatus() < 400 {
			what, fix = "OneSignal's address answered with a redirect", "set onesignal.base_url to the API's address"
		}
		first := "its first change"
		if p := g.sched.peek(t); p != nil {
			first = "message " + p.where()
		}
		if re, ok := errors.AsType[refusalError](err); ok && re.Refusal() != "" {
			// Which credential, for which app, and its fix: the same words as validate --online.
			return fmt.Errorf("%s. The sink stops with %s and everything after it uncommitted: %w", re.Refusal(), first, err)
		}
		return fmt.Errorf("%s, so the sink stops with %s and everything after it uncommitted: %s: %w", what, first, fix, err)
	case class == errclass.Retryable:
		// The request may have been applied (an answer cut, a timeout):
		// what OneSignal holds of its part is unknown now, so the part is
		// sent again even if the desired state goes back to what was last
		// accepted.
		g.sched.forget(t, r.part)
		if r.kind == callAddRecord && len(r.tags) > 0 {
			g.sched.forgetTagsOf(t) // the device may carry the write's tags now
		}
		if r.kind == callAddRecord {
			// The record may be this user's now: its target is told, as
			// of an accepted write, in case the user is not its owner.
			if err := g.write(g.writeCtx, s.cfg.Targets, "targets", r.after); err != nil {
				return stopped(ctx, err)
			}
		}
		wait := g.backoff(t, err)
		s.stats.retries.Add(1)
		s.retryLog.note(r.String(), err)
		g.sched.retry(t, wait)
		return nil
	}
	return g.refuse(ctx, t, r.part, err)
}

// errTagLimit is matched by tagLimitError.
var errTagLimit = errors.New("tag limit")

func (e *tagLimitError) Is(target error) bool { return target == errTagLimit }

// finish marks messages done.
func (g *generation) finish(done []*fetched) {
	for _, m := range done {
		m.finish()
	}
}

// refuse dead-letters every message of t, whose desired state OneSignal
// refused for good with err (or the sink did, for its tag limit), and
// marks each done; t's memory of part is forgotten. Without a dead-letter
// topic it returns the error that stops the sink.
func (g *generation) refuse(ctx context.Context, t *target, part string, err error) error {
	status := 0
	if h, ok := errors.AsType[statusError](err); ok {
		status = h.HTTPStatus()
	}
	g.sched.forget(t, part)
	pending := g.sched.takePending(t)
	g.sched.release(t, 0, false)
	for _, m := range pending {
		rej := &rejected{stage: "onesignal", status: status, err: fmt.Errorf("message %s: %s (one request for %d messages): %w", m.where(), t.key, len(pending), err)}
		if err := g.reject(ctx, m, rej); err != nil {
			return err
		}
	}
	return nil
}

// backoff is how long t waits before its next attempt after err: the
// step of Config.Retry's schedule for its failures in a row, or the
// server's Retry-After when that is longer. The target's one-second
// window comes on top, in the scheduler.
func (g *generation) backoff(t *target, err error) time.Duration {
	return max(g.s.cfg.Retry.Delay(g.sched.failures(t)), retry.RetryAfter(err))
}

// attempt makes one attempt at r once the target's window is open.
func (g *generation) attempt(ctx context.Context, t *target, r *request) error {
	if err := g.sched.window(ctx, t); err != nil {
		return err
	}
	if r.kind == callSetUser {
		g.sched.sendingTags(t, r.version)
	}
	g.s.stats.requests.Add(1)
	err := g.call(ctx, r)
	g.sched.attempted(t)
	return err
}

// call sends r.
func (g *generation) call(ctx context.Context, r *request) error {
	api := g.s.api
	switch r.kind {
	case callSetUser:
		return api.SetUser(ctx, r.target.ID, onesignal.UserWrite{Tags: r.tags, Properties: r.props, Aliases: r.aliases, Create: r.create})
	case callDeleteUser:
		return api.DeleteUser(ctx, r.target.ID)
	case callAddRecord:
		return api.AddRecord(ctx, r.target.ID, r.record.Channel, r.record.Identifier, r.tags)
	case callLink:
		return api.LinkDevice(ctx, r.target.ID, r.owner, onesignal.DeviceWrite{Tags: r.tags, Properties: r.props})
	case callUnlink:
		return api.UnlinkSubscription(ctx, r.target.ID, r.owner, r.tags)
	}
	return fmt.Errorf("sink: no call for %s", r)
}
