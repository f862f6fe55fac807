// Package connbench measures the connector against what its source can
// do on the same machine, each figure beside its baseline from the same
// run:
//
//   - streaming: N row changes in T-row transactions (60 % INSERT, 40 %
//     UPDATE transactions) are written while nothing reads; then
//     pg_recvlogical drains a pgoutput slot over that WAL to /dev/null, and
//     the connector streams the same changes from its own slot, created at
//     the same point, into a Kafka broker. The connector is done when its
//     slot's confirmed_flush_lsn reaches the end of the workload: every
//     event acknowledged by Kafka and confirmed to Postgres.
//   - snapshot: a table of N rows read by COPY … TO STDOUT into nothing,
//     against the connector's initial snapshot of it into Kafka, done when
//     the connector's state says the snapshot finished.
//   - memory: the connector's peak resident memory (VmHWM) while it streams
//     one INSERT transaction of BigTxn rows.
//
// The connector runs in a process of its own (the benchmark's binary,
// re-executed: see RunChild), and so does the broker (kfake, which keeps
// every record in memory), so the memory figure is the connector's alone.
// Wall-clock times include each consumer's start-up: connecting, checks,
// slot look-ups. bench/connector runs these alone, with flags to profile
// them; `go run ./bench` runs them with every other benchmark.
package connbench

import (
	"fmt"
	"strings"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/bench/internal/harness"
)

// Targets from issue 3.
const (
	TargetStreamRatio   = 0.8
	TargetSnapshotRatio = 0.6
	TargetPeakRSSMiB    = 150
)

// Options are the sizes and the diagnostics of the measurements.
type Options struct {
	Rows   int // row changes in the streaming workload, rows in the snapshot's table
	Txn    int // rows per transaction in the streaming workload
	BigTxn int // rows in the memory measurement's one transaction

	CPUProfile   string   // prefix of CPU profiles of the connector process
	BlockProfile string   // prefix of blocking profiles of the connector process
	Diagnose     bool     // also stream without Kafka, and print the Kafka writes' statistics
	ConnectorEnv []string // added to the connector process's environment
	WriterBatch  int      // the Kafka writer's BatchSize; 0: the daemon's
	Timeout      time.Duration
}

// Experiments describes the options that make the connector differ from
// the daemon's; "" when none does.
func (o Options) Experiments() string {
	var x []string
	if o.WriterBatch > 0 {
		x = append(x, fmt.Sprintf("kafka-go writer BatchSize %d", o.WriterBatch))
	}
	if len(o.ConnectorEnv) > 0 {
		x = append(x, "connector environment "+strings.Join(o.ConnectorEnv, " "))
	}
	return strings.Join(x, "; ")
}

// Setup says how the connector was run, for the report.
func Setup() string {
	return fmt.Sprintf("The connector and the broker (kfake, one broker, %d partitions per topic) each run in a process of their own; "+
		"the connector is wired as `onesignal-cdc connector` wires it, with a standby status update every %s instead of 10 s", partitions, statusInterval)
}

// Row is the streaming line of the table.
func (s *StreamResult) Row() harness.Row {
	ratio := s.conn.rate(s.rows) / s.baseline.rate(s.rows)
	return harness.Row{
		Measure: fmt.Sprintf("Connector streaming %s row changes in %s-row transactions", harness.Thousands(s.rows), harness.Thousands(s.txn)),
		Baseline: fmt.Sprintf("pg_recvlogical (pgoutput, proto 1) → /dev/null: **%s rows/s** (%s)",
			harness.Thousands(int(s.baseline.rate(s.rows))), harness.Secs(s.baseline.elapsed)),
		Measured: fmt.Sprintf("**%s rows/s** (%s)", harness.Thousands(int(s.conn.rate(s.rows))), harness.Secs(s.conn.elapsed)),
		Ratio:    fmt.Sprintf("**%.2f**", ratio),
		Target:   fmt.Sprintf("≥ %.1f", TargetStreamRatio),
		Verdict:  harness.RatioVerdict(ratio, TargetStreamRatio),
	}
}

// Detail is the streaming paragraph of the details.
func (s *StreamResult) Detail() string {
	d := fmt.Sprintf("Streaming: %s transactions (%s INSERT, %s UPDATE) wrote %s of WAL in %s with nothing reading. "+
		"pg_recvlogical used %s of CPU. The connector had every event in Kafka after %s and its slot confirmed the end after %s; "+
		"it used %s of CPU (%s per event), peak RSS %s; the broker used %s of CPU.",
		harness.Thousands(s.inserts+s.updates), harness.Thousands(s.inserts), harness.Thousands(s.updates), harness.MiB(s.walBytes), harness.Secs(s.write),
		harness.Secs(s.baseline.cpu), harness.Secs(s.conn.inKafka), harness.Secs(s.conn.elapsed),
		harness.Secs(s.conn.cpu), harness.PerEvent(s.conn.cpu, s.rows), harness.MiB(s.conn.peak), harness.Secs(s.conn.brokerCPU))
	if x := s.discard; x != nil {
		d += fmt.Sprintf("\n- Streaming diagnosis (-diagnose): the connector once more over the same WAL, its events acknowledged as soon as "+
			"they were handed to the writer instead of written to Kafka: %s rows/s (%s, %.2f of pg_recvlogical), %s of CPU (%s per event).",
			harness.Thousands(int(x.rate(s.rows))), harness.Secs(x.elapsed), x.rate(s.rows)/s.baseline.rate(s.rows), harness.Secs(x.cpu), harness.PerEvent(x.cpu, s.rows))
	}
	return d
}

// Row is the snapshot line of the table.
func (s *SnapshotResult) Row() harness.Row {
	ratio := s.conn.rate(s.rows) / s.copy.rate(s.rows)
	return harness.Row{
		Measure: fmt.Sprintf("Connector's initial snapshot of a %s-row table", harness.Thousands(s.rows)),
		Baseline: fmt.Sprintf("`COPY (SELECT * …) TO STDOUT` → discarded: **%s rows/s** (%s)",
			harness.Thousands(int(s.copy.rate(s.rows))), harness.Secs(s.copy.elapsed)),
		Measured: fmt.Sprintf("**%s rows/s** (%s)", harness.Thousands(int(s.conn.rate(s.rows))), harness.Secs(s.conn.elapsed)),
		Ratio:    fmt.Sprintf("**%.2f**", ratio),
		Target:   fmt.Sprintf("≥ %.1f", TargetSnapshotRatio),
		Verdict:  harness.RatioVerdict(ratio, TargetSnapshotRatio),
	}
}

// Detail is the snapshot paragraph of the details.
func (s *SnapshotResult) Detail() string {
	return fmt.Sprintf("Snapshot: the table holds %s (after VACUUM ANALYZE). The connector had every row in Kafka after %s "+
		"and its state showed the snapshot finished after %s (counted from its process start, slot creation included); "+
		"it used %s of CPU (%s per row), peak RSS %s; the broker used %s of CPU.",
		harness.MiB(s.tableBytes), harness.Secs(s.conn.inKafka), harness.Secs(s.conn.elapsed), harness.Secs(s.conn.cpu),
		harness.PerEvent(s.conn.cpu, s.rows), harness.MiB(s.conn.peak), harness.Secs(s.conn.brokerCPU))
}

// Row is the memory line of the table.
func (m *MemoryResult) Row() harness.Row {
	peak := float64(m.conn.peak) / (1 << 20)
	verdict := "met"
	if peak > TargetPeakRSSMiB {
		verdict = fmt.Sprintf("**missed** by %.0f MiB", peak-TargetPeakRSSMiB)
	}
	return harness.Row{
		Measure:  fmt.Sprintf("Connector's peak RSS streaming one %s-row INSERT transaction", harness.Thousands(m.rows)),
		Baseline: "pg_recvlogical, for scale: " + harness.MiB(m.baseline.maxRSS),
		Measured: "**" + harness.MiB(m.conn.peak) + "**",
		Ratio:    "–",
		Target:   fmt.Sprintf("≤ %d MiB", TargetPeakRSSMiB),
		Verdict:  verdict,
	}
}

// Detail is the memory paragraph of the details.
func (m *MemoryResult) Detail() string {
	return fmt.Sprintf("Memory: the transaction wrote %s of WAL. pg_recvlogical drained it in %s (%s rows/s); "+
		"the connector streamed it in %s (%s rows/s, %s of CPU) with peak RSS (VmHWM) %s; %s at exit.",
		harness.MiB(m.walBytes), harness.Secs(m.baseline.elapsed), harness.Thousands(int(m.baseline.rate(m.rows))),
		harness.Secs(m.conn.elapsed), harness.Thousands(int(m.conn.rate(m.rows))), harness.Secs(m.conn.cpu), harness.MiB(m.conn.peak), harness.MiB(m.conn.maxRSS))
}
