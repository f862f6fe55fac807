// Package retry holds every retry schedule of the pipeline, and runs an
// operation until it succeeds, fails for good, or its context ends.
//
// What is retried is decided by the error's class (internal/errclass): a
// Retryable error is tried again, any other is returned at once. A
// server's Retry-After, carried by an error's RetryAfterDuration(), wins
// over the schedule.
//
// One schedule for all: exponential, from Policy.Initial growing by half
// each time up to Policy.Max, each wait randomized by ±50% so that many
// callers failing at once do not retry in step (cenkalti/backoff's
// ExponentialBackOff with these settings). Each caller's timings are a
// named preset below.
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

	"github.com/onesignal-cdc/onesignal-cdc/internal/errclass"
)

// Policy is a backoff schedule. The zero value means the defaults, which
// are the Sink preset's.
type Policy struct {
	Initial time.Duration // first wait; default 200ms
	Max     time.Duration // longest wait; default 30s
	// ResetAfter, for a loop that runs sessions (Backoff.Done), starts the
	// schedule over after a session that lasted at least this long: it
	// was healthy, and the next failure is a new one. 0: never.
	ResetAfter time.Duration
}

// The presets: every retry schedule of the pipeline, by who uses it.
// Treat them as constants.
var (
	// Reconnect is the connector's, between replication sessions that
	// ended on a retryable error; a session of a minute or more resets it,
	// so a long healthy session is followed by a quick reconnect.
	Reconnect = Policy{Initial: 500 * time.Millisecond, Max: 30 * time.Second, ResetAfter: time.Minute}
	// Produce is the connector's, between attempts of one Kafka write.
	Produce = Policy{Initial: 100 * time.Millisecond, Max: 10 * time.Second}
	// Sink is the sink's (sink.Config.Retry's default), for its Kafka
	// fetches and writes, its dead letters, and each target's OneSignal
	// requests.
	Sink = Policy{Initial: 200 * time.Millisecond, Max: 30 * time.Second}
	// Startup is the daemon's, waiting for Kafka to create its topics.
	Startup = Policy{Initial: 200 * time.Millisecond, Max: 5 * time.Second}
	// Export is the OneSignal client's, asking whether an export's file
	// is ready (onesignal.DefaultExportPoll, which also bounds the wait).
	Export = Policy{Initial: 2 * time.Second, Max: 30 * time.Second}
	// ExportStart is the sink's drift sweep's, between exports that
	// OneSignal refused for now (another export of the account running:
	// its Retry-After wins) or whose download broke off.
	ExportStart = Policy{Initial: 10 * time.Second, Max: 5 * time.Minute}
)

// The fixed waits, which are not schedules: they poll something that
// changes on its own time rather than wait out a fault.
const (
	// StandbyPoll is how often a standby connector tries to take over a
	// replication slot that another process holds.
	StandbyPoll = 2 * time.Second
	// JoinGroup is how long a sink member waits before joining its
	// consumer group again after a failed join (kafka-go's
	// JoinGroupBackoff, whose default is 5 s): a member evicted after a
	// pause rejoins within a second instead.
	JoinGroup = time.Second
)

// The schedule's shape: the same for every policy.
const (
	multiplier = 1.5
	jitter     = 0.5 // each wait is drawn from [d·(1-jitter), d·(1+jitter)]
)

func (p Policy) exponential() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = orDefault(p.Initial, Sink.Initial)
	b.MaxInterval = orDefault(p.Max, Sink.Max)
	b.Multiplier = multiplier
	b.RandomizationFactor = jitter
	b.MaxElapsedTime = 0 // never give up on a transient error
	b.Reset()
	return b
}

// Backoff is one running schedule of p, for a loop that waits itself.
// Not safe for concurrent use.
type Backoff struct {
	p       Policy
	b       *backoff.ExponentialBackOff
	started time.Time
}

// Start starts a schedule of p.
func (p Policy) Start() *Backoff { return &Backoff{p: p, b: p.exponential(), started: time.Now()} }

// Next returns the wait before the next attempt after err: the schedule's
// next step, or the server's Retry-After when that is longer.
func (b *Backoff) Next(err error) time.Duration { return max(b.b.NextBackOff(), RetryAfter(err)) }

// Begin marks the start of a session, for ResetAfter.
func (b *Backoff) Begin() { b.started = time.Now() }

// Done reports that the session begun last ended: one that lasted
// ResetAfter or longer starts the schedule over.
func (b *Backoff) Done() {
	if b.p.ResetAfter > 0 && time.Since(b.started) >= b.p.ResetAfter {
		b.b.Reset()
	}
}

// Delay returns the wait after failures failed attempts in a row (1 for
// the first), for a caller that counts failures rather than keep a
// schedule (the sink keeps a count per target, for tens of thousands of
// them): drawn as the failures-th step of p's schedule is.
func (p Policy) Delay(failures int) time.Duration {
	b := p.exponential()
	// The schedule is at Max long before 100 steps (1.5^100 ≈ 4·10^17).
	for range min(failures, 100) - 1 {
		b.NextBackOff()
	}
	return b.NextBackOff()
}

// RetryAfter returns the wait the server asked for, or 0.
func RetryAfter(err error) time.Duration {
	var r interface{ RetryAfterDuration() time.Duration }
	if errors.As(err, &r) {
		return r.RetryAfterDuration()
	}
	return 0
}

// Do calls op until it returns nil or an error that is not
// errclass.Retryable, or ctx ends. notify, if not nil, is called before
// each wait with the error and the wait. It returns op's last error, or
// ctx's error joined with it when the wait was cut short.
func (p Policy) Do(ctx context.Context, op func() error, notify func(err error, wait time.Duration)) error {
	b := p.Start()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		err := op()
		if err == nil || errclass.Of(err) != errclass.Retryable {
			return err
		}
		wait := b.Next(err)
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
