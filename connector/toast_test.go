package connector_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
)

// toastedText returns n random hex digits: text that does not compress
// much, and with STORAGE EXTERNAL is never compressed, so a value of 20 kB
// is stored out of line in the table's TOAST relation.
func toastedText(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n/2)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// Expected images of the big column: the row is absent, holds only the key,
// or holds big with one of these values.
const (
	noRow       = "no row"
	keyOnly     = "key only"
	firstBig    = "first value"
	secondBig   = "second value"
	placeholder = "placeholder"
)

func TestUnchangedToastIsThePlaceholderUnderDefaultIdentityAndTheRealValueUnderFull(t *testing.T) {
	t.Parallel()
	steps := []struct {
		name, sql string
		value     string // the value of $1, if any
	}{
		{"insert", `INSERT INTO users VALUES ('a', 'free', 1, $1)`, firstBig},
		{"update of another column", `UPDATE users SET plan = 'pro' WHERE external_id = 'a'`, ""},
		{"update of the TOAST column", `UPDATE users SET big = $1 WHERE external_id = 'a'`, secondBig},
		{"delete", `DELETE FROM users WHERE external_id = 'a'`, ""},
	}
	for _, tc := range []struct {
		identity string
		want     [4]struct{ before, after string } // the big column, per step
	}{
		{"DEFAULT", [4]struct{ before, after string }{
			{noRow, firstBig},
			{noRow, placeholder}, // Postgres does not send an unchanged TOAST value
			{noRow, secondBig},
			{keyOnly, noRow},
		}},
		{"FULL", [4]struct{ before, after string }{
			{noRow, firstBig},
			{firstBig, firstBig}, // the old row carries the value the new one lacks
			{firstBig, secondBig},
			{secondBig, noRow},
		}},
	} {
		t.Run("REPLICA IDENTITY "+tc.identity, func(t *testing.T) {
			t.Parallel()
			db := pgtest.NewDB(t)
			db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY, plan text, score int, big text);
				ALTER TABLE users ALTER COLUMN big SET STORAGE EXTERNAL;
				ALTER TABLE users REPLICA IDENTITY `+tc.identity)
			kafka := kafkatest.Start(t)
			startConnector(t, db, kafka)

			values := map[string]string{firstBig: toastedText(t, 20<<10), secondBig: toastedText(t, 20<<10)}
			for _, s := range steps {
				if s.value == "" {
					db.Exec(t, s.sql)
				} else {
					db.Exec(t, s.sql, values[s.value])
				}
			}
			requireOutOfLine(t, db)

			recs := kafkatest.ReadUntil(t, kafka.Brokers(), []string{"cdc.public.users"}, 30*time.Second, atLeast(len(steps)))
			evs := decodeAll(t, recs)
			if len(evs) != len(steps) {
				t.Fatalf("got %d events, want %d", len(evs), len(steps))
			}
			for i, s := range steps {
				ev := evs[i]
				if err := bigIs(ev.Before, tc.want[i].before, values); err != nil {
					t.Errorf("%s: before: %v", s.name, err)
				}
				if err := bigIs(ev.After, tc.want[i].after, values); err != nil {
					t.Errorf("%s: after: %v", s.name, err)
				}
			}
		})
	}
}

// requireOutOfLine fails the test unless the users table's TOAST relation
// holds data: otherwise it would not test TOAST at all.
func requireOutOfLine(t *testing.T, db *pgtest.DB) {
	t.Helper()
	var size int64
	err := db.Conn(t).QueryRow(context.Background(),
		`SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE oid = 'users'::regclass`).Scan(&size)
	if err != nil {
		t.Fatal(err)
	}
	if size == 0 {
		t.Fatal("the value is not stored out of line: the test would not exercise TOAST")
	}
}

// bigIs checks the big column of row against a wanted image.
func bigIs(row event.Row, want string, values map[string]string) error {
	switch want {
	case noRow:
		if row != nil {
			return fmt.Errorf("got a row with columns %v, want none", columnNames(row))
		}
		return nil
	case keyOnly:
		if names := columnNames(row); len(names) != 1 || names[0] != "external_id" {
			return fmt.Errorf("got columns %v, want only the key external_id", names)
		}
		return nil
	}
	if row == nil {
		return fmt.Errorf("got no row, want big to be the %s", want)
	}
	v, ok := row.Get("big")
	switch {
	case !ok:
		return fmt.Errorf("big is missing, want the %s", want)
	case want == placeholder:
		if !event.IsUnavailable(v) {
			return fmt.Errorf("big is %s, want the placeholder %q", abbreviate(v), event.Unavailable)
		}
		return nil
	}
	var got string
	if err := json.Unmarshal(v, &got); err != nil {
		return fmt.Errorf("big is %s, want the %s as a string", abbreviate(v), want)
	}
	if got != values[want] {
		return fmt.Errorf("big is %s (%d bytes), want the %s (%d bytes)", abbreviate(v), len(got), want, len(values[want]))
	}
	return nil
}

func columnNames(row event.Row) []string {
	names := make([]string, len(row))
	for i, f := range row {
		names[i] = f.Name
	}
	return names
}

func abbreviate(v json.RawMessage) string {
	if len(v) > 40 {
		return string(v[:40]) + "…"
	}
	return string(v)
}
