package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/connector"
)

// The benchmark's processes are this binary run again with -child: the
// broker, so that what kfake holds in memory is not counted as the
// connector's, and the connector, so that its memory and CPU time are its
// own. A child runs until its standard input closes (the parent closes
// it, or dies) or it gets SIGINT or SIGTERM.

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
	// WriterBatch overrides the Kafka writer's BatchSize (the daemon's 1000).
	WriterBatch int `json:"writer_batch,omitempty"`
	// Stats prints, at exit, how the Kafka writes went.
	Stats bool `json:"stats,omitempty"`
}

// Settings the daemon uses that the benchmark copies (cmd/onesignal-cdc
// and config defaults).
const (
	partitions  = 6                      // kafka.partitions default
	writerBatch = broker.WriterBatchSize // broker.NewWriter(brokers, broker.WriterBatchSize) in the daemon
	heartbeat   = 10 * time.Second       // postgres.heartbeat_interval default
)

func runChild(ctx context.Context, kind string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	switch kind {
	case "broker":
		b, err := broker.StartEmbedded("127.0.0.1:0")
		if err != nil {
			return err
		}
		defer b.Close()
		fmt.Printf("brokers %s\n", strings.Join(b.Brokers(), ","))
		<-ctx.Done()
		return nil
	case "connector":
		var cfg childConfig
		if err := json.Unmarshal([]byte(os.Getenv(envChild)), &cfg); err != nil {
			return fmt.Errorf("$%s: %w", envChild, err)
		}
		return runConnector(ctx, cfg)
	}
	return fmt.Errorf("unknown child %q", kind)
}

// runConnector wires the connector as cmd/onesignal-cdc does for the
// `connector` command with an external broker.
func runConnector(ctx context.Context, cfg childConfig) error {
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
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
		InitialSnapshot: cfg.Snapshot,
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
	batch := writerBatch
	if cfg.WriterBatch > 0 {
		batch = cfg.WriterBatch
	}
	w := broker.NewWriter(cfg.Brokers, batch)
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

// print reports the calls and kafka-go's view of the batches they became.
func (t *timedWriter) print(w *kafka.Writer) {
	if t.calls == 0 {
		return
	}
	st := w.Stats()
	fmt.Fprintf(os.Stderr, "bench connector: %d WriteMessages calls, %.0f events of %.0f bytes and %.2f ms each on average (worst %.1f ms), %.1f s in all; "+
		"kafka-go: %d partition batches of %d messages on average, waiting %.2f ms to fill and %.2f ms for the produce request on average\n",
		t.calls, float64(t.events)/float64(t.calls), float64(t.bytes)/float64(max(t.events, 1)), float64(t.took.Microseconds())/1000/float64(t.calls), float64(t.worst.Microseconds())/1000, t.took.Seconds(),
		st.BatchSize.Count, st.BatchSize.Avg, float64(st.BatchQueueTime.Avg.Microseconds())/1000, float64(st.WriteTime.Avg.Microseconds())/1000)
}

// discard is a MessageWriter that acknowledges everything at once.
type discard struct{}

func (discard) WriteMessages(context.Context, ...kafka.Message) error { return nil }

// child is a process of the benchmark.
type child struct {
	name    string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	started time.Time
	done    chan struct{} // closed once the process was waited for
	err     error         // from Wait, once done is closed
}

// startChild runs this binary again as a child of the given kind, with env
// added to its environment, and passes its standard output to out.
func startChild(kind string, env []string, out io.Writer) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-child", kind)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = out
	cmd.Stderr = os.Stderr
	// Should the parent die without closing stdin, the child goes too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	c := &child{name: kind, cmd: cmd, stdin: stdin, done: make(chan struct{})}
	c.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the %s process: %w", kind, err)
	}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// exited returns an error once the child has ended: it was meant to run
// until told to stop.
func (c *child) exited() error {
	select {
	case <-c.done:
		return fmt.Errorf("the %s process ended early: %v", c.name, c.err)
	default:
		return nil
	}
}

// stop asks the child to stop and waits for it, killing it if it will not
// go within timeout.
func (c *child) stop(timeout time.Duration) {
	_ = c.stdin.Close()
	select {
	case <-c.done:
		return
	case <-time.After(timeout):
	}
	_ = c.cmd.Process.Kill()
	<-c.done
}

// usage returns the process's CPU time and peak RSS, once it has ended.
func (c *child) usage() (cpu time.Duration, maxRSS int64) {
	return usage(c.cmd.ProcessState)
}

func usage(ps *os.ProcessState) (cpu time.Duration, maxRSS int64) {
	if ps == nil {
		return 0, 0
	}
	cpu = ps.UserTime() + ps.SystemTime()
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		maxRSS = ru.Maxrss << 10 // KiB on Linux
	}
	return cpu, maxRSS
}

// peakRSS reads the child's resident-memory high-water mark (VmHWM) while
// it runs.
func (c *child) peakRSS() (int64, error) {
	return procStatus(c.cmd.Process.Pid, "VmHWM")
}

// procStatus reads a size field of /proc/PID/status, in bytes.
func procStatus(pid int, field string) (int64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/status %s: %w", pid, field, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// brokerProcess is a kfake broker in a child process.
type brokerProcess struct {
	*child
	brokers []string
}

func startBroker(ctx context.Context) (*brokerProcess, error) {
	lines := &lineCatcher{ch: make(chan string, 1)}
	c, err := startChild("broker", nil, lines)
	if err != nil {
		return nil, err
	}
	select {
	case line := <-lines.ch:
		addrs, ok := strings.CutPrefix(line, "brokers ")
		if !ok {
			c.stop(5 * time.Second)
			return nil, fmt.Errorf("the broker process said %q", line)
		}
		return &brokerProcess{child: c, brokers: strings.Split(addrs, ",")}, nil
	case <-c.done:
		return nil, fmt.Errorf("the broker process ended: %v", c.err)
	case <-time.After(30 * time.Second):
		c.stop(5 * time.Second)
		return nil, errors.New("the broker process did not say where it listens within 30s")
	case <-ctx.Done():
		c.stop(5 * time.Second)
		return nil, ctx.Err()
	}
}

// lineCatcher hands over the first line written to it and discards the rest.
type lineCatcher struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	sent bool
	ch   chan string
}

func (f *lineCatcher) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sent {
		return len(p), nil
	}
	f.buf.Write(p)
	if line, err := bufio.NewReader(bytes.NewReader(f.buf.Bytes())).ReadString('\n'); err == nil {
		f.sent = true
		f.ch <- strings.TrimSpace(line)
	}
	return len(p), nil
}
