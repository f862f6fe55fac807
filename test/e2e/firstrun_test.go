package e2e

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
)

// TestAFirstRunWithAWrongAPIKeyLosesNoRows is a newcomer's first hour with
// the embedded broker: the first run has a wrong API key, so the sink stops
// at its first call, after the connector snapshotted every table and the
// slot moved past the snapshot; the second run, key fixed, must bring
// OneSignal in step with every row. With the broker's data directory (the
// default) the second run finds the events where the first left them, also
// after a SIGKILL; in memory they are gone, and the connector, whose state
// went with them, snapshots again.
func TestAFirstRunWithAWrongAPIKeyLosesNoRows(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		dataDir string // kafka.embedded_data_dir; "" the default
		resnap  bool   // the second run must snapshot again
	}{
		{"the embedded broker keeps its data in ./onesignal-cdc-data", "", false},
		{"the embedded broker in memory", `""`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := pgtest.NewDB(t)
			db.Exec(t, schema)
			db.Exec(t, `INSERT INTO users SELECT 'user-' || i, 'free', i, 'DE' FROM generate_series(1, 300) i`)
			emuCfg := emulator.Config{AppID: "3c1e8f9a-0000-4000-8000-0000000f1257", APIKey: "the-right-key"}
			emu := emulator.New(emuCfg)
			// The emulator holds its answers until the test has seen the
			// snapshot finish, so the wrong key stops the sink only then.
			gate := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-gate:
				case <-r.Context().Done():
					return
				}
				emu.Handler().ServeHTTP(w, r)
			}))
			t.Cleanup(srv.Close)
			values := configValues{DSN: db.DSN, Slot: db.Name, Brokers: "embedded", APIURL: srv.URL, AppID: emuCfg.AppID, DataDir: tc.dataDir}
			values.APIKey = "a-wrong-key"
			wrong := writeConfig(t, values)
			values.APIKey = emuCfg.APIKey
			right := writeConfig(t, values)
			workDir := t.TempDir() // the daemon's, both runs

			first := startIn(t, workDir, nil, "run", "--config", wrong)
			waitForLog(t, first, 60*time.Second, `"snapshot finished"`, `"table":"public.users"`)
			waitForLog(t, first, 60*time.Second, `"snapshot finished"`, `"table":"public.devices"`)
			close(gate)
			if err := first.exited(t, 60*time.Second); err == nil {
				t.Fatal("the daemon with a wrong API key exited cleanly; want the sink to stop it")
			}
			if log, _ := os.ReadFile(first.log.Name()); !strings.Contains(string(log), "onesignal.api_key") {
				t.Fatalf("the first run's log does not name onesignal.api_key:\n%s", tail(log, 2048))
			}
			db.Exec(t, `UPDATE users SET plan = 'pro' WHERE score % 3 = 0`) // while nothing runs: the slot keeps it

			second := startIn(t, workDir, nil, "run", "--config", right)
			waitInStep(t, emu, db)
			lostWarning := logHas(second, "has no record of replication slot")
			if lostWarning != tc.resnap {
				t.Errorf("the second run warned of a lost broker: %v, want %v", lostWarning, tc.resnap)
			}
			if tc.resnap {
				return
			}
			if _, err := os.Stat(filepath.Join(workDir, "onesignal-cdc-data")); err != nil {
				t.Errorf("the broker's data is not in the working directory: %v", err)
			}

			// SIGKILL with changes in flight: the broker's data directory
			// holds what it acknowledged, so nothing is snapshotted again.
			db.Exec(t, `UPDATE users SET country = 'FR' WHERE score <= 150`)
			time.Sleep(300 * time.Millisecond)
			second.kill(t)
			db.Exec(t, `DELETE FROM users WHERE score > 280`)
			third := startIn(t, workDir, nil, "run", "--config", right)
			waitInStep(t, emu, db)
			if logHas(third, "has no record of replication slot") {
				t.Error("after a SIGKILL the embedded broker had lost its data: the connector snapshotted again")
			}
		})
	}
}

// waitInStep waits until the emulator holds what the rows say.
func waitInStep(t *testing.T, emu *emulator.Emulator, db *pgtest.DB) {
	t.Helper()
	want := expectedState(t, db)
	deadline := time.Now().Add(90 * time.Second)
	for {
		got := observedState(emu.State(), want)
		if reflect.DeepEqual(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("OneSignal is not in step with the rows after 90 s:\n%s", diff(want, got))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitForLog waits for a line of p's log that holds every part.
func waitForLog(t *testing.T, p *process, within time.Duration, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !logHas(p, parts...) {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(p.log.Name())
			t.Fatalf("no log line with %q within %s:\n%s", parts, within, tail(log, 4096))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logHas reports whether a line of p's log holds every part.
func logHas(p *process, parts ...string) bool {
	log, _ := os.ReadFile(p.log.Name())
	for line := range strings.Lines(string(log)) {
		all := true
		for _, part := range parts {
			all = all && strings.Contains(line, part)
		}
		if all {
			return true
		}
	}
	return false
}
