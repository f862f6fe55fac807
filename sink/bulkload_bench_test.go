package sink_test

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
)

var (
	bulkUsers = flag.Int("bulk-users", 100_000, "new users BenchmarkSinkBulkLoadNewUsers loads")
	bulkRate  = flag.Float64("bulk-rate", 900, "the sink's app-wide rate limit (onesignal.rate_limit) in BenchmarkSinkBulkLoadNewUsers; the emulator allows OneSignal's 1,000/s")
	bulkEmail = flag.Bool("bulk-email", false, "give each user BenchmarkSinkBulkLoadNewUsers loads an email address")
)

// BenchmarkSinkBulkLoadNewUsers loads -bulk-users (100,000) users that
// OneSignal does not know, from a snapshot of the CRM schema's contacts
// table, through the sink (user model, its limiter at -bulk-rate, 900 requests/s) into
// the emulator with OneSignal's limits on (1,000 writes/s per app, 1/s per
// user), on the wall clock. A new user should cost one request (create
// user, with its tags): it reports the HTTP requests the emulator counted
// per user (target: at most 1.05), the 429s it sent (target: none), and
// the users created per second once past the first second, against the
// limiter's rate. With -bulk-email each user has an email address, whose
// record goes in the user's next window: two requests per user (target: at
// most 2.05).
//
//	go test -run '^$' -bench SinkBulkLoadNewUsers -benchtime 1x ./sink/ [-args -bulk-users N -bulk-rate R -bulk-email]
func BenchmarkSinkBulkLoadNewUsers(b *testing.B) {
	users := *bulkUsers
	limit := *bulkRate // the stack's limiter; 900 is the sink's default onesignal.rate_limit
	for range b.N {
		b.StopTimer()
		st := newStack(b, sink.ModelUser, emulator.Config{RateLimits: emulator.RateLimits{Enabled: true}})
		var created atomic.Int64
		st.emu.OnArrival(func(a emulator.Arrival) {
			if a.Method == http.MethodPost && a.Route == "POST /apps/{app_id}/users" && a.Status/100 == 2 {
				created.Add(1)
			}
		})
		cs := make([]change, 0, users)
		for i := 1; i <= users; i++ {
			after := contact(i, fmt.Sprintf("bulk/%d", i), "trial", i%100)
			if *bulkEmail {
				after["E-mail"] = fmt.Sprintf("bulk%d@example.com", i)
			}
			cs = append(cs, change{topic: contactsTopic, op: event.OpSnapshot, key: contactKey(i), after: after})
		}
		st.produce(cs...)

		b.StartTimer()
		start := time.Now()
		st.startWith(crm, options{rate: limit})
		// The rate from one second in (past the limiter's first burst and
		// the group's join) until 95 % are created (before the tail).
		var from, to time.Time
		var fromN, toN int64
		deadline := start.Add(time.Duration(float64(users)/limit*3*float64(time.Second)) + time.Minute)
		tick := time.NewTicker(20 * time.Millisecond)
		for to.IsZero() {
			<-tick.C
			n := created.Load()
			if from.IsZero() && time.Since(start) >= time.Second {
				from, fromN = time.Now(), n
			}
			if !from.IsZero() && n >= int64(users)*95/100 {
				to, toN = time.Now(), n
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d users created after %s", n, users, time.Since(start).Round(time.Second))
			}
		}
		tick.Stop()
		waitForWithin(b, "every message committed", time.Until(deadline)+time.Minute, st.drained)
		took := time.Since(start)
		b.StopTimer()

		es := st.emu.Stats()
		total, byRoute := st.requests()
		if n := len(st.emu.State().Users); n != users {
			b.Fatalf("the emulator holds %d users, want %d", n, users)
		}
		perUser := float64(total) / float64(users)
		rate := float64(toN-fromN) / to.Sub(from).Seconds()
		b.ReportMetric(perUser, "calls/user")
		b.ReportMetric(float64(es.TooManyRequests), "429s")
		b.ReportMetric(rate, "users/s")
		b.ReportMetric(rate/limit, "ratio")
		b.ReportMetric(rate/1000, "ratio-onesignal")
		b.Logf("%d new users from a snapshot in %s: %d HTTP requests (%.3f per user; %s), %d 429s from the emulator; "+
			"%.0f users created per second from %s to %s, %.2f of the sink's limit of %.0f/s, %.2f of OneSignal's 1,000/s",
			users, took.Round(time.Millisecond), total, perUser, routes(byRoute), es.TooManyRequests,
			rate, from.Sub(start).Round(time.Millisecond), to.Sub(start).Round(time.Millisecond), rate/limit, limit, rate/1000)
	}
}

// caughtUp reports whether the sink's group has committed every message
// of the topics.
func (st *stack) caughtUp(topics ...string) bool {
	st.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := &kafka.OffsetFetchRequest{GroupID: "crm-sink", Topics: map[string][]int{}}
	ends := map[string]map[int]int64{}
	for _, topic := range topics {
		n, err := st.cluster.PartitionCount(ctx, topic)
		if err != nil {
			st.t.Fatal(err)
		}
		ends[topic] = map[int]int64{}
		for p := range n {
			end, err := st.cluster.EndOffset(ctx, topic, p)
			if err != nil {
				st.t.Fatal(err)
			}
			ends[topic][p] = end
			req.Topics[topic] = append(req.Topics[topic], p)
		}
	}
	client, done := st.cluster.Client(10 * time.Second)
	defer done()
	resp, err := client.OffsetFetch(ctx, req)
	if err != nil {
		st.t.Fatal(err)
	}
	for topic, parts := range ends {
		committed := map[int]int64{}
		for _, p := range resp.Topics[topic] {
			committed[p.Partition] = p.CommittedOffset
		}
		for p, end := range parts {
			if end > 0 && committed[p] < end {
				return false
			}
		}
	}
	return true
}

// routes renders requests by route, most first.
func routes(byRoute map[string]int) string {
	keys := slices.SortedFunc(maps.Keys(byRoute), func(a, b string) int { return byRoute[b] - byRoute[a] })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d × %s", byRoute[k], k)
	}
	return strings.Join(parts, ", ")
}
