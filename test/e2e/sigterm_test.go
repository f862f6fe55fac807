package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
)

// TestSIGTERMMidStreamLosesNothing stops the connector and the sink, run
// as separate processes, with SIGTERM while rows are being written and
// API calls are in flight, twice each, and restarts them. Each stop must
// end within 30 s with exit status 0; the connector's last word to
// Postgres must be the LSN it logged as confirmed (its status interval
// is far longer than the test, so only the final status can have sent
// it); and OneSignal must end up saying what the rows say.
func TestSIGTERMMidStreamLosesNothing(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, schema)
	kb := kafkatest.Start(t)
	emuCfg := emulator.Config{
		AppID: "3c1e8f9a-0000-4000-8000-0000000051e7", APIKey: "e2e-sigterm-key",
		// Slow answers keep calls in flight when the sink is stopped.
		Faults: emulator.Faults{Latency: 20 * time.Millisecond, LatencyMax: 150 * time.Millisecond},
	}
	emu, url := emulator.NewTestServer(t, emuCfg)
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	err := os.WriteFile(cfg, fmt.Appendf(nil, `
postgres:
  dsn: %s
  slot: %s
  publication: cdc
  status_interval: 10m
  heartbeat_interval: 0s
kafka:
  brokers: [%s]
  topic_prefix: cdc
  partitions: 4
  consumer_group: e2e
onesignal:
  base_url: %s
  app_id: %s
  api_key: %s
  concurrency: 32
mapping:
  users:
    table: public.users
    external_id: external_id
    tags: {plan: "", score: level, country: geo}
ops:
  listen: ""
`, db.DSN, db.Name, strings.Join(kb.Brokers(), ", "), url, emuCfg.AppID, emuCfg.APIKey), 0o600)
	if err != nil {
		t.Fatal(err)
	}

	connector := start(t, "connector", "--config", cfg)
	sink := start(t, "sink", "--config", cfg)
	waitForSlot(t, db)

	ctx, stopWriting := context.WithCancel(context.Background())
	var writer sync.WaitGroup
	writer.Go(func() {
		conn := db.Conn(t)
		for i := 0; ctx.Err() == nil && i < 2000; i++ {
			_, err := conn.Exec(context.Background(), `INSERT INTO users VALUES ($1, 'free', $2, 'FR')
				ON CONFLICT (external_id) DO UPDATE SET score = excluded.score, plan = 'pro'`, fmt.Sprintf("user-%d", i%400), i)
			if err != nil {
				t.Error(err)
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	})

	for round := range 2 {
		time.Sleep(700 * time.Millisecond)
		took := connector.terminate(t)
		lsn := loggedConfirmedLSN(t, connector)
		if got, _ := db.SlotConfirmedFlush(t, db.Name); got != lsn {
			t.Errorf("round %d: the slot confirmed %s, but the connector stopped with %s confirmed: the final status was not sent", round, got, lsn)
		}
		t.Logf("round %d: connector stopped in %s at %s", round, took.Round(time.Millisecond), lsn)
		connector = start(t, "connector", "--config", cfg)

		time.Sleep(700 * time.Millisecond)
		took = sink.terminate(t)
		t.Logf("round %d: sink stopped in %s", round, took.Round(time.Millisecond))
		sink = start(t, "sink", "--config", cfg)
	}
	stopWriting()
	writer.Wait()

	want := expectedState(t, db)
	deadline := time.Now().Add(90 * time.Second)
	for {
		got := observedState(emu.State(), want)
		if reflect.DeepEqual(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("OneSignal is not in step with the rows after the stops:\n%s", diff(want, got))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// terminate sends SIGTERM, waits for the exit, and fails the test unless
// the process exited with status 0 within 30 s. It returns how long the
// stop took.
func (p *process) terminate(t *testing.T) time.Duration {
	t.Helper()
	began := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("exited with %v after SIGTERM", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not stop within 30 s of SIGTERM")
	}
	return time.Since(began)
}

var stoppedLine = regexp.MustCompile(`"msg":"stopped".*"confirmed_lsn":"([0-9A-F]+/[0-9A-F]+)"`)

// loggedConfirmedLSN is the LSN the stopped connector logged as confirmed.
func loggedConfirmedLSN(t *testing.T, p *process) string {
	t.Helper()
	out, err := os.ReadFile(p.log.Name())
	if err != nil {
		t.Fatal(err)
	}
	m := stoppedLine.FindAllSubmatch(out, -1)
	if len(m) == 0 {
		t.Fatalf("the connector logged no stop with its confirmed LSN:\n%s", tail(out, 2048))
	}
	return string(m[len(m)-1][1])
}
