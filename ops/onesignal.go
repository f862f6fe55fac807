package ops

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
)

// HTTPClient is the client for onesignal.Config.HTTPClient: the default
// one (onesignal.DefaultTimeout per request) with its requests counted. On
// a nil monitor it returns nil, which makes the client use its default.
func (m *SinkMonitor) HTTPClient() *http.Client {
	if m == nil {
		return nil
	}
	return &http.Client{Timeout: onesignal.DefaultTimeout, Transport: m.Transport(http.DefaultTransport.(*http.Transport).Clone())}
}

// Transport wraps next so that every request to OneSignal is counted by
// endpoint and status and timed, a 401 or 403 marks the sink down until
// OneSignal accepts a request again, and a failure of every request (no
// answer, 429 or 5xx) for UnreachableAfter marks it degraded until
// OneSignal answers otherwise.
func (m *SinkMonitor) Transport(next http.RoundTripper) http.RoundTripper {
	return &countingTransport{m: m, next: next}
}

type countingTransport struct {
	m    *SinkMonitor
	next http.RoundTripper
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	path := strings.TrimPrefix(req.URL.EscapedPath(), t.m.prefix)
	endpoint := Endpoint(req.Method, path)
	started := time.Now()
	resp, err := t.next.RoundTrip(req)
	d := time.Since(started)
	switch {
	case err == nil:
		t.m.observe(endpoint, strconv.Itoa(resp.StatusCode), resp.StatusCode, d, nil)
	case errors.Is(err, context.Canceled) && req.Context().Err() != nil:
		// Called off by the sink (shutting down): no answer was due.
	default:
		t.m.observe(endpoint, "error", 0, d, err)
	}
	return resp, err
}

// literalSegments are the path segments of OneSignal's API that name a
// route rather than a resource.
var literalSegments = map[string]bool{
	"api": true, "v1": true, "apps": true, "users": true, "by": true, "identity": true,
	"subscriptions": true, "owner": true, "players": true, "notifications": true,
	"csv_export": true, "on_session": true, "on_purchase": true, "on_focus": true,
}

// idAfter are the segments always followed by a resource's id.
var idAfter = map[string]bool{"players": true, "subscriptions": true, "notifications": true}

// Endpoint is the route template of a request: its method and path with
// the app's id as {app_id}, an alias label other than external_id and
// onesignal_id as {alias_label}, and every other id as {id}. So the
// endpoint label has few values, and no user's id ever becomes one.
//
//	PATCH /apps/5f…/users/by/external_id/ada → PATCH /apps/{app_id}/users/by/external_id/{id}
//	PUT /players/8c…                         → PUT /players/{id}
func Endpoint(method, escapedPath string) string {
	var b strings.Builder
	b.WriteString(method)
	b.WriteByte(' ')
	prev, n := "", 0 // the previous segment as written into the template
	for seg := range strings.SplitSeq(escapedPath, "/") {
		if seg == "" {
			continue
		}
		var tmpl string
		switch {
		case prev == "apps":
			tmpl = "{app_id}"
		case prev == "by" && (seg == "external_id" || seg == "onesignal_id"):
			tmpl = seg
		case prev == "by":
			tmpl = "{alias_label}"
		case prev == "external_id" || prev == "onesignal_id" || prev == "{alias_label}",
			prev == "users" && seg != "by",
			idAfter[prev],
			!literalSegments[seg]:
			tmpl = "{id}"
		default:
			tmpl = seg
		}
		b.WriteByte('/')
		b.WriteString(tmpl)
		prev = tmpl
		n++
	}
	if n == 0 {
		b.WriteByte('/')
	}
	return b.String()
}
