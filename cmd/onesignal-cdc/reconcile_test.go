package main

// reconcile on a real stack: PostgreSQL, Kafka (kfake), the emulator over
// HTTP and the daemon (connector and sink) in this process, in both API
// generations.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

const (
	reconcileApp = "5eb5a37e-b458-11e3-ac11-000c2940e62c"
	reconcileKey = "reconcile-test-key"
	// oddID is an external id of every character a path escapes badly.
	oddID = "team/ops 7%?Müller"
)

const crmTables = `
CREATE SCHEMA crm;
CREATE TABLE crm."Contacts" ("Contact ID" int PRIMARY KEY, "External Id" text, plan text, score int);
CREATE TABLE crm.devices (device_id text PRIMARY KEY, ext_id text);
INSERT INTO crm."Contacts" VALUES (7, 'team/ops 7%?Müller', 'pro', 3), (8, 'u2', 'free', 1), (9, 'u3', 'team', 5), (10, 'u4', 'free', 2);
INSERT INTO crm.devices VALUES ('dev/1', 'team/ops 7%?Müller'), ('dev%3', 'team/ops 7%?Müller'), ('dev 2', 'u2');`

func reconcileConfig(t *testing.T, db *pgtest.DB, brokers []string, apiURL, model string) string {
	t.Helper()
	c := daemonConfig(db.DSN, db.Name, brokers, apiURL, "reconcile-test")
	c.Kafka.TopicPrefix = "crm"
	c.OneSignal.Model, c.OneSignal.AppID, c.OneSignal.APIKey = model, reconcileApp, reconcileKey
	c.Mapping = transform.Mapping{
		Users:   &transform.UsersMapping{Table: "crm.Contacts", ExternalID: "External Id", Tags: map[string]string{"plan": "", "score": ""}},
		Devices: &transform.DevicesMapping{Table: "crm.devices", DeviceID: "device_id", ExternalID: "ext_id"},
	}
	return daemontest.WriteConfig(t, c)
}

// runReconcile runs reconcile --json with args and returns its exit code
// and report.
func runReconcile(t *testing.T, cfg string, args ...string) (int, driftReport) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"reconcile", "--config", cfg, "--json"}, args...), &stdout, &stderr)
	var rep driftReport
	if code == 0 || code == exitDrift {
		if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
			t.Fatalf("reconcile %v: exit %d, report %q: %v\nstderr: %s", args, code, stdout.String(), err, stderr.String())
		}
	} else {
		t.Fatalf("reconcile %v: exit %d\nstdout: %s\nstderr: %s", args, code, stdout.String(), stderr.String())
	}
	return code, rep
}

// drifts names a report's drift, one string each, sorted.
func drifts(rep driftReport) []string {
	var out []string
	for _, e := range rep.Examples {
		out = append(out, fmt.Sprintf("%s user=%s device=%s tag=%s want=%s have=%s", e.Kind, e.ExternalID, e.DeviceID, e.Tag, e.Want, e.Have))
	}
	slices.Sort(out)
	return out
}

func TestReconcileReportsExactlyTheInjectedDriftAndRepairsIt(t *testing.T) {
	for _, model := range []string{config.ModelUser, config.ModelPlayer} {
		t.Run(model, func(t *testing.T) {
			db := pgtest.NewDB(t)
			db.Exec(t, crmTables)
			kafka := kafkatest.Start(t)
			// Each export is ready after 1.5 s, so that one can be running
			// when reconcile asks for its own.
			emu := emulator.New(emulator.Config{AppID: reconcileApp, APIKey: reconcileKey, ExportDelay: 1500 * time.Millisecond})
			for _, id := range []string{"dev/1", "dev%3", "dev 2"} {
				emu.AddSubscription(emulator.Subscription{ID: id, Type: "AndroidPush", Token: "token-" + id})
			}
			srv := httptest.NewServer(emu.Handler())
			defer srv.Close()
			cfg := reconcileConfig(t, db, kafka.Brokers(), srv.URL, model)
			d := startDaemon(t, config.All, cfg)
			d.waitReady(t, 200, "ok")

			synced := func(ext, plan, score string) func() bool {
				return func() bool {
					s := emu.State()
					if model == config.ModelPlayer {
						for _, sub := range s.Subscriptions {
							if s.ExternalIDOf(sub.ID) == ext {
								p, _ := s.Player(sub.ID)
								if p.Tags["plan"] != plan || p.Tags["score"] != score {
									return false
								}
							}
						}
						return true
					}
					u, ok := s.UserByExternalID(ext)
					return ok && u.Tags["plan"] == plan && u.Tags["score"] == score
				}
			}
			owned := func(dev, ext string) func() bool {
				return func() bool { return emu.State().ExternalIDOf(dev) == ext }
			}
			inSync := func(what string) {
				t.Helper()
				waitUntilFor(t, 60*time.Second, what, func() bool {
					return synced(oddID, "pro", "3")() && synced("u2", "free", "1")() && owned("dev/1", oddID)() && owned("dev%3", oddID)() && owned("dev 2", "u2")()
				})
			}
			inSync("the rows in OneSignal")
			if model == config.ModelUser {
				waitUntilFor(t, 30*time.Second, "u3 and u4", func() bool { return synced("u3", "team", "5")() && synced("u4", "free", "2")() })
			}
			if code, rep := runReconcile(t, cfg, "--read", "export"); code != 0 || rep.Total != 0 {
				t.Fatalf("in sync: exit %d, drift %v", code, drifts(rep))
			}

			// Another export of the account running (continuous mode's,
			// say): OneSignal refuses a second with a 429 until it is
			// ready, and reconcile waits its turn.
			busy, err := http.NewRequest(http.MethodPost, srv.URL+"/players/csv_export?app_id="+reconcileApp, strings.NewReader(`{"extra_fields":["external_user_id"]}`))
			if err != nil {
				t.Fatal(err)
			}
			busy.Header.Set("Authorization", "Key "+reconcileKey)
			busy.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(busy)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("the other export: %s", resp.Status)
			}
			if code, rep := runReconcile(t, cfg, "--read", "export"); code != 0 || rep.Total != 0 {
				t.Fatalf("in sync, another export running: exit %d, drift %v", code, drifts(rep))
			}
			refused := 0
			for route, by := range emu.Stats().Requests {
				if strings.Contains(route, "csv_export") {
					refused += by[http.StatusTooManyRequests]
				}
			}
			if refused == 0 {
				t.Error("no export was refused while the other ran: the test did not make reconcile wait")
			}

			// Behind the sink's back: a mapped tag edited and an unmapped
			// one set, a device moved, a user deleted (user model: in the
			// player model deleting a user deletes its devices, which only
			// an SDK can create again).
			emu.SetUserTags(oddID, map[string]string{"plan": "hacked", "sdk": "x"})
			emu.MoveDevice("dev/1", "u3")
			want := []string{
				"wrong_owner user=" + oddID + " device=dev/1 tag= want=" + oddID + " have=u3",
			}
			if model == config.ModelUser {
				emu.RemoveUser("u4")
				want = append(want,
					"wrong_tag user="+oddID+" device= tag=plan want=pro have=hacked",
					"missing_user user=u4 device= tag= want= have=")
			} else {
				want = append(want,
					"wrong_tag user="+oddID+" device=dev%3 tag=plan want=pro have=hacked",
					// u3 has no device of its own: OneSignal holds no tags
					// of it, so dev/1 carries none.
					"missing_tag user="+oddID+" device=dev/1 tag=plan want=pro have=",
					"missing_tag user="+oddID+" device=dev/1 tag=score want=3 have=")
			}
			slices.Sort(want)
			for _, read := range []string{"export", "views"} {
				code, rep := runReconcile(t, cfg, "--read", read)
				if got := drifts(rep); code != exitDrift || !slices.Equal(got, want) {
					t.Errorf("read by %s: exit %d, drift\n  %s\nwant\n  %s", read, code, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
				}
				if !maps.Equal(rep.Ignored, map[string]int{"sdk": 1}) {
					t.Errorf("read by %s: ignored %v, want sdk once", read, rep.Ignored)
				}
			}

			// The repair goes through the sink; a second reconcile finds
			// nothing.
			if code, rep := runReconcile(t, cfg, "--read", "export", "--repair"); code != exitDrift || rep.Repaired == 0 {
				t.Fatalf("repair: exit %d, %d repair records", code, rep.Repaired)
			}
			inSync("the repair")
			if model == config.ModelUser {
				waitUntilFor(t, 30*time.Second, "u4 again", synced("u4", "free", "2"))
			}
			if code, rep := runReconcile(t, cfg, "--read", "export"); code != 0 || rep.Total != 0 {
				t.Fatalf("after the repair: exit %d, drift %v", code, drifts(rep))
			}

			// A repair racing a newer change of the same user from the
			// stream: the newer value stays.
			emu.SetUserTags(oddID, map[string]string{"plan": "hacked again"})
			done := make(chan int, 1)
			go func() {
				var out bytes.Buffer
				done <- run([]string{"reconcile", "--config", cfg, "--read", "export", "--repair", "--table", "crm.Contacts", "--where", `"Contact ID" = 7`}, &out, &out)
			}()
			db.Exec(t, `UPDATE crm."Contacts" SET plan = 'newer' WHERE "Contact ID" = 7`)
			if code := <-done; code != exitDrift && code != 0 {
				t.Fatalf("the racing repair: exit %d", code)
			}
			waitUntilFor(t, 30*time.Second, "the newer value", synced(oddID, "newer", "3"))
			time.Sleep(2 * time.Second) // a repair that would bring back an older value has landed by now
			if !synced(oddID, "newer", "3")() {
				t.Fatalf("the repair brought back an older value: %v", emu.State())
			}
			if code, rep := runReconcile(t, cfg, "--read", "views", "--table", "crm.Contacts", "--where", `"External Id" = 'team/ops 7%?Müller'`); code != 0 || rep.Total != 0 {
				t.Fatalf("after the race: exit %d, drift %v", code, drifts(rep))
			}
		})
	}
}
