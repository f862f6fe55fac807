// Package pgtest gives each test its own database on the PostgreSQL server
// that the test command (./scripts/test) started, with wal_level=logical, and
// removes it, replication slots included, when the test ends.
//
// The server is found through ONESIGNAL_CDC_TEST_PG. Without it a test is
// skipped on a developer's machine, but fails under CI=true: a CI run that
// silently skipped every database test would prove nothing.
//
// Replication slot names are unique per server, not per database: tests that
// run in parallel must name their slots apart, for example after DB.Name.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN names the variable holding the connection string of the test server.
const EnvDSN = "ONESIGNAL_CDC_TEST_PG"

// opTimeout bounds each helper's round trips, so a wedged server fails the
// test with a message instead of running into go test's global timeout.
const opTimeout = 30 * time.Second

// ServerDSN returns the connection string of the test server, from
// ONESIGNAL_CDC_TEST_PG. When it is unset the test fails under CI=true (or
// any other true value of CI) and is skipped otherwise.
func ServerDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvDSN)
	if dsn != "" {
		return dsn
	}
	const hint = EnvDSN + " is not set: run ./scripts/test, which starts a throwaway PostgreSQL"
	if underCI() {
		t.Fatalf("%s (CI=%s: database tests must run, not skip)", hint, os.Getenv("CI"))
	}
	t.Skip(hint)
	return ""
}

func underCI() bool {
	switch strings.ToLower(strings.TrimSpace(os.Getenv("CI"))) {
	case "1", "t", "true", "y", "yes", "on":
		return true
	}
	return false
}

// DB is a database created for one test.
type DB struct {
	Name string // t_ and 8 random hex digits
	DSN  string // a regular connection to this database

	server string
}

// NewDB creates a database for t and registers a cleanup that ends every
// connection to it (walsenders included), drops its replication slots and
// drops the database. A failed cleanup fails the test: a slot left behind
// would pin WAL for every later test on the server.
func NewDB(t testing.TB) *DB {
	t.Helper()
	return NewDBWith(t, "")
}

// NewDBWith is NewDB with options for CREATE DATABASE, e.g.
// "ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0".
func NewDBWith(t testing.TB, options string) *DB {
	t.Helper()
	server := ServerDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()

	admin, err := pgx.Connect(ctx, server)
	if err != nil {
		t.Fatalf("pgtest: connect to the test server: %v", err)
	}
	defer admin.Close(ctx)

	name := "t_" + randomHex(t, 4)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" "+options); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	d := &DB{Name: name, DSN: withDatabase(server, name), server: server}
	t.Cleanup(func() {
		if err := d.drop(); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return d
}

// ReplicationDSN returns DSN with replication=database, the connection a
// logical replication client (pglogrepl over pgconn) needs.
func (d *DB) ReplicationDSN() string {
	return withParam(d.DSN, "replication", "database")
}

// Exec runs sql on a connection of its own and fails the test on error. With
// no args, sql may hold several statements; with args, exactly one.
func (d *DB) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	err := d.withConn(func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, sql, args...)
		return err
	})
	if err != nil {
		t.Fatalf("pgtest: exec %q: %v", sql, err)
	}
}

// Conn opens a connection to the database, closed when the test ends. Like
// any pgx.Conn it serves one goroutine at a time.
func (d *DB) Conn(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.DSN)
	if err != nil {
		t.Fatalf("pgtest: connect to %s: %v", d.Name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		_ = conn.Close(ctx) // the server may be gone by now: nothing to report
	})
	return conn
}

// SlotConfirmedFlush returns the confirmed_flush_lsn of the replication slot
// of this database named slot, as PostgreSQL prints it (e.g. "0/1A2B3C8"),
// and whether the slot exists. The LSN is "" when the slot does not exist or
// has none yet.
func (d *DB) SlotConfirmedFlush(t testing.TB, slot string) (lsn string, ok bool) {
	t.Helper()
	var flushed *string
	err := d.withConn(func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx,
			`SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1 AND database = $2`,
			slot, d.Name).Scan(&flushed)
	})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", false
	case err != nil:
		t.Fatalf("pgtest: read slot %s: %v", slot, err)
	}
	if flushed == nil {
		return "", true
	}
	return *flushed, true
}

// CurrentLSN returns pg_current_wal_lsn() as PostgreSQL prints it: the end of
// the WAL written so far, which a consumer has caught up with once its slot
// confirms it.
func (d *DB) CurrentLSN(t testing.TB) string {
	t.Helper()
	var lsn string
	err := d.withConn(func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&lsn)
	})
	if err != nil {
		t.Fatalf("pgtest: read the current WAL LSN: %v", err)
	}
	return lsn
}

// withConn runs f on a fresh connection to the database. A connection per call
// costs a few milliseconds and keeps the helpers safe for concurrent use and
// right after a test restarts the server.
func (d *DB) withConn(f func(context.Context, *pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.DSN)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return f(ctx, conn)
}

// drop removes the database and its slots. A slot held by a walsender cannot
// be dropped and a database with slots cannot be dropped, even WITH (FORCE),
// so it ends the walsenders first and retries until the slots are gone.
func (d *DB) drop() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.server)
	if err != nil {
		return fmt.Errorf("connect to the test server: %w", err)
	}
	defer conn.Close(ctx)

	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var slots int
		err := conn.QueryRow(ctx,
			`SELECT count(*) FROM pg_replication_slots WHERE database = $1`, d.Name).Scan(&slots)
		if err != nil {
			return fmt.Errorf("list replication slots: %w", err)
		}
		if slots == 0 {
			break
		}
		// A walsender may still be exiting after the terminate of the previous
		// round, or a client may reconnect: the next round sees to both, and an
		// error here is only final once the deadline passes.
		_, err = conn.Exec(ctx, `
			SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = $1 AND pid <> pg_backend_pid()`, d.Name)
		if err == nil {
			_, err = conn.Exec(ctx, `
				SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
				WHERE database = $1 AND NOT active`, d.Name)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("drop %d replication slot(s): %w (last error: %v)", slots, ctx.Err(), err)
		case <-tick.C:
		}
	}

	_, err = conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{d.Name}.Sanitize()+" WITH (FORCE)")
	return err
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("pgtest: random name: %v", err)
	}
	return hex.EncodeToString(b)
}

// withDatabase points dsn, a URL or keyword/value connection string, at database name.
func withDatabase(dsn, name string) string {
	if u, ok := parseURL(dsn); ok {
		u.Path, u.RawPath = "/"+name, ""
		return u.String()
	}
	return dsn + " dbname=" + name // the last of a repeated keyword wins
}

// withParam sets a connection parameter in dsn, a URL or keyword/value connection string.
func withParam(dsn, key, value string) string {
	if u, ok := parseURL(dsn); ok {
		q := u.Query()
		q.Set(key, value)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " " + key + "=" + value
}

func parseURL(dsn string) (*url.URL, bool) {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, false
	}
	return u, true
}
