package main

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// report is one run's results and the circumstances they were measured in.
type report struct {
	opts                  options
	started, finished     time.Time
	loadBefore, loadAfter string
	server, pgVersion     string
	stream                *streamResult
	snapshot              *snapshotResult
	memory                *memoryResult
}

// The markers between which -write puts the results; the rest of the file
// is left as it is.
const (
	beginMarker = "<!-- BEGIN bench/connector output: regenerate with the command below -->"
	endMarker   = "<!-- END bench/connector output -->"
)

func (r *report) markdown() string {
	var b strings.Builder
	b.WriteString(beginMarker + "\n\n")
	fmt.Fprintf(&b, "Command: `%s`\n\n", r.command())
	fmt.Fprintf(&b, "- Date: %s (the run took %s)\n", r.started.UTC().Format("2006-01-02 15:04 MST"), r.finished.Sub(r.started).Round(time.Second))
	fmt.Fprintf(&b, "- Machine: %s; load average %s before the run, %s after\n", machine(), r.loadBefore, r.loadAfter)
	fmt.Fprintf(&b, "- Go %s %s/%s; PostgreSQL %s, %s\n", strings.TrimPrefix(runtime.Version(), "go"), runtime.GOOS, runtime.GOARCH, r.pgVersion, r.server)
	fmt.Fprintf(&b, "- The connector and the broker (kfake, one broker, %d partitions per topic) each run in a process of their own; "+
		"the connector is wired as `onesignal-cdc connector` wires it, with a standby status update every %s instead of 10 s\n", partitions, statusInterval)
	if x := r.experiments(); x != "" {
		fmt.Fprintf(&b, "- **Experiment, not the daemon's wiring:** %s\n", x)
	}
	b.WriteString("\n")

	b.WriteString("| Measure | Baseline | Connector | Ratio | Target | Verdict |\n")
	b.WriteString("|---|---|---|---:|---|---|\n")
	if s := r.stream; s != nil {
		ratio := s.conn.rate(s.rows) / s.baseline.rate(s.rows)
		fmt.Fprintf(&b, "| Streaming %s row changes in %s-row transactions | pg_recvlogical (pgoutput, proto 1) → /dev/null: **%s rows/s** (%s) | **%s rows/s** (%s) | **%.2f** | ≥ %.1f | %s |\n",
			thousands(s.rows), thousands(s.txn), thousands(int(s.baseline.rate(s.rows))), secs(s.baseline.elapsed),
			thousands(int(s.conn.rate(s.rows))), secs(s.conn.elapsed), ratio, targetStreamRatio, ratioVerdict(ratio, targetStreamRatio))
	}
	if s := r.snapshot; s != nil {
		ratio := s.conn.rate(s.rows) / s.copy.rate(s.rows)
		fmt.Fprintf(&b, "| Initial snapshot of a %s-row table | `COPY (SELECT * …) TO STDOUT` → discarded: **%s rows/s** (%s) | **%s rows/s** (%s) | **%.2f** | ≥ %.1f | %s |\n",
			thousands(s.rows), thousands(int(s.copy.rate(s.rows))), secs(s.copy.elapsed),
			thousands(int(s.conn.rate(s.rows))), secs(s.conn.elapsed), ratio, targetSnapshotRatio, ratioVerdict(ratio, targetSnapshotRatio))
	}
	if m := r.memory; m != nil {
		peak := float64(m.conn.peak) / (1 << 20)
		verdict := "met"
		if peak > targetPeakRSSMB {
			verdict = fmt.Sprintf("**missed** by %.0f MiB", peak-targetPeakRSSMB)
		}
		fmt.Fprintf(&b, "| Peak RSS streaming one %s-row INSERT transaction | pg_recvlogical: %s | **%s** | – | ≤ %d MiB | %s |\n",
			thousands(m.rows), mib(m.baseline.maxRSS), mib(m.conn.peak), targetPeakRSSMB, verdict)
	}

	b.WriteString("\nDetails:\n\n")
	if s := r.stream; s != nil {
		fmt.Fprintf(&b, "- Streaming: %s transactions (%s INSERT, %s UPDATE) wrote %s of WAL in %s with nothing reading. "+
			"pg_recvlogical used %s of CPU. The connector had every event in Kafka after %s and its slot confirmed the end after %s; "+
			"it used %s of CPU (%s per event), peak RSS %s; the broker used %s of CPU.\n",
			thousands(s.inserts+s.updates), thousands(s.inserts), thousands(s.updates), mib(s.walBytes), secs(s.write),
			secs(s.baseline.cpu), secs(s.conn.inKafka), secs(s.conn.elapsed),
			secs(s.conn.cpu), perEvent(s.conn.cpu, s.rows), mib(s.conn.peak), secs(s.conn.brokerCPU))
		if d := s.discard; d != nil {
			fmt.Fprintf(&b, "- Streaming diagnosis (-diagnose): the connector once more over the same WAL, its events acknowledged as soon as "+
				"they were handed to the writer instead of written to Kafka: %s rows/s (%s, %.2f of pg_recvlogical), %s of CPU (%s per event).\n",
				thousands(int(d.rate(s.rows))), secs(d.elapsed), d.rate(s.rows)/s.baseline.rate(s.rows), secs(d.cpu), perEvent(d.cpu, s.rows))
		}
	}
	if s := r.snapshot; s != nil {
		fmt.Fprintf(&b, "- Snapshot: the table holds %s (after VACUUM ANALYZE). The connector had every row in Kafka after %s "+
			"and its state showed the snapshot finished after %s (counted from its process start, slot creation included); "+
			"it used %s of CPU (%s per row), peak RSS %s; the broker used %s of CPU.\n",
			mib(s.tableBytes), secs(s.conn.inKafka), secs(s.conn.elapsed), secs(s.conn.cpu), perEvent(s.conn.cpu, s.rows), mib(s.conn.peak), secs(s.conn.brokerCPU))
	}
	if m := r.memory; m != nil {
		fmt.Fprintf(&b, "- Memory: the transaction wrote %s of WAL. pg_recvlogical drained it in %s (%s rows/s); "+
			"the connector streamed it in %s (%s rows/s, %s of CPU) with peak RSS (VmHWM) %s; %s at exit.\n",
			mib(m.walBytes), secs(m.baseline.elapsed), thousands(int(m.baseline.rate(m.rows))),
			secs(m.conn.elapsed), thousands(int(m.conn.rate(m.rows))), secs(m.conn.cpu), mib(m.conn.peak), mib(m.conn.maxRSS))
	}
	b.WriteString("\n" + endMarker + "\n")
	return b.String()
}

// experiments describes the options that make the connector differ from
// the daemon's.
func (r *report) experiments() string {
	var x []string
	if r.opts.writerBatch > 0 {
		x = append(x, fmt.Sprintf("kafka-go writer BatchSize %d", r.opts.writerBatch))
	}
	if len(r.opts.connectorEnv) > 0 {
		x = append(x, "connector environment "+strings.Join(r.opts.connectorEnv, " "))
	}
	return strings.Join(x, "; ")
}

// command is how the run was started.
func (r *report) command() string {
	parts := []string{"go", "run", "./bench/connector"}
	for _, a := range r.opts.args {
		if strings.ContainsAny(a, " \t'\"$\\") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

func ratioVerdict(ratio, target float64) string {
	if ratio >= target {
		return "met"
	}
	return fmt.Sprintf("**missed** by %.2f (needs %.2f× its throughput)", target-ratio, target/ratio)
}

// writeResults puts md between the markers of the file at path, or creates
// the file around it. With md empty it only checks that it could.
func writeResults(path, md string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	var out []byte
	i, j := bytes.Index(old, []byte(beginMarker)), bytes.Index(old, []byte(endMarker))
	switch {
	case i >= 0 && j > i:
		out = append(append(append(out, old[:i]...), strings.TrimSuffix(md, "\n")...), old[j+len(endMarker):]...)
	case len(old) == 0:
		out = []byte("# Benchmarks\n\n## Results\n\n" + md)
	default:
		return fmt.Errorf("%s exists without the markers %q and %q: add them where the results belong", path, beginMarker, endMarker)
	}
	if md == "" {
		return nil
	}
	return os.WriteFile(path, out, 0o644)
}

// machine describes the CPU count, CPU model, memory and kernel.
func machine() string {
	desc := fmt.Sprintf("%d CPUs", runtime.NumCPU())
	if model := procField("/proc/cpuinfo", "model name"); model != "" {
		desc += " (" + model + ")"
	}
	if kb, err := strconv.ParseInt(strings.TrimSuffix(procField("/proc/meminfo", "MemTotal"), " kB"), 10, 64); err == nil {
		desc += fmt.Sprintf(", %.1f GiB memory", float64(kb)/(1<<20))
	}
	if rel, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		desc += ", Linux " + strings.TrimSpace(string(rel))
	}
	return desc
}

// procField returns the value of the first "name: value" line of a /proc file.
func procField(path, name string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// loadAverage is the 1-, 5- and 15-minute load average.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " / ")
}

func thousands(n int) string {
	s := strconv.Itoa(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

func perEvent(cpu time.Duration, n int) string {
	return fmt.Sprintf("%.1f µs", float64(cpu.Microseconds())/float64(n))
}
