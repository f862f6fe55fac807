package sink_test

import (
	"flag"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/retry"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
)

var driftUsers = flag.Int("drift-users", 1000, "users BenchmarkSinkDriftSweepRepairs syncs, then drifts every one of")

// BenchmarkSinkDriftSweepRepairs: continuous mode's cost against its
// budget (issue 16). The sink (user model, its limiter at 900 requests/s,
// sink.drift's default share of 5 %) syncs -drift-users (1,000) users into
// the emulator with OneSignal's limits on; then a mapped tag of every one
// of them is changed behind its back, and one sweep with repair on finds
// and repairs them all. It reports the repairs' requests per second, from
// one second after the first until 95 % were made (past the limiter's
// burst, before the tail), against the budget of 0.05 × 900/s = 45/s, and
// the drift found and repaired. On the wall clock.
//
//	go test -run '^$' -bench SinkDriftSweepRepairs -benchtime 1x ./sink/ [-args -drift-users N]
func BenchmarkSinkDriftSweepRepairs(b *testing.B) {
	users := *driftUsers
	const limit, share = 900.0, 0.05
	budget := limit * share
	for range b.N {
		b.StopTimer()
		st := newStack(b, sink.ModelUser, emulator.Config{RateLimits: emulator.RateLimits{Enabled: true}})
		cs := make([]change, 0, users)
		for i := 1; i <= users; i++ {
			cs = append(cs, change{topic: contactsTopic, op: event.OpSnapshot, key: contactKey(i), after: contact(i, fmt.Sprintf("drift/%d ü", i), "trial", i%100)})
		}
		st.produce(cs...)
		r := st.startWith(crm, options{rate: limit, drift: &sink.DriftConfig{
			Period: time.Hour, Share: share, Repair: true, Examples: 10,
			Poll:  onesignal.ExportPoll{First: 10 * time.Millisecond, Max: 100 * time.Millisecond, Within: time.Minute, Idle: 10 * time.Second},
			Retry: retry.Policy{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond},
		}})
		waitForWithin(b, "every user synced", 2*time.Minute, func() error {
			if n := len(st.emu.State().Users); n != users {
				return fmt.Errorf("%d of %d users in the emulator", n, users)
			}
			return st.drained()
		})
		waitFirstSweepB(b, r)

		for i := 1; i <= users; i++ {
			if !st.emu.SetUserTags(fmt.Sprintf("drift/%d ü", i), map[string]string{"plan": "edited in the dashboard"}) {
				b.Fatalf("no user drift/%d ü in the emulator", i)
			}
		}
		var mu sync.Mutex
		var at []time.Time
		st.emu.OnArrival(func(a emulator.Arrival) {
			if a.Method != http.MethodGet && !strings.Contains(a.Route, "csv_export") && a.Status/100 == 2 {
				mu.Lock()
				at = append(at, time.Now())
				mu.Unlock()
			}
		})

		b.StartTimer()
		started := time.Now()
		before := r.sink.Stats().Drift.Sweeps
		r.sink.SweepNow()
		var d sink.DriftStats
		waitForWithin(b, "the sweep", time.Duration(float64(users)/budget*3*float64(time.Second))+time.Minute, func() error {
			d = r.sink.Stats().Drift
			if d.Sweeps <= before || d.Running {
				return fmt.Errorf("sweeps %d, running %v (failed %d: %s)", d.Sweeps, d.Running, d.Failed, d.LastError)
			}
			return nil
		})
		waitForWithin(b, "the repairs", time.Minute, func() error {
			for i := 1; i <= users; i++ {
				if u, ok := st.emu.State().UserByExternalID(fmt.Sprintf("drift/%d ü", i)); !ok || u.Tags["plan"] != "trial" {
					return fmt.Errorf("user drift/%d ü not repaired", i)
				}
			}
			return nil
		})
		took := time.Since(started)
		b.StopTimer()

		mu.Lock()
		times := slices.Clone(at)
		mu.Unlock()
		slices.SortFunc(times, func(x, y time.Time) int { return x.Compare(y) })
		if len(times) < 20 {
			b.Fatalf("%d repair requests, want about %d", len(times), users)
		}
		from := times[0].Add(time.Second)
		k := slices.IndexFunc(times, func(t time.Time) bool { return !t.Before(from) })
		end := len(times) * 95 / 100
		if k < 0 || end <= k+1 {
			b.Fatalf("too few repair requests to take a rate from: %d", len(times))
		}
		rate := float64(end-1-k) / times[end-1].Sub(times[k]).Seconds()
		detected, repaired := int64(0), int64(0)
		if d.Last != nil {
			for _, n := range d.Last.Counts {
				detected += int64(n)
			}
			repaired = int64(d.Last.Repaired)
		}
		b.ReportMetric(rate, "calls/s")
		b.ReportMetric(budget, "budget")
		b.ReportMetric(rate/budget, "ratio")
		b.ReportMetric(float64(len(times))/float64(users), "calls/user")
		b.ReportMetric(float64(detected), "drift")
		b.ReportMetric(float64(repaired), "repaired")
		b.Logf("%d users synced, a mapped tag of each changed behind the sink's back; one sweep (export, comparison, repairs) found %d drift and repaired %d targets in %s: "+
			"%d write requests, %.1f a second from 1 s after the first until 95 %% were made, against the sweep's budget of %.0f/s (%.0f %% of the sink's limit of %.0f/s)",
			users, detected, repaired, took.Round(time.Millisecond), len(times), rate, budget, share*100, limit)
	}
}

// waitFirstSweepB waits for the sweep a sink runs at start.
func waitFirstSweepB(b *testing.B, r *running) {
	b.Helper()
	waitForWithin(b, "the first sweep", 2*time.Minute, func() error {
		if d := r.sink.Stats().Drift; d.Sweeps < 1 || d.Running {
			return fmt.Errorf("sweeps %d, running %v (failed %d: %s)", d.Sweeps, d.Running, d.Failed, d.LastError)
		}
		return nil
	})
}
