package sink_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap/zaptest"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/retry"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal/onesignaltest"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

const topic = "cdc.public.users"

var mapping = &transform.Mapping{Users: &transform.UsersMapping{
	Table: "public.users", ExternalID: "external_id", Tags: map[string]string{"plan": ""},
}}

// userEvent is the event of a users row with the given plan.
func userEvent(id, plan string) kafka.Message {
	ev := event.Envelope{
		Op:     event.OpCreate,
		After:  event.Row{{Name: "external_id", Value: event.AppendString(nil, id)}, {Name: "plan", Value: event.AppendString(nil, plan)}},
		Source: event.Source{Connector: "postgresql", Schema: "public", Table: "users", Snapshot: "false"},
	}
	return kafka.Message{Topic: topic, Key: event.AppendString(nil, id), Value: ev.Encode(nil)}
}

// produce writes messages into a one-partition topic.
func produce(t *testing.T, b *broker.Embedded, msgs ...kafka.Message) {
	t.Helper()
	produceTopic(t, b, topic, msgs)
}

func newReader(b *broker.Embedded, group string) *kafka.Reader {
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers: b.Brokers(), GroupID: group, GroupTopics: []string{topic},
		MaxWait: 500 * time.Millisecond, StartOffset: kafka.FirstOffset, MaxBytes: 1 << 20,
	})
}

// running is a sink started by startSink.
type running struct {
	sink   *sink.Sink
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// stop cancels the sink and returns Run's error.
func (r *running) stop() error {
	r.cancel()
	<-r.done
	return r.err
}

// wait returns Run's error once it stopped by itself, or fails the test.
func (r *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(30 * time.Second):
		t.Fatal("the sink did not stop by itself")
		return nil
	}
}

// testConfig is the tests' sink configuration: quick retries and commits,
// and a clock running 20 times faster than the wall clock, so that
// OneSignal's one-second windows pass quickly.
func testConfig(t *testing.T) sink.Config {
	clock := sink.NewFakeClock()
	clock.Run(t, 20*time.Millisecond, time.Millisecond)
	cfg := baseConfig()
	cfg.Clock = clock
	return cfg
}

func baseConfig() sink.Config {
	return sink.Config{
		Concurrency: 8, CommitInterval: 50 * time.Millisecond,
		Retry: retry.Policy{Initial: time.Millisecond, Max: 10 * time.Millisecond},
	}
}

// withDeadLetters adds a dead-letter topic, cdc.dlq, to cfg.
func withDeadLetters(t *testing.T, b *broker.Embedded, cfg sink.Config) sink.Config {
	t.Helper()
	if err := broker.EnsureTopics(context.Background(), b.Brokers(), 1, "cdc.dlq"); err != nil {
		t.Fatal(err)
	}
	w := broker.NewWriter(b.Brokers(), 100)
	t.Cleanup(func() { w.Close() })
	cfg.DeadLetters, cfg.DeadLetterTopic = w, "cdc.dlq"
	return cfg
}

// startSink runs a sink with cfg and the users mapping until the test ends.
func startSink(t *testing.T, b *broker.Embedded, group string, api sink.OneSignal, cfg sink.Config) *running {
	t.Helper()
	return startSinkMapping(t, b, group, api, cfg, mapping)
}

func startSinkMapping(t *testing.T, b *broker.Embedded, group string, api sink.OneSignal, cfg sink.Config, m *transform.Mapping) *running {
	t.Helper()
	r := newReader(b, group)
	s := sink.New(cfg, r, api, m, zaptest.NewLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	run := &running{sink: s, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(run.done)
		run.err = s.Run(ctx)
		r.Close()
	}()
	t.Cleanup(func() { run.stop() })
	return run
}

// runSink runs a sink with the tests' configuration until the test ends.
func runSink(t *testing.T, b *broker.Embedded, group string, api sink.OneSignal) *running {
	t.Helper()
	return startSink(t, b, group, api, testConfig(t))
}

// committed returns the group's committed offset of partition 0 (-1: none).
func committed(t testing.TB, b *broker.Embedded, group string) int64 {
	t.Helper()
	c := &kafka.Client{Addr: kafka.TCP(b.Brokers()...)}
	resp, err := c.OffsetFetch(context.Background(), &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {0}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range resp.Topics[topic] {
		return p.CommittedOffset
	}
	return -1
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newClient(t testing.TB, url, key string) *onesignal.Client {
	t.Helper()
	c, err := onesignal.New(onesignal.Config{BaseURL: url, AppID: "app-1", APIKey: onesignal.Secret(key)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSinkAppliesEveryEventAndCommitsItsOffset(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	var msgs []kafka.Message
	for i := range 100 {
		msgs = append(msgs, userEvent(fmt.Sprintf("u%d", i), "free"))
	}
	msgs = append(msgs, userEvent("u7", "pro")) // a later change of the same key wins
	produce(t, b, msgs...)
	emu, url := onesignaltest.NewTestServer(t, onesignaltest.Config{AppID: "app-1", APIKey: "key"})

	run := runSink(t, b, "g", newClient(t, url, "key"))
	waitFor(t, "all 101 offsets to be committed", func() bool { return committed(t, b, "g") == 101 })
	if err := run.stop(); err != nil {
		t.Fatalf("sink: %v", err)
	}
	st := emu.State()
	if len(st.Users) != 100 {
		t.Errorf("%d users, want 100", len(st.Users))
	}
	if u, _ := st.UserByExternalID("u7"); u.Tags["plan"] != "pro" {
		t.Errorf("u7 tags %v, want plan=pro", u.Tags)
	}
}

// gatedAPI holds calls for one external id until released, and fails
// permanently for another.
type gatedAPI struct {
	sink.OneSignal
	hold    string
	release chan struct{}
	mu      sync.Mutex
	applied map[string]bool
}

func (g *gatedAPI) SetTags(ctx context.Context, id string, tags map[string]string) error {
	if id == g.hold {
		select {
		case <-g.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.applied[id] = true
	return nil
}

func (g *gatedAPI) has(id string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.applied[id]
}

func TestSinkNeverCommitsPastAMessageStillBeingApplied(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	var msgs []kafka.Message
	for i := range 50 {
		msgs = append(msgs, userEvent(fmt.Sprintf("u%d", i), "free"))
	}
	produce(t, b, msgs...)
	api := &gatedAPI{hold: "u10", release: make(chan struct{}), applied: map[string]bool{}}
	run := runSink(t, b, "g", api)

	waitFor(t, "a message after the held one to be applied", func() bool { return api.has("u49") })
	time.Sleep(200 * time.Millisecond) // several commit intervals
	if got := committed(t, b, "g"); got > 10 {
		t.Fatalf("committed offset %d while message 10 is still being applied", got)
	}
	close(api.release)
	waitFor(t, "everything to be committed once message 10 is applied", func() bool { return committed(t, b, "g") == 50 })
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}
}

func TestSinkStopsOnAPermanentErrorWithoutCommittingIt(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	bad := userEvent("u1", "free")
	bad.Value = []byte(`{"not":"an envelope"}`)
	produce(t, b, userEvent("u0", "free"), bad, userEvent("u2", "free"))
	_, url := onesignaltest.NewTestServer(t, onesignaltest.Config{AppID: "app-1", APIKey: "key"})
	err := runSink(t, b, "g", newClient(t, url, "key")).wait(t)
	if err == nil || !strings.Contains(err.Error(), topic+"/0@1") {
		t.Fatalf("sink stopped with %v, want an error naming the message's position", err)
	}
	if got := committed(t, b, "g"); got > 1 {
		t.Fatalf("committed offset %d: the unapplied message 1 was committed", got)
	}
}

func TestSinkStopsOnWrongCredentialsInsteadOfDrainingTheTopic(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	produce(t, b, userEvent("u0", "free"), userEvent("u1", "free"))
	_, url := onesignaltest.NewTestServer(t, onesignaltest.Config{AppID: "app-1", APIKey: "right-key"})
	err := runSink(t, b, "g", newClient(t, url, "wrong-key")).wait(t)
	// The user model answers a wrong key and another app's ID alike: the
	// message names both, the app, and the message the sink stopped at.
	for _, want := range []string{"OneSignal refused the API key for app app-1, or has no such app", "onesignal.app_id", "onesignal.api_key", "The sink stops with message " + topic + "/"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("sink stopped with %v, want %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "wrong-key") {
		t.Errorf("the error shows the key: %v", err)
	}
	if got := committed(t, b, "g"); got > 0 {
		t.Fatalf("committed offset %d with credentials OneSignal refused", got)
	}
}

// flakyAPI fails every call's first attempts with retryable errors.
type flakyAPI struct {
	sink.OneSignal
	mu    sync.Mutex
	tries map[string]int
}

type unavailable struct{}

func (unavailable) Error() string   { return "503 Service Unavailable" }
func (unavailable) Retryable() bool { return true }

func (f *flakyAPI) SetTags(_ context.Context, id string, _ map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tries[id]++
	if f.tries[id] < 3 {
		return unavailable{}
	}
	return nil
}

func TestSinkRetriesTransientErrorsUntilTheyPass(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	produce(t, b, userEvent("u0", "free"), userEvent("u1", "free"))
	api := &flakyAPI{tries: map[string]int{}}
	run := runSink(t, b, "g", api)
	waitFor(t, "both offsets to be committed", func() bool { return committed(t, b, "g") == 2 })
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}
	if api.tries["u0"] != 3 || api.tries["u1"] != 3 {
		t.Errorf("tries %v, want 3 each", api.tries)
	}
}

// runSinkWithDeadLetters is runSink with a dead-letter topic.
func runSinkWithDeadLetters(t *testing.T, b *broker.Embedded, group string, api sink.OneSignal) *running {
	t.Helper()
	return startSink(t, b, group, api, withDeadLetters(t, b, testConfig(t)))
}

func header(r kafkatest.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func TestSinkDeadLettersARejectedMessageWithItsReasonAndMovesOn(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	notJSON := userEvent("u1", "free")
	notJSON.Value = []byte(`<html>oops</html>`)
	tagObject := userEvent("u2", "free")
	tagObject.Value = []byte(strings.Replace(string(tagObject.Value), `"plan":"free"`, `"plan":{"nested":1}`, 1))
	produce(t, b, userEvent("u0", "free"), notJSON, tagObject, userEvent("u3", "pro"))
	emu, url := onesignaltest.NewTestServer(t, onesignaltest.Config{AppID: "app-1", APIKey: "key"})
	run := runSinkWithDeadLetters(t, b, "g", newClient(t, url, "key"))

	waitFor(t, "every offset to be committed", func() bool { return committed(t, b, "g") == 4 })
	dead := kafkatest.ReadUntil(t, b.Brokers(), []string{"cdc.dlq"}, 30*time.Second, func(rs []kafkatest.Record) bool { return len(rs) >= 2 })
	if err := run.stop(); err != nil {
		t.Fatalf("the sink stopped with %v; a rejected message must not stop it", err)
	}
	wantStage := map[string]string{"1": "decode", "2": "transform"}
	for _, d := range dead {
		off := header(d, sink.HeaderOffset)
		if header(d, sink.HeaderTopic) != topic || header(d, sink.HeaderPartition) != "0" || header(d, sink.HeaderStage) != wantStage[off] {
			t.Errorf("dead letter of offset %s: headers %v, want topic, partition and stage %q", off, d.Headers, wantStage[off])
		}
		if header(d, sink.HeaderMessage) == "" {
			t.Errorf("dead letter of offset %s has no reason", off)
		}
		if off == "1" && string(d.Value) != `<html>oops</html>` {
			t.Errorf("dead letter value %q, want the original message", d.Value)
		}
	}
	st := emu.State()
	if _, ok := st.UserByExternalID("u3"); !ok {
		t.Error("the message after the rejected ones was not applied")
	}
}

// A row whose new image lacks a mapped column (the mapping says "plan",
// the table has "plans") is not applied without it: it is dead-lettered
// with the reason, counted, and the sink moves on.
func TestSinkDeadLettersARowThatLacksAMappedColumnAndCountsIt(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	misnamed := userEvent("u1", "pro")
	misnamed.Value = []byte(strings.Replace(string(misnamed.Value), `"plan":"pro"`, `"plans":"pro"`, 1))
	produce(t, b, userEvent("u0", "free"), misnamed, userEvent("u2", "pro"))
	emu, url := onesignaltest.NewTestServer(t, onesignaltest.Config{AppID: "app-1", APIKey: "key"})
	run := runSinkWithDeadLetters(t, b, "g", newClient(t, url, "key"))

	waitFor(t, "every offset to be committed", func() bool { return committed(t, b, "g") == 3 })
	dead := kafkatest.ReadUntil(t, b.Brokers(), []string{"cdc.dlq"}, 30*time.Second, func(rs []kafkatest.Record) bool { return len(rs) >= 1 })
	stats := run.sink.Stats()
	if err := run.stop(); err != nil {
		t.Fatalf("the sink stopped with %v; a row that lacks a column must not stop it", err)
	}
	if len(dead) != 1 || header(dead[0], sink.HeaderOffset) != "1" || header(dead[0], sink.HeaderStage) != "transform" {
		t.Fatalf("dead letters %v, want offset 1 at stage transform", dead)
	}
	reason := header(dead[0], sink.HeaderMessage)
	for _, want := range []string{`the public.users row has no column "plan", which mapping.users.tags names.`, `Did you mean "plans"?`, "Its columns: external_id, plans."} {
		if !strings.Contains(reason, want) {
			t.Errorf("reason %q lacks %q", reason, want)
		}
	}
	if stats.DeadLettered != 1 {
		t.Errorf("DeadLettered = %d, want 1", stats.DeadLettered)
	}
	st := emu.State()
	if u, ok := st.UserByExternalID("u1"); ok {
		t.Errorf("the row without its mapped column reached OneSignal: %+v", u)
	}
	for _, id := range []string{"u0", "u2"} {
		if _, ok := st.UserByExternalID(id); !ok {
			t.Errorf("%s, beside the bad row, was not applied", id)
		}
	}
}

// refusingAPI answers every call with a 400 that is not retryable.
type refusingAPI struct{ sink.OneSignal }

type badRequest struct{}

func (badRequest) Error() string   { return "HTTP 400: Please limit your tag updates to 100 per request" }
func (badRequest) HTTPStatus() int { return 400 }

func (refusingAPI) SetTags(context.Context, string, map[string]string) error { return badRequest{} }

func TestSinkDeadLettersAMessageOneSignalRejectsWithItsStatus(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	produce(t, b, userEvent("u0", "free"))
	var mu sync.Mutex
	var told []sink.DeadLetter
	cfg := withDeadLetters(t, b, testConfig(t))
	cfg.DeadLettered = func(d sink.DeadLetter) {
		mu.Lock()
		defer mu.Unlock()
		told = append(told, d)
	}
	run := startSink(t, b, "g", refusingAPI{}, cfg)
	dead := kafkatest.ReadUntil(t, b.Brokers(), []string{"cdc.dlq"}, 30*time.Second, func(rs []kafkatest.Record) bool { return len(rs) >= 1 })
	waitFor(t, "the offset to be committed", func() bool { return committed(t, b, "g") == 1 })
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}
	if got := header(dead[0], sink.HeaderStatus); got != "400" || header(dead[0], sink.HeaderStage) != "onesignal" {
		t.Errorf("status header %q stage %q, want 400 and onesignal", got, header(dead[0], sink.HeaderStage))
	}
	if got := header(dead[0], sink.HeaderClass); got != "onesignal_cdc.OneSignalRejection" {
		t.Errorf("class header %q, want onesignal_cdc.OneSignalRejection, not a Go type", got)
	}
	mu.Lock()
	defer mu.Unlock()
	want := sink.DeadLetter{Topic: topic, Partition: 0, Offset: 0, Stage: "onesignal", Reason: header(dead[0], sink.HeaderMessage), Status: 400}
	if len(told) != 1 || told[0] != want {
		t.Errorf("DeadLettered was told %+v, want once %+v", told, want)
	}
}

func TestSinkStopsCleanlyWhenItsParentStopsForAnotherComponentsError(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	produce(t, b, userEvent("u0", "free"))
	r := newReader(b, "g")
	defer r.Close()
	s := sink.New(testConfig(t), r, &flakyAPI{tries: map[string]int{}}, mapping, zaptest.NewLogger(t))
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, "the message to be fetched", func() bool { return s.Stats().Fetched == 1 })
	cancel(errors.New("connector: password authentication failed for user \"cdc\""))
	if err := <-done; err != nil {
		t.Errorf("the sink returned %q, its parent's cause: the daemon would report the connector's failure as the sink's", err)
	}
}

func TestSinkStopsOnARedirectNamingTheBaseURLInsteadOfFollowingIt(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	produce(t, b, userEvent("u0", "free"), userEvent("u1", "free"))
	emu, url := onesignaltest.NewTestServer(t, onesignaltest.Config{AppID: "app-1", APIKey: "key"})
	// What base_url: http://… gets from a server that wants https.
	if err := emu.SetAnswers(onesignaltest.Answer{Status: 301, Header: map[string]string{"Location": "https://api.example/"}}); err != nil {
		t.Fatal(err)
	}
	err := runSink(t, b, "g", newClient(t, url, "key")).wait(t)
	if err == nil || !strings.Contains(err.Error(), "set onesignal.base_url") || !strings.Contains(err.Error(), "https://api.example") {
		t.Fatalf("sink stopped with %v, want onesignal.base_url and the redirect named", err)
	}
	if got := committed(t, b, "g"); got > 0 {
		t.Fatalf("committed offset %d past messages that were redirected", got)
	}
	if st := emu.State(); len(st.Users) != 0 {
		t.Errorf("the emulator holds %d users: a redirected write was applied", len(st.Users))
	}
}

func TestSinkDeadLettersAMessageTooLargeForTheDeadLetterTopicWithoutItsValue(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	c := &kafka.Client{Addr: kafka.TCP(b.Brokers()...), Timeout: 10 * time.Second}
	resp, err := c.CreateTopics(context.Background(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: "cdc.dlq", NumPartitions: 1, ReplicationFactor: -1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "max.message.bytes", ConfigValue: "2000"}},
	}}})
	if err != nil || resp.Errors["cdc.dlq"] != nil {
		t.Fatalf("create cdc.dlq: %v %v", err, resp.Errors)
	}
	large := userEvent("u0", strings.Repeat("x", 5000))
	produce(t, b, large, userEvent("u1", "free"))
	run := runSinkWithDeadLetters(t, b, "g", refusingAPI{})
	waitFor(t, "both offsets to be committed", func() bool { return committed(t, b, "g") == 2 })
	dead := kafkatest.ReadUntil(t, b.Brokers(), []string{"cdc.dlq"}, 30*time.Second, func(rs []kafkatest.Record) bool { return len(rs) >= 2 })
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}
	byKey := map[string]kafkatest.Record{}
	for _, d := range dead {
		byKey[string(d.Key)] = d
	}
	d := byKey[`"u0"`]
	if len(d.Value) != 0 || header(d, sink.HeaderValueDropped) != strconv.Itoa(len(large.Value)) {
		t.Errorf("the dead letter holds %d bytes of value and says %q dropped, want none and %d", len(d.Value), header(d, sink.HeaderValueDropped), len(large.Value))
	}
	if reason := header(d, sink.HeaderMessage); !strings.Contains(reason, "HTTP 400") || !strings.Contains(reason, "is left out of this dead letter") || !strings.Contains(reason, topic+", partition 0, offset 0") {
		t.Errorf("reason %q: want the refusal, and where the original is", reason)
	}
	if u1 := byKey[`"u1"`]; len(u1.Value) == 0 || header(u1, sink.HeaderValueDropped) != "" {
		t.Errorf("u1's dead letter has %d bytes of value, want it whole: only the message too large goes without", len(u1.Value))
	}
}
