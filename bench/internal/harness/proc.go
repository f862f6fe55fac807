package harness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
)

// A benchmark's helper processes are its own binary run again with
// "-child KIND": the broker, so that what kfake holds in memory and the
// CPU it spends are not counted as the measured process's, and the
// connector, so that its memory and CPU time are its own. A child runs
// until its standard input closes (the parent closes it, or dies) or it
// gets SIGINT or SIGTERM. Every command of bench/ that starts children
// passes -child on to its package's RunChild.

// ChildContext returns a context that ends when the child's standard
// input closes, which is how its parent tells it to stop.
func ChildContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	return ctx, cancel
}

// BrokerCPUProfile, when set, is the prefix of the CPU profiles the
// broker children write, PREFIX.broker-N.pprof, N counting the brokers
// started: the broker shares the machine's cores with what is measured.
var BrokerCPUProfile string

var brokersStarted atomic.Int64

// envBrokerProfile hands a broker child the file of its CPU profile.
const envBrokerProfile = "ONESIGNAL_CDC_BENCH_BROKER_CPUPROFILE"

// StartCPUProfile starts profiling this process's CPU into the file path
// (none when path is empty); stop ends the profile and closes the file.
func StartCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// RunBroker is the broker child: kfake, one broker, on a free port, which
// it prints as "brokers ADDR" on standard output.
func RunBroker(ctx context.Context) error {
	stop, err := StartCPUProfile(os.Getenv(envBrokerProfile))
	if err != nil {
		return err
	}
	defer stop()
	b, err := broker.StartEmbedded("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer b.Close()
	fmt.Printf("brokers %s\n", strings.Join(b.Brokers(), ","))
	<-ctx.Done()
	return nil
}

// Process is a process the benchmark started and watches.
type Process struct {
	name    string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	Started time.Time
	done    chan struct{} // closed once the process was waited for
	err     error         // from Wait, once done is closed
}

// StartChild runs this binary again as a child of the given kind, with env
// added to its environment, and passes its standard output to out.
func StartChild(kind string, env []string, out io.Writer) (*Process, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-child", kind)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = out
	cmd.Stderr = os.Stderr
	return Start(kind, cmd)
}

// Start starts cmd, with a pipe on its standard input that Stop closes.
// Should the benchmark die, the process is killed.
func Start(name string, cmd *exec.Cmd) (*Process, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	p := &Process{name: name, cmd: cmd, stdin: stdin, done: make(chan struct{})}
	p.Started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the %s process: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Exited returns an error once the process has ended: it was meant to run
// until told to stop.
func (p *Process) Exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("the %s process ended early: %v", p.name, p.err)
	default:
		return nil
	}
}

// Err is how the process ended (nil: exit status 0), once Done is closed.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// Done is closed when the process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// Stop closes the process's standard input and sends it SIGTERM, and waits
// for it, killing it if it will not go within timeout. It returns how the
// process ended.
func (p *Process) Stop(timeout time.Duration) error {
	_ = p.stdin.Close()
	select {
	case <-p.done:
		return p.err
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("the %s process did not stop within %s of SIGTERM: killed", p.name, timeout)
}

// Usage returns the process's CPU time and peak RSS, once it has ended.
func (p *Process) Usage() (cpu time.Duration, maxRSS int64) {
	return Usage(p.cmd.ProcessState)
}

// Usage returns the CPU time and peak RSS of an ended process.
func Usage(ps *os.ProcessState) (cpu time.Duration, maxRSS int64) {
	if ps == nil {
		return 0, 0
	}
	cpu = ps.UserTime() + ps.SystemTime()
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		maxRSS = ru.Maxrss << 10 // KiB on Linux
	}
	return cpu, maxRSS
}

// PeakRSS reads the process's resident-memory high-water mark (VmHWM)
// while it runs.
func (p *Process) PeakRSS() (int64, error) {
	return procStatus(p.cmd.Process.Pid, "VmHWM")
}

// RSS reads the process's resident memory now (VmRSS) while it runs.
func (p *Process) RSS() (int64, error) {
	return procStatus(p.cmd.Process.Pid, "VmRSS")
}

// Status reads a size field of the process's /proc/PID/status (VmRSS,
// RssAnon, RssFile, …), in bytes, while it runs.
func (p *Process) Status(field string) (int64, error) {
	return procStatus(p.cmd.Process.Pid, field)
}

// procStatus reads a size field of /proc/PID/status, in bytes.
func procStatus(pid int, field string) (int64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/status %s: %w", pid, field, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// Broker is a kfake broker in a child process.
type Broker struct {
	*Process
	Brokers []string
}

// StartBroker starts a broker child and waits for its address.
func StartBroker(ctx context.Context) (*Broker, error) {
	lines := &lineCatcher{ch: make(chan string, 1)}
	var env []string
	if BrokerCPUProfile != "" {
		path := fmt.Sprintf("%s.broker-%d.pprof", BrokerCPUProfile, brokersStarted.Add(1))
		env = append(env, envBrokerProfile+"="+path)
		Progress("the broker's CPU profile: %s", path)
	}
	p, err := StartChild("broker", env, lines)
	if err != nil {
		return nil, err
	}
	select {
	case line := <-lines.ch:
		addrs, ok := strings.CutPrefix(line, "brokers ")
		if !ok {
			_ = p.Stop(5 * time.Second)
			return nil, fmt.Errorf("the broker process said %q", line)
		}
		return &Broker{Process: p, Brokers: strings.Split(addrs, ",")}, nil
	case <-p.done:
		return nil, fmt.Errorf("the broker process ended: %v", p.err)
	case <-time.After(30 * time.Second):
		_ = p.Stop(5 * time.Second)
		return nil, errors.New("the broker process did not say where it listens within 30s")
	case <-ctx.Done():
		_ = p.Stop(5 * time.Second)
		return nil, ctx.Err()
	}
}

// lineCatcher hands over the first line written to it and discards the rest.
type lineCatcher struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	sent bool
	ch   chan string
}

func (f *lineCatcher) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sent {
		return len(p), nil
	}
	f.buf.Write(p)
	if line, err := bufio.NewReader(bytes.NewReader(f.buf.Bytes())).ReadString('\n'); err == nil {
		f.sent = true
		f.ch <- strings.TrimSpace(line)
	}
	return len(p), nil
}
