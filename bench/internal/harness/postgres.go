package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
)

// EnvServer names a PostgreSQL server to use instead of a throwaway one.
// Its role needs CREATEDB and REPLICATION, and wal_level must be logical.
const EnvServer = "ONESIGNAL_CDC_BENCH_PG"

// Server is the PostgreSQL the benchmarks run on.
type Server struct {
	dsn string // connects to some database of the server
	bin string // directory of the server's client programs; "" means PATH
	lib string // scripts/lib.sh
	// cluster is the throwaway server; nil for $ONESIGNAL_CDC_BENCH_PG.
	cluster *pgtest.Cluster
	// Describe says how the server was set up, for the report.
	Describe string
}

// StartServer returns the server at $ONESIGNAL_CDC_BENCH_PG, or starts a
// throwaway one from Go (internal/pgtest, as the tests' own clusters),
// with Debian's PostgreSQL, which the project's script installs when it is
// missing (scripts/lib.sh ensure_postgres).
func StartServer(ctx context.Context) (*Server, error) {
	lib, err := findLib()
	if err != nil {
		return nil, err
	}
	if dsn := os.Getenv(EnvServer); dsn != "" {
		return &Server{dsn: dsn, lib: lib, Describe: "the server at $" + EnvServer}, nil
	}
	bin, err := postgresBin(ctx, lib)
	if err != nil {
		return nil, err
	}
	Progress("starting a throwaway PostgreSQL (%s)", bin)
	c, err := pgtest.Launch(bin, pgtest.Options{Locale: "C.UTF-8", Settings: throwawaySettings})
	if err != nil {
		return nil, fmt.Errorf("start a throwaway PostgreSQL: %w (or point $%s at a server)", err, EnvServer)
	}
	return &Server{dsn: c.DSN, bin: bin, lib: lib, cluster: c,
		Describe: "a throwaway cluster started by the benchmark (fsync=off, full_page_writes=off, synchronous_commit on, other settings default)"}, nil
}

// throwawaySettings are the benchmark server's, on top of pgtest's
// logical replication defaults: room for every benchmark's connections
// and slots, and speed over durability, the data dying with the run. But
// synchronous_commit stays on: walsenders send only flushed WAL, so an
// asynchronous commit would reach a replication client up to
// wal_writer_delay late.
var throwawaySettings = []string{"max_connections=200", "max_replication_slots=64", "max_wal_senders=64", "full_page_writes=off"}

// postgresBin finds the newest installed PostgreSQL's binaries, and has
// the project's script install Debian's package when there is none.
func postgresBin(ctx context.Context, lib string) (string, error) {
	find := func() string {
		dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		best, bestVersion := "", 0
		for _, d := range dirs {
			v, err := strconv.Atoi(filepath.Base(filepath.Dir(d)))
			if err == nil && v > bestVersion && fileExists(filepath.Join(d, "initdb")) {
				best, bestVersion = d, v
			}
		}
		return best
	}
	if bin := find(); bin != "" {
		return bin, nil
	}
	Progress("installing PostgreSQL (scripts/lib.sh ensure_postgres)")
	cmd := exec.CommandContext(ctx, "bash", "-c", `source "$1" && ensure_postgres`, "bench", lib)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("install PostgreSQL: %w", err)
	}
	if bin := find(); bin != "" {
		return bin, nil
	}
	return "", errors.New("no PostgreSQL under /usr/lib/postgresql after ensure_postgres: install it, or point $" + EnvServer + " at a server")
}

// findLib looks for scripts/lib.sh in the working directory and its parents.
func findLib() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "scripts", "lib.sh")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("scripts/lib.sh not found above %s: run from the repository", dir)
		}
		dir = parent
	}
}

// LibSh is the path of scripts/lib.sh, for a bash script to source.
func (s *Server) LibSh() string { return s.lib }

// Root is the repository's top directory.
func (s *Server) Root() string { return filepath.Dir(filepath.Dir(s.lib)) }

// Stop removes a throwaway server; it leaves an external one alone.
func (s *Server) Stop() error {
	if s.cluster == nil {
		return nil
	}
	Progress("removing the throwaway PostgreSQL in %s", s.cluster.Dir())
	return s.cluster.Remove()
}

// Program returns the path of one of PostgreSQL's client programs.
func (s *Server) Program(name string) (string, error) {
	if s.bin != "" {
		if p := filepath.Join(s.bin, name); fileExists(p) {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found: install PostgreSQL's client programs", name)
	}
	return p, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// DB is a benchmark's own database, dropped at the end with every slot in
// it.
type DB struct {
	Name   string
	DSN    string
	server string
}

// CreateDatabase creates a database with a random name.
func (s *Server) CreateDatabase(ctx context.Context) (*DB, error) {
	conn, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "onesignal_cdc_bench_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return nil, fmt.Errorf("create database %s: %w", name, err)
	}
	dsn, err := withDatabase(s.dsn, name)
	if err != nil {
		return nil, err
	}
	return &DB{Name: name, DSN: dsn, server: s.dsn}, nil
}

// withDatabase points dsn, a URL or keyword/value string, at database name.
func withDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("$%s: %w", EnvServer, err)
		}
		u.Path, u.RawPath = "/"+name, ""
		return u.String(), nil
	}
	return dsn + " dbname=" + name, nil // the last of a repeated keyword wins
}

// Drop ends every session on the database, drops its slots and the
// database.
func (d *DB) Drop() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.server)
	if err != nil {
		return fmt.Errorf("drop database %s: %w", d.Name, err)
	}
	defer conn.Close(ctx)
	for {
		var slots int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE database = $1`, d.Name).Scan(&slots); err != nil {
			return fmt.Errorf("drop database %s: %w", d.Name, err)
		}
		if slots == 0 {
			break
		}
		_, _ = conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, d.Name)
		_, _ = conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active`, d.Name)
		select {
		case <-ctx.Done():
			return fmt.Errorf("drop the replication slots of %s: %w", d.Name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if _, err := conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{d.Name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", d.Name, err)
	}
	return nil
}

// Connect opens a connection to the database.
func (d *DB) Connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, d.DSN)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", d.Name, err)
	}
	return conn, nil
}

// Version is the server's version.
func (d *DB) Version(ctx context.Context) (string, error) {
	conn, err := d.Connect(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var v string
	err = conn.QueryRow(ctx, `SHOW server_version`).Scan(&v)
	return v, err
}

// Exec runs statements on a connection of its own.
func (d *DB) Exec(ctx context.Context, sql ...string) error {
	conn, err := d.Connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, s := range sql {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", firstLine(s), err)
		}
	}
	return nil
}

// ExecArgs runs one statement with arguments on a connection of its own.
func (d *DB) ExecArgs(ctx context.Context, sql string, args ...any) error {
	conn, err := d.Connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("%s: %w", firstLine(sql), err)
	}
	return nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

// Slot names a replication slot after the database, since slot names are
// unique per server.
func (d *DB) Slot(name string) string { return d.Name + "_" + name }

// CreateSlot creates a logical replication slot with the output plugin
// (pgoutput, test_decoding) and returns where it starts.
func (d *DB) CreateSlot(ctx context.Context, slot, plugin string) (pglogrepl.LSN, error) {
	conn, err := d.Connect(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var lsn pglogrepl.LSN
	if err := conn.QueryRow(ctx, `SELECT lsn FROM pg_create_logical_replication_slot($1, $2)`, slot, plugin).Scan(&lsn); err != nil {
		return 0, fmt.Errorf("create slot %s: %w", slot, err)
	}
	return lsn, nil
}

// DropSlots drops the slots, waiting for their walsenders to go.
func (d *DB) DropSlots(ctx context.Context, slots ...string) error {
	conn, err := d.Connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range slots {
		for {
			_, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, s)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("drop slot %s: %w", s, err)
			}
			select { // still active: its walsender is exiting
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// CurrentLSN is the end of the WAL written so far.
func CurrentLSN(ctx context.Context, conn *pgx.Conn) (pglogrepl.LSN, error) {
	var lsn pglogrepl.LSN
	err := conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()`).Scan(&lsn)
	return lsn, err
}

// WaitSlot waits until the slot's confirmed_flush_lsn reaches end, and
// reports when it did. Each poll also calls check, which may end the wait
// with an error (the consumer died) and note other milestones.
func (d *DB) WaitSlot(ctx context.Context, slot string, end pglogrepl.LSN, timeout time.Duration, check func() error) (time.Time, error) {
	conn, err := d.Connect(ctx)
	if err != nil {
		return time.Time{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var confirmed *pglogrepl.LSN
		err := conn.QueryRow(ctx, `SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&confirmed)
		now := time.Now()
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return time.Time{}, fmt.Errorf("read slot %s: %w", slot, err)
		}
		if confirmed != nil && *confirmed >= end {
			return now, nil
		}
		if err := check(); err != nil {
			return time.Time{}, err
		}
		if now.After(deadline) {
			at := "nothing"
			if confirmed != nil {
				at = confirmed.String()
			}
			return time.Time{}, fmt.Errorf("slot %s confirmed %s after %s, not yet %s", slot, at, timeout, end)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-tick.C:
		}
	}
}
