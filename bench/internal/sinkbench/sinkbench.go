// Package sinkbench runs the sink's four benchmarks, which live beside the
// sink as go test benchmarks (sink/bench_test.go,
// sink/bulkload_bench_test.go and sink/drift_bench_test.go), and reads
// their figures: OneSignal calls per change when 100,000 changes of 1,000
// users stream through, the calls per second sustained through a backlog
// against the configured app limit, the HTTP requests per new user of a
// bulk load of new users, and the drift sweep's repairs against their
// budget.
// All drive the real sink, kfake and the emulator with OneSignal's limits
// on the wall clock. Running them through
// go test keeps one copy of their logic: the benchmark is the measurement,
// and this package only reads what it reports.
package sinkbench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/bench/internal/harness"
)

// Targets from issue 4, and issue 11's for a bulk load.
const (
	TargetCallsPerChange = 0.1
	TargetSustainedRatio = 0.9
	TargetCallsPerUser   = 1.05
	// TargetBulkRatio is issue 13's for the bulk load's rate, against the
	// sink's configured app limit.
	TargetBulkRatio = 0.95
	// OneSignalLimit is OneSignal's write limit per app, requests/s.
	OneSignalLimit = 1000
)

// The benchmarks, by name.
const (
	benchCalls     = "BenchmarkSinkAPICallsPerChange"
	benchSustained = "BenchmarkSinkSustainedCallsPerSecond"
	benchBulk      = "BenchmarkSinkBulkLoadNewUsers"
	benchDrift     = "BenchmarkSinkDriftSweepRepairs"
)

// TargetDriftRatio bounds the drift sweep's repairs against their budget
// (issue 16): within it, with a margin for the limiter's own rounding.
const TargetDriftRatio = 1.05

// Result is what the four benchmarks reported.
type Result struct {
	Calls, Sustained, Bulk, Drift Benchmark
	BulkUsers                     int           // new users the bulk load loaded
	Took                          time.Duration // go test's wall time, its build included
}

// Benchmark is one benchmark's metrics, by unit (calls/change, 429s, …),
// and the lines it logged.
type Benchmark struct {
	Metrics map[string]float64
	Log     []string
}

// Run runs the four benchmarks once, with go test in the repository at
// root, the bulk load loading bulkUsers new users, passing their output on
// to w as it comes.
func Run(ctx context.Context, root string, bulkUsers int, w io.Writer) (*Result, error) {
	started := time.Now()
	pattern := "^(" + benchCalls + "|" + benchSustained + "|" + benchBulk + "|" + benchDrift + ")$"
	harness.Progress("sink: go test -run '^$' -bench '%s' -benchtime 1x ./sink/ -args -bulk-users %d (about a minute, after the build)", pattern, bulkUsers)
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$",
		"-bench", pattern, "-benchtime", "1x", "-count", "1", "./sink/", "-args", "-bulk-users", strconv.Itoa(bulkUsers))
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(&out, w)
	cmd.Stderr = io.MultiWriter(&out, os.Stderr)
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go test -bench ./sink/: %w", err)
	}
	res, err := parse(out.String())
	if err != nil {
		return nil, err
	}
	res.Took, res.BulkUsers = time.Since(started), bulkUsers
	return res, nil
}

// parse reads go test's benchmark output: a result line per benchmark
// ("BenchmarkX-2  1  123 ns/op  0.06 calls/change …") and, after "---
// BENCH: BenchmarkX-2", the lines it logged itself (not the sink's
// warnings, which the test log holds too).
func parse(out string) (*Result, error) {
	found := map[string]*Benchmark{}
	var logging *Benchmark
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if name, ok := strings.CutPrefix(line, "--- BENCH: "); ok {
			logging = found[benchName(name)]
			continue
		}
		if logging != nil && strings.HasPrefix(line, "    ") {
			text := strings.TrimSpace(line)
			if file, msg, ok := strings.Cut(text, ": "); ok && strings.Contains(file, "bench_test.go:") {
				logging.Log = append(logging.Log, msg) // without "bench_test.go:73: "
			}
			continue
		}
		logging = nil
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		b := &Benchmark{Metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("benchmark line %q: %q is not a number", line, f[i])
			}
			b.Metrics[f[i+1]] = v
		}
		found[benchName(f[0])] = b
	}
	res := &Result{}
	for name, dst := range map[string]*Benchmark{benchCalls: &res.Calls, benchSustained: &res.Sustained, benchBulk: &res.Bulk, benchDrift: &res.Drift} {
		b := found[name]
		if b == nil {
			return nil, fmt.Errorf("go test printed no result for %s", name)
		}
		*dst = *b
	}
	for _, want := range []struct {
		b     Benchmark
		units []string
	}{
		{res.Calls, []string{"calls/change", "http/change", "429s"}},
		{res.Sustained, []string{"calls/s", "ratio", "429s"}},
		{res.Bulk, []string{"calls/user", "users/s", "ratio", "429s"}},
		{res.Drift, []string{"calls/s", "budget", "ratio", "calls/user", "drift", "repaired"}},
	} {
		for _, unit := range want.units {
			if _, ok := want.b.Metrics[unit]; !ok {
				return nil, fmt.Errorf("a sink benchmark reported no %s: have the benchmarks in sink/ changed?", unit)
			}
		}
	}
	return res, nil
}

// benchName drops the -GOMAXPROCS suffix go test adds to a name.
func benchName(s string) string {
	if i := strings.LastIndexByte(s, '-'); i > 0 {
		if _, err := strconv.Atoi(s[i+1:]); err == nil {
			return s[:i]
		}
	}
	return s
}

// Setup says how the sink benchmarks run, for the report.
func Setup() string {
	return "The sink benchmarks are `go test` benchmarks (sink/bench_test.go, sink/bulkload_bench_test.go): the real sink with its consumer group on an in-process kfake, " +
		"the HTTP client, and the emulator over real HTTP with OneSignal's limits on (1,000 writes/s per app, 1/s per user), on the wall clock"
}

// CallsRow is the calls-per-change line of the table.
func (r *Result) CallsRow() harness.Row {
	m := r.Calls.Metrics
	perChange, tooMany := m["calls/change"], int(m["429s"])
	verdict := "met"
	switch {
	case perChange > TargetCallsPerChange:
		verdict = fmt.Sprintf("**missed** by %.3f", perChange-TargetCallsPerChange)
	case tooMany > 0:
		verdict = fmt.Sprintf("**missed**: %d 429s", tooMany)
	}
	return harness.Row{
		Measure:  "Sink: OneSignal calls per change, 100,000 changes over 1,000 new users",
		Baseline: "1 call per change, without merging",
		Measured: fmt.Sprintf("**%.3f calls/change** (%.3f HTTP requests), %s changes/s, %d 429s", perChange, m["http/change"], harness.Thousands(int(m["changes/s"])), tooMany),
		Ratio:    "–",
		Target:   fmt.Sprintf("≤ %.1f, no 429", TargetCallsPerChange),
		Verdict:  verdict,
	}
}

// SustainedRow is the sustained-rate line of the table.
func (r *Result) SustainedRow() harness.Row {
	m := r.Sustained.Metrics
	rate, ratio, tooMany := m["calls/s"], m["ratio"], int(m["429s"])
	limit := rate / ratio
	verdict := harness.RatioVerdict(ratio, TargetSustainedRatio)
	if tooMany > 0 {
		verdict += fmt.Sprintf("; **%d 429s**", tooMany)
	}
	return harness.Row{
		Measure:  "Sink: sustained calls/s through a backlog of one change for each of 15,000 users",
		Baseline: fmt.Sprintf("the configured app limit `onesignal.rate_limit`: **%.0f/s** (OneSignal's 1,000/s)", limit),
		Measured: fmt.Sprintf("**%.0f calls/s**, %d 429s", rate, tooMany),
		Ratio:    fmt.Sprintf("**%.2f**", ratio),
		Target:   fmt.Sprintf("≥ %.1f, no 429", TargetSustainedRatio),
		Verdict:  verdict,
	}
}

// BulkRow is the bulk load's line of the table.
func (r *Result) BulkRow() harness.Row {
	m := r.Bulk.Metrics
	perUser, tooMany := m["calls/user"], int(m["429s"])
	verdict := "met"
	switch {
	case perUser > TargetCallsPerUser:
		verdict = fmt.Sprintf("**missed** by %.3f", perUser-TargetCallsPerUser)
	case tooMany > 0:
		verdict = fmt.Sprintf("**missed**: %d 429s", tooMany)
	case m["ratio"] < TargetBulkRatio:
		verdict = fmt.Sprintf("**missed**: %.2f of the limit", m["ratio"])
	}
	limit := m["users/s"] / m["ratio"]
	// At the measured rate, a backfill of 10,000,000 users.
	backfill := time.Duration(10_000_000 / m["users/s"] * float64(time.Second))
	return harness.Row{
		Measure:  fmt.Sprintf("Sink: HTTP requests per new user, bulk load of %s new users from a snapshot (user model)", harness.Thousands(r.BulkUsers)),
		Baseline: fmt.Sprintf("1 request per new user (create user, with its tags); the sink's limit of %.0f/s", limit),
		Measured: fmt.Sprintf("**%.3f requests/user**, %d 429s; **%.0f users/s** (%.2f of OneSignal's %d/s): 10,000,000 users would take %.0f min",
			perUser, tooMany, m["users/s"], m["users/s"]/OneSignalLimit, OneSignalLimit, backfill.Minutes()),
		Ratio:   fmt.Sprintf("**%.2f**", m["ratio"]),
		Target:  fmt.Sprintf("≤ %.2f, no 429 (issue 11); ≥ %.2f of the limit (issue 13)", TargetCallsPerUser, TargetBulkRatio),
		Verdict: verdict,
	}
}

// Detail is the sink's paragraph of the details: what the benchmarks
// logged.
func (r *Result) Detail() string {
	return fmt.Sprintf("Sink: %s (calls per change); %s (sustained rate); %s (bulk load); %s (drift sweep). The go test run took %s, its build included.",
		strings.Join(r.Calls.Log, " "), strings.Join(r.Sustained.Log, " "), strings.Join(r.Bulk.Log, " "), strings.Join(r.Drift.Log, " "), harness.Secs(r.Took))
}

// DriftRow is the drift sweep's line of the table.
func (r *Result) DriftRow() harness.Row {
	m := r.Drift.Metrics
	var verdict string
	switch users := m["drift"]; {
	case m["ratio"] > TargetDriftRatio:
		verdict = fmt.Sprintf("**missed**: %.2f of its budget", m["ratio"])
	case m["repaired"] < users || users == 0:
		verdict = fmt.Sprintf("**missed**: %.0f of %.0f drifted users repaired", m["repaired"], users)
	default:
		verdict = "met"
	}
	return harness.Row{
		Measure:  fmt.Sprintf("Sink: continuous mode's sweep repairing %.0f users drifted behind its back (`sink.drift`, default share 5 %% of 900/s)", m["drift"]),
		Baseline: fmt.Sprintf("the sweep's budget: **%.0f requests/s**", m["budget"]),
		Measured: fmt.Sprintf("**%.1f requests/s**; %.0f drift found, %.0f repaired, %.3f requests per user", m["calls/s"], m["drift"], m["repaired"], m["calls/user"]),
		Ratio:    fmt.Sprintf("**%.2f**", m["ratio"]),
		Target:   fmt.Sprintf("≤ %.2f of the budget, every drift repaired (issue 16)", TargetDriftRatio),
		Verdict:  verdict,
	}
}
