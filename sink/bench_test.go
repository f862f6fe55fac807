package sink_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
)

// The sink's benchmarks, which `go run ./bench -phases sink` runs and reads
// (bench/internal/sinkbench): their metrics' units are its interface.

// BenchmarkSinkAPICallsPerChange streams 100,000 updates of 1,000 users
// through the sink into the emulator, which enforces OneSignal's limits,
// on the wall clock. It reports OneSignal calls per change (target: at
// most 0.1), HTTP requests per change (a call may take more than one) and
// the 429s the emulator sent.
//
//	go test -run '^$' -bench SinkAPICallsPerChange -benchtime 1x ./sink/
func BenchmarkSinkAPICallsPerChange(b *testing.B) {
	const users, changes = 1000, 100000
	for range b.N {
		b.StopTimer()
		st := newStack(b, sink.ModelUser, emulator.Config{RateLimits: emulator.RateLimits{Enabled: true}})
		cs := make([]change, 0, changes)
		for i := range changes {
			op := event.OpUpdate
			if i < users {
				op = event.OpCreate
			}
			u := i % users
			cs = append(cs, change{topic: contactsTopic, op: op, key: contactKey(u), after: contact(u, fmt.Sprintf("u%d", u), fmt.Sprintf("v%d", i/users), u)})
		}
		st.produce(cs...)
		rec := newRecorder(nil, nil)
		b.StartTimer()
		start := time.Now()
		r := st.startWith(crm, options{api: rec.wrap})
		st.waitDrained()
		took := time.Since(start)
		b.StopTimer()
		stats := r.sink.Stats()
		if err := r.stop(); err != nil {
			b.Fatal(err)
		}
		es := st.emu.Stats()
		http, _ := st.requests()
		b.ReportMetric(float64(rec.count())/changes, "calls/change")
		b.ReportMetric(float64(http)/changes, "http/change")
		b.ReportMetric(float64(es.TooManyRequests), "429s")
		b.ReportMetric(changes/took.Seconds(), "changes/s")
		b.Logf("%d changes of %d users in %s: %d calls (%d events changed no mapped column), %d HTTP requests, %d 429s",
			changes, users, took.Round(time.Millisecond), rec.count(), stats.Unmapped, http, es.TooManyRequests)
	}
}

// BenchmarkSinkSustainedCallsPerSecond gives the sink a backlog of one
// change for each of many users, all known to OneSignal already, and the
// emulator OneSignal's limits (1,000 writes/s per app, 1/s per user), on
// the wall clock. It prints the calls per second the sink sustained once
// past its first second, beside the app limit it is configured with
// (onesignal.rate_limit, 900/s by default): the target is at least 0.9 of
// it, with no 429 from the emulator.
//
//	go test -run '^$' -bench SinkSustainedCallsPerSecond -benchtime 1x ./sink/
func BenchmarkSinkSustainedCallsPerSecond(b *testing.B) {
	const users = 15000
	const limit = 900.0 // the sink's default rate limit
	for range b.N {
		b.StopTimer()
		st := newStack(b, sink.ModelUser, emulator.Config{RateLimits: emulator.RateLimits{Enabled: true}})
		cs := make([]change, 0, users)
		for i := range users {
			st.emu.AddUser(fmt.Sprintf("u%d", i), map[string]string{"plan": "free"})
			// An update: the users exist, so one request each.
			cs = append(cs, change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(i), after: contact(i, fmt.Sprintf("u%d", i), "pro", i)})
		}
		st.produce(cs...)
		b.StartTimer()
		start := time.Now()
		r := st.startWith(crm, options{rate: limit})

		// Sample the requests sent from one second in (past the bucket's
		// first burst and the group's join) until 95 % are done (before
		// the tail, where fewer users are left than the rate needs).
		var from, to time.Time
		var fromN, toN int64
		tick := time.NewTicker(50 * time.Millisecond)
		for {
			<-tick.C
			n := r.sink.Stats().Requests
			if from.IsZero() && n > 0 && time.Since(start) >= time.Second {
				from, fromN = time.Now(), n
			}
			if !from.IsZero() && n >= users*95/100 {
				to, toN = time.Now(), n
				break
			}
		}
		tick.Stop()
		st.waitDrained()
		took := time.Since(start)
		b.StopTimer()
		if err := r.stop(); err != nil {
			b.Fatal(err)
		}
		es := st.emu.Stats()
		sustained := float64(toN-fromN) / to.Sub(from).Seconds()
		b.ReportMetric(sustained, "calls/s")
		b.ReportMetric(sustained/limit, "ratio")
		b.ReportMetric(float64(es.TooManyRequests), "429s")
		b.Logf("%d users, one change each, in %s: sustained %.0f calls/s from %s to %s; baseline: the configured app limit %.0f/s (OneSignal's %d/s); ratio %.2f (target ≥ 0.9); %d 429s from the emulator",
			users, took.Round(time.Millisecond), sustained, from.Sub(start).Round(time.Millisecond), to.Sub(start).Round(time.Millisecond),
			limit, 1000, sustained/limit, es.TooManyRequests)
	}
}
