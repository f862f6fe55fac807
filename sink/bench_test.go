package sink_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal/onesignaltest"
)

// BenchmarkSinkAPICallsPerChange streams 100,000 changes of 1,000 contacts
// (each one's create, then updates of its score) through the sink (user
// model) into the emulator, which enforces OneSignal's limits, on the wall
// clock. It reports the sink's OneSignal requests per change (target: at
// most 0.1), the HTTP requests the emulator counted per change, and the
// 429s it sent.
//
//	go test -run '^$' -bench SinkAPICallsPerChange -benchtime 1x ./sink/
func BenchmarkSinkAPICallsPerChange(b *testing.B) {
	const users, changes = 1000, 100000
	for range b.N {
		b.StopTimer()
		st := newStack(b, sink.ModelUser, onesignaltest.Config{RateLimits: onesignaltest.RateLimits{Enabled: true}})
		cs := make([]change, 0, changes)
		for i := range changes {
			op := event.OpUpdate
			if i < users {
				op = event.OpCreate
			}
			id := i%users + 1
			cs = append(cs, change{topic: contactsTopic, op: op, key: contactKey(id), after: contact(id, fmt.Sprintf("u%d", id), "pro", i/users)})
		}
		st.produce(cs...)

		b.StartTimer()
		start := time.Now()
		r := st.start(crm)
		st.waitCaughtUp(start, 3*time.Minute)
		took := time.Since(start)
		b.StopTimer()

		calls, es := r.sink.Stats().Requests, st.emu.Stats()
		total, byRoute := st.requests()
		b.ReportMetric(float64(calls)/changes, "calls/change")
		b.ReportMetric(float64(total)/changes, "http/change")
		b.ReportMetric(float64(es.TooManyRequests), "429s")
		b.ReportMetric(changes/took.Seconds(), "changes/s")
		b.Logf("%d changes of %d users in %s: %d requests from the sink, %d HTTP requests (%s), %d 429s",
			changes, users, took.Round(time.Millisecond), calls, total, routes(byRoute), es.TooManyRequests)
	}
}

// BenchmarkSinkSustainedCallsPerSecond gives the sink (user model) a
// backlog of one change for each of 15,000 contacts, all known to
// OneSignal already, and the emulator OneSignal's limits (1,000 writes/s
// per app, 1/s per user), on the wall clock. It prints the requests per
// second the sink sustained once past its first second, beside the app
// limit it is configured with (900/s, the default onesignal.rate_limit):
// the target is at least 0.9 of it, with no 429 from the emulator.
//
//	go test -run '^$' -bench SinkSustainedCallsPerSecond -benchtime 1x ./sink/
func BenchmarkSinkSustainedCallsPerSecond(b *testing.B) {
	const users = 15000
	const limit = 900.0 // the stack's limiter, the sink's default onesignal.rate_limit
	for range b.N {
		b.StopTimer()
		st := newStack(b, sink.ModelUser, onesignaltest.Config{RateLimits: onesignaltest.RateLimits{Enabled: true}})
		cs := make([]change, 0, users)
		for i := 1; i <= users; i++ {
			ext := fmt.Sprintf("u%d", i)
			st.emu.AddUser(ext, map[string]string{"plan": "free"})
			cs = append(cs, change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(i), after: contact(i, ext, "pro", i%100)})
		}
		st.produce(cs...)

		b.StartTimer()
		start := time.Now()
		r := st.start(crm)
		// Sample the requests sent from one second in (past the bucket's
		// first burst and the group's join) until 95 % are done (before
		// the tail, where fewer users are left than the rate needs).
		var from, to time.Time
		var fromN, toN int64
		deadline := start.Add(3 * time.Minute)
		tick := time.NewTicker(50 * time.Millisecond)
		for to.IsZero() {
			<-tick.C
			n := r.sink.Stats().Requests
			if from.IsZero() && time.Since(start) >= time.Second {
				from, fromN = time.Now(), n
			}
			if !from.IsZero() && n >= users*95/100 {
				to, toN = time.Now(), n
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d requests of %d after %s", n, users, time.Since(start).Round(time.Second))
			}
		}
		tick.Stop()
		st.waitCaughtUp(start, 3*time.Minute)
		took := time.Since(start)
		b.StopTimer()

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

// waitCaughtUp waits until the sink's group has committed every message
// of the contacts topic and of its targets topic, failing the benchmark
// when that takes more than timeout from start.
func (st *stack) waitCaughtUp(start time.Time, timeout time.Duration) {
	st.t.Helper()
	for !st.caughtUp(contactsTopic, st.topics.Targets) {
		if time.Since(start) > timeout {
			st.t.Fatalf("the sink has not committed every event and targets record after %s", time.Since(start).Round(time.Second))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
