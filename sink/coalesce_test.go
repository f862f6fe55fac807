package sink_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal/onesignaltest"
)

func TestSinkMergesAUsersUpdatesIntoOneRequestPerSecond(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	const users, updates = 50, 100
	var msgs []kafka.Message
	for i := range updates {
		for u := range users {
			msgs = append(msgs, userEvent(fmt.Sprintf("u%d", u), fmt.Sprintf("v%d", i)))
		}
	}
	produce(t, b, msgs...)
	emu, url := onesignaltest.NewTestServer(t, onesignaltest.Config{AppID: "app-1", APIKey: "key"})
	client := newClient(t, url, "key")
	cfg, clock := manualConfig()
	api := newRecordingAPI(clock, func(ctx context.Context, c call) error { return c.forward(ctx, client) })
	run := startSink(t, b, "g", api, cfg)

	// The clock stands still: each user gets one request now, and every
	// later change waits, merged, for the user's window to open.
	waitFor(t, "every change to be scheduled and each user's first request answered", func() bool {
		return run.sink.Stats().Changes == users*updates && api.count() >= users
	})
	clock.Advance(time.Second)
	waitFor(t, "every offset to be committed", func() bool { return committed(t, b, "g") == users*updates })
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}

	calls := api.recorded()
	for target, cs := range byTarget(calls) {
		if len(cs) > 2 {
			t.Errorf("%s: %d requests for %d changes, want at most 2", target, len(cs), updates)
		}
	}
	st := emu.State()
	for u := range users {
		if got, _ := st.UserByExternalID(fmt.Sprintf("u%d", u)); got.Tags["plan"] != fmt.Sprintf("v%d", updates-1) {
			t.Errorf("u%d has tags %v, want the last value v%d", u, got.Tags, updates-1)
		}
	}
	t.Logf("%d changes, %d requests: %.3f requests per change", users*updates, len(calls), float64(len(calls))/float64(users*updates))
}

func TestSinkSendsToATargetOnceASecondAtMostAndNeverTwiceAtOnce(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	cfg := testConfig(t)
	// The emulator enforces OneSignal's limits on the sink's clock: any
	// request to a user or device within a second of the last is a 429.
	emu, url := onesignaltest.NewTestServer(t, onesignaltest.Config{
		AppID: "app-1", APIKey: "key", Clock: cfg.Clock.Now,
		RateLimits: onesignaltest.RateLimits{Enabled: true},
	})
	client := newClient(t, url, "key")
	const users, devices, rounds, batches = 10, 5, 5, 4
	for d := range devices {
		emu.AddSubscription(onesignaltest.Subscription{ID: fmt.Sprintf("d%d", d)})
	}
	var attempts atomic.Int64
	api := newRecordingAPI(cfg.Clock, func(ctx context.Context, c call) error {
		if attempts.Add(1)%3 == 0 {
			return unavailable503{} // a retry must wait for the window too
		}
		return c.forward(ctx, client)
	})
	produce(t, b) // the topic, before the consumer group looks for it
	run := startSinkMapping(t, b, "g", api, cfg, usersAndDevices)

	var lsn int64
	total := 0
	for batch := range batches {
		var msgs []kafka.Message
		for round := range rounds {
			for u := range users {
				msgs = append(msgs, userEvent(fmt.Sprintf("u%d", u), fmt.Sprintf("b%dr%d", batch, round)))
			}
			for d := range devices {
				if batch == 0 {
					// Linking to a user that does not exist yet takes the
					// client two transfers of the device in a row, which
					// the emulator's limit refuses: the users come first.
					break
				}
				lsn++
				msgs = append(msgs, deviceEvent(fmt.Sprintf("d%d", d), fmt.Sprintf("u%d", (d+batch+round)%users), lsn))
			}
		}
		produce(t, b, msgs...)
		total += len(msgs)
		waitFor(t, fmt.Sprintf("batch %d to be committed", batch), func() bool { return committed(t, b, "g") == int64(total) })
	}
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}

	if api.overlaps > 0 {
		t.Errorf("%d requests started while another to their target was in flight", api.overlaps)
	}
	for target, cs := range byTarget(api.recorded()) {
		for i := 1; i < len(cs); i++ {
			if gap := cs[i].start.Sub(cs[i-1].end); gap < time.Second {
				t.Errorf("%s: request %d started %s after the previous one's answer, want at least 1s", target, i, gap)
			}
		}
	}
	if n := emu.Stats().RateLimited; n > 0 {
		t.Errorf("the emulator's rate limits refused %d requests", n)
	}
	st := emu.State()
	for u := range users {
		if got, _ := st.UserByExternalID(fmt.Sprintf("u%d", u)); got.Tags["plan"] != fmt.Sprintf("b%dr%d", batches-1, rounds-1) {
			t.Errorf("u%d has tags %v, want the last", u, got.Tags)
		}
	}
	for d := range devices {
		if got, want := st.ExternalIDOf(fmt.Sprintf("d%d", d)), fmt.Sprintf("u%d", (d+batches-1+rounds-1)%users); got != want {
			t.Errorf("d%d belongs to %q, want %q", d, got, want)
		}
	}
}
