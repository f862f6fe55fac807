package sinkbench

import (
	"strings"
	"testing"
)

// groupOutput is what go test printed for the group benchmark (the run of
// 2026-12-07).
const groupOutput = `goos: linux
pkg: github.com/onesignal-cdc/onesignal-cdc/sink
BenchmarkSinkGroupSustainedCallsPerSecond/members=1-2         	       1	19426504113 ns/op	         0 429s	       815.7 calls/s	         0.9063 ratio
--- BENCH: BenchmarkSinkGroupSustainedCallsPerSecond/members=1-2
    grouprate_test.go:127: 1 sinks in one group, rate shares [1], 15000 users one change each: the group sustained 816 calls/s
BenchmarkSinkGroupSustainedCallsPerSecond/members=2-2         	       1	21977699507 ns/op	         0 429s	       881.9 calls/s	         0.9799 ratio
--- BENCH: BenchmarkSinkGroupSustainedCallsPerSecond/members=2-2
    logger.go:146: 2026-12-07T01:20:00.000Z	WARN	sink	something
    grouprate_test.go:127: 2 sinks in one group, rate shares [0.5 0.5]
BenchmarkSinkGroupSustainedCallsPerSecond/members=3-2         	       1	21813399759 ns/op	         2 429s	       905.4 calls/s	         1.006 ratio
PASS
`

func TestParseGroupReadsEveryMemberCount(t *testing.T) {
	r, err := parseGroup(groupOutput)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Members) != 3 || r.Members[1].Metrics["calls/s"] != 815.7 || r.Members[2].Metrics["ratio"] != 0.9799 || r.Members[3].Metrics["429s"] != 2 {
		t.Fatalf("parsed %+v", r.Members)
	}
	if got := r.Members[2].Log; len(got) != 1 || !strings.HasPrefix(got[0], "2 sinks in one group") {
		t.Errorf("member count 2 logged %q", got)
	}
	rows := r.Rows()
	if len(rows) != 3 || !strings.Contains(rows[2].Verdict, "2 429s") || !strings.Contains(rows[0].Baseline, "900/s") {
		t.Errorf("rows %+v", rows)
	}
}

func TestParseGroupWithoutResultsSaysSo(t *testing.T) {
	if _, err := parseGroup("PASS\n"); err == nil || !strings.Contains(err.Error(), "no result") {
		t.Errorf("got %v", err)
	}
}
