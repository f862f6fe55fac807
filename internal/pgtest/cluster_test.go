package pgtest_test

import (
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
)

func TestAClusterRestartsOnItsPortWithItsCommittedRowsAndSlots(t *testing.T) {
	t.Parallel()
	cluster := pgtest.StartCluster(t)
	db := cluster.NewDB(t)
	db.Exec(t, "CREATE TABLE users (id int PRIMARY KEY)")
	db.Exec(t, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", db.Name)

	for i, mode := range []string{"fast", "immediate"} {
		db.Exec(t, "INSERT INTO users VALUES ($1)", i)
		cluster.Restart(t, mode)
		var n int
		if err := db.Conn(t).QueryRow(t.Context(), "SELECT count(*) FROM users").Scan(&n); err != nil {
			t.Fatalf("after a restart (-m %s): %v", mode, err)
		}
		if n != i+1 {
			t.Errorf("after a restart (-m %s) the table has %d rows, want %d", mode, n, i+1)
		}
		if _, ok := db.SlotConfirmedFlush(t, db.Name); !ok {
			t.Errorf("after a restart (-m %s) the slot is gone", mode)
		}
	}
}
