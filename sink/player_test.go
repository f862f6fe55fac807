package sink_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap/zaptest"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal/onesignaltest"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

const parkedTopic = "cdc.parked-tags"

// playersAPI is a player-model client of a fresh emulator.
func playersAPI(t *testing.T, cfg onesignaltest.Config) (*onesignaltest.Emulator, *onesignal.PlayerClient) {
	t.Helper()
	cfg.AppID, cfg.APIKey = "app-1", "key"
	emu, url := onesignaltest.NewTestServer(t, cfg)
	c, err := onesignal.NewPlayers(onesignal.PlayerConfig{Config: onesignal.Config{BaseURL: url, AppID: "app-1", APIKey: "key"}})
	if err != nil {
		t.Fatal(err)
	}
	return emu, c
}

// openParked opens the parked-tags store on b and follows it until the
// test ends.
func openParked(t *testing.T, b *broker.Embedded) *sink.ParkedStore {
	t.Helper()
	p, err := sink.OpenParkedStore(t.Context(), broker.Plain(b.Brokers()), parkedTopic, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := p.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		p.Close()
	})
	return p
}

func TestPlayerModelTagsWrittenBeforeTheFirstDeviceReachItAfterARestart(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	emu, api := playersAPI(t, onesignaltest.Config{RateLimits: onesignaltest.RateLimits{Enabled: true}})
	emu.AddSubscription(onesignaltest.Subscription{ID: "dev-1"})

	// The user's tags arrive while no device carries the user's id.
	produce(t, b, userEvent("u1", "pro"))
	cfg := testConfig(t)
	cfg.Parked = openParked(t, b)
	first := startSinkMapping(t, b, "g", api, cfg, usersAndDevices)
	waitFor(t, "the tags to be parked and their offset committed", func() bool { return committed(t, b, "g") == 1 })
	if got := first.sink.Stats().Parked; got != 1 {
		t.Errorf("Stats().Parked = %d, want 1", got)
	}
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}

	// A new sink, with a store loaded from Kafka alone, links the device.
	produce(t, b, deviceEvent("dev-1", "u1", 200))
	cfg = testConfig(t)
	parked := openParked(t, b)
	if got := parked.Get("u1"); got["plan"] != "pro" {
		t.Fatalf("the reopened store holds %v for u1, want plan pro", got)
	}
	cfg.Parked = parked
	second := startSinkMapping(t, b, "g", api, cfg, usersAndDevices)
	waitFor(t, "the link to be committed", func() bool { return committed(t, b, "g") == 2 })
	if err := second.stop(); err != nil {
		t.Fatal(err)
	}
	p, _ := emu.State().Player("dev-1")
	if p.ExternalUserID == nil || *p.ExternalUserID != "u1" || p.Tags["plan"] != "pro" {
		t.Errorf("dev-1 = %+v, want u1's device with plan pro", p)
	}
	if got := parked.Get("u1"); got != nil {
		t.Errorf("u1's tags are still parked after the link delivered them: %v", got)
	}
	if n := emu.Stats().RateLimited; n != 0 {
		t.Errorf("the emulator answered 429 %d times", n)
	}
}

func TestPlayerModelTagChangesOfAParkedUserKeepTheOlderParkedTags(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	emu, api := playersAPI(t, onesignaltest.Config{})
	emu.AddSubscription(onesignaltest.Subscription{ID: "dev-1"})
	m := &transform.Mapping{
		Users:   &transform.UsersMapping{Table: "public.users", ExternalID: "external_id", Tags: map[string]string{"plan": "", "level": ""}},
		Devices: usersAndDevices.Devices,
	}
	// An update of the level alone: the plan, unchanged, comes as an
	// unchanged TOAST value would, so its tag is left as it is.
	withLevel := func(id, level string, lsn int64) kafka.Message {
		ev := event.Envelope{
			Op: event.OpUpdate,
			After: event.Row{{Name: "external_id", Value: event.AppendString(nil, id)}, {Name: "plan", Value: event.UnavailableValue()},
				{Name: "level", Value: event.AppendString(nil, level)}},
			Source: event.Source{Connector: "postgresql", Schema: "public", Table: "users", Snapshot: "false", LSN: lsn, CommitLSN: lsn},
		}
		return kafka.Message{Topic: topic, Key: event.AppendString(nil, id), Value: ev.Encode(nil)}
	}
	first := userEventAt("u1", "pro", 100, 100)
	first.Value = []byte(strings.Replace(string(first.Value), `"plan":"pro"`, `"plan":"pro","level":null`, 1))
	produce(t, b, first, withLevel("u1", "3", 150), deviceEvent("dev-1", "u1", 200), withLevel("u1", "4", 300))
	cfg := testConfig(t)
	cfg.Parked = openParked(t, b)
	run := startSinkMapping(t, b, "g", api, cfg, m)
	waitFor(t, "everything committed", func() bool { return committed(t, b, "g") == 4 })
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}
	p, _ := emu.State().Player("dev-1")
	if p.Tags["plan"] != "pro" || p.Tags["level"] != "4" {
		t.Errorf("dev-1's tags = %v, want plan pro (parked first) and level 4 (after the link)", p.Tags)
	}
}

func TestSinkDeadLettersARequestOverTheTagLimitWithTheReason(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	m := &transform.Mapping{Users: &transform.UsersMapping{Table: "public.users", ExternalID: "external_id", Tags: map[string]string{"plan": "", "level": ""}}}
	two := userEvent("u1", "pro")
	two.Value = []byte(strings.Replace(string(two.Value), `"plan":"pro"`, `"plan":"pro","level":"3"`, 1))
	one := userEvent("u2", "free")
	one.Value = []byte(strings.Replace(string(one.Value), `"plan":"free"`, `"plan":"free","level":null`, 1))
	produce(t, b, two, one)
	emu, url := onesignaltest.NewTestServer(t, onesignaltest.Config{AppID: "app-1", APIKey: "key"})
	cfg := withDeadLetters(t, b, testConfig(t))
	cfg.TagLimit = 1
	run := startSinkMapping(t, b, "g", newClient(t, url, "key"), cfg, m)
	dead := kafkatest.ReadUntil(t, b.Brokers(), []string{"cdc.dlq"}, 30*time.Second, func(rs []kafkatest.Record) bool { return len(rs) >= 1 })
	waitFor(t, "both offsets committed", func() bool { return committed(t, b, "g") == 2 })
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}
	if reason := header(dead[0], sink.HeaderMessage); !strings.Contains(reason, "2 tags, more than onesignal.tag_limit 1") {
		t.Errorf("dead letter reason %q, want the count and the limit", reason)
	}
	if _, ok := emu.State().UserByExternalID("u1"); ok {
		t.Error("u1 reached OneSignal despite the tag limit")
	}
	if _, ok := emu.State().UserByExternalID("u2"); !ok {
		t.Error("u2, within the limit, was not applied")
	}
}

func TestSinkDeadLettersOneSignalsTagCapRefusalWithoutRetrying(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	m := &transform.Mapping{Users: &transform.UsersMapping{Table: "public.users", ExternalID: "external_id", Tags: map[string]string{"plan": "", "level": ""}}}
	two := userEvent("u1", "pro")
	two.Value = []byte(strings.Replace(string(two.Value), `"plan":"pro"`, `"plan":"pro","level":"3"`, 1))
	produce(t, b, two)
	_, url := onesignaltest.NewTestServer(t, onesignaltest.Config{AppID: "app-1", APIKey: "key", TagLimit: 1})
	run := startSinkMapping(t, b, "g", newClient(t, url, "key"), withDeadLetters(t, b, testConfig(t)), m)
	dead := kafkatest.ReadUntil(t, b.Brokers(), []string{"cdc.dlq"}, 30*time.Second, func(rs []kafkatest.Record) bool { return len(rs) >= 1 })
	waitFor(t, "the offset committed", func() bool { return committed(t, b, "g") == 1 })
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}
	if got := header(dead[0], sink.HeaderStatus); got != "400" || !strings.Contains(header(dead[0], sink.HeaderMessage), "maximum of 1 tags") {
		t.Errorf("dead letter status %q reason %q, want OneSignal's 400", got, header(dead[0], sink.HeaderMessage))
	}
	if r := run.sink.Stats().Retries; r != 0 {
		t.Errorf("Stats().Retries = %d, want 0: the cap is permanent", r)
	}
}
