package sink_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/retry"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/sink/desired"
	"github.com/onesignal-cdc/onesignal-cdc/sink/kv"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// The tests' CRM-shaped schema: contacts with a surrogate primary key and
// the external id in a column of its own, quoted mixed-case names, and
// devices keyed by (owner, device).
const (
	contactsTopic = "crm.crm.Contacts"
	devicesTopic  = "crm.crm.devices"
	appID         = "00000000-0000-4000-8000-000000000001"
	apiKey        = "test-key"
)

var crm = &transform.Mapping{
	Users: &transform.UsersMapping{
		Table: "crm.Contacts", ExternalID: "External Id",
		Tags:  map[string]string{"Plan": "plan", "Score": "score"},
		Email: "E-mail",
	},
	Devices: &transform.DevicesMapping{Table: "crm.devices", DeviceID: "device_id", ExternalID: "ext_id"},
}

// stack is a Kafka (kfake, the real protocol), the emulator over HTTP, and
// the sink's topics; sinks started on it are members of one group.
type stack struct {
	t        testing.TB
	model    string
	brokers  []string
	cluster  broker.Cluster
	kfake    *kfake.Cluster // to inject faults
	emu      *emulator.Emulator
	url      string
	producer *broker.Writer
	topics   sink.Topics
	events   []string       // the event topics, which the group reads
	parts    map[string]int // the partitions of the group's topics
	lsn      atomic.Int64
}

// group is the sink's consumer group.
const group = "crm-sink"

func newStack(t testing.TB, model string, emu emulator.Config) *stack {
	t.Helper()
	b := kafkatest.Start(t)
	st := &stack{t: t, model: model, brokers: b.Brokers(), cluster: broker.Plain(b.Brokers()), kfake: b.Cluster(), topics: sink.TopicsFor("crm")}
	emu.AppID, emu.APIKey = appID, apiKey
	st.emu = emulator.New(emu)
	srv := httptest.NewServer(st.emu.Handler())
	t.Cleanup(srv.Close)
	st.url = srv.URL
	ctx := context.Background()
	if err := st.cluster.EnsureTopics(ctx, 4, contactsTopic, devicesTopic, "crm.dlq"); err != nil {
		t.Fatal(err)
	}
	if err := (sink.Cluster{Cluster: st.cluster}).Prepare(ctx, st.topics, 4, []string{contactsTopic, devicesTopic}); err != nil {
		t.Fatal(err)
	}
	st.events = []string{contactsTopic, devicesTopic}
	st.parts = map[string]int{contactsTopic: 4, devicesTopic: 4, st.topics.Targets: 4}
	st.producer = st.cluster.NewWriter(100)
	t.Cleanup(func() { st.producer.Close() })
	st.lsn.Store(1000)
	return st
}

// running is a sink started by start.
type running struct {
	sink      *sink.Sink
	api       onesignalAPI
	cancel    context.CancelCauseFunc
	done      chan struct{} // closed when Run returned
	err       error         // what Run returned, once done is closed
	closeOnce sync.Once
	stopped   func() // closes the sink's writers, once Run returned
}

type onesignalAPI interface {
	sink.OneSignal
}

// stop cancels the sink and returns what Run returned.
func (r *running) stop() error { return r.stopWith(nil) }

// stopWith cancels the sink's context with cause, as the daemon does when
// another component failed, and returns what Run returned.
func (r *running) stopWith(cause error) error {
	r.cancel(cause)
	<-r.done
	r.closeOnce.Do(r.stopped)
	return r.err
}

// wait returns what Run returned once the sink stopped by itself, or fails
// the test.
func (r *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-r.done:
		r.closeOnce.Do(r.stopped)
		return r.err
	case <-time.After(60 * time.Second):
		t.Fatal("the sink did not stop by itself")
		return nil
	}
}

// options change how start runs a sink; the zero value runs it as the
// daemon would, on the wall clock.
type options struct {
	// clock times the sink's windows and retries and the client's rate
	// limiter; nil: the wall clock.
	clock sink.Clock
	// rate is the app-wide rate limit in requests/s; 0: 900, the default.
	rate float64
	// apiKey is the key the client sends; "": the one the emulator takes.
	apiKey string
	// api, when set, is what the sink calls; it is given the client, to
	// pass calls on to (a recorder's wrap).
	api func(client sink.OneSignal) sink.OneSignal
	// config changes the sink's configuration last.
	config func(*sink.Config)
	// httpClient is the OneSignal client's; nil: its default.
	httpClient *http.Client
	// drift, when set, turns continuous mode on, its exports read by the
	// sink's client.
	drift *sink.DriftConfig
	// runAs, when set, is what runs the sink: given the sink, it returns
	// what Run is called on instead (the ops monitor's Wrap).
	runAs func(s *sink.Sink) runner
}

// runner is what runs a sink: the sink itself, or a wrapper of it.
type runner interface {
	Run(ctx context.Context) error
}

// start runs a sink of the stack's group.
func (st *stack) start(mapping *transform.Mapping) *running {
	st.t.Helper()
	return st.startWith(mapping, options{})
}

// startWith runs a sink of the stack's group with opts.
func (st *stack) startWith(mapping *transform.Mapping, opts options) *running {
	st.t.Helper()
	clock := opts.clock
	if clock == nil {
		clock = sink.SystemClock{}
	}
	rate := opts.rate
	if rate == 0 {
		rate = 900
	}
	key := onesignal.Secret(apiKey)
	if opts.apiKey != "" {
		key = onesignal.Secret(opts.apiKey)
	}
	limiter := sink.NewLimiter(clock, rate)
	api, err := onesignal.New(onesignal.Config{BaseURL: st.url, AppID: appID, APIKey: key, Limiter: limiter, HTTPClient: opts.httpClient})
	if err != nil {
		st.t.Fatal(err)
	}
	var osAPI sink.OneSignal = api
	if st.model == sink.ModelPlayer {
		osAPI = api.Players(false, false)
	}
	if opts.api != nil {
		osAPI = opts.api(osAPI)
	}
	targets, rows := sink.Cluster{Cluster: st.cluster}.Writers()
	dlq := st.cluster.NewWriter(10)
	group := sink.Cluster{Cluster: st.cluster, Group: broker.GroupConfig{
		ID: group, Topics: append(slices.Clone(st.events), st.topics.Targets),
		SessionTimeout: 6 * time.Second, HeartbeatInterval: time.Second, RebalanceTimeout: 10 * time.Second,
	}}
	cfg := sink.Config{
		Model: st.model, TargetsTopic: st.topics.Targets, RowsTopic: st.topics.Rows,
		Targets: targets, Rows: rows, Kafka: group, Store: kv.NewMemory(),
		Concurrency: 16, CommitInterval: 100 * time.Millisecond,
		Retry:       retry.Policy{Initial: 10 * time.Millisecond, Max: 200 * time.Millisecond},
		DeadLetters: dlq, DeadLetterTopic: "crm.dlq",
		Clock: clock, Limiter: limiter,
	}
	if opts.drift != nil {
		d := *opts.drift
		d.Users, d.Players = api.StartExport, api.Players(false, false).StartExport
		cfg.Drift = d
	}
	if opts.config != nil {
		opts.config(&cfg)
	}
	log := st.logger()
	if _, ok := st.t.(*testing.B); ok {
		log = zap.NewNop() // a benchmark measures the sink, not its log
	}
	s := sink.New(cfg, group, osAPI, mapping, log)
	ctx, cancel := context.WithCancelCause(context.Background())
	r := &running{sink: s, api: osAPI, cancel: cancel, done: make(chan struct{}), stopped: func() {
		targets.Close()
		rows.Close()
		dlq.Close()
	}}
	var run runner = s
	if opts.runAs != nil {
		run = opts.runAs(s)
	}
	go func() {
		defer close(r.done)
		r.err = run.Run(ctx)
	}()
	st.t.Cleanup(func() { r.stop() })
	return r
}

// change is a row change of the CRM schema, positioned by commit.
type change struct {
	topic  string
	op     event.Op
	key    map[string]any // the primary key columns
	before map[string]any // the old image; nil under REPLICA IDENTITY DEFAULT but for a delete's key
	after  map[string]any
	commit int64 // 0: the next position; -1: none (an event without LSNs)
	lsn    int64 // the change's own LSN; 0: commit
	// headers go with the message (a redelivery's, say).
	headers []kafka.Header
}

// produce writes the changes, in order, each keyed by its primary key as
// the connector keys them.
func (st *stack) produce(cs ...change) {
	st.t.Helper()
	var msgs []kafka.Message
	for _, c := range cs {
		pos, lsn := c.commit, c.lsn
		switch pos {
		case 0:
			pos = st.lsn.Add(10)
		case -1:
			pos = 0
		}
		if lsn == 0 {
			lsn = pos
		}
		table := strings.TrimPrefix(c.topic, "crm.crm.") // the connector's topics are <prefix>.<schema>.<table>
		ev := event.Envelope{Op: c.op, Before: row(c.before), After: row(c.after),
			Source: event.Source{Connector: "postgresql", Schema: "crm", Table: table, Snapshot: "false", LSN: lsn, CommitLSN: pos}}
		if c.op == event.OpSnapshot {
			ev.Source.Snapshot, ev.Source.CommitLSN = "true", 0
		}
		if c.op == event.OpDelete && ev.Before == nil {
			ev.Before = row(c.key)
		}
		key, _ := row(c.key).MarshalJSON()
		msgs = append(msgs, kafka.Message{Topic: c.topic, Key: key, Value: ev.Encode(nil), Headers: c.headers})
	}
	if err := st.producer.WriteMessages(context.Background(), msgs...); err != nil {
		st.t.Fatal(err)
	}
}

// produceMessages writes msgs as they are, in order.
func (st *stack) produceMessages(msgs ...kafka.Message) {
	st.t.Helper()
	if err := st.producer.WriteMessages(context.Background(), msgs...); err != nil {
		st.t.Fatal(err)
	}
}

// eventTopics creates more event topics, with partitions partitions each,
// for the group of the sinks started after.
func (st *stack) eventTopics(partitions int, topics ...string) {
	st.t.Helper()
	if err := st.cluster.EnsureTopics(context.Background(), partitions, topics...); err != nil {
		st.t.Fatal(err)
	}
	for _, topic := range topics {
		st.events = append(st.events, topic)
		st.parts[topic] = partitions
	}
}

// row is an image with its columns in a stable order.
func row(m map[string]any) event.Row {
	if m == nil {
		return nil
	}
	var r event.Row
	for _, k := range sortedKeys(m) {
		v, _ := json.Marshal(m[k])
		r = append(r, event.Field{Name: k, Value: v})
	}
	return r
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	for i := range ks {
		for j := i + 1; j < len(ks); j++ {
			if ks[j] < ks[i] {
				ks[i], ks[j] = ks[j], ks[i]
			}
		}
	}
	return ks
}

// contact is a contacts row's image.
func contact(id int, ext any, plan any, score any) map[string]any {
	return map[string]any{"Contact ID": id, "External Id": ext, "Plan": plan, "Score": score, "E-mail": nil}
}

func contactKey(id int) map[string]any { return map[string]any{"Contact ID": id} }

// device is a devices row's image.
func device(contactID int, dev, ext string) map[string]any {
	return map[string]any{"contact_id": contactID, "device_id": dev, "ext_id": ext}
}

func deviceKey(contactID int, dev string) map[string]any {
	return map[string]any{"contact_id": contactID, "device_id": dev}
}

// eventually waits until cond holds of the emulator's state, failing with
// what it last saw.
func (st *stack) eventually(what string, cond func(emulator.State) error) {
	st.t.Helper()
	waitFor(st.t, what, func() error { return cond(st.emu.State()) })
}

// waitFor waits until cond returns nil, failing with its last error
// after 60 s (a benchmark's, 10 minutes): the bound of a busy CI machine,
// not a measure.
func waitFor(t testing.TB, what string, cond func() error) {
	t.Helper()
	patience := 60 * time.Second
	if _, ok := t.(*testing.B); ok {
		patience = 10 * time.Minute
	}
	waitForWithin(t, what, patience, cond)
}

// waitForWithin is waitFor with a patience of its own.
func waitForWithin(t testing.TB, what string, patience time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(patience)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

// committed returns the group's committed offsets of topic, by partition:
// the next offset to read, -1 where it committed none.
func (st *stack) committed(topic string) map[int]int64 {
	st.t.Helper()
	var ps []int
	for p := range st.parts[topic] {
		ps = append(ps, p)
	}
	var resp *kafka.OffsetFetchResponse
	var err error
	client, done := st.cluster.Client(10 * time.Second)
	defer done()
	for range 5 { // a connection of the client's own may be cut by a test's fault
		if resp, err = client.OffsetFetch(context.Background(), &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ps}}); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		st.t.Fatal(err)
	}
	out := make(map[int]int64, len(ps))
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			st.t.Fatal(p.Error)
		}
		out[p.Partition] = p.CommittedOffset
	}
	return out
}

// end returns the offset the next message written to topic's partition
// will have.
func (st *stack) end(topic string, partition int) int64 {
	st.t.Helper()
	var err error
	for range 5 { // a connection of the client's own may be cut by a test's fault
		var n int64
		if n, err = st.cluster.EndOffset(context.Background(), topic, partition); err == nil {
			return n
		}
		time.Sleep(100 * time.Millisecond)
	}
	st.t.Fatal(err)
	return 0
}

// drained reports a partition of the group's topics (the event topics and
// the targets topic) whose committed offset is short of its end: nil once
// every message written is done and committed.
func (st *stack) drained() error {
	for _, topic := range append(slices.Clone(st.events), st.topics.Targets) {
		committed := st.committed(topic)
		for p := range st.parts[topic] {
			off, ok := committed[p]
			if !ok {
				off = -1 // the group has committed nothing there, or does not exist yet
			}
			if end := st.end(topic, p); max(off, 0) < end {
				return fmt.Errorf("%s partition %d committed up to %d of %d", topic, p, off, end)
			}
		}
	}
	return nil
}

// waitDrained waits until every message written is done and committed.
func (st *stack) waitDrained() {
	st.t.Helper()
	waitFor(st.t, "every message committed", st.drained)
}

// hasTags checks that the user with external id ext has exactly tags: in
// the user model the user's; in the player model, where tags live on
// devices, every device that carries ext (none is fine).
func (st *stack) hasTags(ext string, tags map[string]string) func(emulator.State) error {
	return func(s emulator.State) error {
		if st.model == sink.ModelPlayer {
			for _, sub := range s.Subscriptions {
				if s.ExternalIDOf(sub.ID) != ext {
					continue
				}
				p, _ := s.Player(sub.ID)
				if !maps.Equal(p.Tags, tags) {
					return fmt.Errorf("device %q of %q has tags %v, want %v", sub.ID, ext, p.Tags, tags)
				}
			}
			return nil
		}
		u, ok := s.UserByExternalID(ext)
		if !ok {
			if len(tags) == 0 {
				return nil
			}
			return fmt.Errorf("no user %q", ext)
		}
		if !maps.Equal(u.Tags, tags) {
			return fmt.Errorf("user %q has tags %v, want %v", ext, u.Tags, tags)
		}
		return nil
	}
}

// deviceTags checks the tags a device shows (player model: its own; user
// model: its user's).
func deviceTags(dev string, tags map[string]string) func(emulator.State) error {
	return func(s emulator.State) error {
		p, ok := s.Player(dev)
		if !ok {
			return fmt.Errorf("no device %q", dev)
		}
		if !maps.Equal(p.Tags, tags) {
			return fmt.Errorf("device %q has tags %v, want %v", dev, p.Tags, tags)
		}
		return nil
	}
}

// ownedBy checks that the device belongs to the user with external id
// ext ("" for none).
func ownedBy(dev, ext string) func(emulator.State) error {
	return func(s emulator.State) error {
		if got := s.ExternalIDOf(dev); got != ext {
			return fmt.Errorf("device %q belongs to %q, want %q", dev, got, ext)
		}
		return nil
	}
}

func all(conds ...func(emulator.State) error) func(emulator.State) error {
	return func(s emulator.State) error {
		for _, c := range conds {
			if err := c(s); err != nil {
				return err
			}
		}
		return nil
	}
}

// record is a message of one of the stack's topics, where it is.
type record struct {
	kafkatest.Record
	rec *desired.Record // a targets record, decoded; nil for others
}

// read returns every message of topic written so far.
func (st *stack) read(topic string) []record {
	st.t.Helper()
	var want int64
	for p := range st.partitionsOf(topic) {
		want += st.end(topic, p)
	}
	rs := kafkatest.ReadUntil(st.t, st.brokers, []string{topic}, 60*time.Second, func(rs []kafkatest.Record) bool { return int64(len(rs)) >= want })
	out := make([]record, 0, len(rs))
	for _, r := range rs {
		out = append(out, record{Record: r})
		if topic == st.topics.Targets {
			out[len(out)-1].rec, _ = desired.Decode(r.Key, r.Value)
		}
	}
	return out
}

// partitionsOf is how many partitions topic has.
func (st *stack) partitionsOf(topic string) int {
	st.t.Helper()
	if n, ok := st.parts[topic]; ok {
		return n
	}
	n, err := st.cluster.PartitionCount(context.Background(), topic)
	if err != nil {
		st.t.Fatal(err)
	}
	return n
}

// contributionsTo returns the targets topic's contributions to the target,
// in the order they were written.
func (st *stack) contributionsTo(target transform.Target) []record {
	st.t.Helper()
	var out []record
	for _, r := range st.read(st.topics.Targets) {
		if r.rec != nil && r.rec.Target == target && r.rec.Kind == desired.KindContribution {
			out = append(out, r)
		}
	}
	return out
}

// deadLetters waits until the dead-letter topic holds n messages and
// returns them.
func (st *stack) deadLetters(n int) []kafkatest.Record {
	st.t.Helper()
	return st.deadLettersIn("crm.dlq", n)
}

// deadLettersIn is deadLetters of another dead-letter topic.
func (st *stack) deadLettersIn(topic string, n int) []kafkatest.Record {
	st.t.Helper()
	return kafkatest.ReadUntil(st.t, st.brokers, []string{topic}, 60*time.Second, func(rs []kafkatest.Record) bool { return len(rs) >= n })
}

func header(r kafkatest.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// commitsCatchUp writes an event that feeds no target and waits until
// every event topic is committed to its end: the sink has then committed
// at least once after everything done before the call was done.
func (st *stack) commitsCatchUp() {
	st.t.Helper()
	n := int(st.lsn.Add(1))
	st.produce(change{topic: contactsTopic, op: event.OpCreate, key: contactKey(1_000_000 + n), after: contact(1_000_000+n, nil, "x", 0)})
	waitFor(st.t, "the event topics committed to their ends", func() error {
		for _, topic := range st.events {
			for p, off := range st.committed(topic) {
				if end := st.end(topic, p); max(off, 0) < end {
					return fmt.Errorf("%s partition %d committed up to %d of %d", topic, p, off, end)
				}
			}
		}
		return nil
	})
}

// logger is the sink's logger: the test's, at every level for a test and
// from warnings up for a benchmark, whose log is its report.
func (st *stack) logger() *zap.Logger {
	if _, ok := st.t.(*testing.B); ok {
		return zaptest.NewLogger(st.t, zaptest.Level(zap.WarnLevel))
	}
	return zaptest.NewLogger(st.t)
}
