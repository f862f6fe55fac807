package pgtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvBin names the variable holding the directory of initdb and pg_ctl,
// which tests that run a server of their own need.
const EnvBin = "ONESIGNAL_CDC_TEST_PGBIN"

// Cluster is a PostgreSQL server of one test's own, with wal_level=logical,
// for tests that restart or crash it (the shared server must stay up for
// the tests running beside them), or of a program's, the benchmarks'.
type Cluster struct {
	DSN string // the postgres database, as the superuser postgres

	bin, dir, data, log string
	opts                string // the server's -o options, port included
	asPostgres          bool   // run the binaries as the postgres user (the test runs as root)
}

// StartCluster initialises a throwaway cluster under /tmp, starts it on a
// free port of 127.0.0.1 with settings (name=value) on top of logical
// replication defaults, and registers a cleanup that stops it and removes
// its files. Without ONESIGNAL_CDC_TEST_PGBIN the test fails under CI=true
// and is skipped otherwise, like ServerDSN.
func StartCluster(t testing.TB, settings ...string) *Cluster {
	t.Helper()
	bin := os.Getenv(EnvBin)
	if bin == "" {
		const hint = EnvBin + " is not set: run ./scripts/test, which names the PostgreSQL binaries"
		if underCI() {
			t.Fatalf("%s (CI=%s: database tests must run, not skip)", hint, os.Getenv("CI"))
		}
		t.Skip(hint)
	}
	c, err := Launch(bin, Options{Settings: settings})
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Remove(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return c
}

// Options are what Launch may change of a throwaway cluster.
type Options struct {
	// Settings are name=value pairs on top of the logical replication
	// defaults (wal_level=logical, 10 slots and walsenders, fsync=off).
	Settings []string
	// Locale is initdb's; "" is C.
	Locale string
}

// Launch initialises a throwaway cluster under /tmp with the binaries in
// bin and starts it on a free port of 127.0.0.1, for a test (StartCluster)
// or a program such as the benchmarks. Remove stops it and deletes its
// files.
func Launch(bin string, o Options) (*Cluster, error) {
	c := &Cluster{bin: bin, asPostgres: os.Geteuid() == 0}
	// As root the server runs as the postgres user, who must reach its
	// directory: a test's temporary directories are private to root.
	base := os.TempDir()
	if c.asPostgres {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "onesignal-cdc-cluster-")
	if err != nil {
		return nil, err
	}
	c.dir = dir
	fail := func(err error) (*Cluster, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	if c.asPostgres {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fail(fmt.Errorf("the server refuses to run as root, and there is no postgres user to run it: %w", err))
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return fail(err)
		}
	}
	locale := o.Locale
	if locale == "" {
		locale = "C"
	}
	c.data, c.log = filepath.Join(dir, "data"), filepath.Join(dir, "log")
	if out, err := c.run("initdb", "-D", c.data, "-U", "postgres", "--auth=trust", "--no-sync", "--encoding=UTF8", "--locale="+locale); err != nil {
		return fail(fmt.Errorf("initdb: %w\n%s", err, out))
	}

	opts := "-c listen_addresses=127.0.0.1 -c unix_socket_directories=" + dir +
		" -c wal_level=logical -c max_replication_slots=10 -c max_wal_senders=10 -c fsync=off"
	for _, s := range o.Settings {
		opts += " -c " + s
	}
	// Another process may take the port before the server binds it: try
	// another then.
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return fail(err)
		}
		c.opts = opts + " -c port=" + strconv.Itoa(port)
		out, err := c.run("pg_ctl", "-D", c.data, "-l", c.log, "-w", "-t", "60", "-o", c.opts, "start")
		if err == nil {
			c.DSN = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
			return c, nil
		}
		if attempt == 5 || !strings.Contains(c.logText(), "could not bind") {
			return fail(fmt.Errorf("start a throwaway server: %w\n%s\n%s", err, out, c.logText()))
		}
	}
}

// Remove stops the server at once (nothing in it is worth a shutdown
// checkpoint) and deletes its files.
func (c *Cluster) Remove() error {
	defer os.RemoveAll(c.dir)
	if out, err := c.run("pg_ctl", "-D", c.data, "-m", "immediate", "-w", "-t", "30", "stop"); err != nil {
		return fmt.Errorf("stop the throwaway server: %w\n%s", err, out)
	}
	return nil
}

// Dir is the cluster's directory: its data, its log and its socket.
func (c *Cluster) Dir() string { return c.dir }

// Restart stops the server in mode ("smart", "fast" or "immediate", which
// crashes it and makes the next start recover from the WAL) and starts it
// again on the same port.
func (c *Cluster) Restart(t testing.TB, mode string) {
	t.Helper()
	out, err := c.run("pg_ctl", "-D", c.data, "-l", c.log, "-m", mode, "-w", "-t", "60", "-o", c.opts, "restart")
	if err != nil {
		t.Fatalf("pgtest: restart the server (-m %s): %v\n%s\n%s", mode, err, out, c.logText())
	}
}

// NewDB creates a database on the cluster. It needs no cleanup of its own:
// the cluster goes, slots and all, when the test ends.
func (c *Cluster) NewDB(t testing.TB) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN)
	if err != nil {
		t.Fatalf("pgtest: connect to the throwaway server: %v", err)
	}
	defer conn.Close(ctx)
	name := "t_" + randomHex(t, 4)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	return &DB{Name: name, DSN: withDatabase(c.DSN, name), server: c.DSN}
}

// run runs one of the server's binaries, as the postgres user when the
// test runs as root, and returns its output.
func (c *Cluster) run(name string, args ...string) (string, error) {
	path := filepath.Join(c.bin, name)
	if c.asPostgres {
		args = append([]string{"-u", "postgres", "--", path}, args...)
		path = "runuser"
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = "/" // the postgres user may not enter the package directory
	cmd.WaitDelay = time.Minute
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *Cluster) logText() string {
	b, _ := os.ReadFile(c.log)
	return string(b)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
