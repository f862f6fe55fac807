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

// benchGroup is the benchmark of 1, 2 and 3 sinks of one group sharing the
// rate limit (sink/grouprate_test.go), one sub-benchmark per member count.
const benchGroup = "BenchmarkSinkGroupSustainedCallsPerSecond"

// GroupResult is what the group benchmark reported, per member count.
type GroupResult struct {
	Members map[int]Benchmark
	Took    time.Duration
}

// RunGroup runs the group benchmark once with go test in the repository
// at root, passing its output on to w.
func RunGroup(ctx context.Context, root string, w io.Writer) (*GroupResult, error) {
	started := time.Now()
	harness.Progress("sinkgroup: go test -run '^$' -bench '^%s$' -benchtime 1x ./sink/ (about a minute and a half, after the build)", benchGroup)
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "^"+benchGroup+"$", "-benchtime", "1x", "-count", "1", "./sink/")
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(&out, w)
	cmd.Stderr = io.MultiWriter(&out, os.Stderr)
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go test -bench %s ./sink/: %w", benchGroup, err)
	}
	res, err := parseGroup(out.String())
	if err != nil {
		return nil, err
	}
	res.Took = time.Since(started)
	return res, nil
}

// parseGroup reads the sub-benchmarks' lines
// ("BenchmarkSinkGroupSustainedCallsPerSecond/members=2-2 1 … 0.98 ratio")
// and the lines each logged.
func parseGroup(out string) (*GroupResult, error) {
	res := &GroupResult{Members: map[int]Benchmark{}}
	var logging *int
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if logging != nil && strings.HasPrefix(line, "    ") {
			if file, msg, ok := strings.Cut(strings.TrimSpace(line), ": "); ok && strings.Contains(file, "grouprate_test.go:") {
				b := res.Members[*logging]
				b.Log = append(b.Log, msg)
				res.Members[*logging] = b
			}
			continue
		}
		logging = nil
		if name, ok := strings.CutPrefix(line, "--- BENCH: "+benchGroup+"/members="); ok {
			if n, err := strconv.Atoi(strings.TrimPrefix(benchName(benchGroup+"/members="+name), benchGroup+"/members=")); err == nil {
				logging = &n
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], benchGroup+"/members=") {
			continue
		}
		n, err := strconv.Atoi(strings.TrimPrefix(benchName(f[0]), benchGroup+"/members="))
		if err != nil {
			return nil, fmt.Errorf("benchmark line %q: no member count", line)
		}
		b := Benchmark{Metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("benchmark line %q: %q is not a number", line, f[i])
			}
			b.Metrics[f[i+1]] = v
		}
		for _, unit := range []string{"calls/s", "ratio", "429s"} {
			if _, ok := b.Metrics[unit]; !ok {
				return nil, fmt.Errorf("%s with %d members reported no %s: has the benchmark changed?", benchGroup, n, unit)
			}
		}
		res.Members[n] = b
	}
	if len(res.Members) == 0 {
		return nil, fmt.Errorf("go test printed no result for %s", benchGroup)
	}
	return res, nil
}

// Rows are the table's lines, one per member count.
func (r *GroupResult) Rows() []harness.Row {
	var rows []harness.Row
	for n := 1; n <= 3; n++ {
		b, ok := r.Members[n]
		if !ok {
			continue
		}
		m := b.Metrics
		rate, ratio, tooMany := m["calls/s"], m["ratio"], int(m["429s"])
		verdict := harness.RatioVerdict(ratio, TargetSustainedRatio)
		if tooMany > 0 {
			verdict += fmt.Sprintf("; **%d 429s**", tooMany)
		}
		rows = append(rows, harness.Row{
			Measure:  fmt.Sprintf("Sink group: %d sink(s) on one backlog of 15,000 users, each configured with the app limit", n),
			Baseline: fmt.Sprintf("the app limit `onesignal.rate_limit` for the whole group: **%.0f/s**", rate/ratio),
			Measured: fmt.Sprintf("**%.0f calls/s** for the group, %d 429s", rate, tooMany),
			Ratio:    fmt.Sprintf("**%.2f**", ratio),
			Target:   fmt.Sprintf("≥ %.1f, no 429 (issue 14)", TargetSustainedRatio),
			Verdict:  verdict,
		})
	}
	return rows
}

// Detail is what the group benchmark logged.
func (r *GroupResult) Detail() string {
	var logs []string
	for n := 1; n <= 3; n++ {
		logs = append(logs, r.Members[n].Log...)
	}
	return fmt.Sprintf("Sink group: %s. The go test run took %s, its build included.", strings.Join(logs, "; "), harness.Secs(r.Took))
}
