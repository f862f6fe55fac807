package emulator

import (
	"net/http"
	"sync"
	"time"
)

// Emulator is an in-memory OneSignal app. It is safe for concurrent use:
// every request and every method runs under one mutex, so each request is
// applied whole and in some order, like requests to one user on the real
// service.
type Emulator struct {
	cfg     Config
	handler http.Handler
	now     func() time.Time

	limits *rateLimits // nil when off
	faults *injector
	stats  *counters

	arrivals arrivalHook // set by OnArrival

	answersMu sync.Mutex
	answers   answers

	exports exports // the CSV exports (exports.go)

	mu    sync.Mutex
	store *store
}

// New returns an empty emulator. It does not fail on a bad cfg; instead an
// empty APIKey or AppID matches nothing, so every API request is denied
// (403) rather than let through, and Faults that do not validate are not
// injected. Use cfg.Validate to learn of it earlier.
func New(cfg Config) *Emulator {
	e := &Emulator{cfg: cfg, store: newStore(), now: cfg.Clock, stats: newCounters()}
	if e.now == nil {
		e.now = time.Now
	}
	if cfg.RateLimits.Enabled {
		e.limits = newRateLimits(cfg.RateLimits)
	}
	e.faults = newInjector(Faults{})
	_ = e.SetFaults(cfg.Faults) // on error there are none, as documented
	e.handler = e.routes()
	return e
}

// lock takes the mutex, then carries out the deletions of users that are
// due (Config.DeleteDelay), so that every request and every method sees
// them done.
func (e *Emulator) lock() {
	e.mu.Lock()
	if len(e.store.deleting) > 0 {
		e.store.purge(e.now())
	}
}

// Handler serves the OneSignal API routes the emulator knows, and its own
// /emulator/ admin routes.
func (e *Emulator) Handler() http.Handler { return e.handler }

// AddSubscription seeds a device as the SDK does on install: the
// subscription is created with a new anonymous user owning it, whose
// onesignal_id is returned. An empty ID gets a random one, an empty Type is
// "AndroidPush", an empty Token is the ID; OneSignalID is ignored; the
// player model's Language, Timezone and Country are the device's. Seeding
// an ID that exists changes nothing and returns its current owner.
func (e *Emulator) AddSubscription(sub Subscription) (onesignalID string) {
	stored, _ := e.addSubscription(sub)
	return stored.OneSignalID
}

// AddUser seeds a user with the external_id alias and tags, as if created
// earlier, and returns its onesignal_id; a user with the external_id
// already there is returned unchanged. It spares a benchmark or a test the
// create-user requests, and their cost in rate limit.
func (e *Emulator) AddUser(externalID string, tags map[string]string) (onesignalID string) {
	e.lock()
	defer e.mu.Unlock()
	if u := e.store.userBy(externalIDLabel, externalID); u != nil {
		return u.id
	}
	u := e.store.newUser(map[string]string{externalIDLabel: externalID})
	for k, v := range tags {
		if v != "" {
			u.tags[k] = v
		}
	}
	return u.id
}

// addSubscription returns the subscription as stored, and whether it is new.
func (e *Emulator) addSubscription(sub Subscription) (Subscription, bool) {
	if sub.ID == "" {
		sub.ID = newUUID()
	}
	if sub.Type == "" {
		sub.Type = "AndroidPush"
	}
	if sub.Token == "" {
		sub.Token = sub.ID
	}
	e.lock()
	defer e.mu.Unlock()
	return e.store.seed(sub)
}

// State returns a deep copy of everything the emulator holds.
func (e *Emulator) State() State {
	e.lock()
	defer e.mu.Unlock()
	return e.store.snapshot()
}

// Reset forgets every user and subscription, what the rate limits have
// counted and the Stats. The faults and the answers stay as they are.
func (e *Emulator) Reset() {
	e.mu.Lock() // not lock: the store goes whole
	defer e.mu.Unlock()
	e.store = newStore()
	if e.limits != nil {
		e.limits.reset()
	}
	e.stats.reset()
	e.exports.reset()
}

// SetFaults replaces the faults injected from now on and restarts their
// random sequence from f.Seed. Faults that do not validate are refused and
// the old ones stay.
func (e *Emulator) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	e.faults.set(f)
	return nil
}

// Faults returns the faults being injected.
func (e *Emulator) Faults() Faults { return e.faults.get() }

// Stats returns a copy of what the emulator has counted since it started
// or was last Reset.
func (e *Emulator) Stats() Stats { return e.stats.snapshot() }
