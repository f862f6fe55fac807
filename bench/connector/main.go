// Command connector measures the connector alone against what its source
// can do on the same machine, with flags to find where its time goes:
// streaming against pg_recvlogical, the initial snapshot against COPY, and
// its peak memory on one big transaction (package connbench says how).
// `go run ./bench` runs the same measurements with every other benchmark
// of the project and writes docs/benchmarks.md; this command only prints.
//
// It starts a throwaway PostgreSQL through scripts/lib.sh (fsync=off,
// full_page_writes=off), or uses the server at $ONESIGNAL_CDC_BENCH_PG, in
// a database it creates and drops.
//
// Usage:
//
//	go run ./bench/connector [-rows 1000000] [-txn 1000] [-phases stream,snapshot,memory]
//
// To find where the time goes: -cpuprofile and -blockprofile profile the
// connector process; -diagnose streams the workload once more with events
// acknowledged at once instead of written to Kafka, and prints how the
// connector's Kafka writes went. -writer-batch and -connector-env try
// settings other than the daemon's; the report marks such a run as an
// experiment.
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

	"github.com/onesignal-cdc/onesignal-cdc/bench/internal/connbench"
	"github.com/onesignal-cdc/onesignal-cdc/bench/internal/harness"
	"github.com/onesignal-cdc/onesignal-cdc/bench/internal/peers"
)

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
	timeout := flag.Duration("timeout", 30*time.Minute, "give up on any one wait after this long")
	snapParallel := flag.String("snapshot-parallelism", "1,2", "the postgres.snapshot_parallelism values the snapshot is measured at, comma-separated; the first is the table's")
	peersFlag := flag.Bool("peers", false, "also stream the workload with github.com/xataio/pgstream "+peers.PgstreamVersion+" (built once in a scratch module and cached)")
	pgstreamBin := flag.String("pgstream", "", "a built pgstream binary for -peers (default: build and cache one)")
	flag.Parse()
	parallelism, err := connbench.ParseParallelism(*snapParallel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *child != "" {
		if err := connbench.RunChild(ctx, *child); err != nil {
			fmt.Fprintf(os.Stderr, "bench %s: %v\n", *child, err)
			os.Exit(1)
		}
		return
	}

	opts := connbench.Options{
		Rows: *rows, Txn: *txn, BigTxn: *rows,
		CPUProfile: *cpuProfile, BlockProfile: *blockProfile, Diagnose: *diagnose,
		ConnectorEnv: connectorEnv, WriterBatch: *writerBatch, Timeout: *timeout, SnapshotParallelism: parallelism, Peers: *peersFlag, PgstreamBin: *pgstreamBin,
	}
	run := map[string]bool{}
	for _, p := range strings.Split(*phases, ",") {
		switch p = strings.TrimSpace(p); p {
		case "stream", "snapshot", "memory":
			run[p] = true
		case "":
		default:
			fmt.Fprintf(os.Stderr, "bench: unknown phase %q (stream, snapshot, memory)\n", p)
			os.Exit(2)
		}
	}
	if opts.Rows <= 0 || opts.Txn <= 0 || len(run) == 0 {
		fmt.Fprintln(os.Stderr, "bench: -rows and -txn must be positive, and -phases must name at least one phase")
		os.Exit(2)
	}
	if err := runBench(ctx, opts, run); err != nil {
		if errors.Is(err, context.Canceled) {
			err = errors.New("interrupted")
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// runBench sets up the database, runs the phases asked for and prints the
// table.
func runBench(ctx context.Context, opts connbench.Options, run map[string]bool) (err error) {
	started, loadBefore := time.Now(), harness.LoadAverage()
	srv, err := harness.StartServer(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := srv.Stop(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	db, err := srv.CreateDatabase(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := db.Drop(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	pgVersion, err := db.Version(ctx)
	if err != nil {
		return err
	}

	b := &connbench.Bench{Opts: opts, Srv: srv, DB: db}
	type result interface {
		Row() harness.Row
		Detail() string
	}
	var results []result
	if run["stream"] {
		r, err := b.Streaming(ctx)
		if err != nil {
			return fmt.Errorf("streaming: %w", err)
		}
		results = append(results, r)
		if _, ok := r.PeerRow(); ok {
			results = append(results, streamPeer{r})
		}
	}
	if run["snapshot"] {
		r, err := b.Snapshot(ctx)
		if err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		results = append(results, r)
	}
	if run["memory"] {
		r, err := b.Memory(ctx)
		if err != nil {
			return fmt.Errorf("memory: %w", err)
		}
		results = append(results, r)
	}

	var out strings.Builder
	fmt.Fprintf(&out, "\nCommand: `%s`\n\n", harness.Command("./bench/connector", os.Args[1:]))
	fmt.Fprintf(&out, "- Date: %s (the run took %s)\n", started.UTC().Format("2006-01-02 15:04 MST"), time.Since(started).Round(time.Second))
	fmt.Fprintf(&out, "- Machine: %s; load average %s before the run, %s after\n", harness.Machine(), loadBefore, harness.LoadAverage())
	fmt.Fprintf(&out, "- %s; PostgreSQL %s, %s\n", harness.GoVersion(), pgVersion, srv.Describe)
	fmt.Fprintf(&out, "- %s\n", connbench.Setup())
	if x := opts.Experiments(); x != "" {
		fmt.Fprintf(&out, "- **Experiment, not the daemon's wiring:** %s\n", x)
	}
	rows := make([]harness.Row, len(results))
	for i, r := range results {
		rows[i] = r.Row()
	}
	out.WriteString("\n" + harness.Table(rows) + "\nDetails:\n\n")
	for _, r := range results {
		if d := r.Detail(); d != "" {
			out.WriteString("- " + d + "\n")
		}
	}
	fmt.Print(out.String())
	return nil
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

// streamPeer is pgstream's line beside the connector's (-peers).
type streamPeer struct{ *connbench.StreamResult }

func (s streamPeer) Row() harness.Row { r, _ := s.PeerRow(); return r }
func (s streamPeer) Detail() string   { return "" }
