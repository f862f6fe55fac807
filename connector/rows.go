package connector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/onesignal-cdc/onesignal-cdc/connector/pgcodec"
	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// A Reader reads rows of the source database the way the snapshot reads
// them, as the events the snapshot would write to Kafka, for the commands
// that look at what the mapping makes of the data without streaming it
// (`onesignal-cdc mapping preview` and `mapping diff`). It reads in one
// READ ONLY, REPEATABLE READ transaction: it can change nothing, and every
// table is read as of one moment, so a row and the row it references
// agree. It is not safe for concurrent use, and after an error (which
// aborts the transaction) only Close is of use.
type Reader struct {
	conn   *pgx.Conn
	tx     pgx.Tx
	db     string
	prefix string
	ver    string
	lsn    pglogrepl.LSN
	keys   map[string][]string // table → primary-key columns
}

// ReaderConfig is what OpenReader needs.
type ReaderConfig struct {
	DSN string
	// TopicPrefix and Version go into the events' source, as the
	// connector's do.
	TopicPrefix, Version string
}

// OpenReader connects with the connector's session settings (so values
// render byte for byte as the stream and the snapshot render them) and
// starts the read-only transaction.
func OpenReader(ctx context.Context, cfg ReaderConfig) (*Reader, error) {
	c := &Connector{cfg: Config{DSN: cfg.DSN}}
	conn, err := c.connect(ctx)
	if err != nil {
		return nil, withFix(fmt.Errorf("connect to postgres: %w", err))
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("start a read-only transaction: %w", err)
	}
	r := &Reader{conn: conn, tx: tx, db: conn.Config().Database, prefix: cfg.TopicPrefix, ver: cfg.Version, keys: map[string][]string{}}
	if r.ver == "" {
		r.ver = "dev"
	}
	// The snapshot's events carry the LSN where they were read; a standby
	// (a preview may well run on one) has no WAL position of its own.
	var lsn string
	if err := tx.QueryRow(ctx, `SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text`).Scan(&lsn); err == nil {
		r.lsn, _ = pglogrepl.ParseLSN(lsn)
	} else {
		r.Close(ctx)
		return nil, fmt.Errorf("read the WAL position: %w", err)
	}
	return r, nil
}

// Close ends the transaction, which changed nothing, and the connection.
func (r *Reader) Close(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	_ = r.tx.Rollback(ctx)
	r.conn.Close(ctx)
}

// Row is one row read.
type Row struct {
	Table string // "schema.table"
	// Key is the row's Kafka key, its primary key's columns as JSON, as the
	// connector keys its events.
	Key []byte
	// Event is the snapshot event of the row (op "r"), and Value its
	// encoding as the snapshot writes it (an oversized value replaced).
	Event *event.Envelope
	Value []byte
}

// Select says which rows of a table to read.
type Select struct {
	// Where is an SQL condition over the table's columns, put in the
	// SELECT's WHERE as it is; "" reads every row. It runs with the
	// connection's rights, in the read-only transaction, as one statement.
	Where string
	Args  []any // the parameters $1, $2, … of Where
	Limit int   // the most rows to read; 0: every one
}

// ErrNoTable is wrapped by the error for a table that does not exist.
var ErrNoTable = errors.New("no such table")

// Rows calls f with each row of table (schema.table) that sel selects, in
// primary-key order, as the snapshot would emit it. f's Row is its own.
func (r *Reader) Rows(ctx context.Context, table string, sel Select, f func(Row) error) error {
	key, err := r.primaryKey(ctx, table)
	if err != nil {
		return err
	}
	schema, name, _ := strings.Cut(table, ".")
	order := make([]string, len(key))
	for i, k := range key {
		order[i] = pgx.Identifier{k}.Sanitize()
	}
	sql := "SELECT * FROM " + pgx.Identifier{schema, name}.Sanitize()
	if sel.Where != "" {
		// On lines of their own, so that a comment at its end comments out
		// nothing of ours.
		sql += " WHERE (\n" + sel.Where + "\n)"
	}
	sql += " ORDER BY " + strings.Join(order, ", ")
	if sel.Limit > 0 {
		sql += fmt.Sprintf(" LIMIT %d", sel.Limit)
	}
	args := append([]any{pgx.QueryResultFormats{pgx.TextFormatCode}}, sel.Args...)
	rows, err := r.tx.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("read %s: %w", table, err)
	}
	defer rows.Close()
	fields := rows.FieldDescriptions()
	names, oids := make([]string, len(fields)), make([]uint32, len(fields))
	for i, fd := range fields {
		names[i], oids[i] = fd.Name, fd.DataTypeOID
	}
	codec := pgcodec.NewSnapshotCodec(pgcodec.Source{DB: r.db, TopicPrefix: r.prefix, Version: r.ver}, schema, name, names, oids, key)
	for rows.Next() {
		ev := codec.Event(rows.RawValues(), r.lsn, time.Now().UnixMilli())
		if err := f(Row{Table: table, Key: pgcodec.Key(ev.After, key), Event: ev, Value: pgcodec.Encode(ev, key)}); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read %s: %w", table, err)
	}
	return nil
}

// RowsWith calls f with each row of table whose column holds one of
// values, JSON values as the events carry them (a foreign key's, say).
func (r *Reader) RowsWith(ctx context.Context, table, column string, values []json.RawMessage, f func(Row) error) error {
	if len(values) == 0 {
		return nil
	}
	schema, name, _ := strings.Cut(table, ".")
	var typ string
	err := r.tx.QueryRow(ctx, `
		SELECT format_type(a.atttypid, a.atttypmod)
		FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3 AND a.attnum > 0 AND NOT a.attisdropped`, schema, name, column).Scan(&typ)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("table %s has no column %q", table, column)
	}
	if err != nil {
		return fmt.Errorf("look up column %q of %s: %w", column, table, err)
	}
	texts := make([]string, 0, len(values))
	for _, v := range values {
		var s string
		if json.Unmarshal(v, &s) != nil {
			s = string(bytes.TrimSpace(v)) // a number or a boolean: its text
		}
		texts = append(texts, s)
	}
	// Compared as the column's own type, so its index serves.
	where := pgx.Identifier{column}.Sanitize() + " = ANY($1::text[]::" + typ + "[])"
	return r.Rows(ctx, table, Select{Where: where, Args: []any{texts}}, f)
}

// primaryKey is the table's primary key, looked up once.
func (r *Reader) primaryKey(ctx context.Context, table string) ([]string, error) {
	if key, ok := r.keys[table]; ok {
		return key, nil
	}
	var exists bool
	if err := r.tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, pgx.Identifier(strings.SplitN(table, ".", 2)).Sanitize()).Scan(&exists); err != nil {
		return nil, fmt.Errorf("look up table %s: %w", table, err)
	}
	if !exists {
		return nil, fmt.Errorf("%w: %s (or this user may not see it)", ErrNoTable, table)
	}
	key, _, err := primaryKey(ctx, r.tx.Conn(), table)
	if errors.Is(err, errNoPrimaryKey) {
		return nil, fmt.Errorf("table %s has no primary key: the connector reads and keys its rows by one; add one (ALTER TABLE … ADD PRIMARY KEY)", table)
	}
	if err != nil {
		return nil, err
	}
	r.keys[table] = key
	return key, nil
}

// LSN is the WAL position the transaction reads as of
// (pg_current_wal_lsn(), or on a standby the last replayed): every
// change committed before it is in what the Reader reads.
func (r *Reader) LSN() pglogrepl.LSN { return r.lsn }
