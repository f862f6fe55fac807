package emulator

import (
	"net/http"
	"strconv"
	"sync"
	"time"
)

// rateLimits holds the app's write budget and one per user and per
// subscription.
type rateLimits struct {
	app, target, view *meter
}

func newRateLimits(cfg RateLimits) *rateLimits {
	perApp, perTarget := cfg.AppPerSecond, cfg.TargetPerSecond
	if perApp == 0 {
		perApp = defaultAppPerSecond
	}
	if perTarget == 0 {
		perTarget = defaultTargetPerSecond
	}
	perView := cfg.ViewPerSecond
	if perView == 0 {
		perView = defaultViewPerSecond
	}
	return &rateLimits{app: newMeter(perApp), target: newMeter(perTarget), view: newMeter(perView)}
}

func (l *rateLimits) reset() {
	l.app.reset()
	l.target.reset()
	l.view.reset()
}

// meter allows perSecond requests per key in any one-second window, in a
// burst or spread out: a token bucket holding a second's worth, kept as the
// time at which it will be full again (the "generic cell rate algorithm").
// A refused request takes nothing from the bucket.
type meter struct {
	interval time.Duration // what one request costs
	slack    time.Duration // how far past now a key's full-again time may be and still admit

	mu   sync.Mutex
	full map[string]time.Time
}

func newMeter(perSecond int) *meter {
	interval := time.Second / time.Duration(perSecond)
	return &meter{interval: interval, slack: time.Second - interval, full: map[string]time.Time{}}
}

// pruneAt is how many keys a meter holds before it forgets those whose
// buckets have filled up again: they are as good as new.
const pruneAt = 4096

// admit charges one request to key at now and returns 0, or returns how
// long until the key can take one.
func (m *meter) admit(key string, now time.Time) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	full := m.full[key]
	if full.Before(now) {
		full = now
	}
	if wait := full.Sub(now) - m.slack; wait > 0 {
		return wait
	}
	m.full[key] = full.Add(m.interval)
	if len(m.full) > pruneAt {
		for k, t := range m.full {
			if !t.After(now) {
				delete(m.full, k)
			}
		}
	}
	return 0
}

func (m *meter) reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.full)
}

// limitApp charges a write to the app's budget as it arrives, before its
// body is read: OneSignal counts requests on receipt.
func (e *Emulator) limitApp(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e.limits != nil {
			if wait := e.limits.app.admit("", e.now()); wait > 0 {
				e.writeRateLimited(w, wait)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Keys of the rate-limit targets. A device of the player model is a
// subscription, so both models share a device's budget.
func userTarget(u *user) string                 { return "user/" + u.id }
func subscriptionTarget(s *subscription) string { return "subscription/" + s.id }

// admitTarget charges a write to the budget of the user or subscription it
// is about, or answers 429 and returns false. Handlers call it, under the
// mutex, once the body is read and the target found: a request refused for
// its shape, or about nothing that exists, costs only the app's budget.
func (e *Emulator) admitTarget(w http.ResponseWriter, key string) bool {
	if e.limits == nil {
		return true
	}
	if wait := e.limits.target.admit(key, e.now()); wait > 0 {
		e.writeRateLimited(w, wait)
		return false
	}
	return true
}

// writeRateLimited sends OneSignal's 429, with Retry-After in whole
// seconds, rounded up so that a client that waits that long gets in.
func (e *Emulator) writeRateLimited(w http.ResponseWriter, wait time.Duration) {
	e.stats.rateLimited()
	secs := (wait + time.Second - 1) / time.Second
	writeTooManyRequests(w, int(max(secs, 1)))
}

func writeTooManyRequests(w http.ResponseWriter, retryAfter int) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	writeMessages(w, http.StatusTooManyRequests, msgRateLimited)
}
