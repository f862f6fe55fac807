// Package sinkmem measures the sink's memory with 1,000,000 distinct users:
// the built daemon runs as `onesignal-cdc sink`, in a process of its own,
// over the snapshot events of a CRM-shaped contacts table, and the
// benchmark reads its peak RSS once its consumer group has committed the
// end of the event topic and of its targets topic.
//
// The sink runs the player model with a devices table mapped and no
// device: a user without a device is kept in the desired state and not
// written (docs/mapping.md), so the sink holds every user's desired state
// without waiting out 1,000,000 requests at OneSignal's 1,000/s. That is
// also the worst case of real schemas, a users table much larger than the
// devices table. Kafka is kfake in a process of its own (it holds every
// record in memory), the emulator runs in the benchmark's process, and
// sink.state_dir is a temporary directory.
package sinkmem

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/onesignal-cdc/onesignal-cdc/bench/internal/harness"
	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
)

// TargetRSS is issue 11's bound on a sink's memory with 1,000,000 users.
const TargetRSS = 200 << 20

// Options size the measurement.
type Options struct {
	Users   int           // distinct users (contacts rows)
	Daemon  string        // the built onesignal-cdc
	Env     []string      // an experiment: added to the sink's environment
	Timeout time.Duration // the longest the sink may take to commit every event
	// Stall is how long the sink may go without committing anything
	// before the benchmark gives up on it.
	Stall time.Duration
}

// Run measures the sink's memory.
func Run(ctx context.Context, opts Options) (res *Result, err error) {
	dir, err := os.MkdirTemp("", "onesignal-cdc-bench-sinkmem")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	res = &Result{opts: opts}

	emuSrv, err := emulator.Start(emulator.Config{AppID: appID, APIKey: apiKey, RateLimits: emulator.RateLimits{Enabled: true}}, "")
	if err != nil {
		return nil, err
	}
	defer emuSrv.Close()

	br, err := harness.StartBroker(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = br.Stop(10 * time.Second) }()
	cluster := broker.Plain(br.Brokers)
	if err := cluster.EnsureTopics(ctx, partitions, usersTopic, devicesTopic); err != nil {
		return nil, err
	}

	harness.Progress("sinkmem: writing the snapshot events of %s contacts into %s", harness.Thousands(opts.Users), usersTopic)
	t := time.Now()
	if res.eventBytes, err = produce(ctx, br.Brokers, opts.Users); err != nil {
		return nil, err
	}
	res.produce = time.Since(t)
	if res.brokerRSSBefore, err = br.RSS(); err != nil {
		return nil, err
	}

	stateDir := filepath.Join(dir, "state")
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(daemonConfig(br.Brokers[0], emuSrv.URL(), stateDir)), 0o600); err != nil {
		return nil, err
	}
	harness.Progress("sinkmem: running onesignal-cdc sink (player model, a devices table mapped and empty) until its group has committed every event and targets record")
	daemon, logPath, opsAddr, err := startSink(opts, dir, cfg)
	if err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = daemon.Stop(30 * time.Second)
		}
		if err != nil {
			printTail(logPath)
		}
	}()

	w := &watcher{cluster: cluster, daemon: daemon, stateDir: stateDir, users: opts.Users, metrics: "http://" + opsAddr + "/metrics"}
	if err := w.wait(ctx, opts); err != nil {
		return nil, err
	}
	res.samples, res.took, res.rowsDone = w.samples, w.doneAt.Sub(daemon.Started), w.rowsDoneAt.Sub(daemon.Started)
	if res.peakRSS, err = daemon.PeakRSS(); err != nil {
		return nil, err
	}
	if res.rssAtEnd, err = daemon.RSS(); err != nil {
		return nil, err
	}
	if res.stateAtEnd, err = harness.DirSize(stateDir); err != nil {
		return nil, err
	}
	if res.topicBytes, err = topicBytes(ctx, br.Brokers, sink.TopicsFor(prefix).Targets, sink.TopicsFor(prefix).Rows, prefix+".dlq"); err != nil {
		return nil, err
	}
	if res.records, err = endOffsets(ctx, cluster, sink.TopicsFor(prefix).Targets, sink.TopicsFor(prefix).Rows, prefix+".dlq"); err != nil {
		return nil, err
	}
	if res.brokerRSS, err = br.RSS(); err != nil {
		return nil, err
	}
	res.stats = emuSrv.Emulator().Stats()

	stopped = true
	if err := daemon.Stop(30 * time.Second); err != nil {
		printTail(logPath)
		return nil, fmt.Errorf("onesignal-cdc sink did not stop cleanly: %w", err)
	}
	res.daemonCPU, _ = daemon.Usage()
	res.warnings, res.errors = countLevels(logPath)
	_ = br.Stop(10 * time.Second)
	res.brokerCPU, _ = br.Usage()
	return res, nil
}

// daemonConfig is the sink's configuration: its defaults, but for what
// the benchmark must say.
func daemonConfig(brokers, apiURL, stateDir string) string {
	q := strconv.Quote
	return `kafka:
  brokers: [` + q(brokers) + `]
  topic_prefix: ` + prefix + `
  consumer_group: ` + group + `
onesignal:
  base_url: ` + q(apiURL) + `
  app_id: ` + q(appID) + `
  api_key: ` + q(apiKey) + `
  model: player
sink:
  state_dir: ` + q(stateDir) + `
` + mappingYAML + `log:
  level: info
`
}

// sample is what the watcher saw at one moment.
type sample struct {
	at        time.Duration // since the daemon started
	events    int64         // events of the users topic committed
	targets   int64         // records of the targets topic committed
	targetEnd int64         // records in the targets topic
	rss, hwm  int64
	rssFile   int64 // of rss, mapped from files (the binary's code)
	state     int64 // bytes in sink.state_dir
	goMem     goMemory
}

// goMemory is what the Go runtime of the sink says of its memory, from
// its /metrics (zero when the scrape failed).
type goMemory struct {
	sys, released  int64 // got from the OS; of which given back
	heapInuse      int64
	heapAlloc      int64 // live and not yet collected
	nextGC, stacks int64
}

// resident is about how much of the Go runtime's memory is resident.
func (m goMemory) resident() int64 { return m.sys - m.released }

// watcher follows the sink's progress until it has committed everything.
type watcher struct {
	cluster    broker.Cluster
	daemon     *harness.Process
	stateDir   string
	metrics    string // the sink's /metrics
	users      int
	samples    []sample
	doneAt     time.Time // both topics committed to their ends
	rowsDoneAt time.Time // the users topic committed to its end
}

func (w *watcher) wait(ctx context.Context, opts Options) error {
	targets := sink.TopicsFor(prefix).Targets
	lastProgress, lastCommitted := time.Now(), int64(-1)
	lastReport := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if err := w.daemon.Exited(); err != nil {
			return err
		}
		s, events, targetsDone, err := w.sample(ctx, targets)
		if err != nil {
			return err
		}
		w.samples = append(w.samples, s)
		now := time.Now()
		if events && w.rowsDoneAt.IsZero() {
			w.rowsDoneAt = now
		}
		if events && targetsDone {
			w.doneAt = now
			harness.Progress("sinkmem: every event and targets record committed after %s; peak RSS %s", harness.Secs(s.at), harness.MiB(s.hwm))
			return nil
		}
		if c := s.events + s.targets; c != lastCommitted {
			lastCommitted, lastProgress = c, now
		}
		if now.Sub(lastReport) >= 15*time.Second {
			lastReport = now
			harness.Progress("sinkmem: %s s: %s of %s events and %s of %s targets records committed; RSS %s (peak %s), state_dir %s",
				strconv.Itoa(int(s.at.Seconds())), harness.Thousands(int(s.events)), harness.Thousands(w.users),
				harness.Thousands(int(s.targets)), harness.Thousands(int(s.targetEnd)), harness.MiB(s.rss), harness.MiB(s.hwm), harness.MiB(s.state))
		}
		if now.Sub(lastProgress) > opts.Stall {
			return fmt.Errorf("the sink committed nothing for %s: %s of %s events and %s of %s targets records committed after %s, RSS %s",
				opts.Stall, harness.Thousands(int(s.events)), harness.Thousands(w.users), harness.Thousands(int(s.targets)),
				harness.Thousands(int(s.targetEnd)), harness.Secs(s.at), harness.MiB(s.rss))
		}
		if s.at > opts.Timeout {
			return fmt.Errorf("the sink had not committed every event and targets record after %s: %s of %s events, %s of %s targets records",
				opts.Timeout, harness.Thousands(int(s.events)), harness.Thousands(w.users), harness.Thousands(int(s.targets)), harness.Thousands(int(s.targetEnd)))
		}
	}
}

// sample reads the group's committed offsets and the topics' ends, then
// the daemon's memory and the state directory's size. eventsDone and
// targetsDone say that every partition of the topic is committed to its
// end.
func (w *watcher) sample(ctx context.Context, targets string) (s sample, eventsDone, targetsDone bool, err error) {
	s.at = time.Since(w.daemon.Started)
	committed, err := w.committed(ctx, usersTopic, targets)
	if err != nil {
		return s, false, false, err
	}
	eventsDone, targetsDone = true, true
	for _, c := range []struct {
		topic string
		n     *int64
		end   *int64
		done  *bool
	}{{usersTopic, &s.events, nil, &eventsDone}, {targets, &s.targets, &s.targetEnd, &targetsDone}} {
		for p := range partitions {
			end, err := w.cluster.EndOffset(ctx, c.topic, p)
			if err != nil {
				// The sink creates its targets topic when it starts.
				if c.topic == targets && s.targets == 0 {
					*c.done = false
					continue
				}
				return s, false, false, err
			}
			got := max(committed[c.topic][p], 0)
			*c.n += got
			if c.end != nil {
				*c.end += end
			}
			if got < end {
				*c.done = false
			}
		}
	}
	targetsDone = targetsDone && s.targetEnd > 0
	if s.rss, err = w.daemon.RSS(); err != nil {
		return s, false, false, err
	}
	if s.hwm, err = w.daemon.PeakRSS(); err != nil {
		return s, false, false, err
	}
	if s.rssFile, err = w.daemon.Status("RssFile"); err != nil {
		return s, false, false, err
	}
	if s.state, err = harness.DirSize(w.stateDir); err != nil {
		return s, false, false, err
	}
	s.goMem = scrapeGoMemory(ctx, w.metrics)
	return s, eventsDone, targetsDone, nil
}

// committed returns the group's committed offsets of the topics'
// partitions (-1 for none).
func (w *watcher) committed(ctx context.Context, topics ...string) (map[string]map[int]int64, error) {
	req := &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{}}
	for _, t := range topics {
		for p := range partitions {
			req.Topics[t] = append(req.Topics[t], p)
		}
	}
	client, done := w.cluster.Client(10 * time.Second)
	defer done()
	resp, err := client.OffsetFetch(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("read the sink's committed offsets: %w", err)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("read the sink's committed offsets: %w", resp.Error)
	}
	out := map[string]map[int]int64{}
	for t, ps := range resp.Topics {
		out[t] = map[int]int64{}
		for _, p := range ps {
			out[t][p.Partition] = p.CommittedOffset
		}
	}
	return out, nil
}

// freeAddr is a loopback address with a port free a moment ago, for the
// sink's ops server, whose /metrics tell the Go runtime's memory.
// startSink starts `onesignal-cdc sink --config cfg`, its log in
// dir/daemon.log and its ops server on a free address, which it returns.
func startSink(opts Options, dir, cfg string) (daemon *harness.Process, logPath, opsAddr string, err error) {
	logPath = filepath.Join(dir, "daemon.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, "", "", err
	}
	defer logFile.Close() // the daemon holds its own copy
	if opsAddr, err = freeAddr(); err != nil {
		return nil, "", "", err
	}
	cmd := exec.Command(opts.Daemon, "sink", "--config", cfg)
	cmd.Env = append(append(os.Environ(), "ONESIGNAL_CDC_OPS_LISTEN="+opsAddr), opts.Env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	daemon, err = harness.Start("onesignal-cdc sink", cmd)
	return daemon, logPath, opsAddr, err
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// scrapeGoMemory reads the Go runtime's memory from the sink's /metrics.
func scrapeGoMemory(ctx context.Context, url string) goMemory {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return goMemory{}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return goMemory{}
	}
	defer resp.Body.Close()
	var m goMemory
	fields := map[string]*int64{
		"go_memstats_sys_bytes": &m.sys, "go_memstats_heap_released_bytes": &m.released,
		"go_memstats_heap_inuse_bytes": &m.heapInuse, "go_memstats_heap_alloc_bytes": &m.heapAlloc,
		"go_memstats_next_gc_bytes": &m.nextGC, "go_memstats_stack_sys_bytes": &m.stacks,
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if dst := fields[name]; ok && dst != nil {
			if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
				*dst = int64(v)
			}
		}
	}
	return m
}

// topicBytes is the size of each topic's records as the broker counts
// them (record batches on the wire, headers included).
func topicBytes(ctx context.Context, brokers []string, topics ...string) (map[string]int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	req := kmsg.NewPtrDescribeLogDirsRequest()
	for _, t := range topics {
		rt := kmsg.NewDescribeLogDirsRequestTopic()
		rt.Topic = t
		for p := range int32(partitions) {
			rt.Partitions = append(rt.Partitions, p)
		}
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("ask the broker the size of the sink's topics: %w", err)
	}
	out := map[string]int64{}
	for _, d := range resp.Dirs {
		for _, t := range d.Topics {
			for _, p := range t.Partitions {
				out[t.Topic] += p.Size
			}
		}
	}
	return out, nil
}

// endOffsets is how many records each topic holds (none was deleted).
func endOffsets(ctx context.Context, c broker.Cluster, topics ...string) (map[string]int64, error) {
	out := map[string]int64{}
	for _, t := range topics {
		n, err := c.PartitionCount(ctx, t)
		if err != nil {
			return nil, err
		}
		for p := range n {
			end, err := c.EndOffset(ctx, t, p)
			if err != nil {
				return nil, err
			}
			out[t] += end
		}
	}
	return out, nil
}

// countLevels counts the warnings and errors in the daemon's JSON log.
func countLevels(path string) (warnings, errs int) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		switch {
		case bytes.Contains(sc.Bytes(), []byte(`"level":"warn"`)):
			warnings++
		case bytes.Contains(sc.Bytes(), []byte(`"level":"error"`)):
			errs++
		}
	}
	return warnings, errs
}

// printTail shows the end of the daemon's log on stderr.
func printTail(path string) {
	data, err := os.ReadFile(path)
	if err != nil || len(data) == 0 {
		return
	}
	if len(data) > 4096 {
		data = data[len(data)-4096:]
	}
	fmt.Fprintf(os.Stderr, "the sink's log (last 4 kB):\n%s\n", data)
}
