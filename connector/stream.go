package connector

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/onesignal-cdc/onesignal-cdc/checkpoint"
)

// session is one replication connection's life: from START_REPLICATION to
// the connection's end. Everything it tracks starts again from the slot's
// confirmed position in the next session.
type session struct {
	c        *Connector
	conn     *pgconn.PgConn
	tracker  *checkpoint.LSNTracker
	interval time.Duration
	// nextStatus is when the next standby status update is due.
	nextStatus time.Time
	// reported is the LSN last sent to Postgres.
	reported pglogrepl.LSN
	// queue feeds the producer; producerDone is closed when the producer
	// returned, with producerErr set.
	queue        chan outgoing
	producerDone chan struct{}
	producerErr  error
}

// stream runs one session until ctx ends (nil) or the connection fails.
func (c *Connector) stream(ctx context.Context) error {
	dsn, err := replicationDSN(c.cfg.DSN)
	if err != nil {
		return &fatalError{err}
	}
	conn, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("open replication connection: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	start, db, timeout, err := c.slotState(ctx, conn)
	if err != nil {
		return err
	}
	s := &session{
		c:        c,
		conn:     conn,
		tracker:  checkpoint.NewLSNTracker(start),
		interval: c.cfg.StatusInterval,
		reported: start,
	}
	// Reply well inside wal_sender_timeout, or the server drops us.
	if timeout > 0 && timeout/4 < s.interval {
		s.interval = timeout / 4
	}
	err = pglogrepl.StartReplication(ctx, conn, c.cfg.Slot, start, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + c.cfg.Publication + "'"},
	})
	if err != nil {
		return fmt.Errorf("start replication on slot %q: %w", c.cfg.Slot, err)
	}
	c.log.Info("streaming", zap.String("slot", c.cfg.Slot), zap.Stringer("lsn", start), zap.Duration("status_interval", s.interval))

	s.queue = make(chan outgoing, c.cfg.QueueSize)
	s.producerDone = make(chan struct{})
	// The producer outlives ctx on a clean stop, to flush what is buffered;
	// it is cancelled at once when the session fails, since Postgres will
	// resend all of it.
	pctx, cancelProducer := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelProducer()
	go func() {
		defer close(s.producerDone)
		s.producerErr = (&producer{w: c.w, log: c.log, batchSize: c.cfg.BatchSize}).run(pctx, s.queue)
	}()

	if c.cfg.HeartbeatInterval > 0 {
		hctx, stopHeartbeat := context.WithCancel(ctx)
		beating := make(chan struct{})
		go func() {
			defer close(beating)
			c.heartbeat(hctx)
		}()
		defer func() {
			stopHeartbeat()
			<-beating
		}()
	}

	readErr := s.read(ctx, newDecoder(db, c.cfg.TopicPrefix, c.now))
	close(s.queue)
	if readErr != nil && ctx.Err() == nil {
		cancelProducer()
		<-s.producerDone
		return readErr
	}
	// A clean stop: let the buffered events reach Kafka, then report how far
	// that got.
	timer := time.NewTimer(c.cfg.ShutdownTimeout)
	defer timer.Stop()
	select {
	case <-s.producerDone:
		if s.producerErr != nil {
			c.log.Warn("flushing events at shutdown failed; Postgres resends them on the next start", zap.Error(s.producerErr))
		}
	case <-timer.C:
		c.log.Warn("flushing events at shutdown timed out; Postgres resends them on the next start")
		cancelProducer()
		<-s.producerDone
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.sendStatus(sctx); err != nil {
		c.log.Warn("final standby status update failed", zap.Error(err))
	}
	c.log.Info("stopped", zap.Stringer("confirmed_lsn", s.reported))
	return nil
}

// read receives WAL until ctx ends or something fails, handing row changes
// to the producer.
func (s *session) read(ctx context.Context, dec *decoder) error {
	var txn *checkpoint.Txn
	for {
		if err := s.statusIfDue(ctx); err != nil {
			return err
		}
		rctx, cancel := context.WithDeadline(ctx, s.nextStatus)
		raw, err := s.conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("receive from walsender: %w", err)
		}
		select {
		case <-s.producerDone:
			return s.producerStopped()
		default:
		}
		var data []byte
		switch m := raw.(type) {
		case *pgproto3.CopyData:
			data = m.Data
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("walsender: %w", pgconn.ErrorResponseToPgError(m))
		case *pgproto3.CopyDone:
			return errors.New("walsender ended the stream")
		default:
			continue
		}
		if len(data) == 0 {
			continue
		}
		switch data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
			if err != nil {
				return fmt.Errorf("parse keepalive: %w", err)
			}
			s.tracker.AdvanceIdle(ka.ServerWALEnd)
			if ka.ReplyRequested {
				s.nextStatus = time.Time{}
			}
		case pglogrepl.XLogDataByteID:
			xld, err := pglogrepl.ParseXLogData(data[1:])
			if err != nil {
				return fmt.Errorf("parse XLogData: %w", err)
			}
			st, err := dec.decode(xld.WALStart, xld.WALData)
			if err != nil {
				return &fatalError{err}
			}
			switch st.kind {
			case stepBegin:
				txn = s.tracker.Begin()
			case stepChange:
				txn.Add()
				msg := kafka.Message{Topic: st.change.topic, Key: st.change.key, Value: st.change.value}
				if err := s.enqueue(ctx, outgoing{msg: msg, txn: txn}); err != nil {
					return err
				}
			case stepCommit:
				s.tracker.Commit(txn, st.end)
				txn = nil
			}
		}
	}
}

// enqueue hands an event to the producer, blocking while the queue is full
// (Kafka is slow or down) but still answering the server on time, so a
// Kafka outage does not also cost the replication connection.
func (s *session) enqueue(ctx context.Context, o outgoing) error {
	select {
	case s.queue <- o:
		return nil
	default:
	}
	for {
		timer := time.NewTimer(time.Until(s.nextStatus))
		select {
		case s.queue <- o:
			timer.Stop()
			return nil
		case <-s.producerDone:
			timer.Stop()
			return s.producerStopped()
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
			if err := s.statusIfDue(ctx); err != nil {
				return err
			}
		}
	}
}

// producerStopped explains a producer that returned while the session
// still ran: only an error no retry can fix makes it do that.
func (s *session) producerStopped() error {
	err := fmt.Errorf("kafka producer stopped: %w", s.producerErr)
	if errors.Is(s.producerErr, kafka.MessageSizeTooLarge) {
		err = fmt.Errorf("%w: a row's event is larger than Kafka accepts; raise max.message.bytes on its topic (and message.max.bytes on the brokers)", err)
	}
	return &fatalError{err}
}

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
	return nil
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
		return 0, "", 0, &fatalError{fmt.Errorf("replication slot %q does not exist", c.cfg.Slot)}
	}
	row := res[0].Rows[0]
	if row[0] == nil {
		return 0, "", 0, &fatalError{fmt.Errorf("replication slot %q has no confirmed_flush_lsn: is it a logical slot?", c.cfg.Slot)}
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

// replicationDSN adds replication=database to a connection string, in
// either of its forms.
func replicationDSN(dsn string) (string, error) {
	if _, err := pgconn.ParseConfig(dsn); err != nil {
		return "", fmt.Errorf("postgres.dsn: %w", err)
	}
	if strings.Contains(dsn, "://") {
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		return dsn + sep + "replication=database", nil
	}
	return dsn + " replication=database", nil
}

// HeartbeatPrefix marks the connector's heartbeat messages in the WAL.
const HeartbeatPrefix = "onesignal_cdc_heartbeat"

// heartbeat writes a small non-transactional logical decoding message every
// HeartbeatInterval until ctx ends. The message publishes nothing; it gives
// the walsender WAL of this database to decode, after which its keepalive
// carries a WAL end that the idle connector confirms. Failures are logged
// and retried at the next beat: a missing heartbeat delays WAL release, it
// loses nothing.
func (c *Connector) heartbeat(ctx context.Context) {
	t := time.NewTicker(c.cfg.HeartbeatInterval)
	defer t.Stop()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.WithoutCancel(ctx))
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var err error
		if conn == nil {
			if conn, err = pgx.Connect(ctx, c.cfg.DSN); err != nil {
				conn = nil
				c.log.Warn("heartbeat: connect failed", zap.Error(err))
				continue
			}
		}
		if _, err = conn.Exec(ctx, `SELECT pg_logical_emit_message(false, $1, '')`, HeartbeatPrefix); err != nil && ctx.Err() == nil {
			c.log.Warn("heartbeat failed", zap.Error(err))
			conn.Close(context.WithoutCancel(ctx))
			conn = nil
		}
	}
}
