package onesignal_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
)

// Answers that are not what OneSignal sends, as proxies, load balancers and
// misconfigured base URLs give them.

func TestARedirectIsNotFollowedAndStopsTheSinkNamingTheBaseURL(t *testing.T) {
	t.Parallel()
	for _, status := range []int{301, 302, 307, 308} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			t.Parallel()
			var followed atomic.Int32
			url := stub(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/elsewhere" {
					followed.Add(1)
					w.WriteHeader(http.StatusOK) // what a followed redirect would count as done
					return
				}
				w.Header().Set("Location", "https://proxy.example/elsewhere?user=alice")
				w.WriteHeader(status)
			})
			err := newClient(t, url, apiKey).SetTags(t.Context(), "alice", tags("plan", "pro"), false)
			apiErr := requireAPIError(t, err, status)
			if !apiErr.Fatal() || isRetryable(err) {
				t.Errorf("Fatal() = %v, retryable %v: want a redirect to stop the sink", apiErr.Fatal(), isRetryable(err))
			}
			if apiErr.RedirectTo != "https://proxy.example" {
				t.Errorf("RedirectTo = %q, want the scheme and host only", apiErr.RedirectTo)
			}
			if msg := err.Error(); !strings.Contains(msg, "onesignal.base_url") || !strings.Contains(msg, "https://proxy.example") || strings.Contains(msg, "alice") {
				t.Errorf("error %q: want onesignal.base_url and the redirect's host named, and no IDs", msg)
			}
			if followed.Load() != 0 {
				t.Error("the client followed the redirect")
			}
		})
	}
}

func TestASuccessStatusWhoseBodyReportsAFailureIsPermanent(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		`{"errors":["Invalid tag key"],"success":false}`,
		`{"success":false}`,
		`{"errors":"Invalid tag key"}`,
	} {
		t.Run(body, func(t *testing.T) {
			t.Parallel()
			url := stub(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })
			err := newClient(t, url, apiKey).SetTags(t.Context(), "alice", tags("plan", "pro"), false)
			apiErr := requireAPIError(t, err, http.StatusOK)
			if isRetryable(err) || apiErr.Fatal() {
				t.Errorf("retryable %v, Fatal() %v: want a permanent error", isRetryable(err), apiErr.Fatal())
			}
			if !strings.Contains(err.Error(), "HTTP 200 OK, but the body reports a failure") {
				t.Errorf("error %q does not say the 200 reported a failure", err)
			}
		})
	}
}

func TestASuccessStatusWhoseBodyReportsWhatA400WouldIsClassifiedAlike(t *testing.T) {
	t.Parallel()
	url := stub(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"success":false,"errors":["app_id not found. You may be missing a Content-Type: application/json header."]}`)
	})
	apiErr := requireAPIError(t, newClient(t, url, apiKey).SetTags(t.Context(), "alice", tags("plan", "pro"), false), http.StatusOK)
	if !apiErr.Fatal() {
		t.Error("app_id not found in a 200's failure is not fatal, as it is in a 400")
	}
	players, err := onesignal.NewPlayers(onesignal.PlayerConfig{Config: onesignal.Config{
		BaseURL: stub(t, func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"success":false,"errors":["No players found for given external_user_id"]}`)
		}),
		AppID: appID, APIKey: apiKey,
	}})
	if err != nil {
		t.Fatal(err)
	}
	err = players.SetTags(t.Context(), "alice", tags("plan", "pro"), false)
	if nd, ok := errors.AsType[*onesignal.APIError](err); !ok || !nd.NoDevice() {
		t.Errorf("error %v does not say no device has the user: its tags would be dead-lettered, not parked", err)
	}
}

func TestASuccessStatusWithABodyThatIsNotJSONIsRepeated(t *testing.T) {
	t.Parallel()
	for name, body := range map[string]string{
		"JSON cut short": `{"properties":{"tags":{"pl`,
		"an HTML page":   "<!DOCTYPE html><html><head><title>Sign in to the proxy</title></head><body>…</body></html>",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			url := stub(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusAccepted)
				io.WriteString(w, body)
			})
			err := newClient(t, url, apiKey).SetTags(t.Context(), "alice", tags("plan", "pro"), false)
			if _, ok := errors.AsType[*onesignal.TransportError](err); !ok || !isRetryable(err) {
				t.Fatalf("error = %v (%T), want a retryable *TransportError", err, err)
			}
			if !strings.Contains(err.Error(), "not JSON") || !strings.Contains(err.Error(), "onesignal.base_url") {
				t.Errorf("error %q: want it to say the body is not JSON and name onesignal.base_url", err)
			}
		})
	}
}

func TestASuccessStatusWithNoBodyOrOneThatSaysNothingAgainstItIsApplied(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		status int
		body   string
	}{
		{204, ""}, {200, ""}, {202, "  \n"}, {200, `{"success":true}`}, {200, `{"errors":[]}`}, {200, `[]`},
		{200, `{"id":"x","errors":{"invalid_player_ids":["y"]}}`}, // the notifications API's warnings
	} {
		url := stub(t, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(tt.status)
			io.WriteString(w, tt.body)
		})
		if err := newClient(t, url, apiKey).SetTags(t.Context(), "alice", tags("plan", "pro"), false); err != nil {
			t.Errorf("%d %q: %v, want it applied", tt.status, tt.body, err)
		}
	}
}

func TestAnHTMLErrorPageIsDescribedByItsTitle(t *testing.T) {
	t.Parallel()
	page := "<!DOCTYPE html>\n<html><head><title>502 Bad\n  Gateway</title><style>body{}</style></head><body><h1>Bad Gateway</h1></body></html>"
	url := stub(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, page)
	})
	err := newClient(t, url, apiKey).SetTags(t.Context(), "alice", tags("plan", "pro"), false)
	apiErr := requireAPIError(t, err, http.StatusBadGateway)
	if !isRetryable(err) {
		t.Error("a 502 page is not retryable")
	}
	if want := `an HTML page, "502 Bad Gateway"`; strings.Join(apiErr.Messages, "|") != want {
		t.Errorf("messages %q, want %q", apiErr.Messages, want)
	}
}

func TestUnknownStatusesAreClassifiedByTheirClass(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		status    int
		retryable bool
	}{{418, false}, {451, false}, {509, true}, {599, true}} {
		url := stub(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(tt.status) })
		err := newClient(t, url, apiKey).SetTags(t.Context(), "alice", tags("plan", "pro"), false)
		apiErr := requireAPIError(t, err, tt.status)
		if isRetryable(err) != tt.retryable || apiErr.Fatal() {
			t.Errorf("%d: retryable %v, fatal %v; want retryable %v, not fatal", tt.status, isRetryable(err), apiErr.Fatal(), tt.retryable)
		}
	}
}

// A server cleans "." and ".." out of a path as directories, so an id
// that is one of them must be escaped, or it addresses another resource.
func TestIDsThatAreDotSegmentsReachTheirOwnUserAndDevice(t *testing.T) {
	t.Parallel()
	emu, url := emulator.NewTestServer(t, emulator.Config{AppID: appID, APIKey: apiKey})
	c := newClient(t, url, apiKey)
	for _, id := range []string{".", ".."} {
		if err := c.SetTags(t.Context(), id, tags("plan", "free"), false); err != nil {
			t.Fatalf("create user %q: %v", id, err)
		}
		if err := c.SetTags(t.Context(), id, tags("plan", "pro"), false); err != nil {
			t.Fatalf("update user %q: %v", id, err)
		}
		if u, ok := emu.State().UserByExternalID(id); !ok || u.Tags["plan"] != "pro" {
			t.Errorf("user %q: %+v (found %v), want plan pro", id, u, ok)
		}
	}
	players, err := onesignal.NewPlayers(onesignal.PlayerConfig{Config: onesignal.Config{BaseURL: url, AppID: appID, APIKey: apiKey}})
	if err != nil {
		t.Fatal(err)
	}
	emu.AddSubscription(emulator.Subscription{ID: ".."})
	if err := players.LinkSubscription(t.Context(), "..", "..", nil); err != nil {
		t.Fatalf("link device ..: %v", err)
	}
	if err := players.SetTags(t.Context(), "..", tags("plan", "gold"), false); err != nil {
		t.Fatalf("player-model tags of ..: %v", err)
	}
	if st := emu.State(); st.ExternalIDOf("..") != ".." {
		t.Errorf("device .. belongs to %q, want ..", st.ExternalIDOf(".."))
	} else if u, _ := st.UserByExternalID(".."); u.Tags["plan"] != "gold" {
		t.Errorf("user .. has tags %v, want plan gold", u.Tags)
	}
}
