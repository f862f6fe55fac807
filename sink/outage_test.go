package sink_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/ops"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
)

// opsServer runs an ops server for the test and returns it with its base
// URL and the sink's monitor, which reports OneSignal unreachable after
// unreachableAfter.
func opsServer(t *testing.T, baseURL string, unreachableAfter time.Duration) (*ops.SinkMonitor, string) {
	t.Helper()
	srv := ops.New(ops.Config{Listen: "127.0.0.1:0"}, zaptest.NewLogger(t))
	mon := srv.Sink(ops.SinkConfig{BaseURL: baseURL, RateLimit: 900, UnreachableAfter: unreachableAfter})
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ops server: %v", err)
		}
	})
	return mon, "http://" + srv.Addr()
}

// httpGet returns the status and body of url.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// unreachableSeconds reads onesignal_cdc_sink_onesignal_unreachable_seconds
// from the ops server.
func unreachableSeconds(t *testing.T, base string) float64 {
	t.Helper()
	_, body := httpGet(t, base+"/metrics")
	for line := range strings.SplitSeq(body, "\n") {
		if v, ok := strings.CutPrefix(line, "onesignal_cdc_sink_onesignal_unreachable_seconds "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatal("/metrics has no onesignal_cdc_sink_onesignal_unreachable_seconds")
	return 0
}

// TestASinkThatCannotReachOneSignalKeepsItsPlaceSaysSoAndCatchesUp: with
// every connection to OneSignal reset, the sink writes its contributions
// to the targets topic (the event topics are committed to their ends) but
// commits nothing of the targets topic past the first contribution
// OneSignal has not accepted; past the threshold /readyz says why (ready
// still, and live: neither a restart nor taking the pod out of service
// would help), and so do the metric and the status page. Once OneSignal
// answers, the report clears and everything is applied.
func TestASinkThatCannotReachOneSignalKeepsItsPlaceSaysSoAndCatchesUp(t *testing.T) {
	t.Parallel()
	const users = 24
	st := newStack(t, sink.ModelUser, emulator.Config{})
	mon, base := opsServer(t, st.url, 300*time.Millisecond)
	st.startWith(crm, options{httpClient: mon.HTTPClient(), runAs: func(s *sink.Sink) runner {
		mon.Watch(s.Stats, s.ReaderStats)
		mon.WatchLag(s.Lag)
		return mon.Wrap(s)
	}})
	update := func(plan string) {
		cs := make([]change, 0, users)
		for i := range users {
			cs = append(cs, change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(i), after: contact(i, fmt.Sprintf("u%d", i), plan, i)})
		}
		st.produce(cs...)
	}
	update("free")
	st.waitDrained()
	if code, body := httpGet(t, base+"/readyz"); code != 200 || body != "ok\n" {
		t.Fatalf("with OneSignal up: /readyz %d %q", code, body)
	}
	applied := map[int]int64{} // the targets topic's ends, all applied and committed
	for p := range st.parts[st.topics.Targets] {
		applied[p] = st.end(st.topics.Targets, p)
	}

	if err := st.emu.SetFaults(emulator.Faults{Reset: 1}); err != nil {
		t.Fatal(err)
	}
	update("pro")
	st.commitsCatchUp() // the changes are in the targets topic
	var body string
	waitFor(t, "/readyz to report OneSignal unreachable", func() error {
		var code int
		if code, body = httpGet(t, base+"/readyz"); code != 200 || !strings.Contains(body, "sink (degraded): OneSignal unreachable for ") {
			return fmt.Errorf("/readyz %d %q", code, body)
		}
		return nil
	})
	t.Logf("/readyz: %s", body)
	for _, want := range []string{"ok, degraded:\n", "check the network path to " + strings.TrimPrefix(st.url, "http://"), "nothing is lost"} {
		if !strings.Contains(body, want) {
			t.Errorf("/readyz %q lacks %q", body, want)
		}
	}
	if code, body := httpGet(t, base+"/livez"); code != 200 || body != "ok\n" {
		t.Errorf("/livez %d %q, want 200 ok", code, body)
	}
	if v := unreachableSeconds(t, base); v <= 0 {
		t.Errorf("onesignal_cdc_sink_onesignal_unreachable_seconds is %v, want above 0", v)
	}
	_, js := httpGet(t, base+"/status.json")
	var status ops.Status
	if err := json.Unmarshal([]byte(js), &status); err != nil {
		t.Fatal(err)
	}
	if o := status.Sink.OneSignalUnreachable; o == nil || o.Since.IsZero() || !strings.HasPrefix(o.LastError, "no answer to ") {
		t.Errorf("the status has OneSignal unreachable as %+v, want since when and the last error", o)
	}
	// Nothing past the first contribution OneSignal has not accepted.
	waiting := 0
	committed := st.committed(st.topics.Targets)
	for p, end := range applied {
		if now := st.end(st.topics.Targets, p); now > end {
			waiting += int(now - end)
			if committed[p] > end {
				t.Errorf("targets partition %d committed up to %d, past its first unapplied contribution at %d", p, committed[p], end)
			}
		}
	}
	if waiting == 0 {
		t.Fatal("no contribution waits for OneSignal")
	}
	for i := range users {
		if err := st.hasTags(fmt.Sprintf("u%d", i), map[string]string{"plan": "free", "score": strconv.Itoa(i)})(st.emu.State()); err != nil {
			t.Fatalf("through the fault: %v", err)
		}
	}

	if err := st.emu.SetFaults(emulator.Faults{}); err != nil {
		t.Fatal(err)
	}
	st.waitDrained()
	for i := range users {
		st.eventually("every user's plan is pro", st.hasTags(fmt.Sprintf("u%d", i), map[string]string{"plan": "pro", "score": strconv.Itoa(i)}))
	}
	if code, body := httpGet(t, base+"/readyz"); code != 200 || body != "ok\n" {
		t.Errorf("once OneSignal answered: /readyz %d %q, want 200 ok", code, body)
	}
	if v := unreachableSeconds(t, base); v != 0 {
		t.Errorf("once OneSignal answered the metric is %v, want 0", v)
	}
}
