package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
)

func slotConfig(dsn string) string {
	return `
postgres:
  dsn: ` + dsn + `
  slot: test_slot
mapping:
  users: {table: public.users, external_id: external_id}
`
}

func TestSlotStatusShowsLagAndDropRefusesAnActiveSlot(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	// The publication exists before the slot: pgoutput reads it as of each
	// change it decodes.
	db.Exec(t, `CREATE TABLE t (id int); CREATE PUBLICATION p FOR TABLE t`)
	db.Exec(t, `SELECT pg_create_logical_replication_slot('test_slot', 'pgoutput')`)
	db.Exec(t, `INSERT INTO t SELECT generate_series(1, 1000)`)
	cfg := writeFile(t, slotConfig(db.DSN))

	var stdout, stderr bytes.Buffer
	if code := run([]string{"slot", "status", "--config", cfg}, &stdout, &stderr); code != 0 {
		t.Fatalf("slot status: exit %d\n%s", code, stderr.String())
	}
	for _, want := range []string{"plugin               pgoutput", "active               no", "wal_status           reserved", "lag_bytes"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, stdout.String())
		}
	}
	if strings.Contains(stdout.String(), "lag_bytes            0\n") {
		t.Errorf("status shows no lag after 1,000 rows were written:\n%s", stdout.String())
	}

	// A connector streams from it: drop refuses.
	conn, err := pgconn.Connect(t.Context(), db.ReplicationDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	if err := pglogrepl.StartReplication(t.Context(), conn, "test_slot", 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names 'p'"},
	}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the slot to be active", func() bool {
		var out bytes.Buffer
		run([]string{"slot", "status", "--config", cfg}, &out, &out)
		return strings.Contains(out.String(), "active               yes")
	})
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"slot", "drop", "--yes", "--config", cfg}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "stop the connector first") {
		t.Errorf("drop of an active slot: exit %d, stderr %q", code, stderr.String())
	}
	conn.Close(t.Context())

	// Inactive: drop wants --yes, then drops.
	waitUntil(t, "the slot to be released", func() bool {
		var out bytes.Buffer
		run([]string{"slot", "status", "--config", cfg}, &out, &out)
		return strings.Contains(out.String(), "active               no")
	})
	stderr.Reset()
	if code := run([]string{"slot", "drop", "--config", cfg}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "--yes") {
		t.Errorf("drop without --yes: exit %d, stderr %q", code, stderr.String())
	}
	if code := run([]string{"slot", "drop", "--yes", "--config", cfg}, &stdout, &stderr); code != 0 {
		t.Fatalf("drop: exit %d\n%s", code, stderr.String())
	}
	stderr.Reset()
	if code := run([]string{"slot", "status", "--config", cfg}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "does not exist") {
		t.Errorf("status after drop: exit %d, stderr %q", code, stderr.String())
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
