package daemontest_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// standIn plays onesignal-cdc in these tests, so that they need no build:
// its first argument says what it does.
const standIn = `#!/bin/sh
case $1 in
serve) trap 'echo stopping; exit 0' TERM; echo serving; while :; do sleep 0.05; done ;;
stubborn) trap 'echo refusing' TERM; echo serving; while :; do sleep 0.05; done ;;
fail) echo failing; exit 3 ;;
env) env; exit 0 ;;
esac
`

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "daemontest-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin := filepath.Join(dir, "onesignal-cdc")
	if err := os.WriteFile(bin, []byte(standIn), 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	daemontest.UseBinary(bin)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestAProcessStopsCleanlyOnSIGTERMAndItsLogIsKept(t *testing.T) {
	p := daemontest.StartWith(t, daemontest.Options{}, "serve")
	waitForOutput(t, p, "serving")
	p.Stop(t)
	if p.Running() || !strings.Contains(p.Output(), "stopping") {
		t.Errorf("after Stop: running %v, log %q", p.Running(), p.Output())
	}
}

func TestAProcessLeftRunningIsStoppedWhenItsTestEnds(t *testing.T) {
	var p *daemontest.Process
	t.Run("inner", func(t *testing.T) {
		p = daemontest.StartWith(t, daemontest.Options{}, "serve")
		waitForOutput(t, p, "serving")
	})
	if p.Running() || p.ExitCode() != 0 {
		t.Errorf("after its test: running %v, exit status %d", p.Running(), p.ExitCode())
	}
}

func TestAKilledProcessEndsAtOnceAndIsNotReportedAtCleanup(t *testing.T) {
	p := daemontest.StartWith(t, daemontest.Options{}, "stubborn")
	waitForOutput(t, p, "serving")
	p.Kill(t)
	if p.Running() || p.ExitCode() != -1 {
		t.Errorf("after Kill: running %v, exit status %d, want -1 (a signal)", p.Running(), p.ExitCode())
	}
}

func TestWaitReturnsTheExitStatusOfAProcessThatEndsByItself(t *testing.T) {
	p := daemontest.StartWith(t, daemontest.Options{}, "fail")
	if code := p.Wait(t, 10*time.Second); code != 3 {
		t.Errorf("Wait: %d, want 3", code)
	}
	if !strings.Contains(p.Output(), "failing") {
		t.Errorf("log %q", p.Output())
	}
}

func TestADaemonGetsTheTestsEnvironmentWithoutTheDaemonsVariablesAndOpsOnAFreePort(t *testing.T) {
	t.Setenv("ONESIGNAL_CDC_POSTGRES_DSN", "postgres://leaked")
	t.Setenv("DAEMONTEST_KEPT", "yes")
	p := daemontest.StartWith(t, daemontest.Options{Env: []string{"EXTRA=1"}}, "env")
	p.Wait(t, 10*time.Second)
	env := p.Output()
	for _, want := range []string{"DAEMONTEST_KEPT=yes", "EXTRA=1", "ONESIGNAL_CDC_OPS_LISTEN=127.0.0.1:0"} {
		if !strings.Contains(env, want+"\n") {
			t.Errorf("the environment lacks %s:\n%s", want, env)
		}
	}
	// TMPDIR is a directory of the test's, which goes with it.
	_, tmp, _ := strings.Cut(env, "\nTMPDIR=")
	tmp, _, _ = strings.Cut(tmp, "\n")
	if info, err := os.Stat(tmp); err != nil || !info.IsDir() || filepath.Dir(tmp) != filepath.Dir(t.TempDir()) {
		t.Errorf("TMPDIR is %q, want a temporary directory of the test", tmp)
	}
	if strings.Contains(env, "leaked") {
		t.Errorf("the daemon got the test's ONESIGNAL_CDC_POSTGRES_DSN:\n%s", env)
	}

	code, out := daemontest.RunCommand(t, "env")
	if code != 0 || strings.Contains(out, "ONESIGNAL_CDC_") {
		t.Errorf("a command: exit %d, environment:\n%s", code, out)
	}
}

// The file the harness writes loads as the configuration it was written
// from, secrets included.
func TestAConfigurationWrittenLoadsAsTheStructItWasWrittenFrom(t *testing.T) {
	c := config.Default()
	c.Postgres.DSN = `host=127.0.0.1 user=cdc password='pw: "quoted" #not-a-comment' dbname=app sslmode=disable`
	c.Postgres.Slot = "slot"
	c.Postgres.StatusInterval = 200 * time.Millisecond
	c.Postgres.HeartbeatInterval = 0
	c.Kafka.Brokers = []string{"127.0.0.1:9092", "127.0.0.1:9093"}
	c.Kafka.TopicPrefix = "cdc"
	c.Kafka.EmbeddedDataDir = ""
	c.Kafka.SASL = config.KafkaSASL{Mechanism: "SCRAM-SHA-512", Username: "cdc", Password: "kafka: pw"}
	c.Kafka.TLS.Enabled = true
	c.OneSignal.BaseURL = "http://127.0.0.1:8089"
	c.OneSignal.AppID = daemontest.AppID
	c.OneSignal.APIKey = "123"
	c.OneSignal.Model = config.ModelPlayer
	c.Ops.Listen = ""
	c.Mapping = transform.Mapping{
		Users: &transform.UsersMapping{Table: "public.users", ExternalID: "External Id",
			Tags: map[string]string{"Plan": "plan", "Score": ""}, Computed: map[string]string{"vip": `row.score > 10 ? "yes" : "no"`}},
		Devices: &transform.DevicesMapping{Table: "public.devices", DeviceID: "player_id", ExternalID: "user_external_id"},
	}
	c.Kafka.StateTopic, c.Kafka.DeadLetterTopic = "cdc.connector-state", "cdc.dlq" // as loading fills them in

	path := daemontest.WriteConfig(t, c)
	loaded, err := config.Load(path)
	if err != nil {
		b, _ := os.ReadFile(path)
		t.Fatalf("the file does not load: %v\n%s", err, b)
	}
	want, _ := daemontest.MarshalConfig(c)
	got, _ := daemontest.MarshalConfig(*loaded)
	if string(got) != string(want) {
		t.Errorf("loaded:\n%s\nwant:\n%s", got, want)
	}
	if loaded.Postgres.DSN != c.Postgres.DSN || loaded.OneSignal.APIKey != c.OneSignal.APIKey || loaded.Kafka.SASL.Password != c.Kafka.SASL.Password {
		t.Errorf("the secrets did not survive: %q %q %q", loaded.Postgres.DSN.Reveal(), loaded.OneSignal.APIKey.Reveal(), loaded.Kafka.SASL.Password.Reveal())
	}
}

func waitForOutput(t *testing.T, p *daemontest.Process, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.Output(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q: %q", p, s, p.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
