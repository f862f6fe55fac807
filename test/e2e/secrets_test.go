package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
	"github.com/onesignal-cdc/onesignal-cdc/secret"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// TestSecretsNeverShow runs the daemon with a database password and an API
// key it knows, makes it work, fail and report, and looks for either
// secret in everything it wrote or served: its log, /metrics, the status
// page and its JSON twin, /readyz, validate's output, and the error of a
// sink stopped by a refused key.
func TestSecretsNeverShow(t *testing.T) {
	t.Parallel()
	const (
		password = "pw-5ecret-d0-not-print"
		apiKey   = "os_v2_app_k3y-5ecret-d0-not-print"
		wrongKey = "os_v2_app_wr0ng-5ecret-d0-not-print"
	)
	st := daemontest.NewStack(t, daemontest.StackOptions{Emulator: emulator.Config{AppID: "3c1e8f9a-0000-4000-8000-0000000005ec", APIKey: apiKey}})
	db, emu := st.DB, st.Emulator
	db.Exec(t, schema)
	role := db.Name + "_cdc"
	db.Exec(t, fmt.Sprintf(`CREATE ROLE %s LOGIN REPLICATION PASSWORD '%s'; GRANT SELECT ON users, devices TO %s; GRANT CREATE ON DATABASE %s TO %s; ALTER TABLE users OWNER TO %s; ALTER TABLE devices OWNER TO %s`,
		role, password, role, db.Name, role, role, role))
	t.Cleanup(func() { db.Exec(t, `DROP OWNED BY `+role+` CASCADE; DROP ROLE `+role) })
	dsn := strings.Replace(db.DSN, "postgres@", role+":"+password+"@", 1)
	if !strings.Contains(dsn, password) {
		t.Fatalf("the DSN %q does not carry the password", dsn)
	}
	configFile := func(slot, key string) string {
		c := st.Config()
		c.Postgres.DSN, c.Postgres.Slot = secret.Value(dsn), slot
		c.Postgres.StatusInterval = 200 * time.Millisecond
		c.Kafka.Brokers, c.Kafka.TopicPrefix = []string{config.Embedded}, "cdc"
		c.OneSignal.APIKey = secret.Value(key)
		c.Mapping.Users = &transform.UsersMapping{Table: "public.users", ExternalID: "external_id", Tags: map[string]string{"plan": ""}}
		c.Log.Level = "debug"
		return daemontest.WriteConfig(t, c)
	}
	var seen bytes.Buffer // everything the daemon showed
	good := configFile(db.Name, apiKey)

	_, out := daemontest.RunCommand(t, "validate", "--online", "--config", good)
	seen.WriteString(out)

	daemon := daemontest.Start(t, daemontest.Run, good)
	daemontest.WaitForSlot(t, db, db.Name)
	db.Exec(t, `INSERT INTO users SELECT 'user-' || i, 'free', i, 'DE' FROM generate_series(1, 20) i`)
	deadline := time.Now().Add(60 * time.Second)
	for len(emu.State().Users) < 20 {
		if time.Now().After(deadline) {
			t.Fatalf("the users did not reach OneSignal: %d of 20", len(emu.State().Users))
		}
		time.Sleep(100 * time.Millisecond)
	}
	opsAddr := opsAddress(t, daemon)
	for _, path := range []string{"/metrics", "/", "/status.json", "/readyz", "/livez"} {
		seen.WriteString(get(t, "http://"+opsAddr+path))
	}
	daemon.Stop(t)
	seen.WriteString(daemon.Output())

	// A refused key stops the sink: the error names the fix, not the key.
	// A slot of its own snapshots the users again, which gives the sink
	// something to send.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	refused := daemontest.Command(ctx, daemontest.Options{
		Dir: t.TempDir(), // the embedded broker's data: its own, not the first run's
		Env: []string{"ONESIGNAL_CDC_OPS_LISTEN=127.0.0.1:0"},
	}, "run", "--config", configFile(db.Name+"_refused", wrongKey))
	b, err := refused.CombinedOutput()
	out = string(b)
	seen.WriteString(out)
	if _, ok := err.(*exec.ExitError); !ok || !strings.Contains(out, "onesignal.api_key") {
		t.Errorf("the sink with a wrong key: err %v, output:\n%s", err, out[max(len(out)-2048, 0):])
	}

	for name, secret := range map[string]string{"database password": password, "API key": apiKey, "wrong API key": wrongKey} {
		if i := bytes.Index(seen.Bytes(), []byte(secret)); i >= 0 {
			from := max(i-200, 0)
			t.Errorf("the %s shows:\n…%s…", name, seen.Bytes()[from:min(i+len(secret)+50, seen.Len())])
		}
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if len(b) == 0 {
		t.Errorf("GET %s: empty body", url)
	}
	return string(b)
}

var opsListening = regexp.MustCompile(`"msg":"ops server listening[^"]*".*"address":"([^"]+)"`)

// opsAddress is where the process's ops server listens, from its log.
func opsAddress(t *testing.T, p *daemontest.Process) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := opsListening.FindStringSubmatch(p.Output()); m != nil {
			return m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon logged no ops address:\n%s", p.Tail(2048))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
