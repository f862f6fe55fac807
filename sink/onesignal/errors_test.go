package onesignal_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
)

// The methods the retry loop and the sink look for.
type (
	retryable interface {
		error
		Retryable() bool
	}
	retryAfter interface {
		error
		RetryAfterDuration() time.Duration
	}
)

func isRetryable(err error) bool {
	r, ok := errors.AsType[retryable](err)
	return ok && r.Retryable()
}

func stub(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestErrorStatusesAreClassified(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		status     int
		retryAfter string
		body       string
		retryable  bool
		fatal      bool
		wantAfter  time.Duration
		wantMsgs   []string
	}{
		{
			name: "retries 429 honouring Retry-After", status: 429, retryAfter: "7",
			body:      `{"errors": ["API rate limit exceeded."]}`,
			retryable: true, wantAfter: 7 * time.Second, wantMsgs: []string{"API rate limit exceeded."},
		},
		{
			name: "retries 503 honouring Retry-After", status: 503, retryAfter: "2",
			body:      `{"errors":["Service temporarily unavailable"]}`,
			retryable: true, wantAfter: 2 * time.Second, wantMsgs: []string{"Service temporarily unavailable"},
		},
		{
			name: "retries 500 with an HTML body, keeping its start", status: 500,
			body: "<html>oops</html>", retryable: true, wantMsgs: []string{"<html>oops</html>"},
		},
		{name: "retries 408", status: 408, retryable: true},
		{
			name: "ignores a Retry-After in the HTTP-date form", status: 429,
			retryAfter: "Wed, 21 Oct 2015 07:28:00 GMT", retryable: true,
		},
		{name: "ignores a negative Retry-After", status: 503, retryAfter: "-5", retryable: true},
		{name: "bounds a Retry-After of hours", status: 503, retryAfter: "7200", retryable: true, wantAfter: onesignal.MaxRetryAfter},
		{
			name: "stops on 401", status: 401, fatal: true,
		},
		{
			name: "stops on 400 app_id not found", status: 400, fatal: true,
			body:     `{"errors":["app_id not found. You may be missing a Content-Type: application/json header."]}`,
			wantMsgs: []string{"app_id not found. You may be missing a Content-Type: application/json header."},
		},
		{
			name: "gives up on other 400s", status: 400,
			body:     `{"errors":["Please limit your tag updates to 100 per request"],"success":false}`,
			wantMsgs: []string{"Please limit your tag updates to 100 per request"},
		},
		{
			name: "gives up on 409, keeping code, title and meta", status: 409,
			body:     `{"errors":[{"code":"user-2","title":"Conflict","meta":{"conflicting_aliases":{"external_id":"a"}}}]}`,
			wantMsgs: []string{`user-2: Conflict meta={"conflicting_aliases":{"external_id":"a"}}`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url := stub(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			})
			err := newClient(t, url, apiKey).UnlinkSubscription(t.Context(), "dev-1", "", nil)
			apiErr := requireAPIError(t, err, tt.status)
			if got := isRetryable(err); got != tt.retryable {
				t.Errorf("retryable = %v, want %v", got, tt.retryable)
			}
			if apiErr.Fatal() != tt.fatal {
				t.Errorf("Fatal() = %v, want %v", apiErr.Fatal(), tt.fatal)
			}
			ra, _ := errors.AsType[retryAfter](err)
			if ra.RetryAfterDuration() != tt.wantAfter || apiErr.RetryAfter != tt.wantAfter {
				t.Errorf("retry after = %v, want %v", ra.RetryAfterDuration(), tt.wantAfter)
			}
			if strings.Join(apiErr.Messages, "|") != strings.Join(tt.wantMsgs, "|") {
				t.Errorf("messages = %q, want %q", apiErr.Messages, tt.wantMsgs)
			}
			if apiErr.Method != http.MethodPost || apiErr.Endpoint != "POST /apps/{app_id}/users" {
				t.Errorf("method, endpoint = %q, %q", apiErr.Method, apiErr.Endpoint)
			}
		})
	}
}

// hijack returns a handler that writes raw bytes to the connection, then
// closes it: an answer that breaks off.
func hijack(raw string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		buf.WriteString(raw)
		buf.Flush()
		conn.Close()
	}
}

func TestAnswersThatNeverArriveAreRetryable(t *testing.T) {
	t.Parallel()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	tests := []struct {
		name    string
		url     string
		handler http.HandlerFunc
		timeout time.Duration
	}{
		{name: "the connection closes before the status line", handler: hijack("")},
		{name: "the connection closes inside the headers", handler: hijack("HTTP/1.1 202 Accepted\r\nContent-Le")},
		{
			name:    "the connection closes inside a success body",
			handler: hijack("HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"prop"),
		},
		{
			name:    "the connection closes inside an error body",
			handler: hijack("HTTP/1.1 404 Not Found\r\nContent-Length: 100\r\n\r\n{\"errors\""),
		},
		{name: "nothing listens", url: closed.URL},
		{
			name:    "the server is too slow",
			timeout: 50 * time.Millisecond,
			handler: func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body) // so the server notices the client leave
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second): // never hold the server's Close for long
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url := tt.url
			if tt.handler != nil {
				url = stub(t, tt.handler)
			}
			cfg := onesignal.Config{BaseURL: url, AppID: appID, APIKey: apiKey}
			if tt.timeout > 0 {
				cfg.HTTPClient = &http.Client{Timeout: tt.timeout}
			}
			c, err := onesignal.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = c.SetTags(t.Context(), "alice", tags("plan", "pro"), false)
			requireNoSecret(t, err)
			if _, ok := errors.AsType[*onesignal.TransportError](err); !ok {
				t.Fatalf("error = %v (%T), want a *TransportError", err, err)
			}
			if !isRetryable(err) {
				t.Errorf("error %v is not retryable", err)
			}
			if strings.Contains(err.Error(), "alice") || strings.Contains(err.Error(), appID) {
				t.Errorf("error names the request's IDs, want the endpoint template only: %v", err)
			}
		})
	}
}

func TestACancelledContextIsVisibleInTheError(t *testing.T) {
	t.Parallel()
	url := stub(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) })
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := newClient(t, url, apiKey).SetTags(ctx, "alice", tags("plan", "pro"), false)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want one that wraps context.Canceled", err)
	}
}

func TestLongResponsesAreDrainedOrAbandonedWithoutError(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 3<<20) // beyond what the client drains
	url := stub(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, big)
	})
	if err := newClient(t, url, apiKey).SetTags(t.Context(), "alice", tags("plan", "pro"), false); err != nil {
		t.Fatal(err)
	}
}
