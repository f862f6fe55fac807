// Package harness holds what the benchmarks in bench/ share: a throwaway
// PostgreSQL and a database of their own on it, helper processes (the
// broker, the connector) and their CPU and memory, and the report: the
// machine, the load, one markdown table of figures beside their baselines,
// and the results section of docs/benchmarks.md.
package harness

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Progress tells the operator what the run is doing, on stderr.
func Progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// Row is one measurement in the table: the figure beside its baseline
// from the same run, the target and whether it was met.
type Row struct {
	Measure  string
	Baseline string
	Measured string
	Ratio    string // "–" when the figures are not comparable as a ratio
	Target   string
	Verdict  string
}

// Table renders rows as one markdown table.
func Table(rows []Row) string {
	var b strings.Builder
	b.WriteString("| Measure | Baseline, same run | Measured | Ratio | Target | Verdict |\n")
	b.WriteString("|---|---|---|---:|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.Measure, r.Baseline, r.Measured, r.Ratio, r.Target, r.Verdict)
	}
	return b.String()
}

// RatioVerdict judges a throughput ratio against its target.
func RatioVerdict(ratio, target float64) string {
	if ratio >= target {
		return "met"
	}
	return fmt.Sprintf("**missed** by %.2f (needs %.2f× its throughput)", target-ratio, target/ratio)
}

// WriteResults puts md between the markers begin and end of the file at
// path, leaving the rest of it as it is. With md empty it only checks that
// it could.
func WriteResults(path, begin, end, md string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	var out []byte
	i, j := bytes.Index(old, []byte(begin)), bytes.Index(old, []byte(end))
	switch {
	case i >= 0 && j > i:
		out = append(append(append(out, old[:i+len(begin)]...), "\n\n"+strings.TrimSuffix(md, "\n")+"\n\n"...), old[j:]...)
	case len(old) == 0:
		out = []byte("# Benchmarks\n\n## Results\n\n" + begin + "\n\n" + md + "\n" + end + "\n")
	default:
		return fmt.Errorf("%s exists without the markers %q and %q: add them where the results belong", path, begin, end)
	}
	if md == "" {
		return nil
	}
	return os.WriteFile(path, out, 0o644)
}

// Machine describes the CPU count, CPU model, memory and kernel.
func Machine() string {
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

// LoadAverage is the 1-, 5- and 15-minute load average.
func LoadAverage() string {
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

// GoVersion is the toolchain and platform the benchmark was built with.
func GoVersion() string {
	return fmt.Sprintf("Go %s %s/%s", strings.TrimPrefix(runtime.Version(), "go"), runtime.GOOS, runtime.GOARCH)
}

// Command renders how a program was started, for the report.
func Command(program string, args []string) string {
	parts := []string{"go", "run", program}
	for _, a := range args {
		if a == "" {
			a = "''"
		} else if strings.ContainsAny(a, " \t'\"$\\|*?") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// Thousands writes n with thousands separators.
func Thousands(n int) string {
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

// Secs writes a duration in seconds with two decimals.
func Secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// Millis writes a latency: in milliseconds, with a decimal below 10 ms,
// and in seconds from 1 s up.
func Millis(d time.Duration) string {
	ms := float64(d.Microseconds()) / 1000
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", ms)
	}
	return fmt.Sprintf("%.0f ms", ms)
}

// MiB writes a byte count in mebibytes.
func MiB(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

// PerEvent writes CPU time per event in microseconds.
func PerEvent(cpu time.Duration, n int) string {
	return fmt.Sprintf("%.1f µs", float64(cpu.Microseconds())/float64(n))
}
