package connbench

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/bench/internal/harness"
	"github.com/onesignal-cdc/onesignal-cdc/bench/internal/peers"
	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/connector"
)

// Bench runs the connector's measurements on one database.
type Bench struct {
	Opts Options
	Srv  *harness.Server
	DB   *harness.DB
}

// run is what one consumer did.
type run struct {
	elapsed time.Duration // from its start until it was done
	cpu     time.Duration // user + system CPU time of its process
	maxRSS  int64         // peak resident memory of its process, bytes
	// Connector runs only.
	peak      int64         // VmHWM when it was done, before it stopped
	inKafka   time.Duration // when Kafka first held every event
	events    int64         // events Kafka held at the end
	brokerCPU time.Duration // CPU time of the broker process
	// Snapshot runs only: the mean key and value sizes of its events, from
	// a sample of the first partition.
	keyBytes, valueBytes int
}

func (r run) rate(rows int) float64 { return float64(rows) / r.elapsed.Seconds() }

// StreamResult is the streaming measurement: the same WAL drained by
// pg_recvlogical and by the connector.
type StreamResult struct {
	rows, txn        int
	inserts, updates int
	walBytes         int64
	write            time.Duration
	baseline, conn   run
	discard          *run // -diagnose: the connector without Kafka
	peer             *run // -peers: pgstream
}

// SnapshotResult is the snapshot measurement: COPY against the
// connector's initial snapshot.
type SnapshotResult struct {
	rows       int
	tableBytes int64
	copyText   int64   // the bytes of COPY's text output
	copy       run     // COPY into nothing, for scale
	copyKafka  copyRun // the baseline: COPY's rows through a minimal producer into Kafka
	// copySized is the same producer with each message padded to the size
	// of the connector's events (the first parallelism's): what producing
	// those bytes into this broker costs any snapshotter.
	copySized copyRun
	conns     []snapshotRun
	// rounds are the measurements of the first parallelism, each the
	// baseline, the connector and the same-bytes producer in turn; the
	// fields above hold the median round (by the connector's ratio to the
	// same bytes), which the table shows.
	rounds []snapshotRound
}

// snapshotRound is one round of the snapshot's comparison.
type snapshotRound struct {
	copyKafka, copySized copyRun
	conn                 snapshotRun
}

// sameBytes is the round's connector rate in the same-bytes producer's.
func (r snapshotRound) sameBytes(rows int) float64 {
	return r.conn.rate(rows) / r.copySized.rate(rows)
}

// medianRound returns the index of the round whose ratio to the same
// bytes is the median (the lower one of an even count).
func medianRound(rounds []snapshotRound, rows int) int {
	idx := make([]int, len(rounds))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(rounds[a].sameBytes(rows), rounds[b].sameBytes(rows)) })
	return idx[(len(idx)-1)/2]
}

// snapshotRun is the connector's snapshot at one postgres.snapshot_parallelism.
type snapshotRun struct {
	parallel int
	run
}

// MemoryResult is the memory measurement: the connector's peak RSS while
// it streams one big transaction.
type MemoryResult struct {
	rows           int
	walBytes       int64
	baseline, conn run
}

const (
	topicPrefix = "bench"
	stateTopic  = "bench.connector-state"
	// statusInterval replaces the daemon's 10 s between standby status
	// updates, so the slot shows the connector's progress within 0.1 s
	// instead of up to 10 s late; the connector pays for the extra updates.
	statusInterval = 100 * time.Millisecond
)

// Streaming measures the connector against pg_recvlogical on the same WAL.
func (b *Bench) Streaming(ctx context.Context) (*StreamResult, error) {
	const table, pub = "public.bench_stream", "bench_stream"
	if err := b.DB.Exec(ctx, "CREATE TABLE "+table+" "+tableColumns, "CREATE PUBLICATION "+pub+" FOR TABLE "+table); err != nil {
		return nil, err
	}
	recvSlot, connSlot := b.DB.Slot("stream_recv"), b.DB.Slot("stream_connector")
	defer b.DB.DropSlots(context.WithoutCancel(ctx), recvSlot, connSlot) //nolint:errcheck // the database's drop retries
	start, err := b.DB.CreateSlot(ctx, recvSlot, "pgoutput")
	if err != nil {
		return nil, err
	}
	if _, err := b.DB.CreateSlot(ctx, connSlot, "pgoutput"); err != nil {
		return nil, err
	}
	discardSlot := b.DB.Slot("stream_discard")
	if b.Opts.Diagnose {
		defer b.DB.DropSlots(context.WithoutCancel(ctx), discardSlot) //nolint:errcheck // the database's drop retries
		if _, err := b.DB.CreateSlot(ctx, discardSlot, "pgoutput"); err != nil {
			return nil, err
		}
	}

	peerSlot := b.DB.Slot("stream_pgstream")
	var pgstream string
	if b.Opts.Peers {
		var err error
		if pgstream, err = peers.BuildPgstream(ctx, b.Opts.PgstreamBin); err != nil {
			return nil, err
		}
		if err := peers.EnsureWal2json(ctx, b.Srv, b.DB); err != nil {
			return nil, err
		}
		defer b.DB.DropSlots(context.WithoutCancel(ctx), peerSlot) //nolint:errcheck // the database's drop retries
		if err := peers.InitPgstream(ctx, pgstream, b.DB.DSN, peerSlot); err != nil {
			return nil, err
		}
	}

	res := &StreamResult{rows: b.Opts.Rows, txn: b.Opts.Txn}
	txns := (b.Opts.Rows + b.Opts.Txn - 1) / b.Opts.Txn
	harness.Progress("streaming: writing %d row changes in %d transactions of up to %d rows, nothing reading", b.Opts.Rows, txns, b.Opts.Txn)
	t := time.Now()
	end, inserts, updates, err := b.workload(ctx, table, b.Opts.Rows, b.Opts.Txn)
	if err != nil {
		return nil, err
	}
	res.write = time.Since(t)
	res.walBytes = int64(end - start)
	res.inserts, res.updates = inserts, updates
	if err := b.DB.Exec(ctx, "CHECKPOINT"); err != nil {
		return nil, err
	}

	harness.Progress("streaming: pg_recvlogical drains %s of WAL up to %s", harness.MiB(res.walBytes), end)
	if res.baseline, err = b.recvlogical(ctx, recvSlot, pub, end); err != nil {
		return nil, err
	}
	harness.Progress("streaming: pg_recvlogical took %s (%.0f rows/s); now the connector", res.baseline.elapsed.Round(time.Millisecond), res.baseline.rate(res.rows))
	res.conn, err = b.runConnector(ctx, connectorRun{
		slot: connSlot, publication: pub, table: table, events: int64(b.Opts.Rows), end: end, phase: "stream",
	})
	if err != nil {
		return nil, err
	}
	harness.Progress("streaming: the connector took %s (%.0f rows/s)", res.conn.elapsed.Round(time.Millisecond), res.conn.rate(res.rows))
	if b.Opts.Diagnose {
		harness.Progress("streaming (diagnosis): the connector once more, its events acknowledged at once instead of written to Kafka")
		d, err := b.runConnector(ctx, connectorRun{
			slot: discardSlot, publication: pub, table: table, end: end, discard: true, phase: "stream-discard",
		})
		if err != nil {
			return nil, err
		}
		res.discard = &d
		harness.Progress("streaming (diagnosis): without Kafka the connector took %s (%.0f rows/s)", d.elapsed.Round(time.Millisecond), d.rate(res.rows))
	}
	if b.Opts.Peers {
		harness.Progress("streaming (peers): pgstream %s drains the same WAL into a fresh broker", peers.PgstreamVersion)
		p, err := b.runPgstream(ctx, pgstream, peerSlot, end)
		if err != nil {
			return nil, fmt.Errorf("pgstream: %w", err)
		}
		res.peer = &p
		harness.Progress("streaming (peers): pgstream had every event in Kafka after %s (%.0f rows/s)", p.inKafka.Round(time.Millisecond), float64(res.rows)/p.inKafka.Seconds())
	}
	return res, nil
}

// Snapshot measures COPY of a table against the connector's initial
// snapshot of it.
func (b *Bench) Snapshot(ctx context.Context) (*SnapshotResult, error) {
	const table, pub = "public.bench_snapshot", "bench_snapshot"
	res := &SnapshotResult{rows: b.Opts.Rows}
	harness.Progress("snapshot: loading a table of %d rows", b.Opts.Rows)
	err := b.DB.Exec(ctx, "CREATE TABLE "+table+" "+tableColumns)
	if err == nil {
		err = b.DB.ExecArgs(ctx, insertRows(table), 1, b.Opts.Rows)
	}
	if err == nil {
		// Hint bits and the visibility map set, statistics fresh: a table
		// as it is long after its rows were written, for both readers.
		err = b.DB.Exec(ctx, "VACUUM (ANALYZE) "+table, "CHECKPOINT", "CREATE PUBLICATION "+pub+" FOR TABLE "+table)
	}
	if err != nil {
		return nil, err
	}
	conn, err := b.DB.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := conn.QueryRow(ctx, `SELECT pg_table_size($1::regclass)`, table).Scan(&res.tableBytes); err != nil {
		return nil, err
	}

	harness.Progress("snapshot: COPY (SELECT * FROM %s) TO STDOUT, %s, into nothing", table, harness.MiB(res.tableBytes))
	t := time.Now()
	var text byteCounter
	tag, err := conn.PgConn().CopyTo(ctx, &text, "COPY (SELECT * FROM "+table+") TO STDOUT")
	if err != nil {
		return nil, fmt.Errorf("COPY: %w", err)
	}
	res.copy.elapsed = time.Since(t)
	res.copyText = int64(text)
	if tag.RowsAffected() != int64(b.Opts.Rows) {
		return nil, fmt.Errorf("COPY read %d rows, want %d", tag.RowsAffected(), b.Opts.Rows)
	}
	harness.Progress("snapshot: COPY into nothing took %s (%.0f rows/s)", res.copy.elapsed.Round(time.Millisecond), res.copy.rate(res.rows))
	for round := range max(b.Opts.SnapshotRounds, 1) {
		r, conns, err := b.snapshotRound(ctx, table, pub, round)
		if err != nil {
			return nil, err
		}
		res.rounds = append(res.rounds, r)
		if round == 0 {
			res.conns = conns
		}
	}
	m := res.rounds[medianRound(res.rounds, res.rows)]
	res.copyKafka, res.copySized, res.conns[0] = m.copyKafka, m.copySized, m.conn
	return res, nil
}

// snapshotRound measures the baseline, the connector (at every
// parallelism in the first round, at the first one after) and the same
// bytes, in turn: machine noise then weighs on the three alike.
func (b *Bench) snapshotRound(ctx context.Context, table, pub string, round int) (snapshotRound, []snapshotRun, error) {
	var r snapshotRound
	var err error
	harness.Progress("snapshot (round %d): COPY through a minimal kafka-go producer into a broker", round+1)
	if r.copyKafka, err = b.copyToKafka(ctx, table, 0, 0); err != nil {
		return r, nil, err
	}
	harness.Progress("snapshot: COPY into Kafka took %s (%.0f rows/s), the COPY's backend %s of CPU", r.copyKafka.elapsed.Round(time.Millisecond), r.copyKafka.rate(b.Opts.Rows), r.copyKafka.serverCPU)
	parallelisms := b.Opts.snapshotParallelism()
	if round > 0 {
		parallelisms = parallelisms[:1]
	}
	var conns []snapshotRun
	for _, parallel := range parallelisms {
		harness.Progress("snapshot: the connector's initial snapshot, postgres.snapshot_parallelism %d", parallel)
		phase := fmt.Sprintf("snapshot-p%d", parallel)
		if round > 0 {
			phase += fmt.Sprintf("-r%d", round+1)
		}
		slot := b.DB.Slot(fmt.Sprintf("snapshot_connector_%d_%d", parallel, round)) // the connector creates it
		run, err := b.runConnector(ctx, connectorRun{
			slot: slot, publication: pub, table: table, events: int64(b.Opts.Rows), snapshot: true, phase: phase,
			snapshotParallelism: parallel,
		})
		_ = b.DB.DropSlots(context.WithoutCancel(ctx), slot)
		if err != nil {
			return r, nil, err
		}
		conns = append(conns, snapshotRun{parallel: parallel, run: run})
		harness.Progress("snapshot: the connector took %s (%.0f rows/s), %s of CPU", run.elapsed.Round(time.Millisecond), run.rate(b.Opts.Rows), run.cpu.Round(time.Millisecond))
	}
	r.conn = conns[0]
	harness.Progress("snapshot: COPY through the minimal producer again, keys padded to %d bytes and values to %d, the connector's events' mean sizes", r.conn.keyBytes, r.conn.valueBytes)
	if r.copySized, err = b.copyToKafka(ctx, table, r.conn.keyBytes, r.conn.valueBytes); err != nil {
		return r, nil, err
	}
	harness.Progress("snapshot: COPY of the connector's bytes into Kafka took %s (%.0f rows/s); the connector at %.2f of it", r.copySized.elapsed.Round(time.Millisecond), r.copySized.rate(b.Opts.Rows), r.sameBytes(b.Opts.Rows))
	return r, conns, nil
}

// Memory streams one transaction of BigTxn INSERTs through pg_recvlogical
// and through the connector, whose peak RSS is the figure.
func (b *Bench) Memory(ctx context.Context) (*MemoryResult, error) {
	const table, pub = "public.bench_big", "bench_big"
	if err := b.DB.Exec(ctx, "CREATE TABLE "+table+" "+tableColumns, "CREATE PUBLICATION "+pub+" FOR TABLE "+table); err != nil {
		return nil, err
	}
	recvSlot, connSlot := b.DB.Slot("big_recv"), b.DB.Slot("big_connector")
	defer b.DB.DropSlots(context.WithoutCancel(ctx), recvSlot, connSlot) //nolint:errcheck // the database's drop retries
	start, err := b.DB.CreateSlot(ctx, recvSlot, "pgoutput")
	if err != nil {
		return nil, err
	}
	if _, err := b.DB.CreateSlot(ctx, connSlot, "pgoutput"); err != nil {
		return nil, err
	}
	res := &MemoryResult{rows: b.Opts.BigTxn}
	harness.Progress("memory: writing one transaction of %d INSERTs, nothing reading", b.Opts.BigTxn)
	end, _, _, err := b.workload(ctx, table, b.Opts.BigTxn, b.Opts.BigTxn)
	if err != nil {
		return nil, err
	}
	res.walBytes = int64(end - start)
	if err := b.DB.Exec(ctx, "CHECKPOINT"); err != nil {
		return nil, err
	}
	harness.Progress("memory: pg_recvlogical drains %s of WAL", harness.MiB(res.walBytes))
	if res.baseline, err = b.recvlogical(ctx, recvSlot, pub, end); err != nil {
		return nil, err
	}
	harness.Progress("memory: pg_recvlogical took %s, peak RSS %s; now the connector", res.baseline.elapsed.Round(time.Millisecond), harness.MiB(res.baseline.maxRSS))
	res.conn, err = b.runConnector(ctx, connectorRun{
		slot: connSlot, publication: pub, table: table, events: int64(b.Opts.BigTxn), end: end,
	})
	if err != nil {
		return nil, err
	}
	harness.Progress("memory: the connector took %s, peak RSS %s", res.conn.elapsed.Round(time.Millisecond), harness.MiB(res.conn.peak))
	return res, nil
}

// profile names a profile of the connector process in a phase.
func (b *Bench) profile(prefix, phase string) string {
	if prefix == "" || phase == "" {
		return ""
	}
	return prefix + "." + phase + ".pprof"
}

// connectorRun is one run of the connector process against a fresh broker
// process.
type connectorRun struct {
	slot, publication, table string
	events                   int64 // the events Kafka must end up with
	// end: done when the slot confirms it. Zero: done when the connector's
	// state says the (initial) snapshot finished.
	end      pglogrepl.LSN
	snapshot bool
	discard  bool   // no broker: events are acknowledged as they are written
	phase    string // names the profiles
	// snapshotParallelism is postgres.snapshot_parallelism (0: the default).
	snapshotParallelism int
}

func (b *Bench) runConnector(ctx context.Context, cr connectorRun) (run, error) {
	var br *harness.Broker
	if !cr.discard {
		var err error
		if br, err = harness.StartBroker(ctx); err != nil {
			return run{}, err
		}
	}
	brokerStopped := false
	defer func() {
		if br != nil && !brokerStopped {
			_ = br.Stop(10 * time.Second)
		}
	}()
	ccfg := childConfig{
		DSN: b.DB.DSN, Slot: cr.slot, Publication: cr.publication, Tables: []string{cr.table},
		TopicPrefix: topicPrefix, StateTopic: stateTopic, Snapshot: cr.snapshot, StatusInterval: statusInterval,
		CPUProfile: b.profile(b.Opts.CPUProfile, cr.phase), BlockProfile: b.profile(b.Opts.BlockProfile, cr.phase),
		Discard: cr.discard, Stats: b.Opts.Diagnose,
		SnapshotParallelism: cr.snapshotParallelism,
	}
	var kc *kafka.Client
	if br != nil {
		ccfg.Brokers = br.Brokers
		kc = &kafka.Client{Addr: kafka.TCP(br.Brokers...), Timeout: 5 * time.Second}
	}
	cfg, err := json.Marshal(ccfg)
	if err != nil {
		return run{}, err
	}
	topic := topicPrefix + "." + cr.table

	env := append([]string{envChild + "=" + string(cfg)}, b.Opts.ConnectorEnv...)
	c, err := harness.StartChild("connector", env, os.Stderr)
	if err != nil {
		return run{}, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = c.Stop(10 * time.Second)
		}
	}()

	var r run
	var nextCount time.Time
	check := func() error {
		if err := c.Exited(); err != nil {
			return err
		}
		// Counting asks the broker twice: at most ten times a second.
		if kc != nil && r.inKafka == 0 && time.Now().After(nextCount) {
			nextCount = time.Now().Add(100 * time.Millisecond)
			if n, err := kafkaCount(ctx, kc, topic); err == nil && n >= cr.events {
				r.inKafka = time.Since(c.Started)
			}
		}
		return nil
	}
	var done time.Time
	if cr.end != 0 {
		done, err = b.DB.WaitSlot(ctx, cr.slot, cr.end, b.Opts.Timeout, check)
	} else {
		done, err = waitSnapshot(ctx, br.Brokers, cr.slot, b.Opts.Timeout, func() (bool, error) {
			err := check()
			return r.inKafka != 0, err
		})
	}
	if err != nil {
		return run{}, err
	}
	r.elapsed = done.Sub(c.Started)
	if r.peak, err = c.PeakRSS(); err != nil {
		return run{}, err
	}
	if kc != nil {
		if r.events, err = kafkaCount(ctx, kc, topic); err != nil {
			return run{}, fmt.Errorf("count the events in Kafka: %w", err)
		}
		if r.events != cr.events {
			return run{}, fmt.Errorf("kafka holds %d events of %s, want %d", r.events, cr.table, cr.events)
		}
	}
	if r.inKafka == 0 || r.inKafka > r.elapsed {
		// The slot confirmed, or the state was saved (which follows
		// Kafka's acknowledgement of every row), before the count came
		// round.
		r.inKafka = r.elapsed
	}
	if cr.snapshot && br != nil {
		if r.keyBytes, r.valueBytes, err = eventSizes(ctx, broker.Plain(br.Brokers), topic); err != nil {
			return run{}, err
		}
	}
	_ = c.Stop(30 * time.Second)
	stopped = true
	r.cpu, r.maxRSS = c.Usage()
	if br != nil {
		_ = br.Stop(10 * time.Second)
		brokerStopped = true
		r.brokerCPU, _ = br.Usage()
	}
	return r, nil
}

// byteCounter is an io.Writer that counts what it is given.
type byteCounter int64

func (c *byteCounter) Write(p []byte) (int, error) {
	*c += byteCounter(len(p))
	return len(p), nil
}

// eventSizes returns the mean key and value sizes of the first 2,000
// records of the topic's first partition.
func eventSizes(ctx context.Context, c broker.Cluster, topic string) (key, value int, err error) {
	end, err := c.EndOffset(ctx, topic, 0)
	if err != nil {
		return 0, 0, err
	}
	var n, k, v int
	err = c.ReadRange(ctx, topic, 0, 0, min(end, 2000), func(m kafka.Message) {
		n, k, v = n+1, k+len(m.Key), v+len(m.Value)
	})
	if err != nil || n == 0 {
		return 0, 0, fmt.Errorf("the sizes of %s's events (%d read): %w", topic, n, err)
	}
	return (k + n/2) / n, (v + n/2) / n, nil
}

// kafkaCount returns how many records the topic's partitions hold.
func kafkaCount(ctx context.Context, kc *kafka.Client, topic string) (int64, error) {
	reqs := make([]kafka.OffsetRequest, partitions)
	for p := range reqs {
		reqs[p] = kafka.LastOffsetOf(p)
	}
	resp, err := kc.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return 0, err
	}
	var n int64
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			return 0, p.Error
		}
		n += p.LastOffset
	}
	return n, nil
}

// waitSnapshot waits until ready reports true (Kafka holds every row) and
// then until the connector's state shows no snapshot pending for slot. It
// returns when the connector saved that state (State.Updated, on this
// machine's clock), not when the poll saw it: the connector saves it once
// Kafka holds the last chunk, and the poll (opening a reader on the state
// topic, reading it from its start) came 150–200 ms later, which the
// connector's time then carried and the baseline's did not.
func waitSnapshot(ctx context.Context, brokers []string, slot string, timeout time.Duration, ready func() (bool, error)) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var store *broker.StateStore
	defer func() {
		if store != nil {
			store.Close()
		}
	}()
	for {
		ok, err := ready()
		if err != nil {
			return time.Time{}, err
		}
		if ok {
			if store == nil {
				if store, err = broker.OpenStateStore(ctx, brokers, stateTopic); err != nil {
					return time.Time{}, err
				}
			}
			data, err := store.Load(ctx, slot)
			now := time.Now()
			if err != nil {
				return time.Time{}, err
			}
			var st connector.State
			if data != nil {
				if err := json.Unmarshal(data, &st); err != nil {
					return time.Time{}, fmt.Errorf("connector state: %w", err)
				}
				if len(st.Snapshots) == 0 {
					if st.Updated.IsZero() || st.Updated.After(now) {
						return now, nil
					}
					return st.Updated, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("the snapshot did not finish within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-tick.C:
		}
	}
}

// runPgstream streams the workload with pgstream into a fresh broker: done
// when Kafka holds an event per row change and its slot confirmed end.
func (b *Bench) runPgstream(ctx context.Context, bin, slot string, end pglogrepl.LSN) (run, error) {
	br, err := harness.StartBroker(ctx)
	if err != nil {
		return run{}, err
	}
	defer br.Stop(10 * time.Second) //nolint:errcheck // stopped below; this is for the error paths
	const topic = topicPrefix + ".pgstream"
	p, err := peers.StartPgstream(bin, peers.PgstreamEnv(b.DB.DSN, slot, strings.Join(br.Brokers, ","), topic, partitions))
	if err != nil {
		return run{}, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = p.Stop(10 * time.Second)
		}
	}()
	kc := &kafka.Client{Addr: kafka.TCP(br.Brokers...), Timeout: 5 * time.Second}
	var r run
	var nextCount time.Time
	check := func() error {
		if err := p.Exited(); err != nil {
			return err
		}
		if r.inKafka == 0 && time.Now().After(nextCount) {
			nextCount = time.Now().Add(100 * time.Millisecond)
			if n, err := kafkaCount(ctx, kc, topic); err == nil && n >= int64(b.Opts.Rows) {
				r.inKafka = time.Since(p.Started)
			}
		}
		return nil
	}
	// Done when Kafka holds every event and the slot confirmed the end, or
	// 5 s after Kafka held everything: pgstream confirms what it wrote on
	// its own schedule, which may stop short of the WAL's end.
	errConfirmLate := errors.New("not confirmed")
	var confirmWait time.Time
	done, err := b.DB.WaitSlot(ctx, slot, end, b.Opts.Timeout, func() error {
		if err := check(); err != nil {
			return err
		}
		if r.inKafka != 0 && confirmWait.IsZero() {
			confirmWait = time.Now().Add(5 * time.Second)
		}
		if !confirmWait.IsZero() && time.Now().After(confirmWait) {
			return errConfirmLate
		}
		return nil
	})
	switch {
	case errors.Is(err, errConfirmLate):
	case err != nil:
		return run{}, err
	default:
		for deadline := time.Now().Add(b.Opts.Timeout); r.inKafka == 0; {
			if err := check(); err != nil {
				return run{}, err
			}
			if time.Now().After(deadline) {
				return run{}, fmt.Errorf("kafka did not get an event per row change within %s", b.Opts.Timeout)
			}
			time.Sleep(20 * time.Millisecond)
		}
		r.elapsed = done.Sub(p.Started)
	}
	if r.peak, err = p.PeakRSS(); err != nil {
		return run{}, err
	}
	if r.events, err = kafkaCount(ctx, kc, topic); err != nil {
		return run{}, err
	}
	_ = p.Stop(30 * time.Second)
	stopped = true
	r.cpu, r.maxRSS = p.Usage()
	_ = br.Stop(10 * time.Second)
	r.brokerCPU, _ = br.Usage()
	return r, nil
}
