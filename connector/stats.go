package connector

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// Observer learns what the connector does, for metrics and health checks.
// The connector calls it from its goroutines (the replication reader, the
// producer's lanes, Run), several at once; each call must be safe for
// concurrent use, return quickly and not call back into the connector. Config.Observer nil means nobody listens.
type Observer interface {
	// StatusChanged reports that the connector entered status. err is why it
	// left the previous one when that was a failure (a broken session, a
	// slot held by another process, the error Run returns), else nil.
	StatusChanged(status Status, err error)
	// Produced reports one Kafka write attempt: a failed one is retried
	// whole, so the same events may be reported again.
	Produced(w Write)
	// Confirmed reports a standby status update sent to Postgres.
	Confirmed(p Position)
}

// Status is where the connector is in its life.
type Status int

// The statuses, in the order a healthy connector goes through them.
const (
	// Connecting: checking the database, preparing the publication and
	// slot, starting replication; also again after a session failed.
	Connecting Status = iota
	// Streaming: replication runs and events flow to Kafka.
	Streaming
	// Standby: another process streams from the slot; this one takes over
	// when it stops.
	Standby
	// Stopped: Run returned, after a clean stop or on an error no
	// reconnect can fix.
	Stopped
)

func (s Status) String() string {
	switch s {
	case Connecting:
		return "connecting"
	case Streaming:
		return "streaming"
	case Standby:
		return "standby"
	case Stopped:
		return "stopped"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Write is one produce call to Kafka.
type Write struct {
	Duration time.Duration
	// Err is the call's error; nil means Kafka acknowledged every event
	// (acks=all), and then the fields below describe them.
	Err error
	// Events counts the events by op ("c", "u", "d", "r", "t").
	Events map[event.Op]int
	// SnapshotRows counts the snapshot rows by table ("schema.table").
	SnapshotRows map[string]int
	// Committed is the commit time (the server's clock) of the newest
	// transaction among the events. Kafka holds every event of it and of
	// the transactions before it.
	Committed time.Time
}

// Position is what a standby status update told Postgres.
type Position struct {
	// Confirmed is the LSN reported as written, flushed and applied.
	Confirmed pglogrepl.LSN
	// CaughtUp, when not zero, is the server's time of the last keepalive
	// that found the connector with nothing in flight: every transaction
	// committed before it is in Kafka, even if none committed lately.
	CaughtUp time.Time
}

// nopObserver stands in when Config.Observer is nil.
type nopObserver struct{}

func (nopObserver) StatusChanged(Status, error) {}
func (nopObserver) Produced(Write)              {}
func (nopObserver) Confirmed(Position)          {}

// written describes, for the observer, a batch Kafka acknowledged.
func written(batch []outgoing, d time.Duration) Write {
	w := Write{Duration: d, Events: make(map[event.Op]int, 2)}
	for _, o := range batch {
		w.Events[o.op]++
		if o.chunk != nil {
			if w.SnapshotRows == nil {
				w.SnapshotRows = make(map[string]int, 1)
			}
			w.SnapshotRows[o.chunk.table]++
		}
		if o.committed.After(w.Committed) {
			w.Committed = o.committed
		}
	}
	return w
}

// SlotStats is the replication slot as pg_replication_slots shows it.
type SlotStats struct {
	Slot   string
	Exists bool // false: there is no such slot (yet, or any more)
	Active bool // a walsender streams from it
	// WALStatus is "reserved", "extended", "unreserved" or "lost" (the
	// WAL the slot needs is gone: it is invalidated).
	WALStatus string
	// LagBytes is the server's current WAL position minus the slot's
	// confirmed_flush_lsn: WAL written that the connector has not
	// confirmed. RetainedBytes is the current position minus restart_lsn:
	// WAL the server keeps for the slot. Either is -1 when the slot has no
	// such position (an invalidated slot).
	LagBytes      int64
	RetainedBytes int64
}

// SlotReader reads a slot's lag and retained WAL from pg_replication_slots
// on a regular (non-replication) connection, which it keeps open between
// reads and opens again after a failure. It works whatever the connector
// is doing, standby and reconnecting included. Safe for concurrent use;
// reads are serialized.
type SlotReader struct {
	dsn, slot string

	mu   sync.Mutex
	conn *pgx.Conn
}

// NewSlotReader reads the slot named slot of the database dsn connects to.
// It connects on the first Read.
func NewSlotReader(dsn, slot string) *SlotReader {
	return &SlotReader{dsn: dsn, slot: slot}
}

// slotQuery costs one catalog scan of a few rows. On a hot standby the
// current position is the last WAL replayed.
const slotQuery = `
SELECT active, coalesce(wal_status, ''),
       coalesce((cur - confirmed_flush_lsn)::int8, -1),
       coalesce((cur - restart_lsn)::int8, -1)
FROM pg_replication_slots,
     LATERAL (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END AS cur) c
WHERE slot_name = $1`

// Read returns the slot's state now.
func (r *SlotReader) Read(ctx context.Context) (SlotStats, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := SlotStats{Slot: r.slot}
	if r.conn == nil || r.conn.IsClosed() {
		cfg, err := pgx.ParseConfig(r.dsn)
		if err != nil {
			return st, fmt.Errorf("postgres.dsn: %w", err)
		}
		maps.Copy(cfg.RuntimeParams, sessionParams)
		cfg.RuntimeParams["application_name"] = "onesignal-cdc slot monitor"
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return st, fmt.Errorf("connect to postgres: %w", err)
		}
		r.conn = conn
	}
	err := r.conn.QueryRow(ctx, slotQuery, r.slot).Scan(&st.Active, &st.WALStatus, &st.LagBytes, &st.RetainedBytes)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return st, nil
	case err != nil:
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) { // the connection is in doubt: start afresh next time
			r.conn.Close(context.WithoutCancel(ctx))
			r.conn = nil
		}
		return st, fmt.Errorf("read slot %q from pg_replication_slots: %w", r.slot, err)
	}
	st.Exists = true
	return st, nil
}

// Close closes the connection, if open.
func (r *SlotReader) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.conn.Close(ctx)
		r.conn = nil
	}
}
