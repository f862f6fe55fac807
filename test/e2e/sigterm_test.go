package e2e

import (
	"context"
	"fmt"
	"reflect"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
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
	st := daemontest.NewStack(t, daemontest.StackOptions{Emulator: emulator.Config{
		AppID: "3c1e8f9a-0000-4000-8000-0000000051e7", APIKey: "e2e-sigterm-key",
		// Slow answers keep calls in flight when the sink is stopped.
		Faults: emulator.Faults{Latency: 20 * time.Millisecond, LatencyMax: 150 * time.Millisecond},
	}})
	db, emu := st.DB, st.Emulator
	db.Exec(t, schema)
	c := st.Config()
	e2eSettings(&c)
	c.Postgres.StatusInterval, c.Postgres.HeartbeatInterval = 10*time.Minute, 0
	c.OneSignal.Concurrency = 32
	c.Mapping.Users = usersMapping()
	c.Ops.Listen = ""
	cfg := daemontest.WriteConfig(t, c)

	connector := daemontest.Start(t, daemontest.Connector, cfg)
	sink := daemontest.Start(t, daemontest.Sink, cfg)
	daemontest.WaitForSlot(t, db, db.Name)

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
		took := connector.Stop(t)
		lsn := loggedConfirmedLSN(t, connector)
		if got, _ := db.SlotConfirmedFlush(t, db.Name); got != lsn {
			t.Errorf("round %d: the slot confirmed %s, but the connector stopped with %s confirmed: the final status was not sent", round, got, lsn)
		}
		t.Logf("round %d: connector stopped in %s at %s", round, took.Round(time.Millisecond), lsn)
		connector = daemontest.Start(t, daemontest.Connector, cfg)

		time.Sleep(700 * time.Millisecond)
		took = sink.Stop(t)
		t.Logf("round %d: sink stopped in %s", round, took.Round(time.Millisecond))
		sink = daemontest.Start(t, daemontest.Sink, cfg)
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

var stoppedLine = regexp.MustCompile(`"msg":"stopped".*"confirmed_lsn":"([0-9A-F]+/[0-9A-F]+)"`)

// loggedConfirmedLSN is the LSN the stopped connector logged as confirmed.
func loggedConfirmedLSN(t *testing.T, p *daemontest.Process) string {
	t.Helper()
	m := stoppedLine.FindAllStringSubmatch(p.Output(), -1)
	if len(m) == 0 {
		t.Fatalf("the connector logged no stop with its confirmed LSN:\n%s", p.Tail(2048))
	}
	return m[len(m)-1][1]
}
