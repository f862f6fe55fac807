package sink_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/retry"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal/onesignaltest"
)

// BenchmarkSinkAPICallsPerChange streams 100,000 updates of 1,000 users
// through the sink into the emulator, which enforces OneSignal's limits,
// on the wall clock. It reports OneSignal calls per change (target: at
// most 0.1), HTTP requests per change (a call to a missing user takes
// more than one) and the 429s the emulator sent.
//
//	go test -run '^$' -bench SinkAPICallsPerChange -benchtime 1x ./sink/
func BenchmarkSinkAPICallsPerChange(b *testing.B) {
	const users, changes = 1000, 100000
	for range b.N {
		b.StopTimer()
		kb := kafkatest.Start(b)
		if err := broker.EnsureTopics(context.Background(), kb.Brokers(), 1, topic); err != nil {
			b.Fatal(err)
		}
		w := broker.NewWriter(kb.Brokers(), 1000)
		msgs := make([]kafka.Message, 0, changes)
		for i := range changes {
			msgs = append(msgs, userEvent(fmt.Sprintf("u%d", i%users), fmt.Sprintf("v%d", i/users)))
		}
		if err := w.WriteMessages(context.Background(), msgs...); err != nil {
			b.Fatal(err)
		}
		w.Close()
		emu, url := onesignaltest.NewTestServer(b, onesignaltest.Config{AppID: "app-1", APIKey: "key", RateLimits: onesignaltest.RateLimits{Enabled: true}})
		client := newClient(b, url, "key")
		api := newRecordingAPI(sink.SystemClock{}, func(ctx context.Context, c call) error { return c.forward(ctx, client) })
		r := newReader(kb, "bench")
		s := sink.New(sink.Config{CommitInterval: 100 * time.Millisecond, Retry: retry.Policy{Initial: 10 * time.Millisecond}}, r, api, mapping, zap.NewNop())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		b.StartTimer()
		start := time.Now()
		go func() { done <- s.Run(ctx) }()
		waitFor(b, "every offset to be committed", func() bool { return committed(b, kb, "bench") == changes })
		took := time.Since(start)
		b.StopTimer()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		r.Close()

		st, es := s.Stats(), emu.Stats()
		httpRequests := 0
		for _, byStatus := range es.Requests {
			for _, n := range byStatus {
				httpRequests += n
			}
		}
		b.ReportMetric(float64(api.count())/changes, "calls/change")
		b.ReportMetric(float64(httpRequests)/changes, "http/change")
		b.ReportMetric(float64(es.TooManyRequests), "429s")
		b.ReportMetric(changes/took.Seconds(), "changes/s")
		b.Logf("%d changes of %d users in %s: %d calls (%d unchanged skipped), %d HTTP requests, %d 429s",
			changes, users, took.Round(time.Millisecond), api.count(), st.Unchanged, httpRequests, es.TooManyRequests)
	}
}

// BenchmarkSinkSustainedCallsPerSecond gives the sink a backlog of one
// change for each of many users, all known to OneSignal already, and the
// emulator OneSignal's limits (1,000 writes/s per app, 1/s per user), on
// the wall clock. It prints the calls per second the sink sustained once
// past its first second, beside the app limit it is configured with
// (RateLimit, 900/s by default): the target is at least 0.9 of it, with
// no 429 from the emulator.
//
//	go test -run '^$' -bench SinkSustainedCallsPerSecond -benchtime 1x ./sink/
func BenchmarkSinkSustainedCallsPerSecond(b *testing.B) {
	const users = 15000
	const limit = 900.0 // the sink's default rate limit
	for range b.N {
		b.StopTimer()
		kb := kafkatest.Start(b)
		if err := broker.EnsureTopics(context.Background(), kb.Brokers(), 1, topic); err != nil {
			b.Fatal(err)
		}
		w := broker.NewWriter(kb.Brokers(), 1000)
		msgs := make([]kafka.Message, 0, users)
		for i := range users {
			msgs = append(msgs, userEvent(fmt.Sprintf("u%d", i), "pro"))
		}
		if err := w.WriteMessages(context.Background(), msgs...); err != nil {
			b.Fatal(err)
		}
		w.Close()
		emu, url := onesignaltest.NewTestServer(b, onesignaltest.Config{AppID: "app-1", APIKey: "key", RateLimits: onesignaltest.RateLimits{Enabled: true}})
		for i := range users {
			emu.AddUser(fmt.Sprintf("u%d", i), map[string]string{"plan": "free"})
		}
		r := newReader(kb, "bench")
		s := sink.New(sink.Config{RateLimit: limit, CommitInterval: 100 * time.Millisecond, Retry: retry.Policy{Initial: 10 * time.Millisecond}}, r, newClient(b, url, "key"), mapping, zap.NewNop())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		b.StartTimer()
		start := time.Now()
		go func() { done <- s.Run(ctx) }()

		// Sample the requests sent from one second in (past the bucket's
		// first burst and the consumer's start) until 95 % are done (before
		// the tail, where fewer users are left than the rate needs).
		var from, to time.Time
		var fromN, toN int64
		tick := time.NewTicker(50 * time.Millisecond)
		for {
			<-tick.C
			n := s.Stats().Requests
			if from.IsZero() && time.Since(start) >= time.Second {
				from, fromN = time.Now(), n
			}
			if !from.IsZero() && n >= users*95/100 {
				to, toN = time.Now(), n
				break
			}
		}
		tick.Stop()
		waitFor(b, "every offset to be committed", func() bool { return committed(b, kb, "bench") == users })
		took := time.Since(start)
		b.StopTimer()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		r.Close()

		es := emu.Stats()
		sustained := float64(toN-fromN) / to.Sub(from).Seconds()
		b.ReportMetric(sustained, "calls/s")
		b.ReportMetric(sustained/limit, "ratio")
		b.ReportMetric(float64(es.TooManyRequests), "429s")
		b.Logf("%d users, one change each, in %s: sustained %.0f calls/s from %s to %s; baseline: the configured app limit %.0f/s (OneSignal's %d/s); ratio %.2f (target ≥ 0.9); %d 429s from the emulator",
			users, took.Round(time.Millisecond), sustained, from.Sub(start).Round(time.Millisecond), to.Sub(start).Round(time.Millisecond),
			limit, 1000, sustained/limit, es.TooManyRequests)
	}
}
