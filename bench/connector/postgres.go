package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// EnvServer names a PostgreSQL server to use instead of a throwaway one.
// Its role needs CREATEDB and REPLICATION, and wal_level must be logical.
const EnvServer = "ONESIGNAL_CDC_BENCH_PG"

// server is the PostgreSQL the benchmark runs on.
type server struct {
	dsn      string // connects to some database of the server
	bin      string // directory of the server's client programs; "" means PATH
	lib      string // scripts/lib.sh, for a throwaway server
	dir      string // the throwaway server's directory; "" for $ONESIGNAL_CDC_BENCH_PG
	describe string // how the server was set up, for the report
}

// startServer returns the server at $ONESIGNAL_CDC_BENCH_PG, or starts a
// throwaway one with the project's own helper, which creates and
// configures it the way the tests do.
func startServer(ctx context.Context) (*server, error) {
	if dsn := os.Getenv(EnvServer); dsn != "" {
		return &server{dsn: dsn, describe: "the server at $" + EnvServer}, nil
	}
	lib, err := findLib()
	if err != nil {
		return nil, err
	}
	progress("starting a throwaway PostgreSQL (scripts/lib.sh pg_start_throwaway)")
	const script = `set -eu
source "$1"
dir=$(pg_tempdir)
printf 'dir %s\n' "$dir"
pg_start_throwaway "$dir" >&2
printf 'dsn %s\nbin %s\n' "$PG_DSN" "$PG_BIN"`
	cmd := exec.CommandContext(ctx, "bash", "-c", script, "bench", lib)
	cmd.Stderr = os.Stderr
	out, runErr := cmd.Output()
	s := &server{lib: lib, describe: "a throwaway cluster from scripts/lib.sh (fsync=off, full_page_writes=off, synchronous_commit on, other settings default)"}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		switch k {
		case "dir":
			s.dir = v
		case "dsn":
			s.dsn = v
		case "bin":
			s.bin = v
		}
	}
	if runErr != nil || s.dsn == "" {
		_ = s.stop()
		return nil, fmt.Errorf("start a throwaway PostgreSQL: %v (or point $%s at a server)", runErr, EnvServer)
	}
	return s, nil
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
			return "", fmt.Errorf("scripts/lib.sh not found above %s: run from the repository, or set $%s", dir, EnvServer)
		}
		dir = parent
	}
}

// stop removes a throwaway server; it leaves an external one alone.
func (s *server) stop() error {
	if s.dir == "" {
		return nil
	}
	progress("removing the throwaway PostgreSQL in %s", s.dir)
	cmd := exec.Command("bash", "-c", `source "$1" && pg_destroy "$2"`, "bench", s.lib, s.dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("remove the throwaway PostgreSQL in %s: %w", s.dir, err)
	}
	return nil
}

// program returns the path of one of PostgreSQL's client programs.
func (s *server) program(name string) (string, error) {
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

// database is the benchmark's own database, dropped at the end with every
// slot in it.
type database struct {
	name   string
	dsn    string
	server string
}

func (s *server) createDatabase(ctx context.Context) (*database, error) {
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
	return &database{name: name, dsn: dsn, server: s.dsn}, nil
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

// drop ends every session on the database, drops its slots and the database.
func (d *database) drop() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.server)
	if err != nil {
		return fmt.Errorf("drop database %s: %w", d.name, err)
	}
	defer conn.Close(ctx)
	for {
		var slots int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE database = $1`, d.name).Scan(&slots); err != nil {
			return fmt.Errorf("drop database %s: %w", d.name, err)
		}
		if slots == 0 {
			break
		}
		_, _ = conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, d.name)
		_, _ = conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active`, d.name)
		select {
		case <-ctx.Done():
			return fmt.Errorf("drop the replication slots of %s: %w", d.name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if _, err := conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{d.name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", d.name, err)
	}
	return nil
}

func (d *database) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, d.dsn)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", d.name, err)
	}
	return conn, nil
}

func (d *database) version(ctx context.Context) (string, error) {
	conn, err := d.connect(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var v string
	err = conn.QueryRow(ctx, `SHOW server_version`).Scan(&v)
	return v, err
}

// exec runs statements on a connection of its own.
func (d *database) exec(ctx context.Context, sql ...string) error {
	conn, err := d.connect(ctx)
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

// execArgs runs one statement with arguments on a connection of its own.
func (d *database) execArgs(ctx context.Context, sql string, args ...any) error {
	conn, err := d.connect(ctx)
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

// slot names a replication slot after the database, since slot names are
// unique per server.
func (d *database) slot(name string) string { return d.name + "_" + name }

func (d *database) createSlot(ctx context.Context, slot string) (pglogrepl.LSN, error) {
	conn, err := d.connect(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var lsn pglogrepl.LSN
	if err := conn.QueryRow(ctx, `SELECT lsn FROM pg_create_logical_replication_slot($1, 'pgoutput')`, slot).Scan(&lsn); err != nil {
		return 0, fmt.Errorf("create slot %s: %w", slot, err)
	}
	return lsn, nil
}

// dropSlots drops the slots, waiting for their walsenders to go.
func (d *database) dropSlots(ctx context.Context, slots ...string) error {
	conn, err := d.connect(ctx)
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

// currentLSN is the end of the WAL written so far.
func (d *database) currentLSN(ctx context.Context, conn *pgx.Conn) (pglogrepl.LSN, error) {
	var lsn pglogrepl.LSN
	err := conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()`).Scan(&lsn)
	return lsn, err
}

// The benchmark's tables look like a user table a OneSignal sync reads:
// ids, text, a small jsonb document and timestamps, about 200 bytes a row.
const tableColumns = `(
	id          bigint PRIMARY KEY,
	external_id text NOT NULL,
	email       text NOT NULL,
	language    text NOT NULL,
	country     text,
	score       integer NOT NULL,
	tags        jsonb,
	created_at  timestamptz NOT NULL,
	updated_at  timestamptz NOT NULL
)`

// insertRows inserts the rows with ids $1 to $2.
func insertRows(table string) string {
	return `INSERT INTO ` + table + `
	SELECT g, 'ext-' || g, 'user' || g || '@example.com',
	       (ARRAY['en','de','fr','es','pt'])[1 + g % 5], 'US', (g % 1000)::int,
	       jsonb_build_object('plan', 'pro', 'visits', g % 97, 'beta', g % 2 = 0),
	       now(), now()
	FROM generate_series($1::bigint, $2::bigint) g`
}

// updateRows changes the rows with ids $1 to $2.
func updateRows(table string) string {
	return `UPDATE ` + table + `
	SET score = score + 1, updated_at = now(), tags = jsonb_set(tags, '{visits}', to_jsonb(score + 1))
	WHERE id BETWEEN $1 AND $2`
}

// workload writes rows changes in transactions of txn rows: of every five
// transactions three insert new rows and two update rows inserted before,
// cycling through them. It returns how many transactions of each kind it
// committed and the end of the WAL after the last commit.
func (d *database) workload(ctx context.Context, table string, rows, txn int) (end pglogrepl.LSN, inserts, updates int, err error) {
	conn, err := d.connect(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	inserted, cursor := 0, 0
	for i, done := 0, 0; done < rows; i++ {
		n := min(txn, rows-done)
		if i%5 >= 3 && inserted >= n {
			if cursor+n > inserted {
				cursor = 0
			}
			if _, err := conn.Exec(ctx, updateRows(table), cursor+1, cursor+n); err != nil {
				return 0, 0, 0, fmt.Errorf("update transaction %d: %w", i, err)
			}
			cursor += n
			updates++
		} else {
			if _, err := conn.Exec(ctx, insertRows(table), inserted+1, inserted+n); err != nil {
				return 0, 0, 0, fmt.Errorf("insert transaction %d: %w", i, err)
			}
			inserted += n
			inserts++
		}
		done += n
	}
	end, err = d.currentLSN(ctx, conn)
	return end, inserts, updates, err
}

// recvlogical is pg_recvlogical draining a pgoutput slot to /dev/null until
// it has consumed the WAL up to end.
func (b *bench) recvlogical(ctx context.Context, slot, publication string, end pglogrepl.LSN) (run, error) {
	prog, err := b.srv.program("pg_recvlogical")
	if err != nil {
		return run{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.opts.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, "--dbname", b.db.dsn, "--slot", slot, "--start",
		"--endpos", end.String(), "--no-loop", "--file", "/dev/null",
		"--option", "proto_version=1", "--option", "publication_names="+publication)
	cmd.Stderr = os.Stderr
	started := time.Now()
	if err := cmd.Run(); err != nil {
		return run{}, fmt.Errorf("pg_recvlogical: %w", err)
	}
	r := run{elapsed: time.Since(started)}
	r.cpu, r.maxRSS = usage(cmd.ProcessState)
	return r, nil
}

// waitSlot waits until the slot's confirmed_flush_lsn reaches end, and
// reports when it did, counted from since. Each poll also calls check,
// which may end the wait with an error (the connector died) and notes
// other milestones.
func (d *database) waitSlot(ctx context.Context, slot string, end pglogrepl.LSN, timeout time.Duration, check func() error) (time.Time, error) {
	conn, err := d.connect(ctx)
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
