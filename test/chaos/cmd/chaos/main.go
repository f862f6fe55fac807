// Command chaos runs the crash and fault harness (package chaos) for as
// long as asked, and prints its report:
//
//	go run ./test/chaos/cmd/chaos -duration 15m -seed 7 -model user -sinks 3
//
// It builds onesignal-cdc from this module (without the race detector
// unless -race), starts a private PostgreSQL cluster with the binaries in
// ONESIGNAL_CDC_TEST_PGBIN (default /usr/lib/postgresql/15/bin), and
// keeps the daemons' logs in -logs. It exits 1 when the run found a
// problem, 2 when the harness could not run.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
	"github.com/onesignal-cdc/onesignal-cdc/test/chaos"
)

func main() {
	duration := flag.Duration("duration", 10*time.Minute, "how long the workload and the faults go on")
	model := flag.String("model", chaos.ModelUser, "the OneSignal API generation: user or player")
	ok200 := flag.Bool("no-players-200", false, "player model: the emulator answers 200 to tags for an external id no device carries (the API spec's answer), not 404 (the docs')")
	seed := flag.Uint64("seed", uint64(time.Now().UnixNano()%1e6), "seed of the schedule, the workload and the faults (printed, to repeat a run)")
	gap := flag.Duration("gap", 5*time.Second, "time between two faults, on average")
	users := flag.Int("users", 2000, "users in the table before the connector starts")
	devices := flag.Int("devices", 500, "devices seeded in the emulator")
	pace := flag.Duration("pace", 20*time.Millisecond, "longest pause between two workload transactions")
	bigEvery := flag.Duration("big-every", 2*time.Minute, "one 10,000-change transaction this often")
	settle := flag.Duration("settle", 5*time.Minute, "bound on each wait after the faults")
	race := flag.Bool("race", false, "build the daemon with the race detector")
	binary := flag.String("binary", "", "run this onesignal-cdc instead of building one")
	logs := flag.String("logs", "", "directory for the daemons' logs and the timeline (default: a new one under /tmp)")
	quiet := flag.Bool("quiet", false, "print only the report, not the timeline as it happens")
	sinks := flag.Int("sinks", 3, "sink processes, members of one consumer group")
	restartPause := flag.Duration("restart-pause", 3*time.Second, "the longest pause before a killed or stopped process starts again (each drawn from 50ms to it)")
	sinkKillsAnytime := flag.Bool("sink-kills-anytime", false, "kill or stop a sink when the schedule says, even while it joins its consumer group (kfake then keeps the dead member for minutes)")
	flag.Parse()
	if *model != chaos.ModelUser && *model != chaos.ModelPlayer {
		fmt.Fprintf(os.Stderr, "chaos: -model %q: use user or player\n", *model)
		os.Exit(2)
	}
	if *sinks < 1 {
		fmt.Fprintf(os.Stderr, "chaos: -sinks %d: run at least one sink\n", *sinks)
		os.Exit(2)
	}
	if *restartPause <= 0 {
		fmt.Fprintf(os.Stderr, "chaos: -restart-pause %s: give a pause above 0, such as 3s\n", *restartPause)
		os.Exit(2)
	}

	if os.Getenv(pgtest.EnvBin) == "" {
		os.Setenv(pgtest.EnvBin, "/usr/lib/postgresql/15/bin")
	}
	if *logs == "" {
		dir, err := os.MkdirTemp("", "onesignal-cdc-chaos-")
		if err != nil {
			fail(err)
		}
		*logs = dir
	}
	if err := os.MkdirAll(*logs, 0o755); err != nil {
		fail(err)
	}
	if *binary == "" {
		var err error
		if *binary, err = daemontest.Build(*logs, *race); err != nil {
			fail(err)
		}
	}
	daemontest.UseBinary(*binary)

	h := &harness{}
	// Ctrl-C or SIGTERM ends the run early: the cleanups stop the daemons
	// (each in a process group of its own) and PostgreSQL, which would
	// otherwise outlive the harness.
	interrupted := make(chan os.Signal, 1)
	signal.Notify(interrupted, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-interrupted
		fmt.Fprintf(os.Stderr, "chaos: %v: stopping the daemons and PostgreSQL\n", sig)
		h.cleanup()
		os.Exit(2)
	}()
	timeline, err := os.Create(filepath.Join(*logs, "timeline.txt"))
	if err != nil {
		fail(err)
	}
	defer timeline.Close()
	logf := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		fmt.Fprintln(timeline, line)
		if !*quiet {
			fmt.Fprintln(os.Stderr, line)
		}
	}
	fmt.Fprintf(os.Stderr, "chaos: seed %d, model %s, %d sinks, duration %s, logs in %s\n", *seed, *model, *sinks, *duration, *logs)
	var report *chaos.Report
	h.run(func() {
		report = chaos.Run(h, chaos.Options{
			Model: *model, NoPlayersAnswersOK: *ok200, Seed: *seed, Duration: *duration, Gap: *gap,
			Users: *users, Devices: *devices, Pace: *pace, BigEvery: *bigEvery, Sinks: *sinks, RestartPause: *restartPause,
			Settle: *settle, LogDir: *logs, Logf: logf, SinkKillsAnytime: *sinkKillsAnytime,
		})
	})
	fmt.Println(report)
	problems := report.Problems()
	if h.Failed() {
		problems = append(problems, "the harness reported errors (above)")
	}
	if len(problems) == 0 {
		fmt.Println("no problems found")
		return
	}
	fmt.Printf("PROBLEMS (seed %d; logs in %s):\n%s\n", *seed, *logs, strings.Join(problems, "\n"))
	os.Exit(1)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "chaos:", err)
	os.Exit(2)
}

// harness is the testing.TB that chaos.Run and pgtest need, outside go
// test: Fatal ends the run after the cleanups, which stop PostgreSQL and
// the daemons; Error prints and carries on. The embedded interface is nil:
// a method it would serve is one the harness does not call.
type harness struct {
	testing.TB

	mu       sync.Mutex
	cleanups []func()
	failed   bool
	tempDirs []string
}

// run runs f and then the cleanups.
func (h *harness) run(f func()) {
	defer h.cleanup()
	f()
}

func (h *harness) cleanup() {
	h.mu.Lock()
	cs := h.cleanups
	h.cleanups = nil
	dirs := h.tempDirs
	h.tempDirs = nil
	h.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
	for _, d := range dirs {
		os.RemoveAll(d)
	}
}

func (h *harness) Helper()                    {}
func (h *harness) Name() string               { return "chaos" }
func (h *harness) Log(args ...any)            { fmt.Fprintln(os.Stderr, args...) }
func (h *harness) Logf(f string, args ...any) { fmt.Fprintf(os.Stderr, f+"\n", args...) }
func (h *harness) Error(args ...any)          { h.Log(args...); h.Fail() }
func (h *harness) Errorf(f string, args ...any) {
	h.Logf(f, args...)
	h.Fail()
}

func (h *harness) Fatal(args ...any) { h.Log(args...); h.FailNow() }
func (h *harness) Fatalf(f string, args ...any) {
	h.Logf(f, args...)
	h.FailNow()
}

func (h *harness) Skip(args ...any)            { h.Fatal(args...) }
func (h *harness) Skipf(f string, args ...any) { h.Fatalf(f, args...) }
func (h *harness) SkipNow()                    { h.FailNow() }

func (h *harness) Fail() {
	h.mu.Lock()
	h.failed = true
	h.mu.Unlock()
}

func (h *harness) Failed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failed
}

// FailNow ends the run from whichever goroutine calls it: it runs the
// cleanups, which stop PostgreSQL and the daemons, and exits.
func (h *harness) FailNow() {
	h.Fail()
	h.cleanup()
	os.Exit(2)
}

func (h *harness) Cleanup(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cleanups = append(h.cleanups, f)
}

func (h *harness) TempDir() string {
	dir, err := os.MkdirTemp("", "onesignal-cdc-chaos-tmp-")
	if err != nil {
		h.Fatal(err)
	}
	h.mu.Lock()
	h.tempDirs = append(h.tempDirs, dir)
	h.mu.Unlock()
	return dir
}
