package sink_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal/onesignaltest"
)

func TestSinkSkipsReplayedAndStaleEvents(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	snapshot := userEventAt("u0", "free", 0, 150) // read at LSN 150: older than the change committed at 200
	produce(t, b,
		userEventAt("u0", "pro", 200, 190),
		userEvent("u1", "a"),
		userEventAt("u0", "pro", 200, 190), // the connector repeating a transaction
		userEventAt("u0", "free", 100, 90), // an older change
		userEvent("u1", "b"),               // no LSN: never skipped
		snapshot,
		userEventAt("u0", "gold", 300, 290),
		userEventAt("u0", "free", 250, 240), // older than gold
	)
	emu, url := onesignaltest.NewTestServer(t, onesignaltest.Config{AppID: "app-1", APIKey: "key"})
	run := runSink(t, b, "g", newClient(t, url, "key"))
	waitFor(t, "every offset to be committed", func() bool { return committed(t, b, "g") == 8 })
	st := run.sink.Stats()
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}
	if st.Replays != 4 {
		t.Errorf("%d messages skipped, want 4", st.Replays)
	}
	state := emu.State()
	if u, _ := state.UserByExternalID("u0"); u.Tags["plan"] != "gold" {
		t.Errorf("u0 has tags %v, want plan=gold: an older event overwrote a newer one", u.Tags)
	}
	if u, _ := state.UserByExternalID("u1"); u.Tags["plan"] != "b" {
		t.Errorf("u1 has tags %v, want plan=b", u.Tags)
	}
}

func TestSinkSkipsRequestsThatChangeNothing(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	cfg, clock := manualConfig()
	api := newRecordingAPI(clock, nil)
	produce(t, b, userEventAt("u0", "pro", 10, 10), deviceEvent("d0", "u0", 11))
	run := startSinkMapping(t, b, "g", api, cfg, usersAndDevices)
	waitFor(t, "the first changes to be committed", func() bool { return committed(t, b, "g") == 2 })

	// Newer events, so not replays, that set what is already set.
	produce(t, b, userEventAt("u0", "pro", 20, 20), deviceEvent("d0", "u0", 21))
	waitFor(t, "the new changes to be scheduled", func() bool { return run.sink.Stats().Changes == 4 })
	clock.Advance(time.Second)
	waitFor(t, "them to be committed", func() bool { return committed(t, b, "g") == 4 })

	produce(t, b, userEventAt("u0", "free", 30, 30))
	waitFor(t, "the change to be scheduled", func() bool { return run.sink.Stats().Changes == 5 })
	clock.Advance(time.Second)
	waitFor(t, "it to be committed", func() bool { return committed(t, b, "g") == 5 })
	st := run.sink.Stats()
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}

	calls := byTarget(api.recorded())
	if n := len(calls["user u0"]); n != 2 {
		t.Errorf("%d requests for u0, want 2: pro, then free", n)
	}
	if n := len(calls["device d0"]); n != 1 {
		t.Errorf("%d requests for d0, want 1", n)
	}
	if st.Unchanged != 2 || st.Replays != 0 {
		t.Errorf("%d requests skipped as unchanged and %d replays, want 2 and 0", st.Unchanged, st.Replays)
	}
}

func TestSinkAppliesARedeliveredDeadLetterButNotAStaleOne(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	redelivered := func(m kafka.Message) kafka.Message {
		m.Headers = append(m.Headers, kafka.Header{Key: sink.HeaderRedelivery, Value: []byte("cdc.dlq/0@0")})
		return m
	}
	var refuse atomic.Bool
	refuse.Store(true)
	cfg := testConfig(t)
	api := newRecordingAPI(cfg.Clock, func(_ context.Context, c call) error {
		if refuse.Load() && c.id == "u0" {
			return badRequest{}
		}
		return nil
	})
	produce(t, b,
		userEventAt("u0", "pro", 200, 190), // refused: dead-lettered
		userEventAt("u1", "pro", 300, 290),
		userEventAt("u1", "gold", 400, 390),
	)
	run := startSink(t, b, "g", api, withDeadLetters(t, b, cfg))
	waitFor(t, "the first events to be committed", func() bool { return committed(t, b, "g") == 3 })

	refuse.Store(false) // the fix
	produce(t, b,
		redelivered(userEventAt("u0", "pro", 200, 190)),
		redelivered(userEventAt("u1", "pro", 300, 290)), // older than gold: still skipped
	)
	waitFor(t, "the redeliveries to be committed", func() bool { return committed(t, b, "g") == 5 })
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}
	tags := lastTags(api.recorded())
	if tags["user u0"]["plan"] != "pro" {
		t.Errorf("u0 has tags %v, want plan=pro: the redelivered event was skipped as a replay", tags["user u0"])
	}
	if tags["user u1"]["plan"] != "gold" {
		t.Errorf("u1 has tags %v, want plan=gold: a stale redelivery overwrote a newer change", tags["user u1"])
	}
}
