package connector_test

import (
	"context"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
)

// columns returns the column names of an event's after image.
func columns(ev *event.Envelope) []string {
	var names []string
	for _, f := range ev.After {
		names = append(names, f.Name)
	}
	return names
}

func TestConnectorFollowsSchemaChangesMidStream(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY, plan text, score int)`)
	kafka := kafkatest.Start(t)
	cfg := testConfig(db)
	cfg.HeartbeatInterval = 200 * time.Millisecond
	cfg.CreateTopic = func(ctx context.Context, topic string) error {
		return broker.EnsureTopics(ctx, kafka.Brokers(), 1, topic)
	}
	startConnectorWith(t, db, kafka, cfg)
	topic := []string{"cdc.public.users"}

	// Each step changes the table and writes one row; its event shows the
	// table as it was at that row's commit.
	steps := []struct {
		name  string
		sql   string
		id    string
		cols  []string
		check func(t *testing.T, ev *event.Envelope)
	}{
		{"before any change", ``, "a", []string{"external_id", "plan", "score"}, nil},
		{"ADD COLUMN", `ALTER TABLE users ADD COLUMN country text DEFAULT 'DE'`, "b", []string{"external_id", "plan", "score", "country"}, nil},
		{"RENAME COLUMN", `ALTER TABLE users RENAME COLUMN plan TO tier`, "c", []string{"external_id", "tier", "score", "country"}, nil},
		{"DROP COLUMN", `ALTER TABLE users DROP COLUMN score`, "d", []string{"external_id", "tier", "country"}, nil},
		{"ALTER COLUMN TYPE", `ALTER TABLE users ADD COLUMN level int DEFAULT 7; ALTER TABLE users ALTER COLUMN level TYPE text`, "e",
			[]string{"external_id", "tier", "country", "level"},
			func(t *testing.T, ev *event.Envelope) {
				if v, _ := ev.After.Get("level"); string(v) != `"7"` {
					t.Errorf("level = %s after the type change to text, want \"7\"", v)
				}
			}},
	}
	for _, st := range steps {
		if st.sql != "" {
			db.Exec(t, st.sql)
		}
		db.Exec(t, `INSERT INTO users (external_id) VALUES ($1)`, st.id)
		ev := eventFor(t, kafkatest.ReadUntil(t, kafka.Brokers(), topic, 30*time.Second, allOf(t, st.id)), st.id)
		if got := columns(ev); !equal(got, st.cols) {
			t.Errorf("%s: columns %v, want %v", st.name, got, st.cols)
		}
		if st.check != nil {
			st.check(t, ev)
		}
	}

	// TRUNCATE becomes one keyless "t" event.
	db.Exec(t, `TRUNCATE users`)
	kafkatest.ReadUntil(t, kafka.Brokers(), topic, 30*time.Second, func(rs []kafkatest.Record) bool {
		for i, ev := range decodeAll(t, rs) {
			if ev.Op == event.OpTruncate {
				if rs[i].Key != nil {
					t.Errorf("the truncate event has key %s, want none", rs[i].Key)
				}
				return true
			}
		}
		return false
	})

	// Dropped and created again: the connector puts it back into the
	// publication, and its rows stream again.
	db.Exec(t, `DROP TABLE users; CREATE TABLE users (external_id text PRIMARY KEY, plan text)`)
	waitFor(t, 30*time.Second, "the recreated table to be back in the publication", func() bool {
		var n int
		db.Conn(t).QueryRow(context.Background(), `SELECT count(*) FROM pg_publication_tables WHERE pubname = 'cdc' AND tablename = 'users'`).Scan(&n)
		return n == 1
	})
	db.Exec(t, `INSERT INTO users VALUES ('f', 'pro')`)
	kafkatest.ReadUntil(t, kafka.Brokers(), topic, 30*time.Second, allOf(t, "f"))

	// A table added to the publication while running gets a topic and streams.
	db.Exec(t, `CREATE TABLE extra (id int PRIMARY KEY); ALTER PUBLICATION cdc ADD TABLE extra; INSERT INTO extra VALUES (1)`)
	kafkatest.ReadUntil(t, kafka.Brokers(), []string{"cdc.public.extra"}, 30*time.Second, atLeast(1))
}

// eventFor returns the event of the row with external id id.
func eventFor(t *testing.T, recs []kafkatest.Record, id string) *event.Envelope {
	t.Helper()
	for _, ev := range decodeAll(t, recs) {
		if v, _ := ev.After.Get("external_id"); string(v) == `"`+id+`"` {
			return ev
		}
	}
	t.Fatalf("no event for %s", id)
	return nil
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
