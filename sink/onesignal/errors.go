package onesignal

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// APIError is an error status from OneSignal.
type APIError struct {
	// Method and Endpoint name the request by template, e.g. "PATCH" and
	// "PATCH /apps/{app_id}/users/by/external_id/{external_id}".
	Method, Endpoint string
	StatusCode       int
	// Messages is the text of OneSignal's error envelope, one entry per
	// error; a body that is no envelope is kept (first 200 bytes) as one.
	Messages []string
	// RetryAfter is the wait the server asked for (integer-seconds
	// Retry-After header), 0 when it asked for none.
	RetryAfter time.Duration
	// RedirectTo is, for a redirect (3xx), where the Location header
	// points: its scheme and host, or "" when it stays on the same host.
	// The path is left out, as it may hold IDs.
	RedirectTo string

	// failedSuccess is set on a 2xx answer whose body reports a failure
	// ({"success": false}, or "errors").
	failedSuccess bool

	// noUsersEndpoint is set when create user, a route with no ID of a
	// user or subscription in it, answered 404: the base URL or app ID is
	// wrong, and every other request will fail the same way.
	noUsersEndpoint bool
	// noDevice is set when the player model's edit tags by external user
	// id found no device with the id.
	noDevice bool

	// appID is the app the request was for, and player whether it was
	// made in the player model: Refusal needs both. legacyKey is set when
	// the request sent the key the legacy way (onesignal.legacy_api_key).
	appID     string
	player    bool
	legacyKey bool
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: HTTP %d", e.Endpoint, e.StatusCode)
	if text := http.StatusText(e.StatusCode); text != "" {
		b.WriteString(" " + text)
	}
	if e.failedSuccess {
		b.WriteString(", but the body reports a failure")
	}
	if len(e.Messages) > 0 {
		b.WriteString(": ")
		b.WriteString(strings.Join(e.Messages, "; "))
	}
	if e.redirect() {
		where := "another path of the same host"
		if e.RedirectTo != "" {
			where = e.RedirectTo
		}
		fmt.Fprintf(&b, " (a redirect to %s: OneSignal's API does not redirect, so onesignal.base_url is not its address; the sink follows no redirect)", where)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	if e.noUsersEndpoint {
		b.WriteString(" (the users endpoint is missing: check onesignal.base_url and onesignal.app_id)")
	}
	if e.missingHash() {
		b.WriteString(" (the app has identity verification on: set onesignal.identity_verification: true)")
	}
	if e.legacyKey && e.keyRefused() {
		b.WriteString(" (the key went as a legacy REST API key, \"Basic\", because onesignal.legacy_api_key is true: OneSignal no longer takes those)")
	}
	return b.String()
}

// The classifier of OneSignal's answers is Retryable and Fatal below, on
// the errors themselves: internal/errclass reads them for the sink
// (Fatal() true is fatal, else Retryable() decides between retryable and
// permanent: a dead letter).

// Retryable reports whether the same request may succeed later: timeouts,
// rate limits and server faults (408, 429 and 5xx).
func (e *APIError) Retryable() bool {
	return e.StatusCode == http.StatusRequestTimeout ||
		e.StatusCode == http.StatusTooManyRequests ||
		e.StatusCode >= 500
}

// Fatal reports whether no request can succeed until the configuration is
// fixed: the key is wrong, revoked or not allowed from this address (401,
// 403); OneSignal does not know the app (400 "app_id not found": the client
// always sends the Content-Type that message also blames, so only the app
// ID or key is left); or the users endpoint itself answered 404.
//
// In the player model a 400 that asks for the Authorization header (a
// wrong key on the legacy host) and one that asks for an identity
// verification hash that is missing (the app verifies, the configuration
// does not) are fatal too: every other write would be refused the same
// way. A hash that does not match is the change's own problem (an old
// owner the event got wrong): permanent.
//
// A redirect (3xx) is fatal as well: OneSignal does not redirect its API,
// so the base URL is not OneSignal's (http:// instead of https://, a
// proxy's login page, a typo), and every request would get the same. It
// is not followed, as net/http would with a GET for a write.
func (e *APIError) Fatal() bool {
	if e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden || e.noUsersEndpoint || e.redirect() {
		return true
	}
	return e.refused() &&
		(e.mentions("app_id not found") || e.mentions("include a case-sensitive header of Authorization") || e.missingHash())
}

// Refusal says, when the answer refuses the configured app ID or API key,
// which of the two OneSignal refused, in a sentence that names the app
// and the fix; "" for any other answer. The Error text cannot: it shows
// the endpoint's template ({app_id}) and OneSignal's words, which are the
// same for both mistakes in the user model.
//
// What each answer tells:
//
//   - 401, or the legacy host's 400 asking for "a case-sensitive header of
//     Authorization": the key.
//   - 400 "app_id not found" (the client always sends the app ID and the
//     Content-Type that message also names): the app, most likely; it has
//     been seen with a wrong key too.
//   - 403 "Access denied" in the player model, which answers an unknown
//     app with the 400 above: the key (or its IP allowlist).
//   - 403 in the user model: either. An App API key belongs to one app,
//     and OneSignal answers a wrong key and another app's ID alike.
//
// When the key went the legacy way (onesignal.legacy_api_key), a refusal
// of the key says that it may be a legacy key OneSignal no longer takes,
// and to create an App API key instead.
func (e *APIError) Refusal() string {
	app := e.appID
	switch {
	case e.refused() && e.mentions("app_id not found"):
		return fmt.Sprintf("OneSignal has no app %s (it answered \"app_id not found\"): set onesignal.app_id to your app's ID from Settings › Keys & IDs; if it is that already, onesignal.api_key may be another app's key", app)
	case e.legacyKey && e.keyRefused():
		return fmt.Sprintf("OneSignal refused the API key for app %s, sent the legacy way (\"Authorization: Basic …\") because onesignal.legacy_api_key is true: "+
			"the key may be a legacy REST API key, which OneSignal no longer takes (retired in Q1 2026): create an App API key in the app's Settings › Keys & IDs, "+
			"set onesignal.api_key to it and remove onesignal.legacy_api_key", app)
	case e.keyRefused():
		return fmt.Sprintf("OneSignal refused the API key for app %s: set onesignal.api_key to that app's REST API key from Settings › Keys & IDs (or allow this address in the key's IP allowlist)", app)
	case e.StatusCode == http.StatusForbidden:
		return fmt.Sprintf("OneSignal refused the API key for app %s, or has no such app (it answers both alike): set onesignal.app_id to your app's ID and onesignal.api_key to an App API key of that same app, both from the app's Settings › Keys & IDs (or allow this address in the key's IP allowlist)", app)
	}
	return ""
}

// keyRefused reports whether the answer refuses the key itself, not
// (possibly) the app: a 401, the legacy host's 400 asking for the
// Authorization header, or a 403 in the player model, which answers an
// unknown app with a 400 instead.
func (e *APIError) keyRefused() bool {
	return e.StatusCode == http.StatusUnauthorized ||
		(e.StatusCode == http.StatusForbidden && e.player) ||
		(e.refused() && e.mentions("include a case-sensitive header of Authorization"))
}

// missingHash reports whether OneSignal asked for an identity verification
// hash that the request did not carry. Its wording is not documented; the
// emulator's says "… auth hash … is required".
func (e *APIError) missingHash() bool {
	return e.refused() && (e.mentions("auth_hash") || e.mentions("auth hash")) &&
		(e.mentions("required") || e.mentions("missing"))
}

// refused reports whether the answer is OneSignal's refusal with
// messages that say why: a 400, or a 2xx whose body reports a failure,
// which the legacy API's envelope ({"success": false, "errors": …}) can
// carry too. The messages mean the same in either.
func (e *APIError) refused() bool { return e.StatusCode == http.StatusBadRequest || e.failedSuccess }

// redirect reports whether the answer is a redirect.
func (e *APIError) redirect() bool { return e.StatusCode >= 300 && e.StatusCode < 400 }

// NoDevice reports whether the player model's edit tags by external user
// id found no device carrying the id: the tags have nowhere to go yet.
func (e *APIError) NoDevice() bool { return e.noDevice }

// RetryAfterDuration returns RetryAfter; it is the method the retry loop
// looks for.
func (e *APIError) RetryAfterDuration() time.Duration { return e.RetryAfter }

// HTTPStatus is the response's status code.
func (e *APIError) HTTPStatus() int { return e.StatusCode }

// mentions reports whether any message contains s, ignoring case.
func (e *APIError) mentions(s string) bool {
	s = strings.ToLower(s)
	for _, m := range e.Messages {
		if strings.Contains(strings.ToLower(m), s) {
			return true
		}
	}
	return false
}

// DeferredError is an attempt that did the first part of its work and
// must be repeated, no sooner than After, to do the rest: OneSignal allows
// one write per second to a user or subscription, so the second write to
// the same one waits for the next window. Repeating is safe: the part done
// is done the same way again, or found done.
type DeferredError struct {
	Endpoint string // the request still to make, as in APIError
	Reason   string
	After    time.Duration
}

func (e *DeferredError) Error() string   { return e.Endpoint + ": deferred: " + e.Reason }
func (e *DeferredError) Retryable() bool { return true }

// RetryAfterDuration returns After, the least wait before the repeat.
func (e *DeferredError) RetryAfterDuration() time.Duration { return e.After }

// TransportError is a request that got no complete answer. Whether
// OneSignal applied it is unknown, so it is always worth repeating.
type TransportError struct {
	Endpoint string // method and path template, as in APIError
	Err      error
}

func (e *TransportError) Error() string   { return e.Endpoint + ": " + e.Err.Error() }
func (e *TransportError) Unwrap() error   { return e.Err }
func (e *TransportError) Retryable() bool { return true }

func newAPIError(endpoint string, resp *http.Response, body []byte) *APIError {
	method, _, _ := strings.Cut(endpoint, " ")
	e := &APIError{
		Method:     method,
		Endpoint:   endpoint,
		StatusCode: resp.StatusCode,
		Messages:   parseMessages(body),
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After")),
	}
	if e.redirect() {
		if loc, err := url.Parse(resp.Header.Get("Location")); err == nil && loc.Host != "" {
			e.RedirectTo = loc.Scheme + "://" + loc.Host
		}
	}
	return e
}

// parseRetryAfter reads the integer-seconds form, the only one OneSignal
// documents, up to MaxRetryAfter. The HTTP-date form, and nonsense (over a
// day), count as no advice.
func parseRetryAfter(v string) time.Duration {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n <= 0 || n > int64(24*time.Hour/time.Second) {
		return 0
	}
	return min(time.Duration(n)*time.Second, MaxRetryAfter)
}

// MaxRetryAfter bounds the wait a Retry-After asks for: a server that asks
// for hours would park the target that long, although OneSignal may answer
// again sooner; the sink asks again after this, and is told again if not.
const MaxRetryAfter = 5 * time.Minute

// rawLimit is how much of a body that is not an error envelope is kept.
const rawLimit = 200

// parseMessages extracts the text of OneSignal's error envelopes:
//
//	{"errors": ["msg", …]}
//	{"errors": [{"code": …, "title": …, "meta": …}, …]}
//	{"errors": "msg"}
//	{"success": false}  (and any other JSON without "errors")
//
// Whatever text is there is kept; what does not fit the shapes above is kept
// as raw (truncated) text rather than dropped.
func parseMessages(body []byte) []string {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil
	}
	var env struct {
		Errors json.RawMessage `json:"errors"`
	}
	if json.Unmarshal(body, &env) != nil || len(env.Errors) == 0 || string(env.Errors) == "null" {
		return []string{describeRaw(body)}
	}
	var one string
	if json.Unmarshal(env.Errors, &one) == nil {
		return []string{one}
	}
	var list []json.RawMessage
	if json.Unmarshal(env.Errors, &list) != nil {
		return []string{truncate(env.Errors)}
	}
	msgs := make([]string, 0, len(list))
	for _, item := range list {
		msgs = append(msgs, describe(item))
	}
	return msgs
}

// describe renders one entry of an "errors" array.
func describe(item json.RawMessage) string {
	var s string
	if json.Unmarshal(item, &s) == nil {
		return s
	}
	var obj struct {
		Code  json.RawMessage `json:"code"`
		Title string          `json:"title"`
		Meta  json.RawMessage `json:"meta"`
	}
	if json.Unmarshal(item, &obj) != nil || (obj.Title == "" && len(obj.Code) == 0) {
		return truncate(item)
	}
	var parts []string
	if len(obj.Code) > 0 && string(obj.Code) != "null" {
		var code string
		if json.Unmarshal(obj.Code, &code) != nil {
			code = string(obj.Code)
		}
		parts = append(parts, code+":")
	}
	if obj.Title != "" {
		parts = append(parts, obj.Title)
	}
	if len(obj.Meta) > 0 && string(obj.Meta) != "null" {
		var compact bytes.Buffer
		if json.Compact(&compact, obj.Meta) == nil {
			parts = append(parts, "meta="+truncate(compact.Bytes()))
		}
	}
	return strings.Join(parts, " ")
}

// describeRaw renders a body that is not OneSignal's error envelope: an
// HTML page (a proxy's or a load balancer's error page) by its title or
// first heading, as its markup says little to a reader of the log;
// anything else, and a page with neither, as (truncated) text.
func describeRaw(body []byte) string {
	lower := bytes.ToLower(body[:min(len(body), maxErrorBody)])
	if !bytes.HasPrefix(lower, []byte("<")) || !(bytes.Contains(lower, []byte("<html")) || bytes.Contains(lower, []byte("<!doctype html"))) {
		return truncate(body)
	}
	for _, tag := range []string{"title", "h1"} {
		start := bytes.Index(lower, []byte("<"+tag))
		if start < 0 {
			continue
		}
		open := bytes.IndexByte(lower[start:], '>')
		end := bytes.Index(lower[start:], []byte("</"+tag))
		if open < 0 || end < open {
			continue
		}
		text := strings.Join(strings.Fields(string(body[start+open+1:start+end])), " ")
		if text != "" {
			return fmt.Sprintf("an HTML page, %q", truncate([]byte(text)))
		}
	}
	return truncate(body)
}

// truncate returns at most the first rawLimit bytes of b as text, cut
// before a rune that would not fit.
func truncate(b []byte) string {
	s := string(b)
	if len(b) > rawLimit {
		cut := rawLimit
		for cut > 0 && !utf8.RuneStart(b[cut]) {
			cut--
		}
		s = string(b[:cut]) + "…"
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
