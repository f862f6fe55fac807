// Command connector measures the connector against what its source and its
// transport can do on the same machine, in one run over one workload, and
// prints each figure beside its baseline:
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
//     one N-row INSERT transaction.
//
// The connector runs in a process of its own (this binary, re-executed),
// and so does the broker (kfake, which keeps every record in memory), so
// the memory figure is the connector's alone. Wall-clock times include
// each consumer's start-up: connecting, checks, slot look-ups.
//
// It starts a throwaway PostgreSQL through scripts/lib.sh (fsync=off,
// full_page_writes=off), or uses the server at $ONESIGNAL_CDC_BENCH_PG, in
// a database it creates and drops. It writes nothing into the repository
// unless given -write FILE.
//
// Usage:
//
//	go run ./bench/connector [-rows 1000000] [-txn 1000] [-phases stream,snapshot,memory]
//	                         [-write docs/benchmarks.md]
//
// To find where the time goes: -cpuprofile and -blockprofile profile the
// connector process; -diagnose streams the workload once more with events
// acknowledged at once instead of written to Kafka, and prints how the
// connector's Kafka writes went. -writer-batch and
// -connector-env try settings other than the daemon's; the report marks
// such a run as an experiment.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Targets from issue 3.
const (
	targetStreamRatio   = 0.8
	targetSnapshotRatio = 0.6
	targetPeakRSSMB     = 150 // MiB
)

// options are the command's flags.
type options struct {
	rows         int
	txn          int
	phases       map[string]bool
	cpuProfile   string
	blockProfile string
	diagnose     bool
	connectorEnv []string // added to the connector process's environment
	writerBatch  int      // the Kafka writer's BatchSize; 0: the daemon's
	write        string
	timeout      time.Duration
	args         []string // as given, for the report
}

func main() {
	child := flag.String("child", "", "internal: run as the `broker` or `connector` process of a benchmark")
	rows := flag.Int("rows", 1_000_000, "row changes in the streaming workload; rows in the snapshot table and in the memory test's transaction")
	txn := flag.Int("txn", 1000, "rows per transaction in the streaming workload")
	phases := flag.String("phases", "stream,snapshot,memory", "which measurements to run, comma-separated")
	cpuProfile := flag.String("cpuprofile", "", "write CPU profiles of the connector process to `PREFIX`.stream.pprof and PREFIX.snapshot.pprof")
	blockProfile := flag.String("blockprofile", "", "write blocking profiles of the connector process to `PREFIX`.stream.pprof and PREFIX.snapshot.pprof")
	diagnose := flag.Bool("diagnose", false, "also stream the workload once more with the connector's events acknowledged at once instead of written to Kafka, and print statistics of the Kafka writes")
	var connectorEnv envList
	flag.Var(&connectorEnv, "connector-env", "set `NAME=VALUE` in the connector process's environment only, e.g. GOGC=400 (repeatable)")
	writerBatch := flag.Int("writer-batch", 0, "experiment: the connector's Kafka writer BatchSize (default: the daemon's, broker.WriterBatchSize)")
	write := flag.String("write", "", "also write the results into `FILE` (markdown), between its bench markers")
	timeout := flag.Duration("timeout", 30*time.Minute, "give up on any one wait after this long")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *child != "" {
		if err := runChild(ctx, *child); err != nil {
			fmt.Fprintf(os.Stderr, "bench %s: %v\n", *child, err)
			os.Exit(1)
		}
		return
	}

	opts := options{
		rows: *rows, txn: *txn, phases: map[string]bool{},
		cpuProfile: *cpuProfile, blockProfile: *blockProfile, diagnose: *diagnose,
		connectorEnv: connectorEnv, writerBatch: *writerBatch,
		write: *write, timeout: *timeout, args: os.Args[1:],
	}
	for _, p := range strings.Split(*phases, ",") {
		switch p = strings.TrimSpace(p); p {
		case "stream", "snapshot", "memory":
			opts.phases[p] = true
		case "":
		default:
			fmt.Fprintf(os.Stderr, "bench: unknown phase %q (stream, snapshot, memory)\n", p)
			os.Exit(2)
		}
	}
	if opts.rows <= 0 || opts.txn <= 0 || len(opts.phases) == 0 {
		fmt.Fprintln(os.Stderr, "bench: -rows and -txn must be positive, and -phases must name at least one phase")
		os.Exit(2)
	}
	if opts.write != "" {
		if err := writeResults(opts.write, ""); err != nil { // before minutes of work, not after
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(2)
		}
	}
	if err := runBench(ctx, opts); err != nil {
		if errors.Is(err, context.Canceled) {
			err = errors.New("interrupted")
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// runBench sets up the database, runs the phases asked for and reports.
func runBench(ctx context.Context, opts options) (err error) {
	rep := &report{opts: opts, started: time.Now(), loadBefore: loadAverage()}
	srv, err := startServer(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := srv.stop(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	db, err := srv.createDatabase(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := db.drop(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	rep.server = srv.describe
	if rep.pgVersion, err = db.version(ctx); err != nil {
		return err
	}

	b := &bench{opts: opts, srv: srv, db: db}
	if opts.phases["stream"] {
		if rep.stream, err = b.streaming(ctx); err != nil {
			return fmt.Errorf("streaming: %w", err)
		}
	}
	if opts.phases["snapshot"] {
		if rep.snapshot, err = b.snapshot(ctx); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
	}
	if opts.phases["memory"] {
		if rep.memory, err = b.memory(ctx); err != nil {
			return fmt.Errorf("memory: %w", err)
		}
	}
	rep.finished = time.Now()
	rep.loadAfter = loadAverage()

	md := rep.markdown()
	fmt.Println()
	fmt.Print(md)
	if opts.write != "" {
		if err := writeResults(opts.write, md); err != nil {
			return err
		}
		progress("wrote the results into %s", opts.write)
	}
	return nil
}

// progress tells the operator what the run is doing.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// envList is a repeatable NAME=VALUE flag.
type envList []string

func (l *envList) String() string { return strings.Join(*l, " ") }

func (l *envList) Set(v string) error {
	if name, _, ok := strings.Cut(v, "="); !ok || name == "" {
		return fmt.Errorf("%q is not NAME=VALUE", v)
	}
	*l = append(*l, v)
	return nil
}
