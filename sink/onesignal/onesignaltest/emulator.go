package onesignaltest

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
	"sync"
)

// Config says which app the emulator plays and which key opens it.
type Config struct {
	AppID  string // required: the only app ID the API routes accept
	APIKey string // required: requests carry "Authorization: Key <APIKey>" (or the legacy "Basic <APIKey>")
}

// Validate reports what is missing from c.
func (c Config) Validate() error {
	var errs []error
	if c.AppID == "" {
		errs = append(errs, errors.New("onesignaltest: AppID is empty: set it to the app ID the client is configured with"))
	}
	if c.APIKey == "" {
		errs = append(errs, errors.New("onesignaltest: APIKey is empty: set it to the key the client sends"))
	}
	return errors.Join(errs...)
}

// Emulator is an in-memory OneSignal app. It is safe for concurrent use:
// every request and every method runs under one mutex, so each request is
// applied whole and in some order, like requests to one user on the real
// service.
type Emulator struct {
	cfg     Config
	handler http.Handler

	mu    sync.Mutex
	store *store
}

// New returns an empty emulator. It does not fail on a bad cfg; instead an
// empty APIKey or AppID matches nothing, so every API request is denied
// (403) rather than let through. Use cfg.Validate to learn of it earlier.
func New(cfg Config) *Emulator {
	e := &Emulator{cfg: cfg, store: newStore()}
	e.handler = e.routes()
	return e
}

// Handler serves the OneSignal API routes the emulator knows, and its own
// /emulator/ admin routes.
func (e *Emulator) Handler() http.Handler { return e.handler }

// middleware wraps a handler with one concern: authentication, the app
// check, the body type. Each API route gets its own chain, so every
// middleware sees the route's path values (app_id, alias, subscription).
type middleware func(http.Handler) http.Handler

// chain applies mws to h, the first one outermost.
func chain(h http.Handler, mws ...middleware) http.Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

func (e *Emulator) routes() http.Handler {
	mux := http.NewServeMux()
	read := []middleware{e.authenticate, e.checkApp}
	write := []middleware{e.authenticate, e.checkApp, requireJSON}

	mux.Handle("POST /apps/{app_id}/users", chain(http.HandlerFunc(e.createUser), write...))
	mux.Handle("GET /apps/{app_id}/users/by/{alias_label}/{alias_id}", chain(http.HandlerFunc(e.viewUser), read...))
	mux.Handle("PATCH /apps/{app_id}/users/by/{alias_label}/{alias_id}", chain(http.HandlerFunc(e.updateUser), write...))
	mux.Handle("PATCH /apps/{app_id}/subscriptions/{subscription_id}/owner", chain(http.HandlerFunc(e.transferSubscription), write...))

	mux.HandleFunc("GET /emulator/state", e.serveState)
	mux.HandleFunc("POST /emulator/subscriptions", e.seedSubscription)
	mux.HandleFunc("POST /emulator/reset", e.serveReset)

	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeMessages(w, http.StatusNotFound, "Not Found")
	})
	return mux
}

// authenticate lets through requests that carry the key, in either style.
func (e *Emulator) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !e.authorized(r.Header.Get("Authorization")) {
			writeMessages(w, http.StatusForbidden, msgAccessDenied)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authorized accepts "Key <key>" (also "key <key>", as one revision of the
// docs prints it) and the legacy "Basic <key>", where the raw key follows
// "Basic " with no base64. Other spellings are refused, as the legacy API
// insists on its header being case-sensitive.
func (e *Emulator) authorized(header string) bool {
	scheme, key, ok := strings.Cut(header, " ")
	if !ok || e.cfg.APIKey == "" {
		return false
	}
	switch scheme {
	case "Key", "key", "Basic":
	default:
		return false
	}
	return subtle.ConstantTimeCompare([]byte(key), []byte(e.cfg.APIKey)) == 1
}

// checkApp refuses an app other than the emulated one with the same 403 as
// a wrong key: an App API key belongs to one app, so for any other app the
// key is simply not valid.
func (e *Emulator) checkApp(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e.cfg.AppID == "" || r.PathValue("app_id") != e.cfg.AppID {
			writeMessages(w, http.StatusForbidden, msgAccessDenied)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requireJSON refuses a write whose body is not declared as JSON, with the
// message OneSignal gives for it.
func requireJSON(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isJSON(r) {
			writeMessages(w, http.StatusBadRequest, msgBadBody)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// AddSubscription seeds a device as the SDK does on install: the
// subscription is created with a new anonymous user owning it, whose
// onesignal_id is returned. An empty ID gets a random one, an empty Type is
// "AndroidPush", an empty Token is the ID; OneSignalID is ignored. Seeding
// an ID that exists changes nothing and returns its current owner.
func (e *Emulator) AddSubscription(sub Subscription) (onesignalID string) {
	stored, _ := e.addSubscription(sub)
	return stored.OneSignalID
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
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.store.seed(sub)
}

// State returns a deep copy of everything the emulator holds.
func (e *Emulator) State() State {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.store.snapshot()
}

// Reset forgets every user and subscription.
func (e *Emulator) Reset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.store = newStore()
}
