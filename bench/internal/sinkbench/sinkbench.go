// Package sinkbench runs the sink's two benchmarks, which live beside the
// sink as go test benchmarks (sink/bench_test.go), and reads their figures:
// OneSignal calls per change when 100,000 updates of 1,000 users stream
// through, and the calls per second sustained through a backlog against
// the configured app limit. Both drive the real sink, kfake and the
// emulator with OneSignal's limits on the wall clock. Running them through
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

// Targets from issue 4.
const (
	TargetCallsPerChange = 0.1
	TargetSustainedRatio = 0.9
)

// The benchmarks, by name.
const (
	benchCalls     = "BenchmarkSinkAPICallsPerChange"
	benchSustained = "BenchmarkSinkSustainedCallsPerSecond"
)

// Result is what the two benchmarks reported.
type Result struct {
	Calls, Sustained Benchmark
	Took             time.Duration // go test's wall time, its build included
}

// Benchmark is one benchmark's metrics, by unit (calls/change, 429s, …),
// and the lines it logged.
type Benchmark struct {
	Metrics map[string]float64
	Log     []string
}

// Run runs both benchmarks once, with go test in the repository at root,
// passing their output on to w as it comes.
func Run(ctx context.Context, root string, w io.Writer) (*Result, error) {
	started := time.Now()
	harness.Progress("sink: go test -bench '%s|%s' -benchtime 1x ./sink/ (about a minute, after the build)", benchCalls, benchSustained)
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$",
		"-bench", "^("+benchCalls+"|"+benchSustained+")$", "-benchtime", "1x", "-count", "1", "./sink/")
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
	res.Took = time.Since(started)
	return res, nil
}

// parse reads go test's benchmark output: a result line per benchmark
// ("BenchmarkX-2  1  123 ns/op  0.06 calls/change …") and, after "---
// BENCH: BenchmarkX-2", the lines it logged.
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
			if file, msg, ok := strings.Cut(text, ": "); ok && strings.Contains(file, ".go:") {
				text = msg // without "bench_test.go:73: "
			}
			logging.Log = append(logging.Log, text)
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
	for name, dst := range map[string]*Benchmark{benchCalls: &res.Calls, benchSustained: &res.Sustained} {
		b := found[name]
		if b == nil {
			return nil, fmt.Errorf("go test printed no result for %s", name)
		}
		*dst = *b
	}
	for unit, b := range map[string]Benchmark{"calls/change": res.Calls, "http/change": res.Calls, "calls/s": res.Sustained, "ratio": res.Sustained} {
		if _, ok := b.Metrics[unit]; !ok {
			return nil, fmt.Errorf("a sink benchmark reported no %s: has sink/bench_test.go changed?", unit)
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
	return "The sink benchmarks are `go test` benchmarks (sink/bench_test.go): the real sink with its consumer group on an in-process kfake, " +
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
		Measure:  "Sink: OneSignal calls per change, 100,000 updates over 1,000 users",
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

// Detail is the sink's paragraph of the details: what the benchmarks
// logged.
func (r *Result) Detail() string {
	return fmt.Sprintf("Sink: %s (calls per change); %s (sustained rate). The go test run took %s, its build included.",
		strings.Join(r.Calls.Log, " "), strings.Join(r.Sustained.Log, " "), harness.Secs(r.Took))
}
