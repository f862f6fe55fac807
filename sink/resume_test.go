package sink_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/retry"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
)

// accepted counts the emulator's 2xx answers.
func (st *stack) accepted() int {
	n := 0
	for _, statuses := range st.emu.Stats().Requests {
		for code, c := range statuses {
			if code >= 200 && code < 300 {
				n += c
			}
		}
	}
	return n
}

// TestTheQueuedRetriesResumeAtTheRateLimitOnceAnOutageEnds: through an
// outage every target's backoff grows (here to 3–9 s); once OneSignal
// answers again, the first success makes them due at once, so the drain
// runs at the rate limit instead of trickling as each backoff runs out.
// The test holds the mechanism: nearly every waiting target has its
// backoff cut short. The rate it drains at is logged; the benchmark
// (sinkdown, in go run ./bench) measures it, since on a loaded machine
// under -race the sink is short of CPU (103 of 200 requests/s in a CI run).
func TestTheQueuedRetriesResumeAtTheRateLimitOnceAnOutageEnds(t *testing.T) {
	t.Parallel()
	const users, limit = 600, 200.0
	st := newStack(t, sink.ModelUser, emulator.Config{})
	if err := st.emu.SetFaults(emulator.Faults{Status: map[int]float64{503: 1}}); err != nil {
		t.Fatal(err)
	}
	r := st.startWith(crm, options{rate: limit, config: func(c *sink.Config) {
		c.Retry = retry.Policy{Initial: time.Second, Max: 6 * time.Second}
	}})
	cs := make([]change, 0, users)
	for i := range users {
		ext := fmt.Sprintf("u%d", i)
		st.emu.AddUser(ext, map[string]string{"plan": "free"})
		cs = append(cs, change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(i), after: contact(i, ext, "pro", i)})
	}
	st.produce(cs...)
	// Long enough for every target's backoff to reach its most.
	outage := time.Now()
	waitForWithin(t, "every user's sixth failed attempt", time.Minute, func() error {
		if n := st.emu.Stats().Requests; total(n) < users*6 {
			return fmt.Errorf("%d attempts", total(n))
		}
		return nil
	})
	if err := st.emu.SetFaults(emulator.Faults{}); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	// The best one-second rate of accepted requests in the first four
	// seconds after OneSignal came back.
	type sample struct {
		at time.Time
		n  int
	}
	var samples []sample
	for time.Since(back) < 4*time.Second {
		samples = append(samples, sample{time.Now(), st.accepted()})
		time.Sleep(50 * time.Millisecond)
	}
	best := 0.0
	for i, a := range samples {
		for _, b := range samples[i+1:] {
			if b.at.Sub(a.at) >= time.Second {
				best = max(best, float64(b.n-a.n)/b.at.Sub(a.at).Seconds())
				break
			}
		}
	}
	st.waitDrained()
	resumed := r.sink.Stats().Resumed
	t.Logf("outage of %s, then the best one-second drain rate in the first 4 s: %.0f requests/s (limit %.0f/s); %d targets resumed; all %d drained %s after OneSignal came back",
		back.Sub(outage).Round(time.Millisecond), best, limit, resumed, users, time.Since(back).Round(time.Millisecond))
	if resumed < users*9/10 {
		t.Errorf("%d of %d waiting targets had their backoff cut short when OneSignal came back, want at least 90 %%", resumed, users)
	}
}

func total(byRoute map[string]map[int]int) int {
	n := 0
	for _, statuses := range byRoute {
		for _, c := range statuses {
			n += c
		}
	}
	return n
}
