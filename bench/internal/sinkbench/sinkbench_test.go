package sinkbench

import (
	"strings"
	"testing"
)

// output is what go test printed for the four benchmarks in one run, a
// warning of the sink's included.
const output = `goos: linux
goarch: amd64
pkg: github.com/onesignal-cdc/onesignal-cdc/sink
cpu: AMD EPYC
BenchmarkSinkAPICallsPerChange-2         	       1	9514890068 ns/op	         0 429s	         0.07282 calls/change	     10510 changes/s	         0.08282 http/change
--- BENCH: BenchmarkSinkAPICallsPerChange-2
    bench_test.go:50: 100000 changes of 1000 users in 9.515s: 7282 requests from the sink, 8282 HTTP requests (7282 × PATCH /apps/{app_id}/users/by/{alias_label}/{alias_id}, 1000 × POST /apps/{app_id}/users), 0 429s
BenchmarkSinkSustainedCallsPerSecond-2   	       1	24804435836 ns/op	         0 429s	       638.2 calls/s	         0.7091 ratio
--- BENCH: BenchmarkSinkSustainedCallsPerSecond-2
    logger.go:146: 2026-11-30T10:00:01.000Z	WARN	sink	write to kafka failed; retrying
    bench_test.go:111: 15000 users, one change each, in 24.804s: sustained 638 calls/s from 1.073s to 23.34s; baseline: the configured app limit 900/s (OneSignal's 1000/s); ratio 0.71 (target ≥ 0.9); 0 429s from the emulator
BenchmarkSinkBulkLoadNewUsers-2          	       1	22203437608 ns/op	         3 429s	         1.061 calls/user	         1.000 ratio	       900.0 users/s
--- BENCH: BenchmarkSinkBulkLoadNewUsers-2
    bulkload_bench_test.go:92: 20000 new users from a snapshot in 22.203s: 21220 HTTP requests (1.061 per user; 20000 × POST /apps/{app_id}/users, 1220 × PATCH /apps/{app_id}/users/by/{alias_label}/{alias_id}), 3 429s from the emulator; 900 users created per second from 1s to 21.041s, 1.00 of the sink's limit of 900/s
BenchmarkSinkDriftSweepRepairs-2         	       1	23428267428 ns/op	        45.00 budget	        45.00 calls/s	         1.000 calls/user	      1000 drift	         1.000 ratio	      1000 repaired
--- BENCH: BenchmarkSinkDriftSweepRepairs-2
    drift_bench_test.go:123: 1000 users synced, a mapped tag of each changed behind the sink's back; one sweep (export, comparison, repairs) found 1000 drift and repaired 1000 targets in 23.428s
PASS
ok  	github.com/onesignal-cdc/onesignal-cdc/sink	50.966s
`

func TestParseReadsTheMetricsAndTheLogOfBothBenchmarks(t *testing.T) {
	r, err := parse(output)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Calls.Metrics; got["calls/change"] != 0.07282 || got["http/change"] != 0.08282 || got["changes/s"] != 10510 || got["429s"] != 0 {
		t.Errorf("calls per change metrics = %v", got)
	}
	if got := r.Sustained.Metrics; got["calls/s"] != 638.2 || got["ratio"] != 0.7091 {
		t.Errorf("sustained metrics = %v", got)
	}
	if got := r.Bulk.Metrics; got["calls/user"] != 1.061 || got["users/s"] != 900 || got["ratio"] != 1 || got["429s"] != 3 {
		t.Errorf("bulk load metrics = %v", got)
	}
	if len(r.Calls.Log) != 1 || !strings.HasPrefix(r.Calls.Log[0], "100000 changes of 1000 users in 9.515s") {
		t.Errorf("calls per change log = %q, want the line without its file and line number", r.Calls.Log)
	}
	if len(r.Sustained.Log) != 1 || !strings.HasPrefix(r.Sustained.Log[0], "15000 users, one change each") {
		t.Errorf("sustained log = %q, want the benchmark's line and not the sink's warning", r.Sustained.Log)
	}
	if len(r.Bulk.Log) != 1 || !strings.HasPrefix(r.Bulk.Log[0], "20000 new users from a snapshot") {
		t.Errorf("bulk load log = %q", r.Bulk.Log)
	}
}

func TestTheRowsJudgeTheFiguresAgainstTheirTargets(t *testing.T) {
	r, err := parse(output)
	if err != nil {
		t.Fatal(err)
	}
	if row := r.CallsRow(); row.Verdict != "met" || !strings.Contains(row.Measured, "0.073 calls/change") {
		t.Errorf("calls row = %+v", row)
	}
	row := r.SustainedRow()
	if !strings.HasPrefix(row.Verdict, "**missed** by 0.19") || !strings.Contains(row.Baseline, "**900/s**") || row.Ratio != "**0.71**" {
		t.Errorf("sustained row = %+v", row)
	}
	r.BulkUsers = 20000
	row = r.BulkRow()
	if !strings.HasPrefix(row.Verdict, "**missed** by 0.011") || !strings.Contains(row.Measured, "1.061 requests/user") || !strings.Contains(row.Baseline, "900/s") || !strings.Contains(row.Measure, "20,000") {
		t.Errorf("bulk load row = %+v", row)
	}
	r.Bulk.Metrics["calls/user"] = 1
	if row := r.BulkRow(); row.Verdict != "**missed**: 3 429s" {
		t.Errorf("bulk load row with 429s: verdict %q", row.Verdict)
	}
	if row := r.DriftRow(); row.Verdict != "met" || row.Ratio != "**1.00**" || !strings.Contains(row.Baseline, "45 requests/s") || !strings.Contains(row.Measure, "1000 users") {
		t.Errorf("drift row = %+v", row)
	}
	r.Drift.Metrics["ratio"] = 1.2
	if row := r.DriftRow(); !strings.HasPrefix(row.Verdict, "**missed**: 1.20 of its budget") {
		t.Errorf("drift row over its budget: verdict %q", row.Verdict)
	}
	r.Drift.Metrics["ratio"], r.Drift.Metrics["repaired"] = 1, 990
	if row := r.DriftRow(); !strings.HasPrefix(row.Verdict, "**missed**: 990 of 1000") {
		t.Errorf("drift row with users left drifted: verdict %q", row.Verdict)
	}
}

func TestParseRefusesOutputWithoutEveryBenchmark(t *testing.T) {
	for _, name := range []string{"BenchmarkSinkSustainedCallsPerSecond", "BenchmarkSinkBulkLoadNewUsers", "BenchmarkSinkDriftSweepRepairs"} {
		start := strings.Index(output, name+"-2 ")
		end := strings.Index(output[start:], "\nBenchmark") + 1 // the next benchmark's line
		if end == 0 {
			end = strings.Index(output[start:], "PASS")
		}
		without := output[:start] + output[start+end:]
		if _, err := parse(without); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("parse without %s: err = %v, want one naming it", name, err)
		}
	}
}
