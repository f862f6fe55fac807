package sinkmem

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/bench/internal/harness"
	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
)

// The API-down variant (issue 14): the user model, so that every user
// costs a request, with OneSignal answering 503 to every request while the
// sink takes in the whole backlog; then OneSignal comes back and the sink
// drains it. The sink's memory must stay bounded by its in-flight caps
// and caches while the requests cannot go out, and nothing may be lost.

// downFor is how long OneSignal stays down once the sink has committed
// the whole event topic (its row stage needs no API): the target stage
// holds its cap of messages and retries them meanwhile.
const downFor = 30 * time.Second

// DownResult is the API-down measurement.
type DownResult struct {
	opts Options

	produce                time.Duration
	rowsDone               time.Duration // from the sink's start until the event topic was committed, the API down
	down                   time.Duration // how long the API was down, from the sink's start
	drain                  time.Duration // from the API's return until every targets record was committed
	peakDown, peakAll      int64         // VmHWM while the API was down, and over the whole run
	rssDown, rssEnd        int64         // RSS when the API came back, and at the end
	users, withTags        int           // users the emulator holds, and of them those with every tag
	refused, accepted      int           // the emulator's 503s and 2xx
	deadLetters            int64
	warnings, errors       int
	retryLines             int // the sink's aggregated retry lines
	targetsRecords, events int64
}

// RunAPIDown measures the sink's memory with OneSignal down for the whole
// load of opts.Users new users, then their drain.
func RunAPIDown(ctx context.Context, opts Options) (res *DownResult, err error) {
	dir, err := os.MkdirTemp("", "onesignal-cdc-bench-sinkdown")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	res = &DownResult{opts: opts}

	emuSrv, err := emulator.Start(emulator.Config{AppID: appID, APIKey: apiKey, RateLimits: emulator.RateLimits{Enabled: true},
		Faults: emulator.Faults{Status: map[int]float64{503: 1}}}, "")
	if err != nil {
		return nil, err
	}
	defer emuSrv.Close()
	emu := emuSrv.Emulator()

	br, err := harness.StartBroker(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = br.Stop(10 * time.Second) }()
	cluster := broker.Plain(br.Brokers)
	if err := cluster.EnsureTopics(ctx, partitions, usersTopic, devicesTopic); err != nil {
		return nil, err
	}
	harness.Progress("sinkdown: writing the snapshot events of %s contacts into %s", harness.Thousands(opts.Users), usersTopic)
	t := time.Now()
	if _, err = produce(ctx, br.Brokers, opts.Users); err != nil {
		return nil, err
	}
	res.produce = time.Since(t)

	stateDir := filepath.Join(dir, "state")
	cfg := filepath.Join(dir, "config.yaml")
	conf := strings.Replace(daemonConfig(br.Brokers[0], emuSrv.URL(), stateDir), "  model: player\n", "", 1)
	conf = strings.Replace(conf, usersOnlyFrom, "", 1) // no devices table: every user is written
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	harness.Progress("sinkdown: running onesignal-cdc sink (user model) with OneSignal answering 503 to everything")
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
	targets := sink.TopicsFor(prefix).Targets

	// Down: until the event topic is committed, then downFor more.
	var upAt time.Time
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastReport := time.Now()
	for upAt.IsZero() {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
		if err := daemon.Exited(); err != nil {
			return nil, err
		}
		s, eventsDone, _, err := w.sample(ctx, targets)
		if err != nil {
			return nil, err
		}
		w.samples = append(w.samples, s)
		if eventsDone && res.rowsDone == 0 {
			res.rowsDone = s.at
			harness.Progress("sinkdown: the event topic committed after %s, OneSignal still down; RSS %s (peak %s)", harness.Secs(s.at), harness.MiB(s.rss), harness.MiB(s.hwm))
		}
		if res.rowsDone > 0 && s.at-res.rowsDone >= downFor {
			res.down, res.peakDown, res.rssDown = s.at, s.hwm, s.rss
			if err := emu.SetFaults(emulator.Faults{}); err != nil {
				return nil, err
			}
			upAt = time.Now()
			harness.Progress("sinkdown: OneSignal is back after %s; draining %s users", harness.Secs(s.at), harness.Thousands(opts.Users))
		}
		if time.Since(lastReport) >= 15*time.Second {
			lastReport = time.Now()
			harness.Progress("sinkdown: %s: %s of %s events committed, RSS %s (peak %s)", harness.Secs(s.at), harness.Thousands(int(s.events)), harness.Thousands(opts.Users), harness.MiB(s.rss), harness.MiB(s.hwm))
		}
		if s.at > opts.Timeout {
			return nil, fmt.Errorf("the sink had not committed the event topic after %s with OneSignal down: %s of %s", opts.Timeout, harness.Thousands(int(s.events)), harness.Thousands(opts.Users))
		}
	}
	// Up: until every targets record is committed.
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
		if err := daemon.Exited(); err != nil {
			return nil, err
		}
		s, eventsDone, targetsDone, err := w.sample(ctx, targets)
		if err != nil {
			return nil, err
		}
		w.samples = append(w.samples, s)
		if eventsDone && targetsDone {
			res.drain, res.rssEnd, res.targetsRecords, res.events = time.Since(upAt), s.rss, s.targetEnd, s.events
			break
		}
		if time.Since(lastReport) >= 15*time.Second {
			lastReport = time.Now()
			harness.Progress("sinkdown: draining, %s: %s of %s targets records committed, RSS %s (peak %s)", harness.Secs(time.Since(upAt)), harness.Thousands(int(s.targets)), harness.Thousands(int(s.targetEnd)), harness.MiB(s.rss), harness.MiB(s.hwm))
		}
		if time.Since(upAt) > opts.Timeout {
			return nil, fmt.Errorf("the sink had not drained after %s with OneSignal back: %s of %s targets records", opts.Timeout, harness.Thousands(int(s.targets)), harness.Thousands(int(s.targetEnd)))
		}
	}
	if res.peakAll, err = daemon.PeakRSS(); err != nil {
		return nil, err
	}
	st := emu.State()
	res.users = len(st.Users)
	for _, u := range st.Users {
		if len(u.Tags) >= 4 {
			res.withTags++
		}
	}
	for _, byStatus := range emu.Stats().Requests {
		for code, n := range byStatus {
			switch {
			case code == 503:
				res.refused += n
			case code >= 200 && code < 300:
				res.accepted += n
			}
		}
	}
	recs, err := endOffsets(ctx, cluster, prefix+".dlq")
	if err != nil {
		return nil, err
	}
	res.deadLetters = recs[prefix+".dlq"]
	stopped = true
	if err := daemon.Stop(30 * time.Second); err != nil {
		printTail(logPath)
		return nil, fmt.Errorf("onesignal-cdc sink did not stop cleanly: %w", err)
	}
	res.warnings, res.errors = countLevels(logPath)
	res.retryLines = countLines(logPath, "requests to OneSignal:")
	if res.users != opts.Users || res.withTags != opts.Users || res.deadLetters != 0 {
		return res, fmt.Errorf("after the drain OneSignal holds %d users, %d of them with their 4 tags, of %d; %d dead letters: something was lost",
			res.users, res.withTags, opts.Users, res.deadLetters)
	}
	return res, nil
}

// usersOnlyFrom is the devices part of mappingYAML, which the API-down
// variant leaves out.
var usersOnlyFrom = mappingYAML[strings.Index(mappingYAML, "  devices:"):]

// countLines counts the log's lines that contain s.
func countLines(path, s string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(data), s)
}

// Row is the API-down line of the table.
func (r *DownResult) Row() harness.Row {
	verdict := "met"
	if r.peakAll > TargetRSS {
		verdict = fmt.Sprintf("**missed** by %s", harness.MiB(r.peakAll-TargetRSS))
	}
	return harness.Row{
		Measure: fmt.Sprintf("Sink's peak RSS (VmHWM) with %s new users in the backlog and OneSignal answering 503 to everything for the whole load, then the drain (`onesignal-cdc sink`, user model)",
			harness.Thousands(r.opts.Users)),
		Baseline: fmt.Sprintf("the drain at the rate limit: %s users ÷ 900/s = %s", harness.Thousands(r.opts.Users), harness.Secs(time.Duration(float64(r.opts.Users)/900*float64(time.Second)))),
		Measured: fmt.Sprintf("**%s** while down (RSS %s when OneSignal came back), **%s** over the run; drained in **%s** (%s users/s), all %s users with their tags, %d dead letters",
			harness.MiB(r.peakDown), harness.MiB(r.rssDown), harness.MiB(r.peakAll), harness.Secs(r.drain),
			harness.Thousands(int(float64(r.opts.Users)/r.drain.Seconds())), harness.Thousands(r.users), r.deadLetters),
		Ratio:   fmt.Sprintf("%.2f", float64(r.opts.Users)/900/r.drain.Seconds()),
		Target:  fmt.Sprintf("≤ %s, nothing lost (issue 14)", harness.MiB(TargetRSS)),
		Verdict: verdict,
	}
}

// Detail is the API-down paragraph of the details.
func (r *DownResult) Detail() string {
	return fmt.Sprintf("Sink with OneSignal down: %s snapshot events written in %s; the sink committed the event topic %s after its start with every request refused (503), "+
		"OneSignal stayed down %s more (%s in all), then answered again; the sink drained in %s, RSS %s at the end. The emulator refused %s requests and accepted %s; "+
		"it holds %s users, %s with all 4 tags; %d dead letters. The sink logged %d warnings (%d of them aggregated retry lines) and %d errors. "+
		"At 1,000,000 users the drain takes at least 1,000,000 ÷ 900/s ≈ 18.5 min; memory does not grow with the users (the target stage holds at most onesignal.max_in_flight records, "+
		"the scheduler's memory of idle targets is an LRU of 100,000).",
		harness.Thousands(r.opts.Users), harness.Secs(r.produce), harness.Secs(r.rowsDone), harness.Secs(downFor), harness.Secs(r.down),
		harness.Secs(r.drain), harness.MiB(r.rssEnd), harness.Thousands(r.refused), harness.Thousands(r.accepted),
		harness.Thousands(r.users), harness.Thousands(r.withTags), r.deadLetters, r.warnings, r.retryLines, r.errors)
}
