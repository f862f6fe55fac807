package connector

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/checkpoint"
	"github.com/onesignal-cdc/onesignal-cdc/connector/pgcodec"
	"github.com/onesignal-cdc/onesignal-cdc/event"
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
	queue chan []outgoing
	// pending are the events read and not yet handed to the producer,
	// which takes them a run at a time (handoff).
	pending      []outgoing
	producerDone chan struct{}
	producerErr  error
	// topics are those known to exist.
	topics map[string]bool
	// dec turns pgoutput into events; lookup is a regular connection for
	// catalog questions the stream raises (primary keys).
	dec    *pgcodec.Decoder
	lookup *pgx.Conn
	// snap reads snapshot chunks (nil without a state store); windows are
	// the chunks between their watermarks, chunks those read and not yet
	// produced, both by watermark id.
	snap    *snapshotter
	windows windows
	chunks  map[string]*chunk
	// caughtUp is the server time of the last keepalive that found nothing
	// in flight and everything up to the server's WAL end confirmed.
	caughtUp time.Time
}

// stream runs one session until ctx ends (nil) or the connection fails.
func (c *Connector) stream(ctx context.Context) error {
	rcfg, err := pgconn.ParseConfig(c.cfg.DSN)
	if err != nil {
		return fatal(fmt.Errorf("postgres.dsn: %w", err))
	}
	rcfg.RuntimeParams["replication"] = "database"
	maps.Copy(rcfg.RuntimeParams, sessionParams)
	// pgproto3 reads 8 KiB at a time: 17,000 read calls for 1,000,000 rows
	// of WAL when the walsender is ahead, each a system call that costs
	// more than what it copies. A larger buffer takes what the socket
	// holds in one.
	rcfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		return pgproto3.NewFrontend(bufio.NewReaderSize(r, readBufferSize), w)
	}
	conn, err := pgconn.ConnectConfig(ctx, rcfg)
	if err != nil {
		return fmt.Errorf("open replication connection: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := matchEncoding(ctx, conn); err != nil {
		return err
	}

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
		topics:   make(map[string]bool),
		dec:      pgcodec.NewDecoder(pgcodec.Source{DB: db, TopicPrefix: c.cfg.TopicPrefix, Version: c.cfg.Version}, c.now, c.readColumns),
		windows:  make(windows),
		chunks:   make(map[string]*chunk),
	}
	defer func() {
		if s.lookup != nil {
			s.lookup.Close(context.WithoutCancel(ctx))
		}
	}()
	// Reply well inside wal_sender_timeout, or the server drops us.
	if timeout > 0 && timeout/4 < s.interval {
		s.interval = timeout / 4
	}
	args := []string{"proto_version '1'", "publication_names '" + c.cfg.Publication + "'"}
	if serverVersion(conn) >= 140000 {
		args = append(args, "messages 'true'") // watermarks and signals
		if c.state != nil {
			s.snap = newSnapshotter(c, c.state)
		}
	} else if c.state != nil && len(c.state.pending()) > 0 {
		return fatal(errNoSnapshotSupport)
	}
	err = pglogrepl.StartReplication(ctx, conn, c.cfg.Slot, start, pglogrepl.StartReplicationOptions{PluginArgs: args})
	if err != nil {
		return fmt.Errorf("start replication on slot %q: %w", c.cfg.Slot, err)
	}
	c.log.Info("streaming", zap.String("slot", c.cfg.Slot), zap.Stringer("lsn", start), zap.Duration("status_interval", s.interval))
	c.obs.StatusChanged(Streaming, nil)

	s.queue = make(chan []outgoing, max(c.cfg.QueueSize/handoff, 1))
	s.producerDone = make(chan struct{})
	// The producer outlives ctx on a clean stop, to flush what is buffered;
	// it is cancelled at once when the session fails, since Postgres will
	// resend all of it.
	pctx, cancelProducer := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelProducer()
	go func() {
		defer close(s.producerDone)
		s.producerErr = (&producer{w: c.w, log: c.log, batchSize: c.cfg.BatchSize, lanes: c.cfg.Lanes, obs: c.obs}).run(pctx, s.queue)
	}()

	hctx, stopHousekeeping := context.WithCancel(ctx)
	housekeeping := make(chan struct{})
	go func() {
		defer close(housekeeping)
		c.housekeeping(hctx)
	}()
	defer func() {
		stopHousekeeping()
		<-housekeeping
	}()

	// The snapshotter runs beside the reader; a failure of it ends the
	// session (the next one resumes from the saved state) by stopping the
	// reader through its context: a pgconn must not be closed while
	// another goroutine receives on it.
	var snapErr error
	stopSnapshots := func() {}
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	if s.snap != nil {
		sctx, cancel := context.WithCancel(ctx)
		snapDone := make(chan struct{})
		go func() {
			defer close(snapDone)
			if snapErr = s.snap.run(sctx); snapErr != nil {
				stopReading()
			}
		}()
		stopSnapshots = func() {
			cancel()
			<-snapDone
		}
	}

	readErr := s.read(readCtx)
	stopSnapshots()
	if snapErr != nil {
		readErr = snapErr
	}
	if readErr == nil && ctx.Err() != nil {
		// A clean stop: what was read goes to Kafka with the rest.
		select {
		case s.queue <- s.pending:
		case <-s.producerDone:
		}
		s.pending = nil
	}
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
	c.log.Info("stopped", zap.String("slot", c.cfg.Slot), zap.Stringer("confirmed_lsn", s.reported))
	return nil
}

// readBufferSize is the replication connection's read buffer.
const readBufferSize = 256 << 10

// read receives WAL until ctx ends or something fails, handing row changes
// to the producer.
func (s *session) read(ctx context.Context) error {
	var txn *checkpoint.Txn
	// With heartbeats on, the server has WAL to decode and keepalives to
	// send at least every interval; silence far longer than that means the
	// connection is dead without having been closed (a silent network
	// partition), which TCP alone would take many minutes to notice.
	var silence time.Duration
	if s.c.cfg.HeartbeatInterval > 0 {
		silence = max(6*s.c.cfg.HeartbeatInterval, 30*time.Second)
	}
	lastHeard := time.Now()
	// The wait for the next message ends at the next status update, or
	// when ctx ends, through the connection's read deadline: a context per
	// receive would cost a timer and a goroutine for every message, a
	// fifth of the connector's CPU at full speed.
	nc := s.conn.Conn()
	stopWatch := context.AfterFunc(ctx, func() { _ = nc.SetReadDeadline(time.Now()) })
	defer func() {
		if stopWatch() {
			_ = nc.SetReadDeadline(time.Time{})
		}
	}()
	var deadline time.Time
	for {
		if err := s.statusIfDue(ctx); err != nil {
			return err
		}
		if !deadline.Equal(s.nextStatus) {
			deadline = s.nextStatus
			if err := nc.SetReadDeadline(deadline); err != nil {
				return fmt.Errorf("receive from walsender: %w", err)
			}
		}
		if ctx.Err() != nil { // ended before the deadline was set, which the AfterFunc's may have lost to
			return nil
		}
		raw, err := s.conn.ReceiveMessage(context.Background())
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if pgconn.Timeout(err) {
				if err := s.flush(ctx); err != nil {
					return err
				}
				if silence > 0 && time.Since(lastHeard) > silence {
					return fmt.Errorf("nothing heard from the walsender for %s: reconnecting", time.Since(lastHeard).Round(time.Second))
				}
				continue
			}
			return fmt.Errorf("receive from walsender: %w", err)
		}
		lastHeard = time.Now()
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
			if err := s.flush(ctx); err != nil {
				return err
			}
			s.keepalive(ka)
		case pglogrepl.XLogDataByteID:
			xld, err := pglogrepl.ParseXLogData(data[1:])
			if err != nil {
				return fmt.Errorf("parse XLogData: %w", err)
			}
			s.dec.KeepImages(len(s.windows) > 0) // windows match row images
			st, err := s.dec.Decode(xld.WALStart, xld.WALData)
			if err != nil {
				return fatal(err)
			}
			switch st.Kind {
			case pgcodec.StepBegin:
				txn = s.tracker.Begin()
			case pgcodec.StepChanges:
				for _, ch := range st.Changes {
					s.windows.note(ch)
					txn.Add()
					msg := kafka.Message{Topic: ch.Topic, Key: ch.Key, Value: ch.Value, Headers: ch.Headers()}
					if ch.Op == event.OpDelete && s.snap != nil && s.snap.state.initial(ch.Table, xld.WALStart) {
						msg.Headers = append(msg.Headers, kafka.Header{Key: event.HeaderSnapshotting, Value: []byte("initial")})
					}
					if err := s.enqueue(ctx, outgoing{msg: msg, txn: txn, op: ch.Op, committed: s.dec.CommitTime()}); err != nil {
						return err
					}
				}
			case pgcodec.StepRelation:
				if err := s.ensureTopic(ctx, st.Topic); err != nil {
					return err
				}
				if err := s.usePrimaryKey(ctx, st.Relation); err != nil {
					return err
				}
			case pgcodec.StepMessage:
				if err := s.message(ctx, txn, st.Message); err != nil {
					return err
				}
			case pgcodec.StepCommit:
				s.tracker.Commit(txn, st.End)
				txn = nil
				if err := s.flush(ctx); err != nil {
					return err
				}
			}
		}
	}
}

// enqueue hands an event to the producer, with the next ones read: a run
// goes when it is handoff events long, at a commit, and when the walsender
// has nothing more to send for now.
func (s *session) enqueue(ctx context.Context, o outgoing) error {
	if s.pending == nil {
		s.pending = make([]outgoing, 0, handoff)
	}
	s.pending = append(s.pending, o)
	if len(s.pending) < handoff {
		return nil
	}
	return s.flush(ctx)
}

// flush hands the pending events to the producer, blocking while the
// queue is full (Kafka is slow or down) but still answering the server on
// time, so a Kafka outage does not also cost the replication connection.
func (s *session) flush(ctx context.Context) error {
	if len(s.pending) == 0 {
		return nil
	}
	run := s.pending
	select {
	case s.queue <- run:
		s.pending = nil
		return nil
	default:
	}
	for {
		timer := time.NewTimer(time.Until(s.nextStatus))
		select {
		case s.queue <- run:
			timer.Stop()
			s.pending = nil
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

// usePrimaryKey keys the relation's events by its primary key when it has
// one. The Relation message names the replica identity columns instead,
// and under REPLICA IDENTITY FULL that is every column: a key that changes
// with every update would scatter a row's events over partitions.
func (s *session) usePrimaryKey(ctx context.Context, relID uint32) error {
	if s.lookup == nil {
		conn, err := s.c.connect(ctx)
		if err != nil {
			return fmt.Errorf("connect for catalog look-ups: %w", err)
		}
		s.lookup = conn
	}
	rows, err := s.lookup.Query(ctx, `
		SELECT a.attname FROM pg_index i
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
		WHERE i.indrelid = $1 AND i.indisprimary`, relID)
	if err != nil {
		return fmt.Errorf("look up primary key of relation %d: %w", relID, err)
	}
	cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("look up primary key of relation %d: %w", relID, err)
	}
	if len(cols) > 0 {
		s.dec.SetPrimaryKey(relID, cols)
	}
	return nil
}

func (s *session) message(ctx context.Context, txn *checkpoint.Txn, m *pglogrepl.LogicalDecodingMessage) error {
	switch m.Prefix {
	case watermarkPrefix:
		return s.watermark(ctx, txn, m)
	case SignalPrefix:
		var sig signal
		if err := json.Unmarshal(m.Content, &sig); err != nil {
			s.c.log.Warn("ignoring a signal that is not JSON", zap.ByteString("content", m.Content))
			return nil
		}
		return s.snapshotAgain(ctx, sig.Snapshot)
	}
	return nil
}

// snapshotAgain queues tables for a new snapshot, saving the request before
// the signal's transaction can be confirmed.
func (s *session) snapshotAgain(ctx context.Context, tables []string) error {
	if s.snap == nil {
		s.c.log.Warn("ignoring a snapshot signal: snapshots need a state store and PostgreSQL 14", zap.Strings("tables", tables))
		return nil
	}
	var known []string
	for _, t := range tables {
		if contains(s.c.cfg.Tables, t) {
			known = append(known, t)
		} else {
			s.c.log.Warn("ignoring a snapshot signal for a table the connector does not capture", zap.String("table", t))
		}
	}
	if len(known) == 0 {
		return nil
	}
	err := s.snap.state.update(ctx, func(st *State) {
		if st.Snapshots == nil {
			st.Snapshots = make(map[string]*Progress)
		}
		for _, t := range known {
			st.Snapshots[t] = &Progress{Requested: time.Now().UTC()}
		}
	})
	if err != nil {
		return err
	}
	s.c.log.Info("snapshot requested", zap.Strings("tables", known))
	select {
	case s.snap.wake <- struct{}{}:
	default:
	}
	return nil
}

// ensureTopic creates the topic of a relation seen for the first time in
// this session (a table added to the publication while running, or
// dropped and recreated), before any of its events is produced.
func (s *session) ensureTopic(ctx context.Context, topic string) error {
	if s.topics[topic] || s.c.cfg.CreateTopic == nil {
		return nil
	}
	if err := s.c.cfg.CreateTopic(ctx, topic); err != nil {
		return fmt.Errorf("create topic %q: %w", topic, err)
	}
	s.topics[topic] = true
	return nil
}

// producerStopped explains a producer that returned while the session
// still ran: only an error no retry can fix makes it do that.
func (s *session) producerStopped() error {
	err := fmt.Errorf("kafka producer stopped: %w", s.producerErr)
	if errors.Is(s.producerErr, kafka.MessageSizeTooLarge) {
		err = fmt.Errorf("%w: a row's event is larger than Kafka accepts; raise max.message.bytes on its topic (and message.max.bytes on the brokers)", err)
	} else if fix := broker.Fix(s.producerErr); fix != "" {
		err = fmt.Errorf("%w: %s", err, fix)
	}
	return fatal(err)
}

// serverVersion is the server's server_version_num, or 0 when unknown.
func serverVersion(conn *pgconn.PgConn) int {
	v, _ := strconv.Atoi(conn.ParameterStatus("server_version_num"))
	if v == 0 {
		// server_version_num is reported from PostgreSQL 16 on; before, read
		// it from server_version ("15.18 (Debian …)").
		major, _, _ := strings.Cut(conn.ParameterStatus("server_version"), ".")
		m, _ := strconv.Atoi(major)
		v = m * 10000
	}
	return v
}
