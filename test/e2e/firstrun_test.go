package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
	"github.com/onesignal-cdc/onesignal-cdc/secret"
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
		dataDir string // kafka.embedded_data_dir
		resnap  bool   // the second run must snapshot again
	}{
		{"the embedded broker keeps its data in ./onesignal-cdc-data", config.Default().Kafka.EmbeddedDataDir, false},
		{"the embedded broker in memory", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The emulator holds its answers until the test has seen the
			// snapshot finish, so the wrong key stops the sink only then.
			gate := make(chan struct{})
			st := daemontest.NewStack(t, daemontest.StackOptions{
				Emulator: emulator.Config{AppID: "3c1e8f9a-0000-4000-8000-0000000f1257", APIKey: "the-right-key"},
				Serve: func(emu http.Handler) http.Handler {
					return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						select {
						case <-gate:
						case <-r.Context().Done():
							return
						}
						emu.ServeHTTP(w, r)
					})
				},
			})
			db, emu := st.DB, st.Emulator
			db.Exec(t, schema)
			db.Exec(t, `INSERT INTO users SELECT 'user-' || i, 'free', i, 'DE' FROM generate_series(1, 300) i`)
			c := baseConfig(st)
			c.Kafka.Brokers, c.Kafka.EmbeddedDataDir = []string{config.Embedded}, tc.dataDir
			c.OneSignal.APIKey = "a-wrong-key"
			wrong := daemontest.WriteConfig(t, c)
			c.OneSignal.APIKey = secret.Value(st.EmulatorConfig.APIKey)
			right := daemontest.WriteConfig(t, c)
			inWorkDir := daemontest.Options{Dir: t.TempDir()} // the daemon's, every run

			first := daemontest.StartWith(t, inWorkDir, "run", "--config", wrong)
			waitForLog(t, first, 60*time.Second, `"snapshot finished"`, `"table":"public.users"`)
			waitForLog(t, first, 60*time.Second, `"snapshot finished"`, `"table":"public.devices"`)
			close(gate)
			if first.Wait(t, 60*time.Second) == 0 {
				t.Fatal("the daemon with a wrong API key exited cleanly; want the sink to stop it")
			}
			if !strings.Contains(first.Output(), "onesignal.api_key") {
				t.Fatalf("the first run's log does not name onesignal.api_key:\n%s", first.Tail(2048))
			}
			db.Exec(t, `UPDATE users SET plan = 'pro' WHERE score % 3 = 0`) // while nothing runs: the slot keeps it

			second := daemontest.StartWith(t, inWorkDir, "run", "--config", right)
			waitInStep(t, emu, db)
			lostWarning := logHas(second, "has no record of replication slot")
			if lostWarning != tc.resnap {
				t.Errorf("the second run warned of a lost broker: %v, want %v", lostWarning, tc.resnap)
			}
			if tc.resnap {
				return
			}
			if _, err := os.Stat(filepath.Join(inWorkDir.Dir, "onesignal-cdc-data")); err != nil {
				t.Errorf("the broker's data is not in the working directory: %v", err)
			}

			// SIGKILL with changes in flight: the broker's data directory
			// holds what it acknowledged, so nothing is snapshotted again.
			db.Exec(t, `UPDATE users SET country = 'FR' WHERE score <= 150`)
			time.Sleep(300 * time.Millisecond)
			second.Kill(t)
			db.Exec(t, `DELETE FROM users WHERE score > 280`)
			third := daemontest.StartWith(t, inWorkDir, "run", "--config", right)
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
func waitForLog(t *testing.T, p *daemontest.Process, within time.Duration, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !logHas(p, parts...) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q within %s:\n%s", parts, within, p.Tail(4096))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logHas reports whether a line of p's log holds every part.
func logHas(p *daemontest.Process, parts ...string) bool {
	for line := range strings.Lines(p.Output()) {
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
