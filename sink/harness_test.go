package sink_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/zap/zaptest"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/retry"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/sink/kv"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal/onesignaltest"
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
	t        *testing.T
	model    string
	brokers  []string
	cluster  broker.Cluster
	kfake    *kfake.Cluster // to inject faults
	emu      *onesignaltest.Emulator
	url      string
	producer *kafka.Writer
	topics   sink.Topics
	lsn      atomic.Int64
}

func newStack(t *testing.T, model string, emu onesignaltest.Config) *stack {
	t.Helper()
	b := kafkatest.Start(t)
	st := &stack{t: t, model: model, brokers: b.Brokers(), cluster: broker.Plain(b.Brokers()), kfake: b.Cluster(), topics: sink.TopicsFor("crm")}
	emu.AppID, emu.APIKey = appID, apiKey
	st.emu = onesignaltest.New(emu)
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
	st.producer = st.cluster.NewWriter(100)
	t.Cleanup(func() { st.producer.Close() })
	st.lsn.Store(1000)
	return st
}

// running is a sink started by start.
type running struct {
	stop func() error // cancels it and returns what Run returned
	sink *sink.Sink
	api  onesignalAPI
}

type onesignalAPI interface {
	sink.OneSignal
}

// start runs a sink of the stack's group.
func (st *stack) start(mapping *transform.Mapping) *running {
	st.t.Helper()
	api, err := onesignal.New(onesignal.Config{BaseURL: st.url, AppID: appID, APIKey: apiKey, Limiter: sink.NewLimiter(nil, 900)})
	if err != nil {
		st.t.Fatal(err)
	}
	var osAPI sink.OneSignal = api
	if st.model == sink.ModelPlayer {
		osAPI = api.Players(false, false)
	}
	targets, rows := sink.Cluster{Cluster: st.cluster}.Writers()
	dlq := st.cluster.NewWriter(10)
	group := sink.Cluster{Cluster: st.cluster, Group: broker.GroupConfig{
		ID: "crm-sink", Topics: []string{contactsTopic, devicesTopic, st.topics.Targets},
		SessionTimeout: 6 * time.Second, HeartbeatInterval: time.Second, RebalanceTimeout: 10 * time.Second,
	}}
	s := sink.New(sink.Config{
		Model: st.model, TargetsTopic: st.topics.Targets, RowsTopic: st.topics.Rows,
		Targets: targets, Rows: rows, Kafka: group, Store: kv.NewMemory(),
		Concurrency: 16, CommitInterval: 100 * time.Millisecond,
		Retry:       retry.Policy{Initial: 10 * time.Millisecond, Max: 200 * time.Millisecond},
		DeadLetters: dlq, DeadLetterTopic: "crm.dlq",
	}, group, osAPI, mapping, zaptest.NewLogger(st.t))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() { runErr = s.Run(ctx) })
	r := &running{sink: s, api: osAPI}
	var once sync.Once
	r.stop = func() error {
		once.Do(func() {
			cancel()
			wg.Wait()
			targets.Close()
			rows.Close()
			dlq.Close()
		})
		return runErr
	}
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
	commit int64 // 0: the next position
}

// produce writes the changes, in order, each keyed by its primary key as
// the connector keys them.
func (st *stack) produce(cs ...change) {
	st.t.Helper()
	var msgs []kafka.Message
	for _, c := range cs {
		pos := c.commit
		if pos == 0 {
			pos = st.lsn.Add(10)
		}
		table := "Contacts"
		if c.topic == devicesTopic {
			table = "devices"
		}
		ev := event.Envelope{Op: c.op, Before: row(c.before), After: row(c.after),
			Source: event.Source{Connector: "postgresql", Schema: "crm", Table: table, Snapshot: "false", LSN: pos, CommitLSN: pos}}
		if c.op == event.OpSnapshot {
			ev.Source.Snapshot, ev.Source.CommitLSN = "true", 0
		}
		if c.op == event.OpDelete && ev.Before == nil {
			ev.Before = row(c.key)
		}
		key, _ := row(c.key).MarshalJSON()
		msgs = append(msgs, kafka.Message{Topic: c.topic, Key: key, Value: ev.Encode(nil)})
	}
	if err := st.producer.WriteMessages(context.Background(), msgs...); err != nil {
		st.t.Fatal(err)
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
func contact(id int, ext string, plan any, score any) map[string]any {
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
func (st *stack) eventually(what string, cond func(onesignaltest.State) error) {
	st.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(st.emu.State()); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	st.t.Fatalf("%s: %v", what, err)
}

// hasTags checks that the user with external id ext has exactly tags: in
// the user model the user's; in the player model, where tags live on
// devices, every device that carries ext (none is fine).
func (st *stack) hasTags(ext string, tags map[string]string) func(onesignaltest.State) error {
	return func(s onesignaltest.State) error {
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
func deviceTags(dev string, tags map[string]string) func(onesignaltest.State) error {
	return func(s onesignaltest.State) error {
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
func ownedBy(dev, ext string) func(onesignaltest.State) error {
	return func(s onesignaltest.State) error {
		if got := s.ExternalIDOf(dev); got != ext {
			return fmt.Errorf("device %q belongs to %q, want %q", dev, got, ext)
		}
		return nil
	}
}

func all(conds ...func(onesignaltest.State) error) func(onesignaltest.State) error {
	return func(s onesignaltest.State) error {
		for _, c := range conds {
			if err := c(s); err != nil {
				return err
			}
		}
		return nil
	}
}
