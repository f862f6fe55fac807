package onesignal_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
)

const (
	appID  = "5eb5a37e-b458-11e3-ac11-000c2940e62c"
	apiKey = "os_v2_app_s3cr3t-never-printed"
)

// newEmulated returns a client talking over real HTTP to a fresh emulator.
func newEmulated(t *testing.T) (*emulator.Emulator, *onesignal.Client) {
	t.Helper()
	emu, url := emulator.NewTestServer(t, emulator.Config{AppID: appID, APIKey: apiKey})
	return emu, newClient(t, url, apiKey)
}

func newClient(t *testing.T, url string, key onesignal.Secret) *onesignal.Client {
	t.Helper()
	c, err := onesignal.New(onesignal.Config{BaseURL: url, AppID: appID, APIKey: key})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// requireNoSecret fails when err's text, in any verb, carries the API key.
func requireNoSecret(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(verb, err); strings.Contains(s, apiKey) {
			t.Errorf("error printed with %s contains the API key: %s", verb, s)
		}
	}
}

func requireAPIError(t *testing.T, err error, status int) *onesignal.APIError {
	t.Helper()
	requireNoSecret(t, err)
	apiErr, ok := errors.AsType[*onesignal.APIError](err)
	if !ok {
		t.Fatalf("error = %v (%T), want an *APIError", err, err)
	}
	if apiErr.StatusCode != status {
		t.Fatalf("status = %d, want %d (%v)", apiErr.StatusCode, status, err)
	}
	return apiErr
}

func tags(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func TestSetTags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		ext   string
		calls []map[string]string
		want  map[string]string // nil: no user
	}{
		{
			name:  "creates a missing user with its tags",
			ext:   "alice",
			calls: []map[string]string{tags("plan", "pro", "city", "Oslo")},
			want:  tags("plan", "pro", "city", "Oslo"),
		},
		{
			name:  "updates an existing user and leaves other tags alone",
			ext:   "alice",
			calls: []map[string]string{tags("plan", "free", "city", "Oslo"), tags("plan", "pro")},
			want:  tags("plan", "pro", "city", "Oslo"),
		},
		{
			name:  "deletes a tag set to the empty string",
			ext:   "alice",
			calls: []map[string]string{tags("plan", "pro", "city", "Oslo"), tags("city", "")},
			want:  tags("plan", "pro"),
		},
		{
			name:  "leaves out deletions when it creates the user",
			ext:   "alice",
			calls: []map[string]string{tags("plan", "pro", "city", "")},
			want:  tags("plan", "pro"),
		},
		{
			name:  "creates no user when every tag is a deletion",
			ext:   "alice",
			calls: []map[string]string{tags("plan", "", "city", "")},
			want:  nil,
		},
		{
			name:  "does nothing for no tags",
			ext:   "alice",
			calls: []map[string]string{{}},
			want:  nil,
		},
		{
			name:  "escapes an external ID with a slash, spaces and a percent sign",
			ext:   "team/a b?c%41#d",
			calls: []map[string]string{tags("plan", "pro"), tags("seats", "3")},
			want:  tags("plan", "pro", "seats", "3"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			emu, c := newEmulated(t)
			for _, tg := range tt.calls {
				if err := c.SetTags(t.Context(), tt.ext, tg, false); err != nil {
					t.Fatal(err)
				}
			}
			st := emu.State()
			u, ok := st.UserByExternalID(tt.ext)
			if tt.want == nil {
				if len(st.Users) != 0 {
					t.Fatalf("users = %+v, want none", st.Users)
				}
				return
			}
			if !ok {
				t.Fatalf("no user %q in %+v", tt.ext, st.Users)
			}
			if fmt.Sprint(u.Tags) != fmt.Sprint(tt.want) {
				t.Errorf("tags = %v, want %v", u.Tags, tt.want)
			}
		})
	}
}

func TestSetTagsAppliesTagsWhenSomeoneElseCreatesTheUserInBetween(t *testing.T) {
	t.Parallel()
	emu := emulator.New(emulator.Config{AppID: appID, APIKey: apiKey})
	var raced atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && !raced.Swap(true) {
			// Another writer creates the user, without tags, just before
			// the client's create arrives.
			other := httptest.NewRequest(http.MethodPost, "/apps/"+appID+"/users", strings.NewReader(`{"identity":{"external_id":"alice"}}`))
			other.Header.Set("Authorization", "Key "+apiKey)
			other.Header.Set("Content-Type", "application/json")
			emu.Handler().ServeHTTP(httptest.NewRecorder(), other)
		}
		emu.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	if err := newClient(t, srv.URL, apiKey).SetTags(t.Context(), "alice", tags("plan", "pro"), false); err != nil {
		t.Fatal(err)
	}
	u, ok := emu.State().UserByExternalID("alice")
	if !ok || u.Tags["plan"] != "pro" {
		t.Fatalf("user = %+v, %v; want alice with plan=pro", u, ok)
	}
}

func TestLinkSubscription(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		links     []string // external IDs device "dev-1" is linked to, in order
		wantUsers []string // external IDs of the users that remain ("" = anonymous)
	}{
		{
			name:      "creates a missing user, then transfers the device to it",
			links:     []string{"bob"},
			wantUsers: []string{"bob"},
		},
		{
			name:      "moves the device between users and keeps the one it left",
			links:     []string{"alice", "bob"},
			wantUsers: []string{"alice", "bob"},
		},
		{
			name:      "changes nothing when linked twice to the same user",
			links:     []string{"bob", "bob"},
			wantUsers: []string{"bob"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			emu, c := newEmulated(t)
			emu.AddSubscription(emulator.Subscription{ID: "dev-1"})
			for _, ext := range tt.links {
				link(t, c, "dev-1", ext)
			}
			st := emu.State()
			if got, want := st.ExternalIDOf("dev-1"), tt.links[len(tt.links)-1]; got != want {
				t.Errorf("dev-1 belongs to %q, want %q", got, want)
			}
			var got []string
			for _, u := range st.Users {
				got = append(got, u.Identity["external_id"])
			}
			if fmt.Sprint(slices.Sorted(slices.Values(got))) != fmt.Sprint(tt.wantUsers) {
				t.Errorf("users = %q, want %q", got, tt.wantUsers)
			}
		})
	}
}

// link links dev to ext, repeating the attempt that a missing user
// defers, as the sink does.
func link(t *testing.T, c *onesignal.Client, dev, ext string) {
	t.Helper()
	err := c.LinkSubscription(t.Context(), dev, ext, nil)
	if _, ok := errors.AsType[*onesignal.DeferredError](err); ok {
		err = c.LinkSubscription(t.Context(), dev, ext, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// A regression test: the link to a missing user made the transfer, the
// user and the transfer again in one attempt, and the second transfer met
// OneSignal's limit of one write per second per subscription.
func TestLinkToAMissingUserWritesTheSubscriptionOncePerWindow(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	emu, url := emulator.NewTestServer(t, emulator.Config{AppID: appID, APIKey: apiKey, Clock: clock, RateLimits: emulator.RateLimits{Enabled: true}})
	c := newClient(t, url, apiKey)
	emu.AddSubscription(emulator.Subscription{ID: "dev-1"})

	err := c.LinkSubscription(t.Context(), "dev-1", "bob", nil)
	deferred, ok := errors.AsType[*onesignal.DeferredError](err)
	if !ok || !deferred.Retryable() || deferred.RetryAfterDuration() < time.Second {
		t.Fatalf("first attempt = %v (%T), want a retryable *DeferredError asking for a second's wait", err, err)
	}
	mu.Lock()
	now = now.Add(deferred.RetryAfterDuration())
	mu.Unlock()
	if err := c.LinkSubscription(t.Context(), "dev-1", "bob", nil); err != nil {
		t.Fatalf("the repeat after the window: %v", err)
	}
	if got := emu.State().ExternalIDOf("dev-1"); got != "bob" {
		t.Errorf("dev-1 belongs to %q, want bob", got)
	}
	if n := emu.Stats().RateLimited; n != 0 {
		t.Errorf("the emulator answered 429 %d times, want none", n)
	}
}

func TestLinkSubscriptionToAnUnknownDeviceIsPermanent(t *testing.T) {
	t.Parallel()
	emu, c := newEmulated(t)
	err := c.LinkSubscription(t.Context(), "no-such-device", "carol", nil)
	apiErr := requireAPIError(t, err, http.StatusNotFound)
	if apiErr.Retryable() || apiErr.Fatal() {
		t.Errorf("Retryable() = %v, Fatal() = %v; want both false", apiErr.Retryable(), apiErr.Fatal())
	}
	if strings.Contains(err.Error(), "no-such-device") || strings.Contains(err.Error(), "carol") {
		t.Errorf("error names the IDs, want the endpoint template only: %v", err)
	}
	if st := emu.State(); len(st.Users) != 0 {
		t.Errorf("users = %+v, want none: an unknown device must not create its user", st.Users)
	}
}

func TestUnlinkSubscription(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		link    bool // link dev-1 to alice first
		unlinks int
	}{
		{name: "moves the device from its user to an anonymous user", link: true, unlinks: 1},
		{name: "converges when replayed, leaving no empty anonymous users", link: true, unlinks: 3},
		{name: "accepts a device that is already anonymous", link: false, unlinks: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			emu, c := newEmulated(t)
			emu.AddSubscription(emulator.Subscription{ID: "dev-1"})
			if tt.link {
				link(t, c, "dev-1", "alice")
			}
			for range tt.unlinks {
				if err := c.UnlinkSubscription(t.Context(), "dev-1", "", nil); err != nil {
					t.Fatal(err)
				}
			}
			st := emu.State()
			if ext := st.ExternalIDOf("dev-1"); ext != "" {
				t.Errorf("dev-1 belongs to %q, want an anonymous user", ext)
			}
			anonymous := 0
			for _, u := range st.Users {
				if _, named := u.Identity["external_id"]; named {
					continue
				}
				anonymous++
				if len(u.Subscriptions) != 1 || u.Subscriptions[0] != "dev-1" {
					t.Errorf("anonymous user %s owns %v, want [dev-1]", u.OneSignalID, u.Subscriptions)
				}
			}
			if anonymous != 1 {
				t.Errorf("%d anonymous users, want 1: %+v", anonymous, st.Users)
			}
			if alice, ok := st.UserByExternalID("alice"); tt.link && (!ok || len(alice.Subscriptions) != 0) {
				t.Errorf("alice = %+v, %v; want her kept, with no devices", alice, ok)
			}
		})
	}
}

// A subscription OneSignal does not have (deleted with its user by
// on_delete: delete_user, or by the app) belongs to no user: unlinked.
func TestUnlinkOfASubscriptionOneSignalDoesNotHaveIsDone(t *testing.T) {
	t.Parallel()
	_, c := newEmulated(t)
	if err := c.UnlinkSubscription(t.Context(), "no-such-device", "", nil); err != nil {
		t.Errorf("unlink of a subscription OneSignal does not have: %v, want done", err)
	}
}

func TestWrongCredentialsAreFatal(t *testing.T) {
	t.Parallel()
	_, url := emulator.NewTestServer(t, emulator.Config{AppID: appID, APIKey: "the-right-key"})
	tests := []struct {
		name  string
		appID string
		call  func(*onesignal.Client, context.Context) error
	}{
		{"a wrong key fails SetTags", appID, func(c *onesignal.Client, ctx context.Context) error {
			return c.SetTags(ctx, "alice", tags("plan", "pro"), false)
		}},
		{"a wrong key fails LinkSubscription", appID, func(c *onesignal.Client, ctx context.Context) error {
			return c.LinkSubscription(ctx, "dev-1", "alice", nil)
		}},
		{"a wrong key fails UnlinkSubscription", appID, func(c *onesignal.Client, ctx context.Context) error {
			return c.UnlinkSubscription(ctx, "dev-1", "", nil)
		}},
		{"an app the key does not belong to fails", "00000000-0000-0000-0000-000000000000", func(c *onesignal.Client, ctx context.Context) error {
			return c.SetTags(ctx, "alice", tags("plan", "pro"), false)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			key := onesignal.Secret(apiKey) // wrong here, and must not leak
			if tt.appID != appID {
				key = "the-right-key"
			}
			c, err := onesignal.New(onesignal.Config{BaseURL: url, AppID: tt.appID, APIKey: key})
			if err != nil {
				t.Fatal(err)
			}
			apiErr := requireAPIError(t, tt.call(c, t.Context()), http.StatusForbidden)
			if !apiErr.Fatal() || apiErr.Retryable() {
				t.Errorf("Fatal() = %v, Retryable() = %v; want fatal, not retryable", apiErr.Fatal(), apiErr.Retryable())
			}
			if len(apiErr.Messages) != 1 || !strings.HasPrefix(apiErr.Messages[0], "Access denied.") {
				t.Errorf("messages = %q, want OneSignal's access denied text", apiErr.Messages)
			}
		})
	}
}

func TestRequestsCarryTheHeadersAndAnEscapedPath(t *testing.T) {
	t.Parallel()
	var got *http.Request
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got, body = r, string(b)
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	if err := newClient(t, srv.URL+"/prefix/", apiKey).SetTags(t.Context(), "a/b c", tags("k", "v"), false); err != nil {
		t.Fatal(err)
	}
	checks := []struct{ what, got, want string }{
		{"method", got.Method, http.MethodPatch},
		{"path", got.URL.EscapedPath(), "/prefix/apps/" + appID + "/users/by/external_id/a%2Fb%20c"},
		{"Authorization", got.Header.Get("Authorization"), "Key " + apiKey},
		{"Content-Type", got.Header.Get("Content-Type"), "application/json"},
		{"Accept", got.Header.Get("Accept"), "application/json"},
		{"body", body, `{"properties":{"tags":{"k":"v"}}}`},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
}

func TestAWrongBaseURLIsFatal(t *testing.T) {
	t.Parallel()
	_, url := emulator.NewTestServer(t, emulator.Config{AppID: appID, APIKey: apiKey})
	c := newClient(t, url+"/api/v1", apiKey) // the legacy base path
	tests := []struct {
		name string
		call func() error
	}{
		{"SetTags", func() error { return c.SetTags(t.Context(), "alice", tags("plan", "pro"), false) }},
		{"LinkSubscription", func() error { return c.LinkSubscription(t.Context(), "dev-1", "alice", nil) }},
	}
	for _, tt := range tests {
		t.Run(tt.name+" stops the sink", func(t *testing.T) {
			t.Parallel()
			err := tt.call()
			apiErr := requireAPIError(t, err, http.StatusNotFound)
			if !apiErr.Fatal() || !strings.Contains(err.Error(), "check onesignal.base_url") {
				t.Errorf("Fatal() = %v, error %q; want fatal, with a hint", apiErr.Fatal(), err)
			}
		})
	}
}
