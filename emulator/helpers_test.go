package emulator_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
)

const (
	appID  = "5eb5a37e-b458-11e3-ac11-000c2940e62c"
	apiKey = "test-key"
)

// api talks raw HTTP to one emulator, so the tests see exactly what a
// client would.
type api struct {
	t      *testing.T
	emu    *emulator.Emulator
	url    string
	client *http.Client
}

func newAPI(t *testing.T) *api {
	t.Helper()
	return newAPIWith(t, func(*emulator.Config) {})
}

// newAPIWith serves an emulator whose config set changes from the usual.
// Its client opens a connection per request, so that a connection a fault
// cuts is never one the client would silently retry on.
func newAPIWith(t *testing.T, set func(*emulator.Config)) *api {
	t.Helper()
	cfg := emulator.Config{AppID: appID, APIKey: apiKey}
	set(&cfg)
	emu, url := emulator.NewTestServer(t, cfg)
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &api{t: t, emu: emu, url: url, client: &http.Client{Transport: tr}}
}

// clock is a time that moves only when a test says so.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Unix(1_700_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type reply struct {
	status int
	header http.Header
	body   string
}

// json decodes the body into a generic value, for comparing shapes.
func (r reply) json(t *testing.T) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(r.body), &v); err != nil {
		t.Fatalf("body %q is not JSON: %v", r.body, err)
	}
	return v
}

// send makes a request with the key and, when there is a body, the JSON
// content type; headers overrides them ("" removes one).
func (a *api) send(method, path, body string, headers ...string) reply {
	a.t.Helper()
	r, err := a.try(method, path, body, headers...)
	if err != nil {
		a.t.Fatal(err)
	}
	return r
}

// try is send for a request that may get no answer.
func (a *api) try(method, path, body string, headers ...string) (reply, error) {
	a.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(a.t.Context(), method, a.url+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Key "+apiKey)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: strings.TrimSpace(string(b))}, nil
}

// must fails the test unless the reply has the status.
func (r reply) must(t *testing.T, status int) reply {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.body)
	}
	return r
}

// userPath is the path of a user by alias.
func userPath(label, id string) string {
	return "/apps/" + appID + "/users/by/" + label + "/" + id
}

func ownerPath(sub string) string {
	return "/apps/" + appID + "/subscriptions/" + sub + "/owner"
}

const usersPath = "/apps/" + appID + "/users"

// onesignalID reads identity.onesignal_id from a user or identity body.
func onesignalID(t *testing.T, r reply) string {
	t.Helper()
	var b struct {
		Identity map[string]string `json:"identity"`
	}
	if err := json.Unmarshal([]byte(r.body), &b); err != nil || b.Identity["onesignal_id"] == "" {
		t.Fatalf("no identity.onesignal_id in %s (%v)", r.body, err)
	}
	return b.Identity["onesignal_id"]
}

// httptestRecorder serves req in process and returns the status.
func httptestRecorder(h http.Handler, req *http.Request) int {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}
