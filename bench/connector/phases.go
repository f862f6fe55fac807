package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/connector"
)

// bench runs the measurements on one database.
type bench struct {
	opts options
	srv  *server
	db   *database
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
}

func (r run) rate(rows int) float64 { return float64(rows) / r.elapsed.Seconds() }

type streamResult struct {
	rows, txn        int
	inserts, updates int
	walBytes         int64
	write            time.Duration
	baseline, conn   run
	discard          *run // -diagnose: the connector without Kafka
}

type snapshotResult struct {
	rows       int
	tableBytes int64
	copy, conn run
}

type memoryResult struct {
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

// streaming: the same WAL drained by pg_recvlogical and by the connector.
func (b *bench) streaming(ctx context.Context) (*streamResult, error) {
	const table, pub = "public.bench_stream", "bench_stream"
	if err := b.db.exec(ctx, "CREATE TABLE "+table+" "+tableColumns, "CREATE PUBLICATION "+pub+" FOR TABLE "+table); err != nil {
		return nil, err
	}
	recvSlot, connSlot := b.db.slot("stream_recv"), b.db.slot("stream_connector")
	defer b.db.dropSlots(context.WithoutCancel(ctx), recvSlot, connSlot) //nolint:errcheck // the database's drop retries
	start, err := b.db.createSlot(ctx, recvSlot)
	if err != nil {
		return nil, err
	}
	if _, err := b.db.createSlot(ctx, connSlot); err != nil {
		return nil, err
	}
	discardSlot := b.db.slot("stream_discard")
	if b.opts.diagnose {
		defer b.db.dropSlots(context.WithoutCancel(ctx), discardSlot) //nolint:errcheck // the database's drop retries
		if _, err := b.db.createSlot(ctx, discardSlot); err != nil {
			return nil, err
		}
	}

	res := &streamResult{rows: b.opts.rows, txn: b.opts.txn}
	txns := (b.opts.rows + b.opts.txn - 1) / b.opts.txn
	progress("streaming: writing %d row changes in %d transactions of up to %d rows, nothing reading", b.opts.rows, txns, b.opts.txn)
	t := time.Now()
	end, inserts, updates, err := b.db.workload(ctx, table, b.opts.rows, b.opts.txn)
	if err != nil {
		return nil, err
	}
	res.write = time.Since(t)
	res.walBytes = int64(end - start)
	res.inserts, res.updates = inserts, updates
	if err := b.db.exec(ctx, "CHECKPOINT"); err != nil {
		return nil, err
	}

	progress("streaming: pg_recvlogical drains %s of WAL up to %s", mib(res.walBytes), end)
	if res.baseline, err = b.recvlogical(ctx, recvSlot, pub, end); err != nil {
		return nil, err
	}
	progress("streaming: pg_recvlogical took %s (%.0f rows/s); now the connector", res.baseline.elapsed.Round(time.Millisecond), res.baseline.rate(res.rows))
	res.conn, err = b.runConnector(ctx, connectorRun{
		slot: connSlot, publication: pub, table: table, events: int64(b.opts.rows), end: end, phase: "stream",
	})
	if err != nil {
		return nil, err
	}
	progress("streaming: the connector took %s (%.0f rows/s)", res.conn.elapsed.Round(time.Millisecond), res.conn.rate(res.rows))
	if b.opts.diagnose {
		progress("streaming (diagnosis): the connector once more, its events acknowledged at once instead of written to Kafka")
		d, err := b.runConnector(ctx, connectorRun{
			slot: discardSlot, publication: pub, table: table, end: end, discard: true, phase: "stream-discard",
		})
		if err != nil {
			return nil, err
		}
		res.discard = &d
		progress("streaming (diagnosis): without Kafka the connector took %s (%.0f rows/s)", d.elapsed.Round(time.Millisecond), d.rate(res.rows))
	}
	return res, nil
}

// snapshot: COPY of a table against the connector's initial snapshot of it.
func (b *bench) snapshot(ctx context.Context) (*snapshotResult, error) {
	const table, pub = "public.bench_snapshot", "bench_snapshot"
	res := &snapshotResult{rows: b.opts.rows}
	progress("snapshot: loading a table of %d rows", b.opts.rows)
	err := b.db.exec(ctx, "CREATE TABLE "+table+" "+tableColumns)
	if err == nil {
		err = b.db.execArgs(ctx, insertRows(table), 1, b.opts.rows)
	}
	if err == nil {
		// Hint bits and the visibility map set, statistics fresh: a table
		// as it is long after its rows were written, for both readers.
		err = b.db.exec(ctx, "VACUUM (ANALYZE) "+table, "CHECKPOINT", "CREATE PUBLICATION "+pub+" FOR TABLE "+table)
	}
	if err != nil {
		return nil, err
	}
	conn, err := b.db.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := conn.QueryRow(ctx, `SELECT pg_table_size($1::regclass)`, table).Scan(&res.tableBytes); err != nil {
		return nil, err
	}

	progress("snapshot: COPY (SELECT * FROM %s) TO STDOUT, %s, into nothing", table, mib(res.tableBytes))
	t := time.Now()
	tag, err := conn.PgConn().CopyTo(ctx, io.Discard, "COPY (SELECT * FROM "+table+") TO STDOUT")
	if err != nil {
		return nil, fmt.Errorf("COPY: %w", err)
	}
	res.copy.elapsed = time.Since(t)
	if tag.RowsAffected() != int64(b.opts.rows) {
		return nil, fmt.Errorf("COPY read %d rows, want %d", tag.RowsAffected(), b.opts.rows)
	}
	progress("snapshot: COPY took %s (%.0f rows/s); now the connector's initial snapshot", res.copy.elapsed.Round(time.Millisecond), res.copy.rate(res.rows))

	slot := b.db.slot("snapshot_connector")                // the connector creates it
	defer b.db.dropSlots(context.WithoutCancel(ctx), slot) //nolint:errcheck // the database's drop retries
	res.conn, err = b.runConnector(ctx, connectorRun{
		slot: slot, publication: pub, table: table, events: int64(b.opts.rows), snapshot: true, phase: "snapshot",
	})
	if err != nil {
		return nil, err
	}
	progress("snapshot: the connector took %s (%.0f rows/s)", res.conn.elapsed.Round(time.Millisecond), res.conn.rate(res.rows))
	return res, nil
}

// memory: one transaction of rows INSERTs, streamed by pg_recvlogical and
// by the connector, whose peak RSS is the figure.
func (b *bench) memory(ctx context.Context) (*memoryResult, error) {
	const table, pub = "public.bench_big", "bench_big"
	if err := b.db.exec(ctx, "CREATE TABLE "+table+" "+tableColumns, "CREATE PUBLICATION "+pub+" FOR TABLE "+table); err != nil {
		return nil, err
	}
	recvSlot, connSlot := b.db.slot("big_recv"), b.db.slot("big_connector")
	defer b.db.dropSlots(context.WithoutCancel(ctx), recvSlot, connSlot) //nolint:errcheck // the database's drop retries
	start, err := b.db.createSlot(ctx, recvSlot)
	if err != nil {
		return nil, err
	}
	if _, err := b.db.createSlot(ctx, connSlot); err != nil {
		return nil, err
	}
	res := &memoryResult{rows: b.opts.rows}
	progress("memory: writing one transaction of %d INSERTs, nothing reading", b.opts.rows)
	end, _, _, err := b.db.workload(ctx, table, b.opts.rows, b.opts.rows)
	if err != nil {
		return nil, err
	}
	res.walBytes = int64(end - start)
	if err := b.db.exec(ctx, "CHECKPOINT"); err != nil {
		return nil, err
	}
	progress("memory: pg_recvlogical drains %s of WAL", mib(res.walBytes))
	if res.baseline, err = b.recvlogical(ctx, recvSlot, pub, end); err != nil {
		return nil, err
	}
	progress("memory: pg_recvlogical took %s, peak RSS %s; now the connector", res.baseline.elapsed.Round(time.Millisecond), mib(res.baseline.maxRSS))
	res.conn, err = b.runConnector(ctx, connectorRun{
		slot: connSlot, publication: pub, table: table, events: int64(b.opts.rows), end: end,
	})
	if err != nil {
		return nil, err
	}
	progress("memory: the connector took %s, peak RSS %s", res.conn.elapsed.Round(time.Millisecond), mib(res.conn.peak))
	return res, nil
}

// profile names a profile of the connector process in a phase.
func (b *bench) profile(prefix, phase string) string {
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
}

func (b *bench) runConnector(ctx context.Context, cr connectorRun) (run, error) {
	var br *brokerProcess
	if !cr.discard {
		var err error
		if br, err = startBroker(ctx); err != nil {
			return run{}, err
		}
	}
	brokerStopped := false
	defer func() {
		if br != nil && !brokerStopped {
			br.stop(10 * time.Second)
		}
	}()
	ccfg := childConfig{
		DSN: b.db.dsn, Slot: cr.slot, Publication: cr.publication, Tables: []string{cr.table},
		TopicPrefix: topicPrefix, StateTopic: stateTopic, Snapshot: cr.snapshot, StatusInterval: statusInterval,
		CPUProfile: b.profile(b.opts.cpuProfile, cr.phase), BlockProfile: b.profile(b.opts.blockProfile, cr.phase),
		Discard: cr.discard, WriterBatch: b.opts.writerBatch, Stats: b.opts.diagnose,
	}
	var kc *kafka.Client
	if br != nil {
		ccfg.Brokers = br.brokers
		kc = &kafka.Client{Addr: kafka.TCP(br.brokers...), Timeout: 5 * time.Second}
	}
	cfg, err := json.Marshal(ccfg)
	if err != nil {
		return run{}, err
	}
	topic := topicPrefix + "." + cr.table

	env := append([]string{envChild + "=" + string(cfg)}, b.opts.connectorEnv...)
	c, err := startChild("connector", env, os.Stderr)
	if err != nil {
		return run{}, err
	}
	stopped := false
	defer func() {
		if !stopped {
			c.stop(10 * time.Second)
		}
	}()

	var r run
	var nextCount time.Time
	check := func() error {
		if err := c.exited(); err != nil {
			return err
		}
		// Counting asks the broker twice: at most ten times a second.
		if kc != nil && r.inKafka == 0 && time.Now().After(nextCount) {
			nextCount = time.Now().Add(100 * time.Millisecond)
			if n, err := kafkaCount(ctx, kc, topic); err == nil && n >= cr.events {
				r.inKafka = time.Since(c.started)
			}
		}
		return nil
	}
	var done time.Time
	if cr.end != 0 {
		done, err = b.db.waitSlot(ctx, cr.slot, cr.end, b.opts.timeout, check)
	} else {
		done, err = waitSnapshot(ctx, br.brokers, cr.slot, b.opts.timeout, func() (bool, error) {
			err := check()
			return r.inKafka != 0, err
		})
	}
	if err != nil {
		return run{}, err
	}
	r.elapsed = done.Sub(c.started)
	if r.peak, err = c.peakRSS(); err != nil {
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
	if r.inKafka == 0 { // the slot confirmed before the count came round
		r.inKafka = r.elapsed
	}
	c.stop(30 * time.Second)
	stopped = true
	r.cpu, r.maxRSS = c.usage()
	if br != nil {
		br.stop(10 * time.Second)
		brokerStopped = true
		r.brokerCPU, _ = br.usage()
	}
	return r, nil
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
// then until the connector's state shows no snapshot pending for slot.
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
					return now, nil
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
