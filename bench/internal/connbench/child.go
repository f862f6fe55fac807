package connbench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/onesignal-cdc/onesignal-cdc/bench/internal/harness"
	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/connector"
)

// envChild carries a connector child's configuration (it holds the DSN,
// which does not belong on a command line).
const envChild = "ONESIGNAL_CDC_BENCH_CHILD"

// childConfig configures a connector child the way the daemon's
// `connector` command would, from the settings that matter here.
type childConfig struct {
	DSN            string        `json:"dsn"`
	Slot           string        `json:"slot"`
	Publication    string        `json:"publication"`
	Tables         []string      `json:"tables"`
	Brokers        []string      `json:"brokers"`
	TopicPrefix    string        `json:"topic_prefix"`
	StateTopic     string        `json:"state_topic"`
	Snapshot       bool          `json:"snapshot"`
	StatusInterval time.Duration `json:"status_interval"`
	CPUProfile     string        `json:"cpu_profile,omitempty"`
	BlockProfile   string        `json:"block_profile,omitempty"`
	// Discard replaces Kafka with a writer that acknowledges at once: a
	// diagnostic that shows what the connector does without its sink.
	Discard bool `json:"discard,omitempty"`
	// Stats prints, at exit, how the Kafka writes went.
	Stats bool `json:"stats,omitempty"`
	// SnapshotParallelism is postgres.snapshot_parallelism.
	SnapshotParallelism int `json:"snapshot_parallelism,omitempty"`
}

// Settings the daemon uses that the benchmark copies (cmd/onesignal-cdc
// and config defaults).
const (
	partitions = 6                // kafka.partitions default
	heartbeat  = 10 * time.Second // postgres.heartbeat_interval default
)

// RunChild runs this binary as one of the benchmark's helper processes:
// the broker or the connector (see harness.StartChild). A command that
// measures the connector calls it when given -child KIND.
func RunChild(ctx context.Context, kind string) error {
	ctx, cancel := harness.ChildContext(ctx)
	defer cancel()
	switch kind {
	case "broker":
		return harness.RunBroker(ctx)
	case "connector":
		var cfg childConfig
		if err := json.Unmarshal([]byte(os.Getenv(envChild)), &cfg); err != nil {
			return fmt.Errorf("$%s: %w", envChild, err)
		}
		return runConnector(ctx, cfg)
	case "copy":
		var cfg copyConfig
		if err := json.Unmarshal([]byte(os.Getenv(envCopy)), &cfg); err != nil {
			return fmt.Errorf("$%s: %w", envCopy, err)
		}
		return runCopyProducer(ctx, cfg)
	}
	return fmt.Errorf("unknown child %q", kind)
}

// runConnector wires the connector as cmd/onesignal-cdc does for the
// `connector` command with an external broker.
func runConnector(ctx context.Context, cfg childConfig) error {
	stopProfile, err := harness.StartCPUProfile(cfg.CPUProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	if cfg.BlockProfile != "" {
		// One sample per 100 µs spent blocked: enough to see where the
		// reader and the producer wait for each other.
		runtime.SetBlockProfileRate(int(100 * time.Microsecond))
		defer func() {
			if f, err := os.Create(cfg.BlockProfile); err == nil {
				_ = pprof.Lookup("block").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "ts"
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(ec), zapcore.AddSync(os.Stderr), zap.WarnLevel))
	defer log.Sync() //nolint:errcheck // stderr

	ccfg := connector.Config{
		DSN:               cfg.DSN,
		Slot:              cfg.Slot,
		Publication:       cfg.Publication,
		Tables:            cfg.Tables,
		TopicPrefix:       cfg.TopicPrefix,
		StatusInterval:    cfg.StatusInterval,
		HeartbeatInterval: heartbeat,
		CreateTopic: func(ctx context.Context, topic string) error {
			return broker.EnsureTopics(ctx, cfg.Brokers, partitions, topic)
		},
		InitialSnapshot:     cfg.Snapshot,
		SnapshotParallelism: cfg.SnapshotParallelism,
	}
	// An experiment knob: -connector-env ONESIGNAL_CDC_BENCH_LANES=N sets
	// how many Kafka writes the connector keeps in flight.
	if v := os.Getenv("ONESIGNAL_CDC_BENCH_LANES"); v != "" {
		ccfg.Lanes, _ = strconv.Atoi(v)
	}
	if cfg.Discard {
		ccfg.CreateTopic = nil
		return connector.New(ccfg, discard{}, log).Run(ctx)
	}
	topics := make([]string, len(cfg.Tables))
	for i, t := range cfg.Tables {
		topics[i] = cfg.TopicPrefix + "." + t
	}
	if err := broker.EnsureTopics(ctx, cfg.Brokers, partitions, topics...); err != nil {
		return err
	}
	w := broker.NewConnectorWriter(cfg.Brokers) // as the daemon's connector writes
	defer w.Close()
	var cw writerFunc = w.WriteMessages
	if cfg.Stats {
		ts := &timedWriter{w: w}
		defer ts.print(w)
		cw = ts.WriteMessages
	}
	state, err := broker.OpenStateStore(ctx, cfg.Brokers, cfg.StateTopic)
	if err != nil {
		return err
	}
	defer state.Close()
	ccfg.State = state
	return connector.New(ccfg, cw, log).Run(ctx)
}

// writerFunc adapts a function to connector.MessageWriter.
type writerFunc func(ctx context.Context, msgs ...kafka.Message) error

func (f writerFunc) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	return f(ctx, msgs...)
}

// timedWriter counts the connector's calls to the writer and the time
// they take; only the connector's producer calls it, one call at a time.
type timedWriter struct {
	w      connector.MessageWriter
	calls  int
	events int
	bytes  int
	took   time.Duration
	worst  time.Duration
}

func (t *timedWriter) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	start := time.Now()
	err := t.w.WriteMessages(ctx, msgs...)
	d := time.Since(start)
	t.calls++
	t.events += len(msgs)
	for i := range msgs {
		t.bytes += len(msgs[i].Key) + len(msgs[i].Value)
	}
	t.took += d
	t.worst = max(t.worst, d)
	return err
}

// print reports the calls and the requests they became.
func (t *timedWriter) print(w *broker.ProduceWriter) {
	if t.calls == 0 {
		return
	}
	st := w.Stats()
	fmt.Fprintf(os.Stderr, "bench connector: %d WriteMessages calls, %.0f events of %.0f bytes and %.2f ms each on average (worst %.1f ms), %.1f s in all; "+
		"%d produce requests carrying %d partition batches of %.0f messages on average\n",
		t.calls, float64(t.events)/float64(t.calls), float64(t.bytes)/float64(max(t.events, 1)), float64(t.took.Microseconds())/1000/float64(t.calls), float64(t.worst.Microseconds())/1000, t.took.Seconds(),
		st.Requests, st.Batches, float64(st.Messages)/float64(max(st.Batches, 1)))
}

// discard is a MessageWriter that acknowledges everything at once.
type discard struct{}

func (discard) WriteMessages(context.Context, ...kafka.Message) error { return nil }
