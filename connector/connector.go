// Package connector streams row changes from PostgreSQL logical replication
// (pgoutput) into Kafka, one event per row change, in a Debezium-compatible
// envelope.
//
// Its guarantee: Postgres is told that WAL is flushed (the slot's
// confirmed_flush_lsn) only up to the commit of a transaction whose events,
// and those of every earlier transaction, Kafka has acknowledged with
// acks=all. After any crash Postgres resends everything past that point, so
// no committed change is lost; some may reach Kafka twice, as exact repeats
// (apart from the envelope's processing time, ts_ms).
package connector

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/onesignal-cdc/onesignal-cdc/checkpoint"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/internal/errclass"
	"github.com/onesignal-cdc/onesignal-cdc/retry"
)

// Config is what the connector needs to know.
type Config struct {
	DSN         string   // connection string of the source database
	Slot        string   // logical replication slot, created when missing
	Publication string   // publication, created or extended to cover Tables
	Tables      []string // "schema.table" names to capture
	// Columns names, per table of Tables, the columns the mapping reads,
	// each with the setting that names it (column → "mapping.users.tags",
	// as transform.Mapping.Columns gives them). Inspect reports every one a
	// table lacks. Nil: columns are not checked.
	Columns map[string]map[string]string
	// Expressions are the mapping's expressions; Inspect evaluates each
	// over rows of its table's column types, NULLs included, and reports
	// the type errors and unhandled NULLs. Nil: not checked.
	Expressions []Expression
	// Publish says, per table of Tables, what the mapping reads of it
	// (transform.Mapping.Publish): from PostgreSQL 15 on the publication
	// lists those columns, with the primary key and the replica identity,
	// and carries the row filter where PostgreSQL allows it; where it
	// cannot list them, the connector leaves the other columns out of its
	// events. A table missing: every column and every row.
	Publish map[string]Publish
	// Fingerprints are, per table of Tables, a hash of what the mapping
	// reads of it (transform.Mapping.Fingerprint), kept in the state: a
	// table whose fingerprint changed since the last run, or that is new
	// to the mapping, is snapshotted again at start, beside the stream.
	// Nil: not tracked.
	Fingerprints   map[string]string
	TopicPrefix    string        // topics are <prefix>.<schema>.<table>
	StatusInterval time.Duration // how often to report the confirmed LSN
	// HeartbeatInterval is how often the connector writes a logical
	// decoding message into the WAL (pg_logical_emit_message), so that a
	// database whose published tables are idle still moves the stream and
	// lets the slot release WAL; 0 turns it off.
	HeartbeatInterval time.Duration
	// CreateTopic, if set, makes sure a topic exists before the first
	// event of a relation goes to it. Nil: topics must already exist.
	CreateTopic func(ctx context.Context, topic string) error
	// State keeps what the connector must remember across restarts (snapshot
	// progress, that a slot was in use). Nil: no snapshots, and a lost slot
	// cannot be told from a new one.
	State StateStore
	// InitialSnapshot emits the existing rows of every table (op "r") when
	// the slot is first created, before and while streaming. Needs State.
	InitialSnapshot bool
	// SnapshotChunkSize is how many rows one snapshot chunk reads; default 10000.
	SnapshotChunkSize int
	// SnapshotParallelism is how many chunks of one table the snapshot
	// reads at once, each on a connection of its own (tables are read side
	// by side, each so); default 1.
	SnapshotParallelism int
	QueueSize           int // events buffered between the WAL reader and Kafka; default 4096
	BatchSize           int // most events per Kafka write; default 1000
	// Lanes is how many Kafka writes may be in flight at once, each for
	// its own share of the keys; default 4.
	Lanes int
	// ShutdownTimeout bounds how long a stop waits for buffered events to
	// reach Kafka; default 10s. What does not make it is resent by Postgres.
	ShutdownTimeout time.Duration
	// Observer, if set, learns the connector's state, its Kafka writes and
	// the positions it confirms (stats.go).
	Observer Observer
	// Version is the build's version, reported in every event's source
	// block (source.version); default "dev".
	Version string
}

// MessageWriter is the part of a Kafka producer the connector uses:
// WriteMessages returns once Kafka acknowledged every message, or an error.
// *broker.Writer from broker.NewWriter is one.
type MessageWriter interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Connector is the Postgres → Kafka half of the pipeline.
type Connector struct {
	cfg   Config
	w     MessageWriter
	log   *zap.Logger
	now   func() time.Time
	state *stateKeeper // loaded by setup when cfg.State is set
	obs   Observer

	// What the publication carries of each table (publication.go): plans
	// are made at setup and every heartbeat, and followed by the snapshot
	// and the decoder; notes are what was last logged of each; stuck the
	// entries that still differed after the connector changed them
	// (ensurePublication, which never runs twice at once, keeps it).
	planner planner
	pubMu   sync.Mutex
	plans   map[string]*tablePlan
	notes   map[string]string
	stuck   map[string]string
}

// New returns a connector writing through w.
func New(cfg Config, w MessageWriter, log *zap.Logger) *Connector {
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 4096
	}
	if cfg.Lanes <= 0 {
		cfg.Lanes = 4
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = 10 * time.Second
	}
	if cfg.SnapshotChunkSize <= 0 {
		cfg.SnapshotChunkSize = 10000
	}
	if cfg.SnapshotParallelism <= 0 {
		cfg.SnapshotParallelism = 1
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	obs := cfg.Observer
	if obs == nil {
		obs = nopObserver{}
	}
	return &Connector{cfg: cfg, w: w, log: log.Named("connector"), now: time.Now, obs: obs, notes: map[string]string{}, stuck: map[string]string{}}
}

// Run prepares the publication and slot, then streams until ctx ends,
// reconnecting with backoff after connection failures. It returns nil after
// a clean stop, or the error that made streaming impossible.
func (c *Connector) Run(ctx context.Context) (err error) {
	defer func() { c.obs.StatusChanged(Stopped, err) }()
	b := retry.Reconnect.Start()
	standing := false
	c.obs.StatusChanged(Connecting, nil)
	for {
		b.Begin()
		err := c.setup(ctx)
		if err == nil {
			err = c.stream(ctx)
		}
		if ctx.Err() != nil {
			return nil
		}
		if classify(err) != errclass.Retryable {
			return withFix(err)
		}
		b.Done()
		wait := b.Next(err)
		if slotInUse(err) {
			// Another instance streams from the slot: stand by, and take
			// over soon after it stops.
			wait = retry.StandbyPoll
			if !standing {
				c.log.Info("the slot is in use by another process; waiting as a standby", zap.String("slot", c.cfg.Slot), zap.Error(err))
				c.obs.StatusChanged(Standby, err)
			}
			standing = true
		} else {
			standing = false
			c.log.Warn("replication interrupted; reconnecting", zap.String("slot", c.cfg.Slot), zap.Error(err), zap.Duration("wait", wait))
			c.obs.StatusChanged(Connecting, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// slotInUse reports whether err says another process holds the slot.
func slotInUse(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55006"
}

// sessionParams make every connection of the connector, the walsender's
// included, render values the same way whatever the server's or the
// database's defaults: the stream and the snapshot must agree byte for
// byte, and pgcodec reads these forms.
var sessionParams = map[string]string{
	"client_encoding": "UTF8",
	"DateStyle":       "ISO, MDY",
	"TimeZone":        "UTC",
	"IntervalStyle":   "postgres",
	"bytea_output":    "hex",
}

// connect opens a regular connection with sessionParams.
func (c *Connector) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(c.cfg.DSN)
	if err != nil {
		return nil, fatal(fmt.Errorf("postgres.dsn: %w", err))
	}
	maps.Copy(cfg.RuntimeParams, sessionParams)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := matchEncoding(ctx, conn.PgConn()); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return conn, nil
}

// matchEncoding keeps the bytes of a SQL_ASCII database as they are. Such
// a database holds text in any encoding, and with client_encoding UTF8 the
// server refuses to send a value that is not valid UTF-8: the stream would
// stop for good at that row. With SQL_ASCII it sends the bytes, and the
// decoder replaces what is not UTF-8 with U+FFFD (docs/events.md).
func matchEncoding(ctx context.Context, conn *pgconn.PgConn) error {
	if conn.ParameterStatus("server_encoding") != "SQL_ASCII" {
		return nil
	}
	if _, err := conn.Exec(ctx, "SET client_encoding = 'SQL_ASCII'").ReadAll(); err != nil {
		return fmt.Errorf("set client_encoding for a SQL_ASCII database: %w", err)
	}
	return nil
}

// setup checks the database, then creates the publication and the slot
// when they are missing. Whatever Inspect finds stops the connector with one
// error listing every problem and its fix: no retry mends a configuration.
func (c *Connector) setup(ctx context.Context) error {
	conn, err := c.connect(ctx)
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err) // Run adds the fix
	}
	defer conn.Close(context.WithoutCancel(ctx))
	findings, warnings, err := Inspect(ctx, conn, c.cfg)
	if err != nil {
		return err
	}
	if len(findings) > 0 {
		return fatal(findings)
	}
	for _, w := range warnings {
		c.log.Warn(w.Problem, zap.String("fix", w.Fix))
	}
	if err := c.ensurePublication(ctx, conn); err != nil {
		return err
	}
	return c.ensureSlot(ctx, conn)
}

func tableList(tables []string) string {
	parts := make([]string, len(tables))
	for i, t := range tables {
		schema, table, _ := strings.Cut(t, ".")
		parts[i] = pgx.Identifier{schema, table}.Sanitize()
	}
	return strings.Join(parts, ", ")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// outgoing is an event on its way to Kafka, with the transaction it
// belongs to so its acknowledgement can be counted.
type outgoing struct {
	msg   kafka.Message
	txn   *checkpoint.Txn
	chunk *chunk // set for snapshot rows, whose chunk also counts them
	// op and committed (the transaction's commit time) are for the
	// observer.
	op        event.Op
	committed time.Time
	// flushed, when set, marks no event: the producer's lane calls Done
	// once everything it was given before is written.
	flushed *sync.WaitGroup
}
