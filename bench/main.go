// Command bench runs every benchmark of the project and prints one table,
// each figure beside its baseline from the same run, with its target and a
// verdict, then writes it into docs/benchmarks.md between its markers:
//
//   - the connector streaming against pg_recvlogical, its initial snapshot
//     against COPY, and its peak RSS on a 1,000,000-row transaction
//     (package connbench), with flags to find where its time goes;
//   - the sink's OneSignal calls per change, its sustained calls/s
//     against the app limit and its requests per new user in a bulk load
//     (the go test benchmarks in sink/, package sinkbench);
//   - 1, 2 and 3 sinks of one group on one backlog: the group's calls/s
//     against the app limit they share (sinkbench.RunGroup);
//   - the sink's peak RSS holding 1,000,000 users' desired states, the
//     built daemon running as `onesignal-cdc sink` (package sinkmem);
//   - the same with 1,000,000 new users in the user model and OneSignal
//     answering 503 for the whole load, then their drain (sinkmem's
//     RunAPIDown, the sinkdown phase);
//   - the end-to-end latency, commit to OneSignal, of the built daemon at a
//     steady 2,000 row changes/s, against pg_recvlogical's commit to
//     decode (package latency).
//
// It starts a throwaway PostgreSQL from Go (internal/pgtest; scripts/lib.sh
// installs Debian's package when none is), or uses the server at
// $ONESIGNAL_CDC_BENCH_PG, in a database it creates and drops.
// The default sizes take 8–12 minutes on two shared cores; the flags make
// bigger runs.
//
// Usage:
//
//	go run ./bench                       # everything; writes docs/benchmarks.md
//	go run ./bench -write ''             # everything; only prints
//	go run ./bench -phases sink,latency  # some (prints; -write FILE to write anyway)
//	go run ./bench -rows 1000000 -latency-duration 2m
//	go run ./bench -phases stream -cpuprofile /tmp/p -diagnose
//
// To find where the connector's time goes: -cpuprofile and -blockprofile
// profile the connector process; -diagnose streams the workload once more
// with its events acknowledged at once instead of written to Kafka, and
// prints how its Kafka writes went. -connector-env tries settings other
// than the daemon's; the report marks such a run as an
// experiment. A run with any of these flags, like a run of some benchmarks
// only, writes nothing unless given -write.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/bench/internal/connbench"
	"github.com/onesignal-cdc/onesignal-cdc/bench/internal/harness"
	"github.com/onesignal-cdc/onesignal-cdc/bench/internal/latency"
	"github.com/onesignal-cdc/onesignal-cdc/bench/internal/peers"
	"github.com/onesignal-cdc/onesignal-cdc/bench/internal/sinkbench"
	"github.com/onesignal-cdc/onesignal-cdc/bench/internal/sinkmem"
)

// The phases, in the order they run.
var allPhases = []string{"stream", "snapshot", "memory", "sink", "sinkgroup", "sinkmem", "sinkdown", "latency"}

// The markers between which -write puts the results; the rest of the file
// is left as it is.
const (
	beginMarker = "<!-- BEGIN go run ./bench output: regenerate with the command below -->"
	endMarker   = "<!-- END go run ./bench output -->"
)

// options are the command's flags.
type options struct {
	phases  map[string]bool
	conn    connbench.Options
	latency latency.Options
	// bulkUsers is how many new users the sink's bulk-load benchmark loads.
	bulkUsers int
	sinkmem   sinkmem.Options
	sinkdown  sinkmem.Options
	daemon    string // -daemon: a built onesignal-cdc, or "" to build one
	write     string
}

func main() {
	child := flag.String("child", "", "internal: run as the `broker` or `connector` process of a benchmark")
	phases := flag.String("phases", strings.Join(allPhases, ","), "which benchmarks to run, comma-separated")
	rows := flag.Int("rows", 500_000, "row changes streamed, and rows in the snapshot's table")
	txn := flag.Int("txn", 1000, "rows per transaction of the streaming workload")
	bigTxn := flag.Int("big-txn", 1_000_000, "rows of the one transaction whose streaming the memory measurement watches")
	rate := flag.Int("latency-rate", 2000, "row changes committed per second while the latency is measured")
	duration := flag.Duration("latency-duration", 30*time.Second, "how long the latency is measured")
	warmup := flag.Duration("latency-warmup", 5*time.Second, "load before the latency is measured")
	users := flag.Int("latency-users", 500, "users the latency workload's changes go round-robin over")
	latencyTxn := flag.Int("latency-txn", 10, "row changes per transaction of the latency workload")
	quietUsers := flag.Int("latency-quiet", 40, "quiet users beside the latency workload, each changed once every 2 s: their changes find their window open and measure the pipeline's own delay")
	bulkUsers := flag.Int("sink-bulk-users", 100_000, "new users the sink's bulk-load benchmark loads")
	sinkUsers := flag.Int("sink-users", 1_000_000, "distinct users whose desired states the sink's memory measurement has it hold")
	var sinkEnv envList
	sinkDownUsers := flag.Int("sink-down-users", 100_000, "new users in the backlog of the sink's memory measurement with OneSignal down (sinkdown); its drain takes users ÷ 900/s")
	flag.Var(&sinkEnv, "sinkmem-env", "an experiment: set `NAME=VALUE` in the environment of the sink whose memory is measured, only, e.g. GOMEMLIMIT=150MiB (repeatable)")
	conns := flag.Int("latency-conns", 4, "connections of the latency workload's load generator")
	drain := flag.Duration("latency-drain", time.Minute, "how long to wait for the last measured change to reach the emulator")
	daemon := flag.String("daemon", "", "a built onesignal-cdc for the sink's memory and the latency (default: build one from the repository)")
	write := flag.String("write", "docs/benchmarks.md", "write the results into `FILE` (markdown, relative to the repository), between its markers; '' only prints")
	timeout := flag.Duration("timeout", 30*time.Minute, "give up on any one wait of the connector's measurements, or on the sink's memory measurement, after this long")
	snapRounds := flag.Int("snapshot-rounds", 3, "how many times the snapshot's comparison is made (the baseline, the connector at the first parallelism, the same bytes, in turn); the table shows the median round")
	snapParallel := flag.String("snapshot-parallelism", "1,2", "the postgres.snapshot_parallelism values the connector's snapshot is measured at, comma-separated; the first is the table's")
	peersFlag := flag.Bool("peers", false, "also stream the workload with github.com/xataio/pgstream "+peers.PgstreamVersion+" (wal2json, installed if missing), built once in a scratch module (10–15 minutes the first time) and cached")
	pgstreamBin := flag.String("pgstream", "", "a built pgstream binary for -peers (default: build and cache one)")
	cpuProfile := flag.String("cpuprofile", "", "write CPU profiles of the connector process to `PREFIX`.stream.pprof and PREFIX.snapshot-pN.pprof (N: the snapshot's parallelism; PREFIX.stream-discard.pprof with -diagnose)")
	brokerProfile := flag.String("broker-cpuprofile", "", "write CPU profiles of every broker process (kfake, beside the measured one) to `PREFIX`.broker-N.pprof, N counting the brokers in the order they start")
	blockProfile := flag.String("blockprofile", "", "write blocking profiles of the connector process to `PREFIX`.stream.pprof and PREFIX.snapshot-pN.pprof, as -cpuprofile")
	diagnose := flag.Bool("diagnose", false, "also stream the workload once more with the connector's events acknowledged at once instead of written to Kafka, and print statistics of the connector's Kafka writes")
	var connectorEnv envList
	flag.Var(&connectorEnv, "connector-env", "an experiment: set `NAME=VALUE` in the connector process's environment only, e.g. GOGC=400 (repeatable)")
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

	opts := options{
		phases: map[string]bool{},
		conn: connbench.Options{
			Rows: *rows, Txn: *txn, BigTxn: *bigTxn, Timeout: *timeout, SnapshotParallelism: parallelism, SnapshotRounds: *snapRounds, Peers: *peersFlag, PgstreamBin: *pgstreamBin,
			CPUProfile: *cpuProfile, BlockProfile: *blockProfile, Diagnose: *diagnose, ConnectorEnv: connectorEnv,
		},
		latency: latency.Options{
			Rate: *rate, Duration: *duration, Warmup: *warmup, Users: *users, Quiet: *quietUsers, Txn: *latencyTxn, Conns: *conns,
			Daemon: *daemon, Drain: *drain, Timeout: 2 * time.Minute,
		},
		bulkUsers: *bulkUsers,
		sinkmem:   sinkmem.Options{Users: *sinkUsers, Env: sinkEnv, Timeout: *timeout, Stall: 2 * time.Minute},
		sinkdown:  sinkmem.Options{Users: *sinkDownUsers, Env: sinkEnv, Timeout: max(*timeout, time.Duration(*sinkDownUsers/900+600)*time.Second)},
		daemon:    *daemon,
		write:     *write,
	}
	for _, p := range strings.Split(*phases, ",") {
		switch p = strings.TrimSpace(p); {
		case slices.Contains(allPhases, p):
			opts.phases[p] = true
		case p == "":
		default:
			usage("unknown phase %q (%s)", p, strings.Join(allPhases, ", "))
		}
	}
	if len(opts.phases) == 0 {
		usage("-phases names no benchmark")
	}
	if *rows <= 0 || *txn <= 0 || *bigTxn <= 0 || *rate <= 0 || *users <= 0 || *latencyTxn <= 0 || *conns <= 0 || *duration <= 0 || *bulkUsers <= 0 || *sinkUsers <= 0 {
		usage("sizes, rates and durations must be positive")
	}
	explicit := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	diagnostics := map[string]bool{
		"cpuprofile": *cpuProfile != "", "blockprofile": *blockProfile != "", "diagnose": *diagnose,
		"broker-cpuprofile": *brokerProfile != "",
		"connector-env":     len(connectorEnv) > 0,
	}
	if err := checkPhaseFlags(diagnostics, opts.phases); err != nil {
		usage("%v", err)
	}
	diagnosed := false
	for _, on := range diagnostics {
		diagnosed = diagnosed || on
	}
	if !explicit["write"] && (len(opts.phases) < len(allPhases) || diagnosed) {
		// A part of the table does not replace the whole one, nor do
		// figures measured with profiles on or with other settings than
		// the daemon's.
		opts.write = ""
	}
	if opts.write != "" && !filepath.IsAbs(opts.write) {
		root, err := repoRoot()
		if err != nil {
			usage("%v", err)
		}
		opts.write = filepath.Join(root, opts.write)
	}
	if opts.write != "" {
		if err := harness.WriteResults(opts.write, beginMarker, endMarker, ""); err != nil { // before minutes of work, not after
			usage("%v", err)
		}
	}
	harness.BrokerCPUProfile = *brokerProfile
	if err := run(ctx, opts); err != nil {
		if errors.Is(err, context.Canceled) {
			err = errors.New("interrupted")
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// The flags that profile the connector, add a diagnosis to its benchmarks
// or stray from the daemon's settings, and the phases each applies to.
var phaseFlags = map[string][]string{
	"cpuprofile":        {"stream", "snapshot"},
	"blockprofile":      {"stream", "snapshot"},
	"diagnose":          {"stream"},
	"broker-cpuprofile": {"stream", "snapshot", "memory", "sinkmem", "sinkdown", "latency"},
	"connector-env":     {"stream", "snapshot", "memory"},
}

// checkPhaseFlags refuses a flag of phaseFlags set (given[name]) when
// none of its phases runs: it would do nothing.
func checkPhaseFlags(given, phases map[string]bool) error {
	for _, name := range slices.Sorted(maps.Keys(phaseFlags)) {
		if given[name] && !slices.ContainsFunc(phaseFlags[name], func(p string) bool { return phases[p] }) {
			return fmt.Errorf("-%s applies to -phases %s, and none of them runs", name, strings.Join(phaseFlags[name], ","))
		}
	}
	return nil
}

func usage(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(2)
}

// repoRoot finds the repository above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s: run from the repository", dir)
		}
	}
}

// result is one benchmark's line of the table and paragraph of details.
type result interface {
	Row() harness.Row
	Detail() string
}

// run sets up the database, runs the benchmarks asked for and reports.
func run(ctx context.Context, opts options) (err error) {
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

	cb := &connbench.Bench{Opts: opts.conn, Srv: srv, DB: db}
	var built time.Duration // building the daemon, when this run did
	if opts.daemon == "" && (opts.phases["sinkmem"] || opts.phases["sinkdown"] || opts.phases["latency"]) {
		dir, err := os.MkdirTemp("", "onesignal-cdc-bench-daemon")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		harness.Progress("building onesignal-cdc")
		if opts.daemon, built, err = harness.BuildDaemon(ctx, srv.Root(), dir); err != nil {
			return err
		}
	}
	opts.sinkmem.Daemon, opts.sinkdown.Daemon, opts.latency.Daemon = opts.daemon, opts.daemon, opts.daemon
	var results []result
	var loads []string // the 1-minute load as each phase starts
	for _, phase := range allPhases {
		if !opts.phases[phase] {
			continue
		}
		loads = append(loads, fmt.Sprintf("%s %s", phase, strings.Fields(harness.LoadAverage())[0]))
		harness.Progress("%s: starting (load average %s)", phase, harness.LoadAverage())
		var r result
		var err error
		switch phase {
		case "stream":
			var sr *connbench.StreamResult
			if sr, err = cb.Streaming(ctx); err == nil {
				results = append(results, sr)
				if _, ok := sr.PeerRow(); ok {
					results = append(results, streamPeer{sr})
				}
			}
		case "snapshot":
			r, err = cb.Snapshot(ctx)
		case "memory":
			r, err = cb.Memory(ctx)
		case "sink":
			var s *sinkbench.Result
			if s, err = sinkbench.Run(ctx, srv.Root(), opts.bulkUsers, os.Stderr); err == nil {
				results = append(results, sinkCalls{s}, sinkSustained{s}, sinkBulk{s}, fixedRow{s.DriftRow(), ""})
			}
		case "sinkgroup":
			var g *sinkbench.GroupResult
			if g, err = sinkbench.RunGroup(ctx, srv.Root(), os.Stderr); err == nil {
				for i, row := range g.Rows() {
					detail := ""
					if i == 0 {
						detail = g.Detail()
					}
					results = append(results, fixedRow{row, detail})
				}
			}
		case "sinkmem":
			r, err = sinkmem.Run(ctx, opts.sinkmem)
		case "sinkdown":
			r, err = sinkmem.RunAPIDown(ctx, opts.sinkdown)
		case "latency":
			var l *latency.Result
			if l, err = latency.Run(ctx, srv, db, opts.latency); err == nil {
				results = append(results, l, fixedRow{l.OwnRow(), ""})
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %w", phase, err)
		}
		if r != nil {
			results = append(results, r)
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "Command: `%s`\n\n", harness.Command("./bench", os.Args[1:]))
	fmt.Fprintf(&b, "- Date: %s (the run took %s)\n", started.UTC().Format("2006-01-02 15:04 MST"), time.Since(started).Round(time.Second))
	fmt.Fprintf(&b, "- Machine: %s; load average (1, 5, 15 min) %s before the run, %s after; 1-minute load as each benchmark began: %s\n",
		harness.Machine(), loadBefore, harness.LoadAverage(), strings.Join(loads, ", "))
	fmt.Fprintf(&b, "- %s; PostgreSQL %s, %s\n", harness.GoVersion(), pgVersion, srv.Describe)
	if opts.phases["stream"] || opts.phases["snapshot"] || opts.phases["memory"] {
		fmt.Fprintf(&b, "- %s\n", connbench.Setup())
		if x := opts.conn.Experiments(); x != "" {
			fmt.Fprintf(&b, "- **Experiment, not the daemon's wiring:** %s\n", x)
		}
	}
	if opts.phases["sink"] {
		fmt.Fprintf(&b, "- %s\n", sinkbench.Setup())
	}
	if opts.phases["sinkmem"] || opts.phases["sinkdown"] {
		fmt.Fprintf(&b, "- %s\n", sinkmem.Setup())
	}
	if opts.phases["latency"] {
		fmt.Fprintf(&b, "- %s\n", latency.Setup())
	}
	if built > 0 {
		fmt.Fprintf(&b, "- The daemon's binary was built from the repository for the run (`go build ./cmd/onesignal-cdc`, %s)\n", harness.Secs(built))
	}
	rows := make([]harness.Row, len(results))
	for i, r := range results {
		rows[i] = r.Row()
	}
	b.WriteString("\n" + harness.Table(rows) + "\nDetails:\n\n")
	for _, r := range results {
		if d := r.Detail(); d != "" {
			b.WriteString("- " + d + "\n")
		}
	}
	md := b.String()
	fmt.Print("\n" + md)
	if opts.write != "" {
		if err := harness.WriteResults(opts.write, beginMarker, endMarker, md); err != nil {
			return err
		}
		harness.Progress("wrote the results into %s", opts.write)
	}
	return nil
}

// sinkCalls, sinkSustained and sinkBulk are the three lines of the sink's
// results; the details are told once, with the first.
type (
	sinkCalls     struct{ *sinkbench.Result }
	sinkSustained struct{ *sinkbench.Result }
	sinkBulk      struct{ *sinkbench.Result }
)

// streamPeer is pgstream's line beside the connector's (-peers); its
// details are in the streaming paragraph.
type streamPeer struct{ *connbench.StreamResult }

func (s streamPeer) Row() harness.Row { r, _ := s.PeerRow(); return r }
func (s streamPeer) Detail() string   { return "" }

func (s sinkCalls) Row() harness.Row     { return s.CallsRow() }
func (s sinkSustained) Row() harness.Row { return s.SustainedRow() }
func (s sinkSustained) Detail() string   { return "" }
func (s sinkBulk) Row() harness.Row      { return s.BulkRow() }
func (s sinkBulk) Detail() string        { return "" }

// fixedRow is a line of the table worked out already, with its detail
// ("" for none).
type fixedRow struct {
	row    harness.Row
	detail string
}

func (f fixedRow) Row() harness.Row { return f.row }
func (f fixedRow) Detail() string   { return f.detail }

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
