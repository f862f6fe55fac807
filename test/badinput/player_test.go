package badinput

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
)

// oddIDs are external ids with characters a URL path treats specially.
var oddIDs = []string{"a/b/c", "100% sure", "why?not", "tag#1", " spaced out ", "ünïcødé 用户 🎉", "..", ".", "a%2Fb"}

// TestExternalIDsRoundTripInThePlayerModel writes users with odd external
// ids and their devices into PostgreSQL, and runs `onesignal-cdc run` in
// the player model, where the id is in the path of edit tags by external
// user id (PUT /apps/{app_id}/users/{external_user_id}) and in the body
// of a device's link.
func TestExternalIDsRoundTripInThePlayerModel(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	db := s.DB
	db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY, plan text);
		CREATE TABLE devices (player_id text PRIMARY KEY, user_external_id text)`)
	for i := range oddIDs {
		s.Emulator.AddSubscription(emulator.Subscription{ID: fmt.Sprintf("player-%d", i)})
	}
	c := s.config()
	c.OneSignal.Model = config.ModelPlayer
	c.Mapping.Users = usersMapping("public.users", map[string]string{"plan": ""})
	c.Mapping.Devices = devicesMapping("public.devices")
	cfg := daemontest.WriteConfig(t, c)
	daemon := daemontest.Start(t, daemontest.Run, cfg)
	daemontest.WaitForSlot(t, db, db.Name, daemon)

	want := map[string]map[string]string{}
	for i, id := range oddIDs {
		db.Exec(t, `INSERT INTO devices VALUES ($1, $2)`, fmt.Sprintf("player-%d", i), id)
		db.Exec(t, `INSERT INTO users VALUES ($1, 'v1')`, id)
		want[id] = map[string]string{"plan": "v2"}
	}
	for _, id := range oddIDs {
		db.Exec(t, `UPDATE users SET plan = 'v2' WHERE external_id = $1`, id)
	}
	s.waitForTags(t, want, 90*time.Second)
	waitForCommitted(t, s.Kafka.Brokers(), "badinput", []string{"cdc.public.users", "cdc.public.devices"}, 60*time.Second)
	dls := s.deadLetters(t)
	st := s.Emulator.State()
	for i, id := range oddIDs {
		t.Run(fmt.Sprintf("the external id %q reaches OneSignal's player model under exactly that id", id), func(t *testing.T) {
			if got := st.ExternalIDOf(fmt.Sprintf("player-%d", i)); got != id {
				t.Errorf("the device belongs to %q, want %q", got, id)
			}
			if got := s.userTags(id); got["plan"] != "v2" {
				t.Errorf("tags %v, want plan v2", got)
			}
			for _, dl := range dls {
				if strings.Contains(string(dl.Value), fmt.Sprintf("player-%d\"", i)) {
					t.Errorf("dead-lettered: %v", dl)
				}
			}
		})
	}
	if len(dls) > 0 {
		t.Errorf("the dead-letter topic holds %d messages: %v", len(dls), dls)
	}
	if !daemon.Running() {
		t.Fatalf("the daemon stopped:\n%s", daemon.Tail(4<<10))
	}
}
