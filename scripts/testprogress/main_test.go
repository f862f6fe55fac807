package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// testdata/stream.jsonl is go test -json -timeout 3s on a module with a
// passing package (good), a failing one (bad), one that does not compile
// (broken), one without tests (notests) and one whose test hangs (slow).
func printStream(t *testing.T) string {
	t.Helper()
	f, err := os.Open("testdata/stream.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	p := newPrinter(&out, time.Now)
	if err := p.read(f); err != nil {
		t.Fatal(err)
	}
	p.summary()
	return out.String()
}

func TestAPassingPackageIsOneLineWithItsTime(t *testing.T) {
	out := printStream(t)
	if !strings.Contains(out, "\nok    example.com/tp/good                                             0.0s\n") {
		t.Errorf("no ok line for the passing package:\n%s", out)
	}
	if !strings.Contains(out, "\n?     example.com/tp/notests ") {
		t.Errorf("no line for the package without tests:\n%s", out)
	}
	if strings.Contains(out, "a log line of a passing test") || strings.Contains(out, "=== RUN") {
		t.Errorf("a passing test's output is shown:\n%s", out)
	}
}

func TestAFailedTestIsShownInFullAsGoTestShowsItAndPassingOnesAreNot(t *testing.T) {
	out := printStream(t)
	want := `--- FAIL: TestFails (0.00s)
    bad_test.go:11: shown: the failing test's log
    bad_test.go:12: shown: the failure
--- FAIL: TestOneSubtestFails (0.00s)
    --- FAIL: TestOneSubtestFails/broken (0.00s)
        bad_test.go:17: shown: the subtest's failure
shown: TestMain's own output
FAIL
FAIL  example.com/tp/bad                                              0.0s
`
	if !strings.Contains(out, want) {
		t.Errorf("the failing package is not shown as\n%s\nin\n%s", want, out)
	}
	if strings.Contains(out, "hidden:") {
		t.Errorf("the output of a passing test or subtest is shown:\n%s", out)
	}
}

func TestABuildFailureShowsTheCompilersErrors(t *testing.T) {
	out := printStream(t)
	for _, want := range []string{
		"broken/broken_test.go:5:53: cannot use \"s\" (untyped string constant) as int value in variable declaration\n",
		"FAIL  example.com/tp/broken                                        [build failed]\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestATimedOutPackageShowsTheHangingTestsLogAndThePanic(t *testing.T) {
	out := printStream(t)
	for _, want := range []string{"shown: the log of a test that hangs", "panic: test timed out after 3s", "TestHangs (3s)", "FAIL  example.com/tp/slow "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestTheSummaryCountsThePackagesAndNamesTheFailedOnes(t *testing.T) {
	out := printStream(t)
	want := "1 package ok, 1 without tests, 3 FAILED: example.com/tp/bad, example.com/tp/broken, example.com/tp/slow; "
	if !strings.Contains(out, want) {
		t.Errorf("the summary is not %q:\n%s", want, out)
	}
}

func TestARunOfOnePackageHasNoSummary(t *testing.T) {
	var out bytes.Buffer
	p := newPrinter(&out, time.Now)
	if err := p.read(strings.NewReader(`{"Action":"start","Package":"p"}
{"Action":"pass","Package":"p","Elapsed":1.25}
`)); err != nil {
		t.Fatal(err)
	}
	p.summary()
	if want := fmt.Sprintf("ok    %-60s %7s\n", "p", "1.2s"); out.String() != want {
		t.Errorf("printed %q, want %q", out.String(), want)
	}
}

func TestALineThatIsNoEventIsPrintedAsItIs(t *testing.T) {
	var out bytes.Buffer
	p := newPrinter(&out, time.Now)
	if err := p.read(strings.NewReader("go: downloading example.com/x v1.0.0\n{\"Action\":\"start\",\"Package\":\"p\"}\n")); err != nil {
		t.Fatal(err)
	}
	if out.String() != "go: downloading example.com/x v1.0.0\n" {
		t.Errorf("printed %q", out.String())
	}
}

func TestAQuietStretchNamesWhatIsStillRunningAndForHowLong(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	var out bytes.Buffer
	p := newPrinter(&out, clock)
	now = now.Add(40 * time.Second)
	p.nudge(30 * time.Second)
	if want := "...   building and starting the tests (40s so far)\n"; out.String() != want {
		t.Errorf("before any test started: %q, want %q", out.String(), want)
	}
	out.Reset()
	p.handle(event{Action: "start", Package: "example.com/slow"})
	now = now.Add(10 * time.Second)
	p.handle(event{Action: "start", Package: "example.com/quick"})
	now = now.Add(10 * time.Second)
	p.nudge(30 * time.Second)
	if out.Len() != 0 {
		t.Errorf("nudged after 20 s of silence: %q", out.String())
	}
	now = now.Add(10 * time.Second)
	p.nudge(30 * time.Second)
	if want := "...   still running after 1m10s: example.com/slow (30s), example.com/quick (20s)\n"; out.String() != want {
		t.Errorf("nudge printed %q, want %q", out.String(), want)
	}
}

func TestTheExitStatusIsTheCommands(t *testing.T) {
	cases := []struct {
		script string
		want   int
	}{
		{`echo '{"Action":"pass","Package":"p","Elapsed":1.5}'`, 0},
		{`echo '{"Action":"fail","Package":"p","Elapsed":1.5}'; exit 1`, 1},
		{`exit 2`, 2},
		{`exit 3`, 3},
		{`kill -TERM $$`, 128 + 15},
	}
	for _, tc := range cases {
		var stdout, stderr bytes.Buffer
		if got := run([]string{"sh", "-c", tc.script}, &stdout, &stderr, time.Minute); got != tc.want {
			t.Errorf("%s: exit %d, want %d\n%s%s", tc.script, got, tc.want, stdout.String(), stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if got := run([]string{"/nonexistent/go"}, &stdout, &stderr, time.Minute); got != 127 || !strings.Contains(stderr.String(), "/nonexistent/go") {
		t.Errorf("a command that cannot start: exit %d, stderr %q", got, stderr.String())
	}
}
