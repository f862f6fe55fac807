package chaos

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// binary is the onesignal-cdc built for this test run.
var binary string

func TestMain(m *testing.M) {
	// A binary of another commit, to bisect: ONESIGNAL_CDC_CHAOS_BINARY=path.
	if binary = os.Getenv("ONESIGNAL_CDC_CHAOS_BINARY"); binary != "" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "onesignal-cdc-chaos")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "onesignal-cdc")
	// -race shares the build cache with go test -race and catches races in
	// the daemon itself.
	build := exec.Command("go", "build", "-race", "-o", binary, "github.com/onesignal-cdc/onesignal-cdc/cmd/onesignal-cdc")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build onesignal-cdc:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestChaos is the harness's short schedule: 65 s of workload with a
// fault every 2.5 s (26 of them: two shuffled decks, so every kind twice
// and ten kills), then the settling and the checks. The seed
// fixes what is injected and when; how the pipeline answers varies with
// the machine, and the test holds whatever it does.
func TestChaos(t *testing.T) {
	r := Run(t, Options{
		Binary:   binary,
		Seed:     1,
		Duration: 65 * time.Second,
		Gap:      2500 * time.Millisecond,
		Users:    300,
		Devices:  150,
		Pace:     40 * time.Millisecond,
		Settle:   3 * time.Minute,
		Logf:     t.Logf,
	})
	t.Logf("report:\n%s", r)
	problems := r.Problems()
	if kills := r.Kills["connector"] + r.Kills["sink"]; kills < 10 {
		problems = append(problems, fmt.Sprintf("%d kills, want at least 10: the run proves too little", kills))
	}
	for _, f := range Faults {
		if r.Injected[f] == 0 {
			problems = append(problems, fmt.Sprintf("no %q was injected: the run proves nothing about it", f))
		}
	}
	if r.Big == 0 || r.Schema == 0 || r.Toast == 0 {
		problems = append(problems, fmt.Sprintf("the workload wrote %d big transactions, %d schema changes and %d TOAST values: want each", r.Big, r.Schema, r.Toast))
	}
	if len(problems) > 0 {
		kept := keepLogs(t, r)
		for role, path := range r.Logs {
			t.Logf("%s log (last 6 kB; all of it in %s):\n%s", role, kept, tailFile(path, 6000))
		}
		t.Errorf("chaos run with seed %d failed:\n%s", r.Seed, strings.Join(problems, "\n"))
	}
}

// keepLogs copies the run's logs out of the test's temporary directory,
// which goes when the test ends, and returns where they are.
func keepLogs(t *testing.T, r *Report) string {
	dir, err := os.MkdirTemp("", fmt.Sprintf("onesignal-cdc-chaos-seed%d-", r.Seed))
	if err != nil {
		return err.Error()
	}
	src := filepath.Dir(r.Logs["connector"])
	entries, _ := os.ReadDir(src)
	for _, e := range entries {
		if e.IsDir() || e.Name() == "config.yaml" {
			continue
		}
		in, err := os.Open(filepath.Join(src, e.Name()))
		if err != nil {
			continue
		}
		out, err := os.Create(filepath.Join(dir, e.Name()))
		if err == nil {
			_, _ = io.Copy(out, in)
			out.Close()
		}
		in.Close()
	}
	if err := os.WriteFile(filepath.Join(dir, "timeline.txt"), []byte(strings.Join(r.Timeline, "\n")+"\n"), 0o644); err != nil {
		t.Log(err)
	}
	return dir
}
