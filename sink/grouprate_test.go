package sink_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/ops"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
)

// groupRate is what members sinks of one group, each configured with the
// app-wide rate limit, sustained through a backlog of one change for
// each of users users known to OneSignal, against an emulator that
// allows appLimit writes/s.
type groupRate struct {
	rate    float64       // requests/s the group sent, from 10 % to 90 % of the backlog
	window  time.Duration // over which rate was measured
	tooMany int           // the emulator's 429s
	shares  []float64     // each member's share of the limit
	// each member's requests sent and its rate limit, once the backlog
	// drained
	requests []int64
	rates    []float64
}

// measureGroupRate starts members sinks, waits until they are one
// generation that shares every partition, then writes the backlog and
// measures the group's request rate at the emulator.
func measureGroupRate(t testing.TB, members int, limit float64, appLimit, users int) groupRate {
	t.Helper()
	st := newStack(t, sink.ModelUser, emulator.Config{RateLimits: emulator.RateLimits{Enabled: true, AppPerSecond: appLimit}})
	var rs []*running
	for range members {
		rs = append(rs, st.startWith(crm, options{rate: limit}))
	}
	var shares []float64
	waitFor(t, fmt.Sprintf("%d members sharing the rate limit", members), func() error {
		shares = shares[:0]
		sum, gen := 0.0, int32(-1)
		for i, r := range rs {
			s := r.sink.Stats()
			if s.Generation == 0 || (gen >= 0 && s.Generation != gen) {
				return fmt.Errorf("member %d in generation %d, another in %d", i, s.Generation, gen)
			}
			gen = s.Generation
			shares = append(shares, s.RateShare)
			sum += s.RateShare
		}
		if math.Abs(sum-1) > 1e-9 {
			return fmt.Errorf("the members' shares %v add up to %v", shares, sum)
		}
		return nil
	})
	cs := make([]change, 0, users)
	for i := range users {
		ext := fmt.Sprintf("u%d", i)
		st.emu.AddUser(ext, map[string]string{"plan": "free"})
		cs = append(cs, change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(i), after: contact(i, ext, "pro", i)})
	}
	st.produce(cs...)
	var from, to time.Time
	var fromN, toN int
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		<-tick.C
		n, _ := st.requests()
		if from.IsZero() && n >= users/10 {
			from, fromN = time.Now(), n
		}
		if !from.IsZero() && n >= users*9/10 {
			to, toN = time.Now(), n
			break
		}
	}
	if to.IsZero() {
		t.Fatalf("the group did not send 90 %% of %d requests in 10 minutes", users)
	}
	st.waitDrained()
	g := groupRate{rate: float64(toN-fromN) / to.Sub(from).Seconds(), window: to.Sub(from),
		tooMany: st.emu.Stats().TooManyRequests, shares: shares}
	for _, r := range rs {
		s := r.sink.Stats()
		g.requests, g.rates = append(g.requests, s.Requests), append(g.rates, s.Rate)
	}
	return g
}

// TestSinksInOneGroupShareTheAppRateLimit: every member is configured
// with the app's limit; together they stay under it, with no 429 from an
// emulator that allows only that much, and the limit is shared out: the
// members' own limits add up to it and every member sends its part. How
// much of the limit the group uses is the benchmark's to say
// (BenchmarkSinkGroupSustainedCallsPerSecond, in go run ./bench): on a
// busy machine under -race the sinks are short of CPU.
func TestSinksInOneGroupShareTheAppRateLimit(t *testing.T) {
	t.Parallel()
	const appLimit, limit = 300, 270.0
	for _, members := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d members", members), func(t *testing.T) {
			g := measureGroupRate(t, members, limit, appLimit, int(limit)*6)
			t.Logf("%d members, shares %v: %.0f requests/s over %s against a limit of %.0f/s, %d 429s",
				members, g.shares, g.rate, g.window.Round(time.Millisecond), limit, g.tooMany)
			if g.rate > limit*1.05 {
				t.Errorf("the group sent %.0f requests/s, over the limit of %.0f/s", g.rate, limit)
			}
			sum := 0.0
			for i, r := range g.rates {
				sum += r
				if g.requests[i] == 0 {
					t.Errorf("member %d (limit %.0f/s) sent no request: starved", i, r)
				}
			}
			if math.Abs(sum-limit) > limit*0.01 {
				t.Errorf("the members' own limits %v add up to %.1f/s, want the app's %.0f/s", g.rates, sum, limit)
			}
			if g.tooMany != 0 {
				t.Errorf("the emulator answered %d requests with 429", g.tooMany)
			}
		})
	}
}

// BenchmarkSinkGroupSustainedCallsPerSecond gives 1, 2 and 3 sinks of one
// group, each configured with onesignal.rate_limit's default of 900/s, a
// backlog of one change for each of 15,000 users known to OneSignal, and
// the emulator OneSignal's limits (1,000 writes/s per app, 1/s per user).
// It reports the group's requests/s from 10 % to 90 % of the backlog,
// against the limit (target ≥ 0.9 of it, with no 429).
//
//	go test -run '^$' -bench SinkGroupSustainedCallsPerSecond -benchtime 1x ./sink/
func BenchmarkSinkGroupSustainedCallsPerSecond(b *testing.B) {
	const users, limit = 15000, 900.0
	for _, members := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
			for range b.N {
				g := measureGroupRate(b, members, limit, 1000, users)
				b.ReportMetric(g.rate, "calls/s")
				b.ReportMetric(g.rate/limit, "ratio")
				b.ReportMetric(float64(g.tooMany), "429s")
				b.Logf("%d sinks in one group, rate shares %v, %d users one change each: the group sustained %.0f calls/s over %s against onesignal.rate_limit %.0f/s (ratio %.2f, target ≥ 0.9); %d 429s",
					members, g.shares, users, g.rate, g.window.Round(time.Millisecond), limit, g.rate/limit, g.tooMany)
			}
		})
	}
}

// TestEveryMemberSeesTheGroupsMembersTheirPartitionsAndShares: each
// member's Stats list the whole generation, the same for both, with each
// member's partitions of every topic and its share of the rate limit as
// that member takes it.
func TestEveryMemberSeesTheGroupsMembersTheirPartitionsAndShares(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	mon, base := opsServer(t, st.url, 0)
	rs := []*running{st.startWith(crm, options{httpClient: mon.HTTPClient(), runAs: func(s *sink.Sink) runner {
		mon.Watch(s.Stats, s.ReaderStats)
		mon.WatchLag(s.Lag)
		return mon.Wrap(s)
	}}), st.start(crm)}
	var stats []sink.Stats
	waitFor(t, "both members in one generation that both see", func() error {
		stats = stats[:0]
		for i, r := range rs {
			s := r.sink.Stats()
			if s.Generation == 0 || len(s.Group) != 2 {
				return fmt.Errorf("member %d in generation %d sees %d members", i, s.Generation, len(s.Group))
			}
			stats = append(stats, s)
		}
		if stats[0].Generation != stats[1].Generation {
			return fmt.Errorf("the members are in generations %d and %d", stats[0].Generation, stats[1].Generation)
		}
		return nil
	})
	for i, s := range stats {
		sum := 0.0
		var this []sink.GroupMember
		for _, m := range s.Group {
			sum += m.Share
			if m.This {
				this = append(this, m)
			}
			if m.ClientID == "" || m.Host == "" {
				t.Errorf("member %d sees %+v without its client id or host", i, m)
			}
		}
		if math.Abs(sum-1) > 1e-9 {
			t.Errorf("member %d sees shares adding up to %v", i, sum)
		}
		if len(this) != 1 {
			t.Fatalf("member %d finds itself %d times in %+v", i, len(this), s.Group)
		}
		if this[0].Share != s.RateShare {
			t.Errorf("member %d sees its share as %v and takes %v", i, this[0].Share, s.RateShare)
		}
		for topic, n := range s.Assigned {
			if len(this[0].Assigned[topic]) != n {
				t.Errorf("member %d holds %d partitions of %s and sees itself holding %v", i, n, topic, this[0].Assigned[topic])
			}
		}
		other := stats[1-i].Group
		if !slices.EqualFunc(s.Group, other, func(a, b sink.GroupMember) bool {
			return a.ID == b.ID && a.Share == b.Share && maps.EqualFunc(a.Assigned, b.Assigned, slices.Equal[[]int])
		}) {
			t.Errorf("the members see the group differently:\n%+v\n%+v", s.Group, other)
		}
	}
	// The first member's status page shows the group as its Stats do.
	var status ops.Status
	waitFor(t, "the status to show the group and this member's partitions", func() error {
		_, js := httpGet(t, base+"/status.json")
		if err := json.Unmarshal([]byte(js), &status); err != nil {
			return err
		}
		if status.Sink == nil || len(status.Sink.Group) != 2 || len(status.Sink.Partitions) == 0 {
			return fmt.Errorf("sink %+v", status.Sink)
		}
		return nil
	})
	for i, m := range status.Sink.Group {
		want := stats[0].Group[i]
		if m.ID != want.ID || m.This != want.This || m.RateShare != want.Share || m.Host != want.Host || len(m.Partitions) != len(want.Assigned) {
			t.Errorf("the status page shows member %+v, the Stats %+v", m, want)
		}
	}
	if _, page := httpGet(t, base+"/"); !strings.Contains(page, `<table id="group">`) || !strings.Contains(page, "(this member)") {
		t.Errorf("the status page shows no group table")
	}
}
