// Command testprogress runs `go test -json …` and prints what a person
// waiting for it wants to see: a line per package as it finishes, with its
// time ("ok    …/config    1.2s"), the whole output of every test that
// failed as soon as it fails, a note of what is still running when nothing
// has been printed for a while, and a summary. It exits with the exact
// status of the command it ran. ./scripts/test runs go test through it.
//
//	testprogress [-quiet-for 30s] go test -json [flags] [packages]
//
// Unlike go test without -v, whose output holds each package back until
// the packages before it are done, it shows every package when it ends.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	quietFor := flag.Duration("quiet-for", 30*time.Second, "after this long without output, say what is still running")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: testprogress [-quiet-for 30s] go test -json [flags] [packages]")
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	os.Exit(run(flag.Args(), os.Stdout, os.Stderr, *quietFor))
}

// run runs args with its stdout read as go test's JSON and its stderr
// passed through, and returns its exit status.
func run(args []string, stdout, stderr io.Writer, quietFor time.Duration) int {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stderr = os.Stdin, stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(stderr, "testprogress:", err)
		return 2
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(stderr, "testprogress:", err)
		return 127
	}
	// A Ctrl-C reaches go test through the terminal's process group and a
	// script's kill through ours; either way this process stays to print
	// what go test says about the interrupted tests, and passes a signal
	// sent to it alone on to go test.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(signals)
	go func() {
		for s := range signals {
			cmd.Process.Signal(s) //nolint:errcheck // it may have exited already
		}
	}()

	p := newPrinter(stdout, time.Now)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(quietFor / 3)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				p.nudge(quietFor)
			}
		}
	})
	readErr := p.read(out)
	close(stop)
	wg.Wait()
	err = cmd.Wait()
	p.summary()
	if readErr != nil {
		fmt.Fprintln(stderr, "testprogress: reading go test's output:", readErr)
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return exit.ExitCode()
	default:
		fmt.Fprintln(stderr, "testprogress:", err)
		return 1
	}
}

// event is one line of go test -json (go doc test2json).
type event struct {
	Time        time.Time
	Action      string
	Package     string
	Test        string
	Elapsed     float64
	Output      string
	FailedBuild string
	ImportPath  string // of build-output events
}

// printer turns events into the lines a person reads. Its methods are
// safe for concurrent use.
type printer struct {
	mu       sync.Mutex
	w        io.Writer
	now      func() time.Time
	began    time.Time
	lastLine time.Time
	pkgs     map[string]*pkg
	done     []*pkg // in the order they finished
}

// pkg is what is known of one package's test run.
type pkg struct {
	name    string
	started time.Time
	output  []string         // lines of no test: the binary's own, the final verdict
	tests   map[string]*test // by top-level test, its subtests within
	result  string           // pass, fail or skip once done
}

// test is a top-level test's output, its subtests' included, kept until
// it passes (dropped) or fails (printed).
type test struct {
	lines  []line
	passed map[string]bool // subtests that passed: their lines are not shown
}

type line struct{ test, text string }

func newPrinter(w io.Writer, now func() time.Time) *printer {
	t := now()
	return &printer{w: w, now: now, began: t, lastLine: t, pkgs: map[string]*pkg{}}
}

// read handles the events of r until it ends.
func (p *printer) read(r io.Reader) error {
	br := bufio.NewReader(r)
	for {
		b, err := br.ReadBytes('\n')
		if len(b) > 0 {
			var e event
			if json.Unmarshal(b, &e) != nil || e.Action == "" {
				p.print(string(b)) // not an event: say it as it is
			} else {
				p.handle(e)
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (p *printer) handle(e event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e.Action == "build-output" {
		p.printLocked(e.Output) // compiler and vet errors, in full
		return
	}
	if e.Package == "" {
		return
	}
	k := p.pkgs[e.Package]
	if k == nil {
		k = &pkg{name: e.Package, started: p.now(), tests: map[string]*test{}}
		p.pkgs[e.Package] = k
	}
	top, _, _ := strings.Cut(e.Test, "/")
	switch {
	case e.Action == "start":
		k.started = p.now()
	case e.Action == "output" && e.Test == "":
		k.output = append(k.output, e.Output)
	case e.Action == "output":
		if strings.HasPrefix(strings.TrimLeft(e.Output, " "), "=== ") {
			return // === RUN, PAUSE, CONT, NAME: go test without -v shows none
		}
		t := k.tests[top]
		if t == nil {
			t = &test{passed: map[string]bool{}}
			k.tests[top] = t
		}
		t.lines = append(t.lines, line{e.Test, e.Output})
	case e.Test != "" && (e.Action == "pass" || e.Action == "skip"):
		if e.Test == top {
			delete(k.tests, top)
		} else if t := k.tests[top]; t != nil {
			t.passed[e.Test] = true
		}
	case e.Test != "" && e.Action == "fail":
		if e.Test == top {
			p.flushTestLocked(k, top)
		}
	case e.Action == "pass" || e.Action == "fail" || e.Action == "skip":
		p.finishLocked(k, e)
	}
}

// flushTestLocked prints a failed test's lines as go test without -v
// does: each test's result line first, then its log, a subtest indented
// below its parent; subtests that passed are left out.
func (p *printer) flushTestLocked(k *pkg, top string) {
	t := k.tests[top]
	delete(k.tests, top)
	if t == nil {
		return
	}
	names := []string{top}
	byTest := map[string][]string{}
	for _, l := range t.lines {
		if _, seen := byTest[l.test]; !seen && l.test != top {
			names = append(names, l.test)
		}
		text := strings.TrimLeft(l.text, " ")
		if strings.HasPrefix(text, "--- ") {
			byTest[l.test] = append([]string{text}, byTest[l.test]...)
		} else {
			byTest[l.test] = append(byTest[l.test], l.text)
		}
	}
	for _, name := range names {
		if t.passed[name] {
			continue
		}
		indent := strings.Repeat("    ", strings.Count(name, "/"))
		for _, text := range byTest[name] {
			p.printLocked(indent + text)
		}
	}
}

// finishLocked ends a package: one line when it passed; when it failed,
// what its unfinished tests (a timeout, a panic) and the test binary said
// first.
func (p *printer) finishLocked(k *pkg, e event) {
	delete(p.pkgs, k.name)
	k.result = e.Action
	p.done = append(p.done, k)
	elapsed := fmt.Sprintf("%.1fs", e.Elapsed)
	switch e.Action {
	case "pass":
		p.printLocked(fmt.Sprintf("ok    %-60s %7s\n", k.name, elapsed))
	case "skip":
		p.printLocked(fmt.Sprintf("?     %-60s %7s\n", k.name, "[no test files]"))
	case "fail":
		tops := make([]string, 0, len(k.tests))
		for top := range k.tests {
			tops = append(tops, top)
		}
		slices.Sort(tops)
		for _, top := range tops {
			p.flushTestLocked(k, top)
		}
		for _, o := range k.output {
			if !isVerdict(o, k.name) {
				p.printLocked(o)
			}
		}
		if e.FailedBuild != "" {
			elapsed = "[build failed]"
		}
		p.printLocked(fmt.Sprintf("FAIL  %-60s %7s\n", k.name, elapsed))
	}
}

// isVerdict is go test's own last line of a package ("ok  \tpkg\t1.2s",
// "FAIL\tpkg\t1.2s"), which the printer replaces with its own.
func isVerdict(out, name string) bool {
	for _, prefix := range []string{"ok  \t", "FAIL\t", "?   \t"} {
		if strings.HasPrefix(out, prefix+name+"\t") || strings.HasPrefix(out, prefix+name+" ") {
			return true
		}
	}
	return false
}

// nudge says what is still running when nothing was printed for quietFor.
func (p *printer) nudge(quietFor time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if now.Sub(p.lastLine) < quietFor {
		return
	}
	p.printLocked(p.runningLocked(now))
}

// runningLocked is the line naming the packages whose tests are running,
// the longest-running first, and for how long.
func (p *printer) runningLocked(now time.Time) string {
	running := make([]*pkg, 0, len(p.pkgs))
	for _, k := range p.pkgs {
		running = append(running, k)
	}
	if len(running) == 0 {
		return fmt.Sprintf("...   building and starting the tests (%s so far)\n", round(now.Sub(p.began)))
	}
	slices.SortFunc(running, func(a, b *pkg) int { return a.started.Compare(b.started) })
	names := make([]string, len(running))
	for i, k := range running {
		names[i] = fmt.Sprintf("%s (%s)", k.name, round(now.Sub(k.started)))
	}
	return fmt.Sprintf("...   still running after %s: %s\n", round(now.Sub(p.began)), strings.Join(names, ", "))
}

// summary is the last line: how many packages passed and failed, and
// which failed, so that they need not be searched for above. A run of one
// package has said all that already.
func (p *printer) summary() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.done)+len(p.pkgs) < 2 {
		return
	}
	var ok, skipped int
	var failed []string
	for _, k := range p.done {
		switch k.result {
		case "pass":
			ok++
		case "skip":
			skipped++
		case "fail":
			failed = append(failed, k.name)
		}
	}
	s := fmt.Sprintf("%s ok", count(ok, "package", "packages"))
	if skipped > 0 {
		s += fmt.Sprintf(", %d without tests", skipped)
	}
	if len(failed) > 0 {
		s += fmt.Sprintf(", %d FAILED: %s", len(failed), strings.Join(failed, ", "))
	}
	if len(p.pkgs) > 0 {
		unfinished := make([]string, 0, len(p.pkgs))
		for name := range p.pkgs {
			unfinished = append(unfinished, name)
		}
		slices.Sort(unfinished)
		s += fmt.Sprintf(", %d unfinished: %s", len(unfinished), strings.Join(unfinished, ", "))
	}
	p.printLocked(fmt.Sprintf("%s; %s in all\n", s, round(p.now().Sub(p.began))))
}

func (p *printer) print(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.printLocked(s)
}

func (p *printer) printLocked(s string) {
	io.WriteString(p.w, s) //nolint:errcheck // nowhere else to say it
	p.lastLine = p.now()
}

func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func round(d time.Duration) time.Duration { return d.Round(time.Second) }
