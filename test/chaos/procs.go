package chaos

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
)

// daemon runs one process of onesignal-cdc (the connector, or one of the
// sinks) the way a supervisor such as Kubernetes does: it starts the
// process again whenever it ends, whether the harness killed it or it
// exited by itself. An exit the harness did not cause is recorded: the
// daemon is meant to ride out every fault the harness injects without
// exiting.
type daemon struct {
	role    string // names the process: connector, sink-1, sink-2, …
	command string // the subcommand: connector or sink
	config  string
	logPath string // one file for every run of the role, each run headed by a line
	elapsed func() time.Duration

	mu         sync.Mutex
	cur        *proc
	starts     []time.Duration // when each run began, from the start of the run of the harness
	kills      int
	terms      int      // stopped by SIGTERM mid-run
	unexpected []string // the exits the harness did not cause
	stopErrs   []string // a non-zero exit after the final SIGTERM
}

// proc is one run of the binary.
type proc struct {
	*daemontest.Process
	started time.Duration // from the start of the run of the harness
	killed  atomic.Bool   // the harness sent SIGKILL
	stopped atomic.Bool   // the harness sent SIGTERM
	// pause is how long the supervisor waits before it starts the process
	// again after the harness killed or stopped it (a time.Duration); set
	// before the signal.
	pause atomic.Int64
}

// supervise starts the process and starts it again after every exit,
// until ctx ends; then it stops the current run with SIGTERM.
func (d *daemon) supervise(ctx context.Context) {
	for {
		p, err := d.spawn()
		if err != nil {
			d.record(fmt.Sprintf("could not start: %v", err))
		} else {
			select {
			case <-p.Done():
			case <-ctx.Done():
				d.terminate(p)
				return
			}
			if !p.killed.Load() && !p.stopped.Load() {
				d.record(fmt.Sprintf("exited by itself (%v) at +%s; its log ends with:\n%s",
					p.Err(), d.elapsed().Round(100*time.Millisecond), indent(tailFile(d.logPath, 1500))))
			}
		}
		// A killed or stopped process comes back after the pause the
		// harness drew with the signal; one that failed by itself after a
		// second.
		pause := time.Second
		if err == nil && (p.killed.Load() || p.stopped.Load()) {
			pause = time.Duration(p.pause.Load())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
	}
}

func (d *daemon) spawn() (*proc, error) {
	started := d.elapsed()
	d.mu.Lock()
	d.starts = append(d.starts, started)
	n := len(d.starts)
	d.mu.Unlock()
	log, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "=== chaos: onesignal-cdc %s (%s), run %d, at +%s\n", d.command, d.role, n, d.elapsed().Round(time.Millisecond))
	log.Close()
	// A process group of its own, signalled whole: a wrapper such as
	// strace goes down with the daemon it runs instead of leaving it
	// running unseen.
	dp, err := daemontest.Spawn(daemontest.Options{Log: d.logPath, Group: true}, d.command, "--config", d.config)
	if err != nil {
		return nil, err
	}
	p := &proc{Process: dp, started: started}
	d.mu.Lock()
	d.cur = p
	d.mu.Unlock()
	return p, nil
}

// running returns the process running now, or nil when there is none
// (the supervisor is pausing before it starts one again).
func (d *daemon) running() *proc {
	d.mu.Lock()
	p := d.cur
	d.mu.Unlock()
	if p == nil {
		return nil
	}
	if !p.Running() {
		return nil
	}
	return p
}

// startedAfter returns when the first run that began after at began, and
// false when none did.
func (d *daemon) startedAfter(at time.Duration) (time.Duration, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.starts {
		if s > at {
			return s, true
		}
	}
	return 0, false
}

// kill sends SIGKILL to the running process and waits for it to be gone:
// no flush, no final status, no commit. The supervisor starts it again
// after pause. It returns when the signal went, or false when no process
// was running.
func (d *daemon) kill(pause time.Duration) (time.Duration, bool) {
	p := d.running()
	if p == nil {
		return 0, false
	}
	p.pause.Store(int64(pause))
	p.killed.Store(true)
	sent := d.elapsed()
	p.Signal(syscall.SIGKILL)
	<-p.Done()
	d.mu.Lock()
	d.kills++
	d.mu.Unlock()
	return sent, true
}

// terminateRunning stops the running process with SIGTERM, as a rolling
// update does, and waits for it to be gone; the supervisor starts it
// again after pause. A stop that takes more than 30 s, or ends with a
// status other than 0, is recorded. It returns when the signal went, or
// false when no process was running.
func (d *daemon) terminateRunning(pause time.Duration) (time.Duration, bool) {
	p := d.running()
	if p == nil {
		return 0, false
	}
	p.pause.Store(int64(pause))
	p.stopped.Store(true)
	sent := d.elapsed()
	p.Signal(syscall.SIGTERM)
	var stopErr string
	select {
	case <-p.Done():
		if err := p.Err(); err != nil {
			stopErr = fmt.Sprintf("exited with %v after a SIGTERM at +%s", err, d.elapsed().Round(100*time.Millisecond))
		}
	case <-time.After(30 * time.Second):
		p.killed.Store(true)
		p.Signal(syscall.SIGKILL)
		<-p.Done()
		stopErr = fmt.Sprintf("did not stop within 30 s of a SIGTERM at +%s", d.elapsed().Round(100*time.Millisecond))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.terms++
	if stopErr != "" {
		d.stopErrs = append(d.stopErrs, stopErr)
	}
	return sent, true
}

// terminate stops p with SIGTERM, as at the end of the run, and SIGKILL
// when it takes more than 30 s.
func (d *daemon) terminate(p *proc) {
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.Done():
		if err := p.Err(); err != nil && !p.killed.Load() {
			d.mu.Lock()
			d.stopErrs = append(d.stopErrs, fmt.Sprintf("exited with %v after SIGTERM", err))
			d.mu.Unlock()
		}
	case <-time.After(30 * time.Second):
		p.Signal(syscall.SIGKILL)
		<-p.Done()
		d.mu.Lock()
		d.stopErrs = append(d.stopErrs, "did not stop within 30 s of SIGTERM")
		d.mu.Unlock()
	}
}

func (d *daemon) record(what string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.unexpected = append(d.unexpected, what)
}

// counts returns how many times the harness killed the role and stopped
// it with SIGTERM mid-run, the exits it did not cause, and the stops that
// went wrong.
func (d *daemon) counts() (kills, terms int, unexpected, stopErrs []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.kills, d.terms, append([]string(nil), d.unexpected...), append([]string(nil), d.stopErrs...)
}

// tailFile returns the last n bytes of a file, from a line start.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
		if i := strings.IndexByte(string(b), '\n'); i >= 0 && i < len(b)-1 {
			b = b[i+1:] // from a line start, unless that leaves nothing
		}
	}
	return strings.TrimRight(string(b), "\n")
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
