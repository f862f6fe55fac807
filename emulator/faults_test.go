package emulator_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
)

const updateAda = `{"properties":{"tags":{"plan":"pro"}}}`

// newFaultyAPI serves an emulator with ada, tagless, and the faults.
func newFaultyAPI(t *testing.T, f emulator.Faults) *api {
	t.Helper()
	a := newAPI(t)
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"ada"}}`).must(t, http.StatusCreated)
	if err := a.emu.SetFaults(f); err != nil {
		t.Fatal(err)
	}
	return a
}

func adaPlan(a *api) string {
	ada, _ := a.emu.State().UserByExternalID("ada")
	return ada.Tags["plan"]
}

func TestFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		faults      emulator.Faults
		status      int // 0: the connection is cut
		body        string
		retryAfter  string
		applied     bool
		wantFaults  emulator.FaultStats
		wantRequest int // the status counted
	}{
		{
			name: "answer an injected 500 without applying the write", faults: emulator.Faults{Status: map[int]float64{500: 1}},
			status: 500, body: `{"errors":["Internal Server Error"]}`,
			wantFaults: emulator.FaultStats{Status: map[int]int{500: 1}}, wantRequest: 500,
		},
		{
			name: "answer an injected 503 with OneSignal's message", faults: emulator.Faults{Status: map[int]float64{503: 1}},
			status: 503, body: `{"errors":["Service temporarily unavailable"]}`,
			wantFaults: emulator.FaultStats{Status: map[int]int{503: 1}}, wantRequest: 503,
		},
		{
			name: "answer an injected 429 with Retry-After", faults: emulator.Faults{Status: map[int]float64{429: 1}, RetryAfter: 3},
			status: 429, body: rateLimited, retryAfter: "3",
			wantFaults: emulator.FaultStats{Status: map[int]int{429: 1}}, wantRequest: 429,
		},
		{
			name: "answer an injected 429 with Retry-After 1 by default", faults: emulator.Faults{Status: map[int]float64{429: 1}},
			status: 429, body: rateLimited, retryAfter: "1",
			wantFaults: emulator.FaultStats{Status: map[int]int{429: 1}}, wantRequest: 429,
		},
		{
			name: "reset the connection without applying the write", faults: emulator.Faults{Reset: 1},
			wantFaults: emulator.FaultStats{Status: map[int]int{}, Resets: 1},
		},
		{
			name: "apply the write, then reset the connection instead of answering", faults: emulator.Faults{Drop: 1},
			applied: true, wantFaults: emulator.FaultStats{Status: map[int]int{}, Drops: 1},
		},
		{
			name: "delay a request and then serve it", faults: emulator.Faults{Latency: 20 * time.Millisecond, LatencyMax: 30 * time.Millisecond},
			status: http.StatusAccepted, body: `{"properties":{"tags":{"plan":"pro"}}}`, applied: true,
			wantFaults: emulator.FaultStats{Status: map[int]int{}, Delayed: 1}, wantRequest: http.StatusAccepted,
		},
	}
	for _, tt := range tests {
		t.Run("should "+tt.name, func(t *testing.T) {
			t.Parallel()
			a := newFaultyAPI(t, tt.faults)
			start := time.Now()
			r, err := a.try(http.MethodPatch, userPath("external_id", "ada"), updateAda)
			if took := time.Since(start); took < tt.faults.Latency {
				t.Errorf("answered after %v, want at least %v", took, tt.faults.Latency)
			}
			switch {
			case tt.status == 0 && err == nil:
				t.Errorf("got %d %s, want the connection cut", r.status, r.body)
			case tt.status != 0 && err != nil:
				t.Fatalf("error %v, want %d", err, tt.status)
			case tt.status != 0:
				r.must(t, tt.status)
				if r.body != tt.body || r.header.Get("Retry-After") != tt.retryAfter {
					t.Errorf("body %s, Retry-After %q; want %s, %q", r.body, r.header.Get("Retry-After"), tt.body, tt.retryAfter)
				}
			}
			if applied := adaPlan(a) == "pro"; applied != tt.applied {
				t.Errorf("write applied = %v, want %v", applied, tt.applied)
			}
			st := a.emu.Stats()
			if !reflect.DeepEqual(st.Faults, tt.wantFaults) {
				t.Errorf("fault stats = %+v, want %+v", st.Faults, tt.wantFaults)
			}
			want := map[int]int{tt.wantRequest: 1}
			if got := st.Requests["PATCH /apps/{app_id}/users/by/{alias_label}/{alias_id}"]; !reflect.DeepEqual(got, want) {
				t.Errorf("requests counted = %v, want %v", got, want)
			}
		})
	}
}

func TestFaultsRepeatWithTheSeed(t *testing.T) {
	t.Parallel()
	f := emulator.Faults{Seed: 42, Status: map[int]float64{500: 0.3, 503: 0.2}, Reset: 0.1}
	a := newFaultyAPI(t, f)
	run := func() []int {
		var got []int
		for range 40 {
			r, err := a.try(http.MethodGet, userPath("external_id", "ada"), "")
			if err != nil {
				r.status = 0
			}
			got = append(got, r.status)
		}
		return got
	}
	first := run()
	if err := a.emu.SetFaults(f); err != nil {
		t.Fatal(err)
	}
	if again := run(); !reflect.DeepEqual(first, again) {
		t.Errorf("the same seed gave\n%v\nthen\n%v", first, again)
	}
	seen := map[int]bool{}
	for _, s := range first {
		seen[s] = true
	}
	if len(seen) != 4 {
		t.Errorf("statuses %v, want a mix of 200, 500, 503 and resets", first)
	}
	f.Seed = 43
	_ = a.emu.SetFaults(f)
	if other := run(); reflect.DeepEqual(first, other) {
		t.Errorf("another seed gave the same faults: %v", other)
	}
}

func TestFaultsSpareTheEmulatorsOwnRoutes(t *testing.T) {
	t.Parallel()
	a := newFaultyAPI(t, emulator.Faults{Reset: 1})
	a.send(http.MethodGet, "/emulator/state", "").must(t, http.StatusOK)
	a.send(http.MethodPost, "/emulator/faults", `{}`).must(t, http.StatusOK)
	a.send(http.MethodGet, userPath("external_id", "ada"), "").must(t, http.StatusOK)
}

func TestFaultsAdminRoute(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		body   string
		status int
		want   string // in the body
	}{
		{
			name:   "sets every kind of fault",
			body:   `{"seed":7,"status":{"500":0.1,"429":0.05},"retry_after":2,"latency":"20ms","latency_max":"80ms","reset":0.01,"drop":0.02}`,
			status: http.StatusOK,
			want:   `{"seed":7,"status":{"429":0.05,"500":0.1},"retry_after":2,"latency":"20ms","latency_max":"80ms","reset":0.01,"drop":0.02}`,
		},
		{name: "ends the faults with an empty object", body: `{}`, status: http.StatusOK, want: `{"seed":0}`},
		{name: "refuses a share over 1", body: `{"reset":1.5}`, status: http.StatusBadRequest, want: "fault reset has share 1.5"},
		{name: "refuses shares that add up to more than 1", body: `{"reset":0.6,"drop":0.6}`, status: http.StatusBadRequest, want: "add up to 1.2"},
		{name: "refuses a status that is no error", body: `{"status":{"200":0.5}}`, status: http.StatusBadRequest, want: "200 is not an error status"},
		{name: "refuses a latency that does not parse", body: `{"latency":"soon"}`, status: http.StatusBadRequest, want: `latency \"soon\" is not a duration: write one such as 50ms or 1.5s`},
		{name: "refuses a latency range upside down", body: `{"latency":"2s","latency_max":"1s"}`, status: http.StatusBadRequest, want: "latency 2s–1s"},
		{name: "refuses a misspelt field", body: `{"rest":0.5}`, status: http.StatusBadRequest, want: `unknown field \"rest\"`},
		{name: "refuses a field of the wrong type in the body's terms", body: `{"seed":"seven"}`, status: http.StatusBadRequest, want: `["The body must be faults as JSON: seed cannot be a JSON string"]`},
		{name: "refuses a body cut short", body: `{"seed":`, status: http.StatusBadRequest, want: `The body must be faults as JSON: it is cut short`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := newFaultyAPI(t, emulator.Faults{Seed: 3, Drop: 0.5})
			r := a.send(http.MethodPost, "/emulator/faults", tt.body, "Authorization", "").must(t, tt.status)
			if !strings.Contains(r.body, tt.want) {
				t.Errorf("body = %s, want it to contain %s", r.body, tt.want)
			}
			got := a.send(http.MethodGet, "/emulator/faults", "").must(t, http.StatusOK)
			if tt.status == http.StatusOK && got.body != tt.want {
				t.Errorf("GET = %s, want %s", got.body, tt.want)
			}
			if tt.status != http.StatusOK && got.body != `{"seed":3,"drop":0.5}` {
				t.Errorf("a refused POST changed the faults to %s", got.body)
			}
		})
	}
}

func TestConfigFaultsAreInForceFromTheStart(t *testing.T) {
	t.Parallel()
	a := newAPIWith(t, func(c *emulator.Config) { c.Faults = emulator.Faults{Status: map[int]float64{502: 1}} })
	a.send(http.MethodGet, userPath("external_id", "ada"), "").must(t, http.StatusBadGateway)
	if err := (emulator.Config{AppID: appID, APIKey: apiKey, Faults: emulator.Faults{Drop: -1}}).Validate(); err == nil {
		t.Error("Validate took a negative share")
	}
}

func TestStatsCountRequestsByEndpointAndStatus(t *testing.T) {
	t.Parallel()
	a, clk := newLimitedAPI(t, emulator.RateLimits{})
	a.emu.AddSubscription(emulator.Subscription{ID: "dev-1"})
	a.send(http.MethodPut, playerPath("dev-1"), player(`"tags":{"a":"1"}`)).must(t, http.StatusOK)
	a.send(http.MethodPut, "/api/v1"+playerPath("dev-1"), player(`"tags":{"a":"2"}`)).must(t, http.StatusTooManyRequests)
	a.send(http.MethodPut, playerPath("nope"), player("")).must(t, http.StatusBadRequest)
	a.send(http.MethodGet, "/nowhere", "").must(t, http.StatusNotFound)
	clk.Advance(time.Second)
	_ = a.emu.SetFaults(emulator.Faults{Status: map[int]float64{429: 1}})
	a.send(http.MethodGet, playerPath("dev-1")+"?app_id="+appID, "").must(t, http.StatusTooManyRequests)

	var st emulator.Stats
	r := a.send(http.MethodGet, "/emulator/stats", "", "Authorization", "").must(t, http.StatusOK)
	if err := json.Unmarshal([]byte(r.body), &st); err != nil {
		t.Fatal(err)
	}
	want := emulator.Stats{
		Requests: map[string]map[int]int{
			"PUT /players/{player_id}":        {200: 1, 400: 1},
			"PUT /api/v1/players/{player_id}": {429: 1},
			"GET /players/{player_id}":        {429: 1},
			"/":                               {404: 1},
		},
		TooManyRequests: 2,
		RateLimited:     1,
		Faults:          emulator.FaultStats{Status: map[int]int{429: 1}},
	}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("stats = %+v\nwant    %+v", st, want)
	}
	if !reflect.DeepEqual(a.emu.Stats(), want) {
		t.Errorf("Stats() = %+v, want what the route served", a.emu.Stats())
	}
	a.send(http.MethodPost, "/emulator/reset", "").must(t, http.StatusNoContent)
	if st := a.emu.Stats(); len(st.Requests) != 0 || st.TooManyRequests != 0 {
		t.Errorf("stats after reset = %+v", st)
	}
}
