// Package peers measures the Go CDC tool a user would pick instead of the
// connector, draining the same WAL into the same kind of broker:
// github.com/xataio/pgstream (v1.3.1, on wal2json). It is built in a
// scratch module of its own, outside the repository's go.mod (as tools/
// is a module of its own), and cached between runs: its first build takes
// 10–15 minutes here, which is why `go run ./bench` measures it only with
// -peers.
package peers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/bench/internal/harness"
)

// PgstreamVersion is the version measured. v1.4.x is refused by the module
// proxy here; v1.3.1 builds with `go get` and `go build` in a module of its
// own (not with `go install`).
const PgstreamVersion = "v1.3.1"

// BuildPgstream returns the path of a pgstream binary: path when given,
// else the cached build, else a new build in a scratch module under the
// user's cache directory.
func BuildPgstream(ctx context.Context, path string) (string, error) {
	if path != "" {
		return path, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "onesignal-cdc-bench", "pgstream-"+PgstreamVersion)
	bin := filepath.Join(dir, "pgstream")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	harness.Progress("peers: building github.com/xataio/pgstream@%s in the scratch module %s (10–15 minutes the first time)", PgstreamVersion, dir)
	started := time.Now()
	steps := [][]string{
		{"go", "mod", "init", "scratch.invalid/pgstreambench"},
		{"go", "get", "github.com/xataio/pgstream@" + PgstreamVersion},
		{"go", "build", "-o", bin + ".tmp", "github.com/xataio/pgstream"},
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
		steps = steps[1:]
	}
	for _, step := range steps {
		cmd := exec.CommandContext(ctx, step[0], step[1:]...)
		cmd.Dir = dir
		// Its own module: not the repository's workspace or toolchain pin.
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("build pgstream: %s: %w\n%s", strings.Join(step, " "), err, out)
		}
	}
	if err := os.Rename(bin+".tmp", bin); err != nil {
		return "", err
	}
	harness.Progress("peers: pgstream built in %s", time.Since(started).Round(time.Second))
	return bin, nil
}

// EnsureWal2json makes the wal2json output plugin available to the
// benchmark's server: on a throwaway cluster from Debian's packages it
// installs postgresql-<major>-wal2json through scripts/lib.sh when a
// wal2json slot cannot be created.
func EnsureWal2json(ctx context.Context, srv *harness.Server, db *harness.DB) error {
	probe := func() error {
		return db.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM (SELECT (pg_create_logical_replication_slot('`+db.Slot("wal2json_probe")+`', 'wal2json')).slot_name) s`)
	}
	err := probe()
	if err == nil {
		return nil
	}
	if !strings.Contains(err.Error(), "wal2json") {
		return fmt.Errorf("create a wal2json slot: %w", err)
	}
	version, verr := db.Version(ctx)
	if verr != nil {
		return verr
	}
	major, _, _ := strings.Cut(version, ".")
	pkg := "postgresql-" + major + "-wal2json"
	harness.Progress("peers: the server has no wal2json; installing Debian's %s", pkg)
	cmd := exec.CommandContext(ctx, "bash", "-c", `source "$1" && apt_install "$2"`, "bench", srv.LibSh(), pkg)
	cmd.Stderr = os.Stderr
	if ierr := cmd.Run(); ierr != nil {
		return fmt.Errorf("pgstream needs wal2json (%v), and installing %s failed: %w; install it yourself, or leave out -peers", err, pkg, ierr)
	}
	if err := probe(); err != nil {
		return fmt.Errorf("after installing %s: %w", pkg, err)
	}
	return nil
}

// InitPgstream runs `pgstream init`, which creates its schema and its
// wal2json slot: before the workload, so that it drains the same WAL.
func InitPgstream(ctx context.Context, bin, dsn, slot string) error {
	cmd := exec.CommandContext(ctx, bin, "init", "--postgres-url", dsn, "--replication-slot", slot, "--log-level", "warn")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgstream init: %w\n%s", err, out)
	}
	return nil
}

// PgstreamEnv is pgstream's configuration for the run: its defaults but
// for the key, which is the primary key as the connector's (pgstream's
// default keys by schema, so every event of a database goes to one
// partition), and the topic, created with the connector's partitions.
func PgstreamEnv(dsn, slot, brokers, topic string, partitions int) []string {
	return []string{
		"PGSTREAM_POSTGRES_LISTENER_URL=" + dsn,
		"PGSTREAM_POSTGRES_REPLICATION_SLOT_NAME=" + slot,
		"PGSTREAM_KAFKA_WRITER_SERVERS=" + brokers,
		"PGSTREAM_KAFKA_TOPIC_NAME=" + topic,
		fmt.Sprintf("PGSTREAM_KAFKA_TOPIC_PARTITIONS=%d", partitions),
		"PGSTREAM_KAFKA_TOPIC_REPLICATION_FACTOR=1",
		"PGSTREAM_KAFKA_TOPIC_AUTO_CREATE=true",
		"PGSTREAM_KAFKA_TOPIC_PARTITION_KEY=primary_key",
	}
}

// StartPgstream starts `pgstream run` with env, logging warnings and
// errors to the benchmark's standard error.
func StartPgstream(bin string, env []string) (*harness.Process, error) {
	f, err := os.CreateTemp("", "pgstream-*.env")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name()) // read at start-up
	if _, err := f.WriteString(strings.Join(env, "\n") + "\n"); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "run", "-c", f.Name(), "--log-level", "warn", "--log-format", "json")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	p, err := harness.Start("pgstream", cmd)
	if err != nil {
		return nil, err
	}
	time.Sleep(500 * time.Millisecond) // it reads the file before this
	return p, nil
}
