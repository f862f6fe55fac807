package e2e

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
)

const schema = `
CREATE TABLE users (external_id text PRIMARY KEY, plan text, score int, country text);
CREATE TABLE devices (player_id text PRIMARY KEY, user_external_id text);
`

// TestPipelineBringsOneSignalInStepWithTheRows runs `onesignal-cdc run` (the
// connector and the sink in one process, with the embedded broker) against
// the emulator, and checks that OneSignal ends up saying what the rows say.
func TestPipelineBringsOneSignalInStepWithTheRows(t *testing.T) {
	t.Parallel()
	st := daemontest.NewStack(t, daemontest.StackOptions{Emulator: emulator.Config{AppID: "3c1e8f9a-0000-4000-8000-00000000e2e0", APIKey: "e2e-key"}})
	db, emu := st.DB, st.Emulator
	db.Exec(t, schema)
	for i := 1; i <= 200; i++ {
		// The devices exist in OneSignal already: the SDK made them on install.
		emu.AddSubscription(emulator.Subscription{ID: playerID(i)})
	}

	cfg := baseConfig(st)
	cfg.Kafka.Brokers = []string{config.Embedded}
	daemontest.Start(t, daemontest.Run, daemontest.WriteConfig(t, cfg))
	daemontest.WaitForSlot(t, db, db.Name)

	db.Exec(t, `INSERT INTO users SELECT 'user-' || i, 'free', i, 'DE' FROM generate_series(1, 1000) i`)
	db.Exec(t, `UPDATE users SET plan = 'pro', score = score * 10, country = NULL WHERE score % 2 = 0`) // 500 rows
	db.Exec(t, `DELETE FROM users WHERE score % 10 = 1`)                                                // 100 rows
	for i := 1; i <= 200; i++ {
		db.Exec(t, `INSERT INTO devices VALUES ($1, $2)`, playerID(i), "user-"+strconv.Itoa(i*3))
	}
	db.Exec(t, `UPDATE devices SET user_external_id = NULL WHERE player_id IN (SELECT player_id FROM devices ORDER BY player_id LIMIT 20)`)

	want := expectedState(t, db)
	if len(want.tags) != 1000 || len(want.owners) != 200 {
		t.Fatalf("workload produced %d users and %d devices, want 1000 and 200", len(want.tags), len(want.owners))
	}
	var got oneSignalState
	deadline := time.Now().Add(90 * time.Second)
	for {
		got = observedState(emu.State(), want)
		if reflect.DeepEqual(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("OneSignal is not in step with the rows after 90 s:\n%s", diff(want, got))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func playerID(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i) }

// oneSignalState is what the mapping says OneSignal should hold: the tags
// of every external id the users table has had, and every device's owner.
type oneSignalState struct {
	tags   map[string]map[string]string // external id → tags (empty: none)
	owners map[string]string            // player id → external id ("" = nobody)
}

func expectedState(t *testing.T, db *pgtest.DB) oneSignalState {
	t.Helper()
	s := oneSignalState{tags: map[string]map[string]string{}, owners: map[string]string{}}
	for i := 1; i <= 1000; i++ {
		s.tags["user-"+strconv.Itoa(i)] = map[string]string{} // deleted rows leave no tags
	}
	conn := db.Conn(t)
	rows, err := conn.Query(context.Background(), `SELECT external_id, plan, score::text, country FROM users`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var plan, score, country *string
		if err := rows.Scan(&id, &plan, &score, &country); err != nil {
			t.Fatal(err)
		}
		tags := map[string]string{}
		for name, v := range map[string]*string{"plan": plan, "level": score, "geo": country} {
			if v != nil && *v != "" {
				tags[name] = *v
			}
		}
		s.tags[id] = tags
	}
	rows, err = conn.Query(context.Background(), `SELECT player_id, coalesce(user_external_id, '') FROM devices`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var p, owner string
		if err := rows.Scan(&p, &owner); err != nil {
			t.Fatal(err)
		}
		s.owners[p] = owner
	}
	return s
}

// observedState reads the emulator's state for the ids in want.
func observedState(st emulator.State, want oneSignalState) oneSignalState {
	s := oneSignalState{tags: map[string]map[string]string{}, owners: map[string]string{}}
	for id := range want.tags {
		tags := map[string]string{}
		if u, ok := st.UserByExternalID(id); ok {
			for k, v := range u.Tags {
				tags[k] = v
			}
		}
		s.tags[id] = tags
	}
	for p := range want.owners {
		s.owners[p] = st.ExternalIDOf(p)
	}
	return s
}

func diff(want, got oneSignalState) string {
	var lines []string
	for id, w := range want.tags {
		if g := got.tags[id]; !reflect.DeepEqual(w, g) {
			lines = append(lines, fmt.Sprintf("user %s: tags %v, want %v", id, g, w))
		}
	}
	for p, w := range want.owners {
		if g := got.owners[p]; g != w {
			lines = append(lines, fmt.Sprintf("device %s: owner %q, want %q", p, g, w))
		}
	}
	sort.Strings(lines)
	if len(lines) > 20 {
		lines = append(lines[:20], fmt.Sprintf("… and %d more", len(lines)-20))
	}
	out := fmt.Sprintf("%d differences:\n", len(lines))
	for _, l := range lines {
		out += "  " + l + "\n"
	}
	return out
}
