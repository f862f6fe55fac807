// Package latency measures the daemon end to end: how long a committed row
// change takes to reach OneSignal at a steady load, from the transaction's
// commit timestamp to the moment the request that carries the change
// arrives at the emulator.
//
// The built binary runs `onesignal-cdc run` against a database of the
// benchmark's, a kfake broker in another process and the emulator with
// OneSignal's limits on (1,000 writes/s per app, 1/s per user), with the
// daemon's default settings. A load generator commits small UPDATE
// transactions at a steady rate, round-robin over a set of users; each row
// change writes a new seq value, which the mapping sends as the user's
// "seq" tag. Beside the daemon, pg_recvlogical reads the same commits from
// a test_decoding slot: its output gives each transaction's commit
// timestamp, the order of the changes, and the baseline: how long Postgres
// takes to hand a committed transaction to a logical replication client.
package latency

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/onesignal-cdc/onesignal-cdc/bench/internal/harness"
	"github.com/onesignal-cdc/onesignal-cdc/emulator"
)

// Options are the load and how long to wait for it.
type Options struct {
	Rate     int           // row changes committed per second
	Duration time.Duration // of the measured load
	Warmup   time.Duration // of load before it, not measured
	Users    int           // the changes go round-robin over this many users
	// Quiet users beside them are changed one at a time, each once every
	// quietEvery: their windows are open when their changes come, so
	// commit to receipt is the pipeline's own delay, without a wait.
	Quiet   int
	Txn     int           // row changes per transaction
	Conns   int           // the load generator's connections
	Daemon  string        // a built onesignal-cdc; "" builds one from the repository
	Drain   time.Duration // how long to wait for the last measured change after the load
	Timeout time.Duration // how long to wait for the daemon to deliver its first change
}

// The workload's names.
const (
	table      = "public.bench_latency"
	userPrefix = "lat-"
	appID      = "7e57be4c-0000-4000-8000-00000000be4c"
	apiKey     = "bench-latency-key"
	// The topics the benchmark taps: the table's change topic and the
	// sink's targets topic, under the config's topic_prefix.
	eventTopic   = "bench." + table
	targetsTopic = "bench.sink-targets"
	// quietEvery is how often each quiet user changes, longer than its
	// one-second window; quietBase is added to their seqs, above any of
	// the load's.
	quietEvery = 2 * time.Second
	quietBase  = int64(1_000_000_000)
	// tail keeps the load on for a while after the measured part, so the
	// last measured changes meet the same traffic as the first.
	tail = 2 * time.Second
)

// Run measures the latency on db. root is the repository, where the daemon
// is built unless opts.Daemon names one.
func Run(ctx context.Context, srv *harness.Server, db *harness.DB, opts Options) (res *Result, err error) {
	if opts.Txn > opts.Users {
		return nil, fmt.Errorf("%d changes per transaction over %d users would change a user twice in one transaction: use fewer changes per transaction or more users", opts.Txn, opts.Users)
	}
	dir, err := os.MkdirTemp("", "onesignal-cdc-bench-latency")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	res = &Result{opts: opts}

	bin := opts.Daemon
	if bin == "" {
		harness.Progress("latency: building onesignal-cdc")
		if bin, res.build, err = harness.BuildDaemon(ctx, srv.Root(), dir); err != nil {
			return nil, err
		}
	}

	err = db.Exec(ctx,
		"CREATE TABLE "+table+" (id integer PRIMARY KEY, external_id text NOT NULL UNIQUE, seq bigint NOT NULL)",
		fmt.Sprintf("INSERT INTO %s SELECT g, '%s' || g, 0 FROM generate_series(0, %d) g", table, userPrefix, opts.Users+opts.Quiet-1))
	if err != nil {
		return nil, err
	}
	recvSlot, daemonSlot := db.Slot("latency_recv"), db.Slot("latency_daemon")
	defer db.DropSlots(context.WithoutCancel(ctx), recvSlot, daemonSlot) //nolint:errcheck // the database's drop retries
	if _, err := db.CreateSlot(ctx, recvSlot, "test_decoding"); err != nil {
		return nil, err
	}

	emuSrv, err := emulator.Start(emulator.Config{AppID: appID, APIKey: apiKey, RateLimits: emulator.RateLimits{Enabled: true}}, "")
	if err != nil {
		return nil, err
	}
	defer emuSrv.Close()
	emu := emuSrv.Emulator()
	for u := range opts.Users + opts.Quiet {
		emu.AddUser(userPrefix+strconv.Itoa(u), nil) // known to OneSignal: every call is one update
	}
	rec := newReceipts(appID)
	emu.OnArrival(rec.note)

	br, err := harness.StartBroker(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = br.Stop(10 * time.Second) }()

	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(daemonConfig(db.DSN, daemonSlot, br.Brokers[0], emuSrv.URL())), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "daemon.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "run", "--config", cfg)
	cmd.Env = append(os.Environ(), "ONESIGNAL_CDC_OPS_LISTEN=127.0.0.1:0")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	daemon, err := harness.Start("onesignal-cdc run", cmd)
	if err != nil {
		return nil, err
	}
	daemonStopped := false
	defer func() {
		if !daemonStopped {
			_ = daemon.Stop(30 * time.Second)
		}
		if err != nil {
			printTail(logPath)
		}
	}()

	stream, recv, err := startRecvlogical(srv, db, recvSlot)
	if err != nil {
		return nil, err
	}
	defer func() { _ = recv.Stop(10 * time.Second) }()

	harness.Progress("latency: waiting for the daemon to deliver a first change")
	if err := waitLive(ctx, db, daemonSlot, rec, opts.Timeout, daemon, recv); err != nil {
		return nil, err
	}

	tapCtx, stopTaps := context.WithCancel(ctx)
	var taps sync.WaitGroup
	defer taps.Wait()
	defer stopTaps()
	events, err := startTap(tapCtx, &taps, br.Brokers[0], eventTopic, eventSeq)
	if err != nil {
		return nil, err
	}
	contributions, err := startTap(tapCtx, &taps, br.Brokers[0], targetsTopic, contributionSeq)
	if err != nil {
		return nil, err
	}

	total := opts.Warmup + opts.Duration + tail
	harness.Progress("latency: committing %d row changes/s in %d-row transactions over %d users for %s (%s warm-up, %s measured, %s more)",
		opts.Rate, opts.Txn, opts.Users, total, opts.Warmup, opts.Duration, tail)
	txns := int(total.Seconds() * float64(opts.Rate) / float64(opts.Txn))
	first := int(opts.Warmup.Seconds() * float64(opts.Rate) / float64(opts.Txn))
	last := first + int(opts.Duration.Seconds()*float64(opts.Rate)/float64(opts.Txn)) // exclusive
	if err := load(ctx, db, opts, txns); err != nil {
		return nil, err
	}
	lo, hi := int64(first*opts.Txn)+1, int64(last*opts.Txn) // the measured seqs

	harness.Progress("latency: load done; waiting for every measured change to reach the emulator")
	deadline := time.Now().Add(opts.Drain)
	var m measurement
	for {
		txs, derr := stream.decoded()
		if derr != nil {
			return nil, derr
		}
		ev, everr := events.times()
		tg, tgerr := contributions.times()
		if err := errors.Join(everr, tgerr); err != nil {
			return nil, err
		}
		m = measure(txs, rec.all(), lo, hi, ev, tg)
		if m.decoded == hi-lo+1 && m.undelivered == 0 && m.quietUndelivered == 0 { // the quiet users' too
			break
		}
		if err := errors.Join(daemon.Exited(), recv.Exited()); err != nil {
			return nil, err
		}
		if time.Now().After(deadline) {
			harness.Progress("latency: after %s, %d of the %d measured changes were decoded, %d not delivered (and %d of the quiet users')", opts.Drain, m.decoded, hi-lo+1, m.undelivered, m.quietUndelivered)
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	stopTaps()
	res.m, res.stats = m, emu.Stats()

	daemonStopped = true
	if err := daemon.Stop(30 * time.Second); err != nil {
		return nil, fmt.Errorf("onesignal-cdc run did not stop cleanly: %w", err)
	}
	res.daemonCPU, res.daemonRSS = daemon.Usage()
	_ = br.Stop(10 * time.Second)
	res.brokerCPU, _ = br.Usage()
	return res, nil
}

// daemonConfig is the daemon's configuration: its defaults, but for what
// the benchmark must say.
func daemonConfig(dsn, slot, brokers, apiURL string) string {
	q := strconv.Quote
	return `postgres:
  dsn: ` + q(dsn) + `
  slot: ` + q(slot) + `
  publication: bench_latency
  snapshot: never
kafka:
  brokers: [` + q(brokers) + `]
  topic_prefix: bench
onesignal:
  base_url: ` + q(apiURL) + `
  app_id: ` + q(appID) + `
  api_key: ` + q(apiKey) + `
mapping:
  users:
    table: ` + table + `
    external_id: external_id
    tags:
      seq: ""
log:
  level: warn
`
}

// startRecvlogical streams the slot with pg_recvlogical into a decodeStream.
func startRecvlogical(srv *harness.Server, db *harness.DB, slot string) (*decodeStream, *harness.Process, error) {
	prog, err := srv.Program("pg_recvlogical")
	if err != nil {
		return nil, nil, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(prog, "--dbname", db.DSN, "--slot", slot, "--start", "--no-loop", "--file", "-", "--fsync-interval", "0",
		"--option", "include-timestamp=1", "--option", "skip-empty-xacts=1")
	cmd.Env = append(os.Environ(), "PGTZ=UTC", "PGDATESTYLE=ISO")
	cmd.Stdout, cmd.Stderr = pw, os.Stderr
	p, err := harness.Start("pg_recvlogical", cmd)
	pw.Close()
	if err != nil {
		pr.Close()
		return nil, nil, err
	}
	d := &decodeStream{table: table, now: time.Now}
	go func() {
		defer pr.Close()
		d.read(pr)
	}()
	return d, p, nil
}

// waitLive waits until the daemon streams from its slot, then sets a
// probe user's seq to -1, -2, … every few seconds until the emulator has
// one: the consumer group has joined and the whole pipeline is warm.
func waitLive(ctx context.Context, db *harness.DB, slot string, rec *receipts, timeout time.Duration, procs ...*harness.Process) error {
	conn, err := db.Connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	deadline := time.Now().Add(timeout)
	streaming := false
	var probe int64
	var nextProbe time.Time
	for {
		if !streaming {
			err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = $1)`, slot).Scan(&streaming)
			if err != nil {
				return err
			}
		}
		if streaming && time.Now().After(nextProbe) {
			probe--
			if _, err := conn.Exec(ctx, "UPDATE "+table+" SET seq = $1 WHERE id = 0", probe); err != nil {
				return err
			}
			nextProbe = time.Now().Add(5 * time.Second)
		}
		for _, a := range rec.all() {
			if a.user == 0 && a.seq < 0 {
				return nil
			}
		}
		for _, p := range procs {
			if err := p.Exited(); err != nil {
				return err
			}
		}
		if time.Now().After(deadline) {
			if !streaming {
				return fmt.Errorf("the daemon was not streaming from slot %s within %s", slot, timeout)
			}
			return fmt.Errorf("the daemon delivered none of its first %d changes within %s of starting", -probe, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// load commits txns transactions at opts.Rate row changes per second:
// transaction k updates the rows of changes k·Txn+1 … (k+1)·Txn, change n
// setting seq = n on the row of user (n-1) mod Users. A scheduler hands
// each transaction to the next free connection at its time; when all are
// busy the transaction waits, and the achieved rate shows it.
func load(ctx context.Context, db *harness.DB, opts Options, txns int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan int, opts.Conns)
	errs := make(chan error, opts.Conns+1) // the quiet users' connection too
	var wg sync.WaitGroup
	for range opts.Conns {
		conn, err := db.Connect(ctx)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close(context.WithoutCancel(ctx))
			ids, seqs := make([]int32, opts.Txn), make([]int64, opts.Txn)
			for k := range jobs {
				for i := range opts.Txn {
					n := int64(k*opts.Txn + i + 1)
					ids[i], seqs[i] = int32((n-1)%int64(opts.Users)), n
				}
				_, err := conn.Exec(ctx, "UPDATE "+table+" AS t SET seq = v.seq FROM unnest($1::integer[], $2::bigint[]) AS v(id, seq) WHERE t.id = v.id", ids, seqs)
				if err != nil {
					errs <- fmt.Errorf("load transaction %d: %w", k, err)
					cancel()
					return
				}
			}
		}()
	}
	interval := time.Duration(float64(time.Second) * float64(opts.Txn) / float64(opts.Rate))
	if opts.Quiet > 0 {
		conn, err := db.Connect(ctx)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close(context.WithoutCancel(ctx))
			if err := quiet(ctx, conn, opts.Users, opts.Quiet, time.Duration(txns)*interval); err != nil {
				errs <- err
				cancel()
			}
		}()
	}
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
schedule:
	for k := range txns {
		if wait := time.Until(start.Add(time.Duration(k) * interval)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				break schedule
			case <-timer.C:
			}
		}
		select {
		case <-ctx.Done():
			break schedule
		case jobs <- k:
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return ctx.Err()
	}
}

// quiet changes the quiet users, ids first … first+n-1, one at a time
// and each once every quietEvery, for d: change k sets seq quietBase+k.
func quiet(ctx context.Context, conn *pgx.Conn, first, n int, d time.Duration) error {
	interval := quietEvery / time.Duration(n)
	start := time.Now()
	for k := 0; time.Since(start) < d; k++ {
		if wait := time.Until(start.Add(time.Duration(k) * interval)); wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
		if _, err := conn.Exec(ctx, "UPDATE "+table+" SET seq = $1 WHERE id = $2", quietBase+int64(k), first+k%n); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("quiet user's change %d: %w", k, err)
		}
	}
	return nil
}

// printTail shows the end of the daemon's log on stderr.
func printTail(path string) {
	data, err := os.ReadFile(path)
	if err != nil || len(data) == 0 {
		return
	}
	if len(data) > 4096 {
		data = data[len(data)-4096:]
	}
	fmt.Fprintf(os.Stderr, "the daemon's log (last 4 kB):\n%s\n", data)
}
