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
