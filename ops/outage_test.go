package ops_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/ops"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
)

// metricValue reads one series' value from a /metrics body.
func metricValue(t *testing.T, body, series string) float64 {
	t.Helper()
	for line := range strings.SplitSeq(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", series)
	return 0
}

const unreachableSeries = "onesignal_cdc_sink_onesignal_unreachable_seconds"

// closedURL is the URL of a port nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func TestOneSignalFailingEveryRequestPastTheThresholdDegradesTheSinkButLeavesItReadyAndLive(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults emulator.Faults
		closed bool // OneSignal's address refuses connections
		want   []string
	}{
		{name: "no answer", closed: true, want: []string{
			"sink (degraded): OneSignal unreachable for ", "(last: no answer to PATCH /apps/{app_id}/users/by/external_id/{id}: dial tcp ",
			"): check the network path to 127.0.0.1:", "(DNS, egress rules, HTTPS_PROXY)",
			"; nothing is lost: the sink keeps its place and catches up at the rate limit once OneSignal answers",
		}},
		{name: "503", faults: emulator.Faults{Status: map[int]float64{503: 1}}, want: []string{
			"sink (degraded): OneSignal failing every request with 503 for ", "(last: PATCH /apps/{app_id}/users/by/external_id/{id} answered 503)",
			"an outage on OneSignal's side (https://status.onesignal.com)", "nothing is lost",
		}},
		{name: "429", faults: emulator.Faults{Status: map[int]float64{429: 1}}, want: []string{
			"sink (degraded): OneSignal answering 429 Too Many Requests to every request for ",
			"another client may be using the app's rate limit, or onesignal.rate_limit is above the app's", "nothing is lost",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			emu, url := emulator.NewTestServer(t, emulator.Config{AppID: "app-1", APIKey: "s3cret-key"})
			apiURL := url
			if tc.closed {
				apiURL = closedURL(t)
			}
			srv := newServer(t)
			snk := srv.Sink(ops.SinkConfig{BaseURL: apiURL, UnreachableAfter: 50 * time.Millisecond})
			stop := make(chan struct{})
			defer close(stop)
			go snk.Wrap(runnerFunc(func(context.Context) error { <-stop; return nil })).Run(t.Context()) //nolint:errcheck
			base := started(t, srv)
			waitFor(t, "the sink to be up", func() bool { code, _ := get(t, base+"/readyz"); return code == 200 })
			if err := emu.SetFaults(tc.faults); err != nil {
				t.Fatal(err)
			}
			api, err := onesignal.New(onesignal.Config{BaseURL: apiURL, AppID: "app-1", APIKey: "s3cret-key", HTTPClient: snk.HTTPClient()})
			if err != nil {
				t.Fatal(err)
			}
			if err := api.SetTags(t.Context(), "ada", map[string]string{"plan": "pro"}, false); err == nil {
				t.Fatal("SetTags succeeded against a failing OneSignal")
			}
			if v := metricValue(t, mustGet(t, base+"/metrics"), unreachableSeries); v <= 0 {
				t.Errorf("right after the first failure %s is %v, want above 0", unreachableSeries, v)
			}
			var body string
			waitFor(t, "/readyz to report OneSignal", func() bool {
				_, body = get(t, base+"/readyz")
				return strings.Contains(body, "degraded")
			})
			code, body := get(t, base+"/readyz")
			t.Logf("/readyz: %d %s", code, body)
			if code != 200 || !strings.HasPrefix(body, "ok, degraded:\n") {
				t.Errorf("/readyz answers %d %q, want 200 and ok, degraded", code, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("/readyz %q lacks %q", body, w)
				}
			}
			if strings.Contains(body, "s3cret") || strings.Contains(body, "ada") {
				t.Errorf("/readyz shows a secret or a user's id: %q", body)
			}
			if code, body := get(t, base+"/livez"); code != 200 || body != "ok\n" {
				t.Errorf("/livez: %d %q, want 200 ok", code, body)
			}
			var st ops.Status
			if err := json.Unmarshal([]byte(mustGet(t, base+"/status.json")), &st); err != nil {
				t.Fatal(err)
			}
			o := st.Sink.OneSignalUnreachable
			if !st.Ready || !st.Degraded || o == nil || o.Since.IsZero() || o.LastError == "" || st.Pipeline[4].State != ops.StageDown || st.Pipeline[3].State != ops.StageWarn {
				t.Errorf("status: ready %v, degraded %v, outage %+v, pipeline %+v; want ready, degraded, since and last error, OneSignal down, the sink warn",
					st.Ready, st.Degraded, o, st.Pipeline)
			}
			page := mustGet(t, base+"/")
			for _, want := range []string{`id="onesignal-unreachable"`, "every request since " + o.Since.UTC().Format("2006-01-02 15:04:05Z"), "ready, degraded"} {
				if !strings.Contains(page, want) {
					t.Errorf("the status page lacks %q", want)
				}
			}

			if tc.closed {
				api, _ = onesignal.New(onesignal.Config{BaseURL: url, AppID: "app-1", APIKey: "s3cret-key", HTTPClient: snk.HTTPClient()})
			}
			if err := emu.SetFaults(emulator.Faults{}); err != nil {
				t.Fatal(err)
			}
			if err := api.SetTags(t.Context(), "ada", map[string]string{"plan": "pro"}, false); err != nil {
				t.Fatal(err)
			}
			if code, body := get(t, base+"/readyz"); code != 200 || body != "ok\n" {
				t.Errorf("once OneSignal answered: /readyz %d %q, want 200 ok", code, body)
			}
			if v := metricValue(t, mustGet(t, base+"/metrics"), unreachableSeries); v != 0 {
				t.Errorf("once OneSignal answered %s is %v, want 0", unreachableSeries, v)
			}
			if st := srv.Status(); st.Degraded || st.Sink.OneSignalUnreachable != nil {
				t.Errorf("once OneSignal answered the status is still degraded: %+v", st.Sink.OneSignalUnreachable)
			}
		})
	}
}

func TestAFailureAmongAnswersIsNoOutage(t *testing.T) {
	emu, url := emulator.NewTestServer(t, emulator.Config{AppID: "app-1", APIKey: "s3cret-key"})
	srv := newServer(t)
	snk := srv.Sink(ops.SinkConfig{BaseURL: url, UnreachableAfter: time.Hour})
	api, err := onesignal.New(onesignal.Config{BaseURL: url, AppID: "app-1", APIKey: "s3cret-key", HTTPClient: snk.HTTPClient()})
	if err != nil {
		t.Fatal(err)
	}
	base := started(t, srv)
	if err := emu.SetFaults(emulator.Faults{Status: map[int]float64{500: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := api.SetTags(t.Context(), "ada", map[string]string{"plan": "pro"}, false); err == nil {
		t.Fatal("SetTags succeeded against a 500")
	}
	if v := metricValue(t, mustGet(t, base+"/metrics"), unreachableSeries); v <= 0 {
		t.Errorf("after a 500 %s is %v, want above 0", unreachableSeries, v)
	}
	if _, body := get(t, base+"/readyz"); strings.Contains(body, "degraded") {
		t.Errorf("a 500 within the threshold is reported: %q", body)
	}
	// A refusal is an answer: OneSignal is there.
	if err := emu.SetFaults(emulator.Faults{Status: map[int]float64{400: 1}}); err != nil {
		t.Fatal(err)
	}
	var apiErr *onesignal.APIError
	if err := api.SetTags(t.Context(), "ada", map[string]string{"plan": "pro"}, false); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest {
		t.Fatalf("SetTags against a 400: %v", err)
	}
	if v := metricValue(t, mustGet(t, base+"/metrics"), unreachableSeries); v != 0 {
		t.Errorf("after a 400 %s is %v, want 0", unreachableSeries, v)
	}
}
