package pgtest_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
)

func TestNewDBIsAFreshDatabaseWithLogicalWAL(t *testing.T) {
	db := pgtest.NewDB(t)
	conn := db.Conn(t)

	var walLevel, current string
	if err := conn.QueryRow(t.Context(), "SHOW wal_level").Scan(&walLevel); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(t.Context(), "SELECT current_database()").Scan(&current); err != nil {
		t.Fatal(err)
	}
	if walLevel != "logical" {
		t.Errorf("wal_level = %q, want logical", walLevel)
	}
	if current != db.Name || !strings.HasPrefix(db.Name, "t_") {
		t.Errorf("connected to %q for DB.Name %q", current, db.Name)
	}

	db.Exec(t, "CREATE TABLE users (id int PRIMARY KEY)")
	before := db.CurrentLSN(t)
	db.Exec(t, "INSERT INTO users VALUES ($1)", 1)
	if after := db.CurrentLSN(t); after == before {
		t.Errorf("CurrentLSN stayed at %s across an insert", before)
	}
}

func TestCleanupDropsTheDatabaseAndASlotInUse(t *testing.T) {
	ctx := t.Context()
	var name, slot string
	var walsender *pgconn.PgConn
	t.Run("test holding an active slot", func(t *testing.T) {
		db := pgtest.NewDB(t)
		name, slot = db.Name, db.Name+"_slot"
		db.Exec(t, "SELECT pg_create_logical_replication_slot($1, 'test_decoding')", slot)
		if lsn, ok := db.SlotConfirmedFlush(t, slot); !ok || lsn == "" {
			t.Fatalf("SlotConfirmedFlush(%q) = %q, %v; want an LSN, true", slot, lsn, ok)
		}
		if _, ok := db.SlotConfirmedFlush(t, "no_such_slot"); ok {
			t.Error("SlotConfirmedFlush reports a slot that does not exist")
		}

		var err error
		walsender, err = pgconn.Connect(ctx, db.ReplicationDSN())
		if err != nil {
			t.Fatal(err)
		}
		// Left streaming on purpose: the cleanup has to end the walsender.
		err = pglogrepl.StartReplication(ctx, walsender, slot, 0,
			pglogrepl.StartReplicationOptions{Mode: pglogrepl.LogicalReplication})
		if err != nil {
			t.Fatal(err)
		}
	})
	if walsender != nil {
		defer walsender.Close(ctx)
	}
	if t.Failed() {
		return
	}

	admin, err := pgx.Connect(ctx, pgtest.ServerDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var databases, slots int
	err = admin.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM pg_database WHERE datname = $1),
		(SELECT count(*) FROM pg_replication_slots WHERE slot_name = $2)`, name, slot).Scan(&databases, &slots)
	if err != nil {
		t.Fatal(err)
	}
	if databases != 0 || slots != 0 {
		t.Errorf("after cleanup: %d database(s) %s, %d slot(s) %s; want none", databases, name, slots, slot)
	}
}

// The helper process of TestServerDSNFailsUnderCIAndSkipsElsewhere.
func TestServerDSNHelper(t *testing.T) {
	if os.Getenv("PGTEST_HELPER") != "1" {
		return
	}
	pgtest.ServerDSN(t)
}

func TestServerDSNFailsUnderCIAndSkipsElsewhere(t *testing.T) {
	for _, tc := range []struct {
		ci       string
		wantFail bool
	}{
		{ci: "true", wantFail: true},
		{ci: "1", wantFail: true},
		{ci: "", wantFail: false},
		{ci: "false", wantFail: false},
	} {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestServerDSNHelper$", "-test.v")
			cmd.Env = append(withoutEnv(os.Environ(), pgtest.EnvDSN, "CI", "GORACE"),
				"PGTEST_HELPER=1", "CI="+tc.ci,
				"GORACE=atexit_sleep_ms=0") // under -race a passing binary would idle 1 s at exit

			out, err := cmd.CombinedOutput()
			if failed := err != nil; failed != tc.wantFail {
				t.Fatalf("failed = %v, want %v; output:\n%s", failed, tc.wantFail, out)
			}
			if !strings.Contains(string(out), "run ./scripts/test") {
				t.Errorf("output does not name the fix:\n%s", out)
			}
			if !tc.wantFail && !strings.Contains(string(out), "--- SKIP") {
				t.Errorf("want a skip, output:\n%s", out)
			}
		})
	}
}

func withoutEnv(env []string, names ...string) []string {
	var kept []string
outer:
	for _, kv := range env {
		for _, name := range names {
			if strings.HasPrefix(kv, name+"=") {
				continue outer
			}
		}
		kept = append(kept, kv)
	}
	return kept
}
