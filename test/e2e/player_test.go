package e2e

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// The player model's tables: users have an email address and a phone
// number besides their tags, and devices keep their old owner in every
// change (REPLICA IDENTITY FULL), which identity verification needs to
// clear it.
const playerSchema = `
CREATE TABLE users (external_id text PRIMARY KEY, plan text, score int, country text, email text, phone text);
CREATE TABLE devices (player_id text PRIMARY KEY, user_external_id text);
ALTER TABLE devices REPLICA IDENTITY FULL;
`

// TestPlayerModelBringsDevicesAndRecordsInStepWithTheRows runs `onesignal-cdc
// run` in the player model, with identity verification, against an
// emulator that checks the hashes and enforces OneSignal's rate limits.
// Every user's tags are in the sink's desired state before any of its
// devices is linked, so they reach the devices only with the links, which
// carry the owner's tags; users with an email address or phone number get
// email and SMS records.
func TestPlayerModelBringsDevicesAndRecordsInStepWithTheRows(t *testing.T) {
	t.Parallel()
	runRecordsScenario(t, "player", emulator.Faults{})
}

// TestUserModelAddsEmailAndSMSRecordsFromTheRows is the same workload in the
// user model: the records are Email and SMS subscriptions of the users.
func TestUserModelAddsEmailAndSMSRecordsFromTheRows(t *testing.T) {
	t.Parallel()
	runRecordsScenario(t, "user", emulator.Faults{})
}

// TestPlayerModelConvergesThroughOneSignalFaultsWithNothingDeadLettered is
// the same under the faults of the user model's fault test: 10 % 5xx, 5 %
// 429 with Retry-After, 3 % connections reset before the request is
// applied and 3 % after.
func TestPlayerModelConvergesThroughOneSignalFaultsWithNothingDeadLettered(t *testing.T) {
	t.Parallel()
	runRecordsScenario(t, "player", emulator.Faults{
		Seed:       9,
		Status:     map[int]float64{500: 0.05, 503: 0.05, 429: 0.05},
		RetryAfter: 1,
		Reset:      0.03,
		Drop:       0.03,
	})
}

// playerConfig is the configuration of the records scenario in model: the
// users and devices of schema, with the email and phone columns of
// playerSchema's users, and identity verification in the player model.
func playerConfig(st *daemontest.Stack, model string) config.Config {
	c := st.Config()
	e2eSettings(&c)
	c.OneSignal.Concurrency = 8
	c.Mapping = transform.Mapping{Users: usersMapping(), Devices: devicesMapping()}
	c.OneSignal.Model = model
	c.OneSignal.IdentityVerification = model == config.ModelPlayer
	c.Mapping.Users.Email, c.Mapping.Users.Phone = "email", "phone"
	return c
}

// runRecordsScenario runs the workload in model ("player", with identity
// verification, or "user") against an emulator injecting faults.
func runRecordsScenario(t *testing.T, model string, faults emulator.Faults) {
	st := daemontest.NewStack(t, daemontest.StackOptions{Emulator: emulator.Config{
		AppID: "3c1e8f9a-0000-4000-8000-0000000091a7", APIKey: "e2e-player-key",
		IdentityVerification: model == "player",
		RateLimits:           emulator.RateLimits{Enabled: true},
		Faults:               faults,
	}})
	db, kb, emu := st.DB, st.Kafka, st.Emulator
	db.Exec(t, playerSchema)
	const devices = 60
	for i := 1; i <= devices; i++ {
		emu.AddSubscription(emulator.Subscription{ID: playerID(i)})
	}
	daemontest.Start(t, daemontest.Run, daemontest.WriteConfig(t, playerConfig(st, model)))
	daemontest.WaitForSlot(t, db, db.Name)

	began := time.Now()
	db.Exec(t, `INSERT INTO users SELECT 'user-' || i, 'free', i, 'DE',
		CASE WHEN i % 4 = 0 THEN 'user' || i || '@example.com' END,
		CASE WHEN i % 5 = 0 THEN '+1555' || lpad(i::text, 7, '0') END
		FROM generate_series(1, 300) i`)
	db.Exec(t, `UPDATE users SET plan = 'pro', score = score * 10, country = NULL WHERE score % 2 = 0`) // 150 rows
	db.Exec(t, `DELETE FROM users WHERE score % 10 = 1`)                                                // 30 rows
	// A changed address adds the new record; the old one, if the sink
	// wrote it before the change, stays the user's.
	db.Exec(t, `UPDATE users SET email = 'new-' || email WHERE email IS NOT NULL AND score % 3 = 0`)
	// Only now do devices get their owners: the sink has taken in every
	// user change (its offsets and those of what it made of them in the
	// targets topic are committed), so a device's link is what brings it
	// its owner's tags.
	if model == "player" {
		waitForGroupCaughtUp(t, kb.Brokers(), "e2e", sinkTopics)
	}
	for i := 1; i <= devices; i++ {
		db.Exec(t, `INSERT INTO devices VALUES ($1, $2)`, playerID(i), fmt.Sprintf("user-%d", i*3))
	}
	db.Exec(t, `UPDATE devices SET user_external_id = NULL WHERE player_id IN (SELECT player_id FROM devices ORDER BY player_id LIMIT 10)`)

	want := expectedDevices(t, db)
	if len(want.devices) != devices || len(want.records) < 100 {
		t.Fatalf("workload gave %d devices and %d records, want %d and over 100", len(want.devices), len(want.records), devices)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		d := diffDevices(want, observedDevices(emu.State(), want))
		if d == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("OneSignal's devices are not in step with the rows 90 s after the workload began:\n%s\nemulator: %s", d, describeStats(emu.Stats()))
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("OneSignal in step %s after the workload began; %s", time.Since(began).Round(100*time.Millisecond), describeStats(emu.Stats()))

	// Everything is done: what OneSignal holds now is final.
	waitForGroupCaughtUp(t, kb.Brokers(), "e2e", sinkTopics)
	if d := diffDevices(want, observedDevices(emu.State(), want)); d != "" {
		t.Errorf("OneSignal's devices left the rows' state once the sink had committed everything:\n%s", d)
	}
	if n := kafkatest.MessagesIn(t, kb.Brokers(), "cdc.dlq"); n != 0 {
		recs := kafkatest.ReadUntil(t, kb.Brokers(), []string{"cdc.dlq"}, 10*time.Second, func(rs []kafkatest.Record) bool { return len(rs) >= int(n) })
		for _, r := range recs {
			t.Errorf("dead letter of %s: %s", headerValue(r, sink.HeaderTopic)+"@"+headerValue(r, sink.HeaderOffset), headerValue(r, sink.HeaderMessage))
		}
		t.Fatalf("the dead-letter topic holds %d messages, want none", n)
	}
	if faults.Status != nil {
		st := emu.Stats()
		for kind, n := range map[string]int{"500": st.Faults.Status[500], "503": st.Faults.Status[503], "429": st.Faults.Status[429], "reset": st.Faults.Resets, "drop": st.Faults.Drops} {
			if n == 0 {
				t.Errorf("no %s fault was injected: the test proves nothing about it (%s)", kind, describeStats(st))
			}
		}
	}
}

// deviceState is what a device shows in the player model.
type deviceState struct {
	owner string
	tags  map[string]string
}

// playerState is what the rows say the devices should show: the push
// devices by player id, the email and SMS records by identifier. records
// are the users' current addresses, which OneSignal must hold; earlier
// holds the addresses users had before, which it may hold, if the sink
// wrote them before they changed, and then as records of the same users.
type playerState struct {
	devices map[string]deviceState
	records map[string]deviceState
	earlier map[string]deviceState
}

func expectedDevices(t *testing.T, db *pgtest.DB) playerState {
	t.Helper()
	conn := db.Conn(t)
	ctx := context.Background()
	tags := map[string]map[string]string{} // of every user id ever used
	for i := 1; i <= 300; i++ {
		tags[fmt.Sprintf("user-%d", i)] = map[string]string{}
	}
	rows, err := conn.Query(ctx, `SELECT external_id, plan, score::text, country FROM users`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var plan, score, country *string
		if err := rows.Scan(&id, &plan, &score, &country); err != nil {
			t.Fatal(err)
		}
		for name, v := range map[string]*string{"plan": plan, "level": score, "geo": country} {
			if v != nil && *v != "" {
				tags[id][name] = *v
			}
		}
	}
	s := playerState{devices: map[string]deviceState{}, records: map[string]deviceState{}, earlier: map[string]deviceState{}}
	rows, err = conn.Query(ctx, `SELECT player_id, coalesce(user_external_id, '') FROM devices`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var p, owner string
		if err := rows.Scan(&p, &owner); err != nil {
			t.Fatal(err)
		}
		d := deviceState{owner: owner, tags: map[string]string{}}
		if owner != "" {
			d.tags = tags[owner]
		}
		s.devices[p] = d
	}
	// Every address a user had, deleted users' included, may be a record
	// of that user; it shows the user's tags (none once deleted).
	for i := 1; i <= 300; i++ {
		id := fmt.Sprintf("user-%d", i)
		var addrs []string
		if i%4 == 0 {
			addrs = append(addrs, fmt.Sprintf("user%d@example.com", i))
		}
		if i%5 == 0 {
			addrs = append(addrs, fmt.Sprintf("+1555%07d", i))
		}
		for _, a := range addrs {
			s.earlier[a] = deviceState{owner: id, tags: tags[id]}
		}
	}
	// The addresses the rows hold now must be records of their users.
	rows, err = conn.Query(ctx, `SELECT external_id, a FROM users, unnest(ARRAY[email, phone]) a WHERE a IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, addr string
		if err := rows.Scan(&id, &addr); err != nil {
			t.Fatal(err)
		}
		s.records[addr] = deviceState{owner: id, tags: tags[id]}
		delete(s.earlier, addr)
	}
	return s
}

func observedDevices(st emulator.State, want playerState) playerState {
	s := playerState{devices: map[string]deviceState{}, records: map[string]deviceState{}}
	show := func(p emulator.Player) deviceState {
		d := deviceState{tags: maps.Clone(p.Tags)}
		if d.tags == nil {
			d.tags = map[string]string{}
		}
		if p.ExternalUserID != nil {
			d.owner = *p.ExternalUserID
		}
		return d
	}
	for id := range want.devices {
		p, _ := st.Player(id)
		d := show(p)
		if want.devices[id].owner == "" {
			d.tags = map[string]string{} // an unlinked device's tags are not the sink's
		}
		s.devices[id] = d
	}
	for _, sub := range st.Subscriptions {
		if sub.Type == "Email" || sub.Type == "SMS" {
			p, _ := st.Player(sub.ID)
			s.records[sub.Token] = show(p)
		}
	}
	return s
}

func diffDevices(want, got playerState) string {
	var lines []string
	for _, side := range []struct {
		what      string
		want, got map[string]deviceState
	}{{"device", want.devices, got.devices}, {"record", want.records, got.records}} {
		for id, w := range side.want {
			if g, ok := side.got[id]; !ok || !reflect.DeepEqual(w, g) {
				lines = append(lines, fmt.Sprintf("%s %s: %+v (present %v), want %+v", side.what, id, g, ok, w))
			}
		}
	}
	for id, g := range got.records {
		if _, ok := want.records[id]; ok {
			continue
		}
		if w, ok := want.earlier[id]; !ok {
			lines = append(lines, fmt.Sprintf("record %s: %+v, want none", id, g))
		} else if !reflect.DeepEqual(w, g) {
			lines = append(lines, fmt.Sprintf("record %s (an earlier address): %+v, want %+v or none", id, g, w))
		}
	}
	sort.Strings(lines)
	if len(lines) > 20 {
		lines = append(lines[:20], fmt.Sprintf("… and %d more", len(lines)-20))
	}
	if len(lines) == 0 {
		return ""
	}
	return fmt.Sprintf("%d differences:\n  %s", len(lines), strings.Join(lines, "\n  "))
}
