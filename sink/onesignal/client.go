package onesignal

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/secret"
)

// DefaultBaseURL is where OneSignal serves the user-model API.
const DefaultBaseURL = "https://api.onesignal.com"

// DefaultTimeout bounds one HTTP request when Config.HTTPClient is nil.
const DefaultTimeout = 30 * time.Second

const (
	// maxErrorBody caps how much of an error response is kept for its
	// messages; OneSignal's envelopes are a few hundred bytes.
	maxErrorBody = 64 << 10
	// maxDrain caps how much of any response is read just to be able to
	// reuse the connection. A longer body is abandoned with its connection.
	maxDrain = 1 << 20
)

// Config is what the client needs to reach one OneSignal app.
type Config struct {
	BaseURL    string       // default DefaultBaseURL; a path prefix is kept
	AppID      string       // required: the app's ID (Settings › Keys & IDs)
	APIKey     Secret       // required: an App API key, sent as "Authorization: Key <key>"
	HTTPClient *http.Client // default: a client with DefaultTimeout
	// Limiter, when set, is waited on before every HTTP request, and told
	// of every 429, so that the app-wide rate counts requests, not calls
	// (a call may take two).
	Limiter Limiter
	// ViewLimiter is waited on before every view (ViewUser, ViewDevice),
	// apart from Limiter: OneSignal allows views 1 request a second per
	// app, on a budget of their own. Default: NewViewLimiter(DefaultViewRate),
	// one per client and shared with its Players; clients of one app in
	// one process should share one.
	ViewLimiter Limiter
}

// Limiter is an app-wide request rate limit.
type Limiter interface {
	// Wait takes a token, waiting for one; it fails only when ctx ends.
	Wait(ctx context.Context) error
	// SlowDown reports a 429 to a request sent at sent.
	SlowDown(sent time.Time)
	// Now is the limiter's clock.
	Now() time.Time
}

// Secret holds a credential: secret.Value, named here too so that a
// caller of the client need not import secret. It prints and marshals as
// "[redacted]", so logging a config, or an error that embeds one, cannot
// leak it.
type Secret = secret.Value

// Client calls OneSignal's user-model REST API for one app.
type Client struct {
	caller
	appPath string // "/apps/{escaped app_id}"
	appID   string
	key     Secret
	exists  known // users seen to exist, so a create-first call updates them instead
	// aliases holds, by external ID, a fingerprint of the aliases last
	// written to the user, so that a write that names the same aliases
	// again does not repeat them (a second write to the user).
	aliases *memo[string]
	// pending holds, by external ID, how far a write that takes more than
	// one request got: its repeat goes on from there.
	pending *memo[progress]
	// deleted are users this client deleted: OneSignal deletes them
	// asynchronously, so a write to one waits until it is gone.
	deleted known
	// conflicts holds, by external ID, when OneSignal first refused the
	// user an alias as another user's.
	conflicts *memo[time.Time]
	aliasWait time.Duration // AliasConflictWait; shorter in tests
}

// caller sends requests to one OneSignal host with one key; both models'
// clients make their calls through it.
type caller struct {
	base    string // scheme://host[/prefix], no trailing slash
	auth    string // the Authorization header value
	http    *http.Client
	limiter Limiter // nil: none
	views   Limiter // the views' limiter (reads.go), never nil
	// appID and player let an error say which credential OneSignal
	// refused (APIError.Refusal): the two models answer differently.
	appID  string
	player bool
	// legacyKey is set when the key goes the legacy way ("Basic <key>"),
	// so that a refusal can name the option that asked for it.
	legacyKey bool
}

// now is the limiter's clock, or the wall clock without a limiter.
func (c *caller) now() time.Time {
	if c.limiter != nil {
		return c.limiter.Now()
	}
	return time.Now()
}

// New checks cfg and returns a client. Every problem in cfg is reported at
// once, each with what to do about it.
func New(cfg Config) (*Client, error) {
	c, err := newCaller(cfg, "Key ")
	if err != nil {
		return nil, err
	}
	return &Client{caller: c, appPath: "/apps/" + pathSegment(cfg.AppID), appID: cfg.AppID, key: cfg.APIKey,
		exists: newKnown(knownUsers), aliases: newMemo[string](knownUsers), pending: newMemo[progress](knownUsers),
		deleted: newKnown(knownUsers), conflicts: newMemo[time.Time](knownUsers), aliasWait: AliasConflictWait}, nil
}

// Players returns a player-model client for the same app, key, base URL
// and HTTP client. The key goes as a current App API key ("Key <key>"),
// or, with legacyKey (onesignal.legacy_api_key), the way legacy REST API
// keys went ("Basic <key>"): OneSignal retires those in Q1 2026, and an
// answer refusing the key then says to create an App API key.
func (c *Client) Players(identityVerification, legacyKey bool) *PlayerClient {
	p := &PlayerClient{caller: c.caller, appID: c.appID, appPath: c.appPath, key: []byte(c.key.Reveal()), verify: identityVerification}
	p.usePlayerModel(c.key, legacyKey)
	return p
}

// usePlayerModel makes the caller one of the player model's, sending key
// the legacy way when legacyKey is set.
func (c *caller) usePlayerModel(key Secret, legacyKey bool) {
	c.player = true
	if legacyKey {
		c.auth = "Basic " + key.Reveal()
		c.legacyKey = true
	}
}

// call is caller.call for a path below the app.
func (c *Client) call(ctx context.Context, endpoint, path string, body any) (int, error) {
	return c.caller.call(ctx, endpoint, c.appPath+path, body)
}

// newCaller checks cfg; scheme is how the key is introduced in the
// Authorization header.
func newCaller(cfg Config, scheme string) (caller, error) {
	var errs []error
	if cfg.AppID == "" {
		errs = append(errs, errors.New("onesignal.app_id is empty: set it to your app's ID from Settings › Keys & IDs"))
	} else if strings.TrimSpace(cfg.AppID) != cfg.AppID {
		errs = append(errs, errors.New("onesignal.app_id has leading or trailing spaces: remove them"))
	}
	if cfg.APIKey == "" {
		errs = append(errs, errors.New("onesignal.api_key is empty: set it to an App API key from Settings › Keys & IDs"))
	} else if k := cfg.APIKey.Reveal(); strings.TrimSpace(k) != k {
		// A key read from a file often ends in a newline, which net/http
		// would refuse later with a far less helpful message.
		errs = append(errs, errors.New("onesignal.api_key has leading or trailing whitespace (often a newline from a key file): remove it"))
	}
	base := cfg.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	if u, err := url.Parse(base); err != nil {
		errs = append(errs, fmt.Errorf("onesignal.base_url %q does not parse: %w; leave it empty for %s", base, errors.Unwrap(err), DefaultBaseURL))
	} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("onesignal.base_url %q is not an absolute http(s) URL: leave it empty for %s", base, DefaultBaseURL))
	} else if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		errs = append(errs, fmt.Errorf("onesignal.base_url must not carry credentials, a query or a fragment: use scheme://host[/prefix]"))
	}
	if len(errs) > 0 {
		return caller{}, errors.Join(errs...)
	}
	hc := &http.Client{Timeout: DefaultTimeout}
	if cfg.HTTPClient != nil {
		copied := *cfg.HTTPClient
		hc = &copied
	}
	// A redirect is answered, not followed: net/http would follow a 301 or
	// 302 with a GET, whose 200 would count as the write done; and OneSignal
	// does not redirect its API, so a redirect means the base URL is not
	// the API's (see APIError.Fatal).
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	views := cfg.ViewLimiter
	if views == nil {
		views = NewViewLimiter(DefaultViewRate)
	}
	return caller{base: strings.TrimRight(base, "/"), auth: scheme + cfg.APIKey.Reveal(), http: hc, limiter: cfg.Limiter, views: views, appID: cfg.AppID}, nil
}

// pathSegment escapes s as one segment of a URL path. "." and ".." are
// escaped too, which url.PathEscape leaves alone: a server cleans them out
// of the path as the current and the parent directory, so an external id
// ".." would address another resource.
func pathSegment(s string) string {
	if s == "." || s == ".." {
		return strings.Repeat("%2E", len(s))
	}
	return url.PathEscape(s)
}

// call is one request. endpoint is the method and path template that errors
// show; path is the real, escaped path (and query) below the base URL. body,
// if not nil, is sent as JSON. It returns the status of a 2xx answer, having
// read its body, or an *APIError or *TransportError.
func (c *caller) call(ctx context.Context, endpoint, path string, body any) (int, error) {
	status, _, err := c.exchange(ctx, endpoint, path, body)
	return status, err
}

// exchange is call, also returning the body of a 2xx answer (nil when it
// was too long to keep whole).
func (c *caller) exchange(ctx context.Context, endpoint, path string, body any) (int, []byte, error) {
	method, _, _ := strings.Cut(endpoint, " ")
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, fmt.Errorf("%s: encode request: %w", endpoint, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: build request: %w", endpoint, stripURL(err))
	}
	req.Header.Set("Authorization", c.auth)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	var sent time.Time
	if c.limiter != nil {
		if err := c.limiter.Wait(ctx); err != nil {
			return 0, nil, err
		}
		sent = c.limiter.Now()
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, &TransportError{Endpoint: endpoint, Err: stripURL(err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusTooManyRequests && c.limiter != nil {
		c.limiter.SlowDown(sent)
	}
	kept, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	whole := err == nil && len(kept) < maxErrorBody
	if err == nil {
		// Reading to the end lets the connection be reused, and a body that
		// breaks off means the answer cannot be trusted: the caller repeats
		// the (idempotent) attempt.
		_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	}
	if err != nil {
		return 0, nil, &TransportError{Endpoint: endpoint, Err: fmt.Errorf("read %d response: %w", resp.StatusCode, stripURL(err))}
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return 0, nil, c.apiError(endpoint, resp, kept)
	}
	if !whole {
		return resp.StatusCode, nil, nil
	}
	if err := c.checkSuccess(endpoint, resp, kept); err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, kept, nil
}

// checkSuccess looks into a 2xx answer's body, which OneSignal sends as
// JSON (or not at all), for what contradicts its status:
//
//   - a body that is not JSON (an HTML page from a proxy, or JSON cut
//     short) is no answer of OneSignal's to trust: a *TransportError, so
//     the attempt is repeated, as for an answer that breaks off;
//   - {"success": false} or a non-empty "errors" list, the legacy API's
//     envelope of failure: an *APIError with the 2xx status and the
//     messages, which is permanent like a 400.
func (c *caller) checkSuccess(endpoint string, resp *http.Response, body []byte) error {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil
	}
	if !json.Valid(body) {
		return &TransportError{Endpoint: endpoint, Err: fmt.Errorf("HTTP %d with a body that is not JSON (%s): the answer cannot be trusted; "+
			"if it persists, check that onesignal.base_url is OneSignal's API", resp.StatusCode, describeRaw(body))}
	}
	var env struct {
		Success *bool           `json:"success"`
		Errors  json.RawMessage `json:"errors"`
	}
	if json.Unmarshal(body, &env) != nil {
		return nil // JSON, not an object: nothing said against the status
	}
	failed := env.Success != nil && !*env.Success
	switch e := bytes.TrimSpace(env.Errors); {
	case len(e) > 0 && e[0] == '[' && !bytes.Equal(e, []byte("[]")):
		failed = true
	case len(e) > 0 && e[0] == '"' && !bytes.Equal(e, []byte(`""`)):
		failed = true
	}
	if !failed {
		return nil
	}
	apiErr := c.apiError(endpoint, resp, body)
	apiErr.failedSuccess = true
	return apiErr
}

// apiError is newAPIError for a request of this caller's app and model.
func (c *caller) apiError(endpoint string, resp *http.Response, body []byte) *APIError {
	e := newAPIError(endpoint, resp, body)
	e.appID, e.player, e.legacyKey = c.appID, c.player, c.legacyKey
	return e
}

// stripURL drops the request URL that net/http puts into its errors: it
// holds user and subscription IDs, which the endpoint template replaces.
func stripURL(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

// knownUsers is how many users a Client remembers things of: that they
// exist, the aliases it gave them, a write it is halfway through.
const knownUsers = 10000

// memo is a bounded map from strings, forgetting the oldest key first (a
// key removed and set again may be forgotten early: what it holds only
// spares requests). Safe for concurrent use.
type memo[V any] struct {
	mu    sync.Mutex
	order []string // a ring
	next  int
	m     map[string]V
}

func newMemo[V any](size int) *memo[V] {
	return &memo[V]{order: make([]string, size), m: make(map[string]V, size)}
}

func (k *memo[V]) get(s string) (V, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[s]
	return v, ok
}

func (k *memo[V]) has(s string) bool {
	_, ok := k.get(s)
	return ok
}

func (k *memo[V]) set(s string, v V) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.m[s]; ok {
		k.m[s] = v
		return
	}
	if old := k.order[k.next]; old != "" {
		delete(k.m, old)
	}
	k.order[k.next] = s
	k.m[s] = v
	k.next = (k.next + 1) % len(k.order)
}

func (k *memo[V]) remove(s string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.m, s)
}

// known is a bounded set of strings.
type known struct{ *memo[struct{}] }

func newKnown(size int) known { return known{newMemo[struct{}](size)} }

func (k known) add(s string) { k.set(s, struct{}{}) }
