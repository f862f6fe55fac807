package sinkbench

import (
	"strings"
	"testing"
)

// output is what go test printed for the two benchmarks in one run.
const output = `goos: linux
goarch: amd64
pkg: github.com/onesignal-cdc/onesignal-cdc/sink
cpu: Oxide Virtual Turin-like Processor             
BenchmarkSinkAPICallsPerChange-2         	       1	29909239255 ns/op	         0 429s	         0.08560 calls/change	      3343 changes/s	         0.09560 http/change
--- BENCH: BenchmarkSinkAPICallsPerChange-2
    bench_test.go:73: 100000 changes of 1000 users in 29.909s: 8560 calls (0 unchanged skipped), 9560 HTTP requests, 0 429s
BenchmarkSinkSustainedCallsPerSecond-2   	       1	24804435836 ns/op	         0 429s	       638.2 calls/s	         0.7091 ratio
--- BENCH: BenchmarkSinkSustainedCallsPerSecond-2
    bench_test.go:149: 15000 users, one change each, in 24.804s: sustained 638 calls/s from 1.073s to 23.34s; baseline: the configured app limit 900/s (OneSignal's 1000/s); ratio 0.71 (target ≥ 0.9); 0 429s from the emulator
PASS
ok  	github.com/onesignal-cdc/onesignal-cdc/sink	59.049s
`

func TestParseReadsTheMetricsAndTheLogOfBothBenchmarks(t *testing.T) {
	r, err := parse(output)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Calls.Metrics; got["calls/change"] != 0.0856 || got["http/change"] != 0.0956 || got["changes/s"] != 3343 || got["429s"] != 0 {
		t.Errorf("calls per change metrics = %v", got)
	}
	if got := r.Sustained.Metrics; got["calls/s"] != 638.2 || got["ratio"] != 0.7091 {
		t.Errorf("sustained metrics = %v", got)
	}
	if len(r.Calls.Log) != 1 || !strings.HasPrefix(r.Calls.Log[0], "100000 changes of 1000 users in 29.909s") {
		t.Errorf("calls per change log = %q, want the line without its file and line number", r.Calls.Log)
	}
	if len(r.Sustained.Log) != 1 || !strings.HasPrefix(r.Sustained.Log[0], "15000 users, one change each") {
		t.Errorf("sustained log = %q", r.Sustained.Log)
	}
}

func TestTheRowsJudgeTheFiguresAgainstTheirTargets(t *testing.T) {
	r, err := parse(output)
	if err != nil {
		t.Fatal(err)
	}
	if row := r.CallsRow(); row.Verdict != "met" || !strings.Contains(row.Measured, "0.086 calls/change") {
		t.Errorf("calls row = %+v", row)
	}
	row := r.SustainedRow()
	if !strings.HasPrefix(row.Verdict, "**missed** by 0.19") || !strings.Contains(row.Baseline, "**900/s**") || row.Ratio != "**0.71**" {
		t.Errorf("sustained row = %+v", row)
	}
}

func TestParseRefusesOutputWithoutBothBenchmarks(t *testing.T) {
	first := output[:strings.Index(output, "BenchmarkSinkSustained")]
	if _, err := parse(first); err == nil || !strings.Contains(err.Error(), "BenchmarkSinkSustainedCallsPerSecond") {
		t.Errorf("parse without the second benchmark: err = %v, want one naming it", err)
	}
}
