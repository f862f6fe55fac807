package connector

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
)

// The slot's side of the acknowledgement chain: where the slot stands,
// and what the connector tells it. The slot keeps WAL from its
// confirmed_flush_lsn on; a session resumes there, counts each
// transaction's events in a checkpoint.LSNTracker as the producer hands
// Kafka's acknowledgements back, and reports to Postgres, in every standby
// status update, only the tracker's confirmed LSN: the end of the newest
// transaction that Kafka holds whole, with every one before it.

// ensureSlot creates the slot when it is missing, unless the state says the
// connector streamed from it before: a slot that vanished means changes may
// have been lost, which only an explicit reset and re-snapshot may paper
// over. A new slot gets its tables' snapshots queued in the state first, so
// a crash right after creating it still snapshots them.
func (c *Connector) ensureSlot(ctx context.Context, conn *pgx.Conn) error {
	var known bool
	if c.cfg.State != nil {
		var err error
		if c.state, known, err = loadState(ctx, c.cfg.State, c.cfg.Slot); err != nil {
			return err
		}
	}
	var plugin, db, current string
	err := conn.QueryRow(ctx, `SELECT plugin, database, current_database() FROM pg_replication_slots WHERE slot_name = $1`, c.cfg.Slot).Scan(&plugin, &db, &current)
	if errors.Is(err, pgx.ErrNoRows) {
		if known && !c.state.st.Reset {
			return fatal(fmt.Errorf("replication slot %q is gone, but this connector streamed from it until %s: changes made since may never reach Kafka. "+
				"To start again from a new slot with a full re-snapshot, run: onesignal-cdc snapshot --reset --config <file>", c.cfg.Slot, c.state.st.Updated.Format(time.RFC3339)))
		}
		if c.state != nil {
			err := c.state.update(ctx, func(st *State) {
				switch {
				case st.Reset:
					st.Snapshots = allTables(c.cfg.Tables, nil)
				case c.cfg.InitialSnapshot:
					// The sink has seen no row: the rows the publication's
					// row filter leaves out can be left out here too.
					st.Snapshots = allTables(c.cfg.Tables, c.pushedFilter)
				}
				st.Reset = false
				st.InitialEnds = nil // of the old slot's snapshots
				st.Tables = c.marks()
			})
			if err != nil {
				return err
			}
		}
		var lsn pglogrepl.LSN
		err := conn.QueryRow(ctx, `SELECT lsn FROM pg_create_logical_replication_slot($1, 'pgoutput')`, c.cfg.Slot).Scan(&lsn)
		if err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "42710" {
				return nil // created by another instance meanwhile
			}
			return fatal(fmt.Errorf("create replication slot %q: %w (the role needs the REPLICATION attribute, and wal_level must be logical)", c.cfg.Slot, err))
		}
		c.log.Info("created replication slot", zap.String("slot", c.cfg.Slot), zap.Stringer("lsn", lsn))
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up replication slot %q: %w", c.cfg.Slot, err)
	}
	if plugin != "pgoutput" || db != current {
		return fatal(fmt.Errorf("replication slot %q exists with plugin %q on database %q; the connector needs a pgoutput slot on %q: choose another postgres.slot or drop that slot", c.cfg.Slot, plugin, db, current))
	}
	if c.state != nil && (!known || c.state.st.Reset) {
		// A reset whose slot still exists: re-snapshot as asked.
		tables := c.cfg.Tables
		if !known && !c.state.st.Reset {
			var err error
			if tables, err = c.lostState(ctx, conn); err != nil {
				return err
			}
		}
		return c.state.update(ctx, func(st *State) {
			if len(tables) > 0 {
				st.Snapshots = allTables(tables, nil)
			}
			st.Reset = false
			st.Tables = c.marks()
		})
	}
	if c.state != nil {
		return c.snapshotRemapped(ctx)
	}
	return nil
}

// lostState decides what to do about a slot the state has no record of,
// and returns the tables to snapshot again. The slot's position vouches
// that Kafka holds every change before it, but a state that does not know
// the slot comes from a broker that does not hold what this connector wrote
// (a new or emptied cluster, the embedded broker in memory or with its
// data directory removed, a deleted state topic), or from a connector
// older than the state. Carrying on from the slot would leave out every
// row not changed again, so every mapped table is snapshotted again,
// beside the stream: the sink sets OneSignal to each row's current state,
// which converges whatever it had applied before. Rows deleted among the
// lost events are not in the snapshot: their delete is lost with them.
func (c *Connector) lostState(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	why := "the connector's state in Kafka has no record of replication slot " + strconv.Quote(c.cfg.Slot) +
		", which exists: the broker may have lost what the connector wrote before (a new or emptied cluster, the embedded broker in memory or with its data directory removed, or a deleted state topic), while the slot's position says it holds it"
	if !c.cfg.InitialSnapshot {
		c.log.Warn(why+"; postgres.snapshot is never, so rows not changed since reach Kafka only through onesignal-cdc snapshot --all", zap.String("slot", c.cfg.Slot))
		return nil, nil
	}
	var tables, keyless []string
	for _, t := range c.cfg.Tables {
		if _, _, err := primaryKey(ctx, conn, t); err != nil {
			if !errors.Is(err, errNoPrimaryKey) {
				return nil, err
			}
			keyless = append(keyless, t)
			continue
		}
		tables = append(tables, t)
	}
	c.log.Warn(why+"; snapshotting every mapped table again, beside the stream", zap.String("slot", c.cfg.Slot), zap.Strings("tables", tables))
	if len(keyless) > 0 {
		c.log.Warn("tables without a primary key cannot be snapshotted: their rows not changed since reach Kafka only when changed again", zap.Strings("tables", keyless))
	}
	return tables, nil
}

// allTables is a snapshot of every table from its start, of the rows
// where(table) keeps (nil, or "": every row).
func allTables(tables []string, where func(string) string) map[string]*Progress {
	m := make(map[string]*Progress, len(tables))
	now := time.Now().UTC()
	for _, t := range tables {
		m[t] = &Progress{Requested: now, Initial: true}
		if where != nil {
			m[t].Where = where(t)
		}
	}
	return m
}

// slotState reads, on the replication connection, where the slot resumes,
// the database name and wal_sender_timeout.
func (c *Connector) slotState(ctx context.Context, conn *pgconn.PgConn) (start pglogrepl.LSN, db string, timeout time.Duration, err error) {
	sql := fmt.Sprintf(`SELECT confirmed_flush_lsn, current_database(), current_setting('wal_sender_timeout') FROM pg_replication_slots WHERE slot_name = '%s'`, c.cfg.Slot)
	res, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return 0, "", 0, fmt.Errorf("read state of slot %q: %w", c.cfg.Slot, err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 {
		return 0, "", 0, fatal(fmt.Errorf("replication slot %q does not exist", c.cfg.Slot))
	}
	row := res[0].Rows[0]
	if row[0] == nil {
		return 0, "", 0, fatal(fmt.Errorf("replication slot %q has no confirmed_flush_lsn: is it a logical slot?", c.cfg.Slot))
	}
	if start, err = pglogrepl.ParseLSN(string(row[0])); err != nil {
		return 0, "", 0, fmt.Errorf("slot %q confirmed_flush_lsn: %w", c.cfg.Slot, err)
	}
	return start, string(row[1]), parsePGDuration(string(row[2])), nil
}

// parsePGDuration reads a time setting as current_setting shows it ("60s",
// "1min", "500ms", "0"); 0 when it cannot.
func parsePGDuration(s string) time.Duration {
	units := []struct {
		suffix string
		unit   time.Duration
	}{{"ms", time.Millisecond}, {"min", time.Minute}, {"s", time.Second}, {"h", time.Hour}, {"d", 24 * time.Hour}}
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			var v int64
			if _, err := fmt.Sscan(n, &v); err == nil {
				return time.Duration(v) * u.unit
			}
			return 0
		}
	}
	var ms int64
	if _, err := fmt.Sscan(s, &ms); err == nil {
		return time.Duration(ms) * time.Millisecond
	}
	return 0
}

// keepalive takes in a keepalive of the server. With nothing in flight,
// every transaction committed before the WAL end it reports is in Kafka,
// so that end is confirmable, and the connector has caught up; a reply it
// asks for is due at once.
func (s *session) keepalive(ka pglogrepl.PrimaryKeepaliveMessage) {
	s.tracker.AdvanceIdle(ka.ServerWALEnd)
	if s.tracker.InFlight() == 0 && s.tracker.Confirmed() >= ka.ServerWALEnd {
		s.caughtUp = ka.ServerTime
	}
	if ka.ReplyRequested {
		s.nextStatus = time.Time{}
	}
}

// statusIfDue sends a standby status update when one is due.
func (s *session) statusIfDue(ctx context.Context) error {
	if time.Now().Before(s.nextStatus) {
		return nil
	}
	return s.sendStatus(ctx)
}

// sendStatus reports the tracker's confirmed LSN as written, flushed and
// applied: the only position Postgres may forget WAL before.
func (s *session) sendStatus(ctx context.Context) error {
	lsn := s.tracker.Confirmed()
	err := pglogrepl.SendStandbyStatusUpdate(ctx, s.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: lsn,
		WALFlushPosition: lsn,
		WALApplyPosition: lsn,
		ClientTime:       time.Now(),
	})
	if err != nil {
		return fmt.Errorf("send standby status: %w", err)
	}
	if lsn != s.reported {
		s.c.log.Debug("confirmed", zap.Stringer("lsn", lsn))
	}
	s.reported = lsn
	s.nextStatus = time.Now().Add(s.interval)
	s.c.obs.Confirmed(Position{Confirmed: lsn, CaughtUp: s.caughtUp})
	return nil
}
