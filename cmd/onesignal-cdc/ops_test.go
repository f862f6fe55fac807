package main

// These tests run the daemon in this process against a real PostgreSQL,
// the real Kafka protocol (kfake) and the OneSignal emulator over HTTP, and
// watch it through its ops server as Prometheus, a Kubernetes probe and a
// person would. They run one after the other, not in parallel.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/netcut"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
	"github.com/onesignal-cdc/onesignal-cdc/secret"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// opsConfig is a daemon configuration whose ops server takes a free port.
func opsConfig(t *testing.T, dsn, slot string, brokers []string, apiURL string) string {
	t.Helper()
	return daemontest.WriteConfig(t, opsDaemonConfig(dsn, slot, brokers, apiURL))
}

// opsDaemonConfig is opsConfig's configuration, to change before it is
// written.
func opsDaemonConfig(dsn, slot string, brokers []string, apiURL string) config.Config {
	if apiURL == "" {
		apiURL = "http://127.0.0.1:9" // unused by a connector
	}
	c := daemonConfig(dsn, slot, brokers, apiURL, "ops-test")
	c.OneSignal.APIKey = "ops-test-key"
	c.Mapping = transform.Mapping{
		Users:   &transform.UsersMapping{Table: "public.users", ExternalID: "external_id", Tags: map[string]string{"plan": "", "score": "level"}},
		Devices: &transform.DevicesMapping{Table: "public.devices", DeviceID: "player_id", ExternalID: "user_external_id"},
	}
	return c
}

// daemonConfig is the configuration of an in-process daemon of these
// tests: the defaults, with the database and its slot, the broker, the
// API and its app, short intervals, and an ops server on a free port.
func daemonConfig(dsn, slot string, brokers []string, apiURL, group string) config.Config {
	c := config.Default()
	c.Postgres.DSN, c.Postgres.Slot, c.Postgres.Publication = secret.Value(dsn), slot, "cdc"
	c.Postgres.StatusInterval, c.Postgres.HeartbeatInterval = 200*time.Millisecond, time.Second
	c.Kafka.Brokers, c.Kafka.TopicPrefix, c.Kafka.Partitions, c.Kafka.ConsumerGroup = brokers, "cdc", 2, group
	c.OneSignal.BaseURL, c.OneSignal.AppID = apiURL, validAppID
	c.Ops.Listen = "127.0.0.1:0"
	return c
}

const opsTables = `
CREATE TABLE users (external_id text PRIMARY KEY, plan text, score int);
CREATE TABLE devices (player_id text PRIMARY KEY, user_external_id text);`

// lockedBuffer is the daemon's stderr: written by the daemon, read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// opsDaemon is a daemon running in this process, and its ops server's URL.
type opsDaemon struct {
	url string
	log *lockedBuffer
}

// startDaemon runs the daemon with the given roles until the test ends,
// and waits for its ops server to say where it listens.
func startDaemon(t *testing.T, roles config.Role, cfg string) *opsDaemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &opsDaemon{log: &lockedBuffer{}}
	done := make(chan error, 1)
	run, _, _ := lookup([]string{"run"}) // the command only names the help
	go func() { done <- daemon(ctx, run, []string{"--config", cfg}, roles, io.Discard, d.log) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("the daemon stopped with: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("the daemon did not stop within 30 s")
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", tailString(d.log.String(), 6000))
		}
	})
	waitUntil(t, "the ops server to listen", func() bool {
		for _, line := range strings.Split(d.log.String(), "\n") {
			var entry struct {
				Msg     string `json:"msg"`
				Address string `json:"address"`
			}
			if json.Unmarshal([]byte(line), &entry) == nil && entry.Address != "" && strings.HasPrefix(entry.Msg, "ops server listening") {
				d.url = "http://" + entry.Address
				return true
			}
		}
		select {
		case err := <-done:
			t.Fatalf("the daemon stopped before its ops server listened: %v\n%s", err, d.log.String())
		default:
		}
		return false
	})
	return d
}

func tailString(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func (d *opsDaemon) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(d.url + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// waitReady waits until /readyz answers code with a body containing want.
func (d *opsDaemon) waitReady(t *testing.T, code int, want string) {
	t.Helper()
	var got int
	var body string
	waitUntilFor(t, 30*time.Second, fmt.Sprintf("/readyz to answer %d %q", code, want), func() bool {
		got, body = d.get(t, "/readyz")
		return got == code && strings.Contains(body, want)
	})
}

// metric reads one sample of /metrics: name with its labels as printed,
// e.g. `onesignal_cdc_connector_events_total{op="c"}`; ok is false when
// it is absent.
func (d *opsDaemon) metric(t *testing.T, series string) (v float64, ok bool) {
	t.Helper()
	_, body := d.get(t, "/metrics")
	for _, line := range strings.Split(body, "\n") {
		if rest, found := strings.CutPrefix(line, series+" "); found {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return v, true
		}
	}
	return 0, false
}

func waitUntilFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// throughProxy is dsn with its host and port replaced by the proxy's.
func throughProxy(t *testing.T, dsn string, p *netcut.Proxy) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" {
		t.Fatalf("the test DSN is not a URL: %v", err)
	}
	u.Host = p.Addr()
	return u.String()
}

func TestReadinessFollowsTheConnectionToPostgres(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(t, opsTables)
	target, err := url.Parse(db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	proxy := netcut.Start(t, target.Host)
	kafka := kafkatest.Start(t)
	d := startDaemon(t, config.Connector, opsConfig(t, throughProxy(t, db.DSN, proxy), db.Name, kafka.Brokers(), ""))

	d.waitReady(t, 200, "ok")
	if code, body := d.get(t, "/livez"); code != 200 {
		t.Errorf("/livez while streaming: %d %q", code, body)
	}

	proxy.Cut()
	d.waitReady(t, 503, "connector: replication interrupted")
	if code, body := d.get(t, "/livez"); code != 200 {
		t.Errorf("/livez while Postgres is cut off: %d %q, want 200: liveness checks no dependency", code, body)
	}
	if v, ok := d.metric(t, `onesignal_cdc_component_up{component="connector"}`); !ok || v != 0 {
		t.Errorf("component_up{connector} while cut off: %v (present %v), want 0", v, ok)
	}

	proxy.Restore()
	d.waitReady(t, 200, "ok")
	if v, _ := d.metric(t, `onesignal_cdc_component_up{component="connector"}`); v != 1 {
		t.Errorf("component_up{connector} after the network came back: %v, want 1", v)
	}
	_, status := d.get(t, "/status.json")
	if !strings.Contains(status, `"component": "connector"`) || strings.Contains(status, "ops-test-key") {
		t.Errorf("/status.json does not list the connector's errors, or shows the key:\n%s", status)
	}
}

func TestMetricsAndReadinessFollowKafkaWritesAndRows(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(t, opsTables)
	db.Exec(t, `INSERT INTO users SELECT 'u' || i, 'free', i FROM generate_series(1, 25) i`)
	kafka := kafkatest.Start(t)
	d := startDaemon(t, config.Connector, opsConfig(t, db.DSN, db.Name, kafka.Brokers(), ""))
	d.waitReady(t, 200, "ok")

	// The initial snapshot reads the 25 rows that were there.
	waitUntilFor(t, 30*time.Second, "the snapshot's 25 rows", func() bool {
		v, _ := d.metric(t, `onesignal_cdc_snapshot_rows_total{table="public.users"}`)
		return v == 25
	})
	if v, _ := d.metric(t, `onesignal_cdc_connector_events_total{op="r"}`); v != 25 {
		t.Errorf(`events_total{op="r"} = %v, want 25`, v)
	}
	// The slot is read every 10 s, and on a scrape when the last read is
	// a second old: the first read may predate the slot.
	slotLag := `onesignal_cdc_replication_slot_lag_bytes{slot="` + db.Name + `"}`
	waitUntilFor(t, 5*time.Second, slotLag, func() bool {
		_, ok := d.metric(t, slotLag)
		return ok
	})
	if v, ok := d.metric(t, `onesignal_cdc_replication_slot_retained_wal_bytes{slot="`+db.Name+`"}`); !ok || v <= 0 {
		t.Errorf("retained WAL: %v (present %v), want above 0", v, ok)
	}

	// Kafka refuses every write: rows pile up in the slot.
	lagBefore, _ := d.metric(t, slotLag)
	refusing := kafka.Cluster().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotEnoughReplicas, Count: -1})
	db.Exec(t, `INSERT INTO users SELECT 'n' || i, 'pro', i FROM generate_series(1, 40) i`)
	db.Exec(t, `UPDATE users SET plan = 'team' WHERE external_id = 'u1'`)
	d.waitReady(t, 503, "connector: Kafka writes failing")
	var lagDuring float64
	waitUntilFor(t, 15*time.Second, "the slot lag to grow", func() bool {
		lagDuring, _ = d.metric(t, slotLag)
		return lagDuring > lagBefore
	})
	if v, _ := d.metric(t, `onesignal_cdc_kafka_produce_errors_total`); v < 1 {
		t.Errorf("kafka_produce_errors_total = %v while Kafka refuses writes", v)
	}

	refusing.Remove()
	d.waitReady(t, 200, "ok")
	waitUntilFor(t, 30*time.Second, "the 40 inserts and the update to be counted", func() bool {
		c, _ := d.metric(t, `onesignal_cdc_connector_events_total{op="c"}`)
		u, _ := d.metric(t, `onesignal_cdc_connector_events_total{op="u"}`)
		return c == 40 && u == 1
	})
	waitUntilFor(t, 30*time.Second, "the slot lag to fall back", func() bool {
		v, _ := d.metric(t, slotLag)
		return v < lagDuring
	})
	if v, ok := d.metric(t, `onesignal_cdc_source_lag_seconds`); !ok || v < 0 || v > 60 {
		t.Errorf("source_lag_seconds = %v (present %v), want a few seconds", v, ok)
	}
	if v, _ := d.metric(t, `onesignal_cdc_connector_confirmed_lsn_bytes`); v <= 0 {
		t.Errorf("confirmed_lsn_bytes = %v", v)
	}
	if v, _ := d.metric(t, `onesignal_cdc_kafka_produce_duration_seconds_count`); v < 2 {
		t.Errorf("kafka_produce_duration_seconds_count = %v", v)
	}
}

func TestReadinessFollowsTheSinksKafka(t *testing.T) {
	kafka := kafkatest.Start(t)
	_, apiURL := emulator.NewTestServer(t, emulator.Config{AppID: "5eb5a37e-b458-11e3-ac11-000c2940e62c", APIKey: "ops-test-key"})
	if err := broker.EnsureTopics(t.Context(), kafka.Brokers(), 2, "cdc.public.users", "cdc.public.devices"); err != nil {
		t.Fatal(err)
	}
	// A sink alone needs no database; the DSN is never used.
	d := startDaemon(t, config.Sink, opsConfig(t, "postgres://nobody@127.0.0.1:9/none", "unused", kafka.Brokers(), apiURL))
	d.waitReady(t, 200, "ok")

	// Every fetch fails: the reader logs it, and the sink is not ready.
	failing := kafka.Cluster().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Err: kerr.NotLeaderForPartition, Count: -1})
	d.waitReady(t, 503, "sink: Kafka unreachable or failing")
	failing.Remove()
	d.waitReady(t, 200, "ok")
}

func TestStatusPageShowsThePipelineInChromium(t *testing.T) {
	chromium := findChromium(t)
	db := pgtest.NewDB(t)
	db.Exec(t, opsTables)
	db.Exec(t, `INSERT INTO users VALUES ('ada', 'pro', 42), ('grace', 'free', 17)`)
	// One device is known to OneSignal; the other is not, and its row ends
	// in the dead-letter topic.
	db.Exec(t, `INSERT INTO devices VALUES ('11111111-2222-3333-4444-555555555555', 'ada'), ('99999999-0000-0000-0000-000000000000', 'grace')`)
	kafka := kafkatest.Start(t)
	emu, apiURL := emulator.NewTestServer(t, emulator.Config{AppID: "5eb5a37e-b458-11e3-ac11-000c2940e62c", APIKey: "ops-test-key"})
	emu.AddSubscription(emulator.Subscription{ID: "11111111-2222-3333-4444-555555555555"})
	d := startDaemon(t, config.All, opsConfig(t, db.DSN, db.Name, kafka.Brokers(), apiURL))
	d.waitReady(t, 200, "ok")

	waitUntilFor(t, 30*time.Second, "one dead letter and the rest applied", func() bool {
		dead, _ := d.metric(t, `onesignal_cdc_sink_dead_lettered_total`)
		applied, _ := d.metric(t, `onesignal_cdc_sink_messages_total{outcome="applied"}`)
		return dead == 1 && applied >= 3
	})
	waitUntilFor(t, 5*time.Second, "a read of the slot", func() bool {
		_, ok := d.metric(t, `onesignal_cdc_replication_slot_lag_bytes{slot="`+db.Name+`"}`)
		return ok
	})

	dom := dumpDOM(t, chromium, d.url+"/")
	flat := strings.Join(strings.Fields(dom), " ")
	for _, want := range []struct{ what, pattern string }{
		{"the pipeline's PostgreSQL box, up", `id="stage-PostgreSQL" data-state="up"`},
		{"the connector's box, up and streaming", `id="stage-connector" data-state="up".*?streaming`},
		{"the Kafka box, up", `id="stage-Kafka" data-state="up"`},
		{"the sink's box, up and consuming", `id="stage-sink" data-state="up".*?consuming`},
		{"the OneSignal box", `id="stage-OneSignal" data-state="(up|warn)"`},
		{"the readiness badge", `id="ready" class="badge up">ready<`},
		{"the slot lag figure", `id="slot-lag"><h3>Slot lag</h3> <div class="value">\d+(\.\d)? (B|KiB|MiB|GiB)</div>`},
		{"the slot's name", `slot ` + db.Name},
		{"the dead-letter count", `id="dlq"><h3>Dead-lettered</h3> <div class="value">1</div>`},
		{"the dead letter, its origin, stage, status and reason", `<tr class="dead-letter"><td>[^<]+</td><td>cdc\.public\.devices/\d+@\d+</td><td>onesignal</td><td>404</td><td class="msg">[^<]*99999999-0000-0000-0000-000000000000[^<]*</td></tr>`},
		{"no 429 behind the rate limit", `id="rate-limit">.*?now: onesignal\.rate_limit; OneSignal sent no 429 so far`},
		{"the users mapping row", `<tr class="mapping-row"><td>public.users</td><td>cdc.public.users</td> <td>users<ul class="maps"><li>external_id ← external_id</li><li>tag plan ← plan</li><li>tag level ← score</li></ul>`},
		{"the devices mapping row", `<tr class="mapping-row"><td>public.devices</td><td>cdc.public.devices</td> <td>devices<ul class="maps"><li>device ← player_id</li><li>owner external_id ← user_external_id</li></ul>`},
		{"the connector's row", `<tr id="component-connector"><td>connector</td><td>streaming</td> <td class="state up">up</td>`},
		{"the build", `onesignal-cdc ` + regexp.QuoteMeta(buildVersion()) + ` · go1\.`},
	} {
		if !regexp.MustCompile(want.pattern).MatchString(flat) {
			t.Errorf("the page does not show %s: no match for %s", want.what, want.pattern)
		}
	}
	if t.Failed() {
		t.Logf("the DOM Chromium rendered:\n%s", dom)
	}
}

// findChromium returns the Chromium to use: $CHROMIUM, or chromium on PATH.
// Its absence fails the test: ./scripts/test installs it.
func findChromium(t *testing.T) string {
	t.Helper()
	if c := os.Getenv("CHROMIUM"); c != "" {
		return c
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
		t.Fatalf("chromium is not installed (CI=%s): the status page test needs it; scripts/test installs it with ensure_chromium", ci)
	}
	t.Fatalf("chromium is not installed: run ./scripts/test, which installs Debian's chromium, or set CHROMIUM to a Chromium binary")
	return ""
}

// dumpDOM loads url in headless Chromium and returns the DOM it built.
func dumpDOM(t *testing.T, chromium, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	profile := t.TempDir()
	cmd := exec.CommandContext(ctx, chromium,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
		"--user-data-dir="+profile, "--dump-dom", url)
	cmd.Env = append(os.Environ(), "HOME="+profile)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	started := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s --dump-dom: %v\n%s", filepath.Base(chromium), err, stderr.String())
	}
	t.Logf("Chromium rendered the page in %s", time.Since(started).Round(10*time.Millisecond))
	if stdout.Len() == 0 {
		t.Fatalf("Chromium printed no DOM:\n%s", stderr.String())
	}
	return stdout.String()
}

// logLines are the daemon's JSON log lines with msg, as field maps.
func logLines(t *testing.T, log, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(log, "\n") {
		var entry map[string]any
		if json.Unmarshal([]byte(line), &entry) == nil && entry["msg"] == msg {
			out = append(out, entry)
		}
	}
	return out
}

func TestAConnectorRefusedByPostgresIsLoggedAsTheConnectorsFailureNotTheSinks(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(t, opsTables)
	// The test server trusts every password: a role that does not exist
	// is refused at login as a wrong password is.
	u, err := url.Parse(db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("no_such_role", "wrong-password")
	kafka := kafkatest.Start(t)
	_, apiURL := emulator.NewTestServer(t, emulator.Config{AppID: "app-1", APIKey: "ops-test-key"})
	cfg := opsConfig(t, u.String(), db.Name, kafka.Brokers(), apiURL)

	log := &lockedBuffer{}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	err = daemon(ctx, runCommand(t), []string{"--config", cfg}, config.All, log, log)
	if err == nil || !strings.Contains(err.Error(), "no_such_role") || !strings.Contains(err.Error(), "check the user in postgres.dsn") {
		t.Fatalf("the daemon returned %v, want the login failure and its fix", err)
	}
	out := log.String()
	failed := logLines(t, out, "component stopped on an error")
	if len(failed) != 1 || failed[0]["component"] != "connector" || failed[0]["level"] != "error" ||
		!strings.Contains(fmt.Sprint(failed[0]["reason"]), "no_such_role") {
		t.Errorf("the failure is logged as %v, want one error line of the connector with the reason\n%s", failed, out)
	}
	stopped := logLines(t, out, "component stopped")
	if len(stopped) != 1 || stopped[0]["component"] != "sink" || stopped[0]["level"] != "info" {
		t.Errorf("the sink's stop is logged as %v, want one info line, without the connector's error\n%s", stopped, out)
	}
	if down := logLines(t, out, "component down"); len(down) != 0 {
		t.Errorf("the stop is logged as a component going down: %v", down)
	}
	if strings.Contains(out, "wrong-password") {
		t.Errorf("the log shows the password:\n%s", out)
	}
}

func runCommand(t *testing.T) *command {
	t.Helper()
	cmd, _, err := lookup([]string{"run"})
	if err != nil {
		t.Fatal(err)
	}
	return cmd
}
