package sink

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// How the limiter reacts to OneSignal's 429s: each lowers the rate by
// slowDownFactor, never below minRateShare of the configured rate, and the
// rate climbs back by recoverShare of the configured rate per second.
const (
	slowDownFactor = 0.8
	minRateShare   = 0.1
	recoverShare   = 0.05
)

// Limiter is a token bucket shared by every HTTP request to the app, so
// the sink stays under OneSignal's per-app write limit: the OneSignal
// client takes a token before each request, so a call that makes two
// requests takes two. A caller reserves a token at once and waits until
// it would have been there, so waiters are served in the order they
// asked. Safe for concurrent use.
//
// The limit is the whole consumer group's: each member takes its share
// of it (SetShare, at each generation), so that the members' rates add up
// to at most the configured one.
type Limiter struct {
	clock Clock

	mu      sync.Mutex
	limit   float64   // the group's requests/s, as configured
	share   float64   // this member's share of limit, 0 to 1
	ceiling float64   // this member's requests/s: limit × share
	rate    float64   // current requests/s, lowered by 429s
	burst   float64   // most tokens saved up while idle
	tokens  float64   // negative: reserved ahead
	last    time.Time // of the last refill
	slowed  time.Time // of the last slow-down

	waits     atomic.Int64 // calls that had to wait
	waited    atomic.Int64 // their total wait, in nanoseconds
	slowDowns atomic.Int64
}

// NewLimiter allows rate requests/s with a burst of a tenth of a second's
// worth (at least one), timed by c (nil: the system clock).
func NewLimiter(c Clock, rate float64) *Limiter {
	if c == nil {
		c = SystemClock{}
	}
	burst := burstOf(rate)
	return &Limiter{clock: c, limit: rate, share: 1, ceiling: rate, rate: rate, burst: burst, tokens: burst, last: c.Now()}
}

func burstOf(rate float64) float64 { return max(1, math.Floor(rate/10)) }

// SetShare makes this member's rate share × the configured limit (share
// from 0 to 1), keeping a slow-down in proportion. A member whose share
// is 0 holds no partition that sends requests; one that asks anyway
// waits until it has a share.
func (l *Limiter) SetShare(share float64) {
	share = min(max(share, 0), 1)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refill(l.clock.Now())
	ceiling := l.limit * share
	if l.ceiling > 0 {
		l.rate = l.rate * ceiling / l.ceiling
	} else {
		l.rate = ceiling
	}
	l.share, l.ceiling = share, ceiling
	l.burst = burstOf(ceiling)
	l.tokens = min(l.tokens, l.burst)
}

// Share returns this member's share of the configured limit and the
// limit.
func (l *Limiter) Share() (share, limit float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.share, l.limit
}

// noShareWait is how long a request waits before it asks again while
// this member has no share of the limit.
const noShareWait = time.Second

// Wait takes a token, waiting for it if there is none; it fails only when
// ctx ends.
func (l *Limiter) Wait(ctx context.Context) error {
	for {
		d, ok := l.take()
		if !ok {
			if err := sleep(ctx, l.clock, noShareWait); err != nil {
				return err
			}
			continue
		}
		if d <= 0 {
			return ctx.Err()
		}
		l.waits.Add(1)
		l.waited.Add(int64(d))
		return sleep(ctx, l.clock, d)
	}
}

// reserve takes a token, maybe one not there yet, and returns how long
// until it is.
func (l *Limiter) reserve() time.Duration {
	d, _ := l.take()
	return d
}

// take is reserve, or false without taking a token while this member has
// no share of the limit.
func (l *Limiter) take() (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refill(l.clock.Now())
	if l.rate <= 0 {
		return 0, false
	}
	l.tokens--
	if l.tokens >= 0 {
		return 0, true
	}
	return time.Duration(math.Ceil(-l.tokens / l.rate * float64(time.Second))), true
}

// SlowDown lowers the rate after a 429 to a request sent at sent. A 429 to
// a request sent before the last slow-down says nothing new, since many
// requests in flight at once tend to be refused together.
func (l *Limiter) SlowDown(sent time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if sent.Before(l.slowed) {
		return
	}
	now := l.clock.Now()
	l.refill(now)
	l.rate = max(l.rate*slowDownFactor, l.ceiling*minRateShare)
	l.slowed = now
	l.slowDowns.Add(1)
}

// currentRate returns the rate in requests/s.
func (l *Limiter) currentRate() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refill(l.clock.Now())
	return l.rate
}

// refill adds the tokens earned since the last refill, and lets a lowered
// rate recover. The caller holds mu.
func (l *Limiter) refill(now time.Time) {
	dt := now.Sub(l.last).Seconds()
	if dt <= 0 {
		return
	}
	l.last = now
	l.tokens = min(l.burst, l.tokens+l.rate*dt)
	l.rate = min(l.ceiling, l.rate+recoverShare*l.ceiling*dt)
}

// Now is the limiter's clock, for the time a request is sent.
func (l *Limiter) Now() time.Time { return l.clock.Now() }
