package daemontest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The roles a daemon process runs.
const (
	Run       = "run"       // connector and sink in one process
	Connector = "connector" // PostgreSQL to Kafka
	Sink      = "sink"      // Kafka to OneSignal
)

// stopWithin is how long a process may take to stop after SIGTERM.
const stopWithin = 30 * time.Second

// logTail is how much of a failed test's process logs is shown.
const logTail = 6 << 10

// Options say how a process runs, beyond its arguments.
type Options struct {
	// Dir is the working directory, where the embedded broker keeps its
	// data unless configured otherwise. Default: for StartWith, a new
	// temporary directory of the test, so that daemons do not share one
	// by chance; for Spawn and Command, the test's own.
	Dir string
	// Env is added to the environment, after what the harness sets: the
	// test's environment without the daemon's variables (ONESIGNAL_CDC_…,
	// which would override the configuration); for StartWith also
	// ONESIGNAL_CDC_OPS_LISTEN=127.0.0.1:0, so that daemons side by side
	// serve ops on free ports ("ONESIGNAL_CDC_OPS_LISTEN=" in Env turns
	// the server off), and TMPDIR, a temporary directory of the test, so
	// that what a daemon leaves there (a killed sink's default state_dir)
	// goes with the test.
	Env []string
	// Log is the file the output goes to, appended to; required by
	// Spawn. Default for StartWith: a new file in a temporary directory
	// of the test.
	Log string
	// Group runs the process in a process group of its own, which a
	// signal reaches whole: a wrapper such as strace goes down with the
	// daemon it runs.
	Group bool
}

// Command is the binary run with args, in o's directory and environment,
// killed if ctx ends first; o.Log is not used.
func Command(ctx context.Context, o Options, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, Binary(), args...)
	cmd.Dir = o.Dir
	cmd.Env = environ(o.Env)
	if o.Group {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	return cmd
}

// environ is the test's environment without the daemon's own variables,
// then env.
func environ(env []string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ONESIGNAL_CDC_") {
			out = append(out, kv)
		}
	}
	return append(out, env...)
}

// Process is a running onesignal-cdc.
type Process struct {
	args  []string
	cmd   *exec.Cmd
	log   string
	group bool

	done chan struct{} // closed once the process was waited for
	err  error         // how it ended, once done is closed

	mu   sync.Mutex
	seen bool // the test saw it end (Kill, Stop, Wait): nothing to report at cleanup
}

// Spawn starts the binary with args, its output appended to o.Log
// (required), in o's directory and environment. It is the caller's to
// stop and wait for; Start is Spawn for a test.
func Spawn(o Options, args ...string) (*Process, error) {
	if o.Log == "" {
		return nil, errors.New("daemontest: Spawn needs a log file")
	}
	log, err := os.OpenFile(o.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer log.Close() // the child holds its own descriptor
	cmd := Command(context.Background(), o, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start onesignal-cdc %s: %w", strings.Join(args, " "), err)
	}
	p := &Process{args: args, cmd: cmd, log: o.Log, group: o.Group, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Start runs role with the configuration file config, as
// `onesignal-cdc ROLE --config CONFIG`.
func Start(t testing.TB, role, config string) *Process {
	t.Helper()
	return StartWith(t, Options{}, role, "--config", config)
}

// StartWith runs the binary with args and o. The process is stopped with
// SIGTERM when the test ends, and must then exit 0, as must a process
// that ended by itself without the test waiting for it; when the test
// failed, the end of its log is shown.
func StartWith(t testing.TB, o Options, args ...string) *Process {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if o.Log == "" {
		o.Log = filepath.Join(t.TempDir(), "onesignal-cdc.log")
	}
	o.Env = append([]string{"ONESIGNAL_CDC_OPS_LISTEN=127.0.0.1:0", "TMPDIR=" + t.TempDir()}, o.Env...)
	p, err := Spawn(o, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.stop(t.Errorf)
		if t.Failed() {
			t.Logf("%s log (last %d kB):\n%s", p, logTail>>10, p.Tail(logTail))
		}
	})
	return p
}

// RunCommand runs the binary with args to its end, as a command rather
// than a daemon, and returns its exit status and its output (standard
// output and standard error together).
func RunCommand(t testing.TB, args ...string) (int, string) {
	t.Helper()
	cmd := Command(context.Background(), Options{}, args...)
	out, err := cmd.CombinedOutput()
	if _, ok := errors.AsType[*exec.ExitError](err); err != nil && !ok {
		t.Fatalf("run onesignal-cdc %s: %v", strings.Join(args, " "), err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

func (p *Process) String() string { return "onesignal-cdc " + strings.Join(p.args, " ") }

// Pid is the process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// LogPath is the file its output goes to.
func (p *Process) LogPath() string { return p.log }

// Output is what the process logged so far.
func (p *Process) Output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// Tail is the last n bytes of what the process logged so far.
func (p *Process) Tail(n int) string { return tail(p.Output(), n) }

// Done is closed when the process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is how the process ended (nil: exit status 0), once Done is closed.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// ExitCode is the process's exit status once Done is closed, -1 when a
// signal ended it.
func (p *Process) ExitCode() int {
	<-p.done
	return p.cmd.ProcessState.ExitCode()
}

// Running reports whether the process has not ended.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Signal sends sig to the process, or to its process group (Options.Group).
func (p *Process) Signal(sig syscall.Signal) {
	if p.group {
		_ = syscall.Kill(-p.cmd.Process.Pid, sig)
		return
	}
	_ = p.cmd.Process.Signal(sig)
}

// Kill ends the process with SIGKILL, as a crash does (no flush, no final
// status, no commit), and waits for it to be gone.
func (p *Process) Kill(t testing.TB) {
	t.Helper()
	p.Signal(syscall.SIGKILL)
	<-p.done
	p.saw()
}

// Wait waits up to within for the process to end by itself and returns
// its exit status (-1 when a signal ended it). A process still running
// then fails the test.
func (p *Process) Wait(t testing.TB, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		p.saw()
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("%s did not exit within %s", p, within)
		return -1
	}
}

// Stop sends SIGTERM, as a rolling update does, and waits for the
// process to end; it fails the test unless the process exits 0 within
// 30 s. It returns how long the stop took.
func (p *Process) Stop(t testing.TB) time.Duration {
	t.Helper()
	return p.stop(t.Fatalf)
}

// stop is Stop reporting with fail; a process that ended already is not
// signalled, and only reported when it ended by itself with a status
// other than 0 and the test did not see it end.
func (p *Process) stop(fail func(format string, args ...any)) time.Duration {
	began := time.Now()
	if p.Running() {
		p.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			if !p.saw() && p.err != nil {
				fail("%s exited with %v after SIGTERM", p, p.err)
			}
		case <-time.After(stopWithin):
			p.Signal(syscall.SIGKILL)
			<-p.done
			p.saw()
			fail("%s did not stop within %s of SIGTERM", p, stopWithin)
		}
		return time.Since(began)
	}
	if !p.saw() && p.cmd.ProcessState.Exited() && p.err != nil {
		fail("%s exited by itself with %v", p, p.err)
	}
	return 0
}

// saw notes that the test saw the process end, and says whether it had
// before.
func (p *Process) saw() (before bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	before, p.seen = p.seen, true
	return before
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
