package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal/onesignaltest"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func validConfig(dsn, url, key string) string {
	return fmt.Sprintf(`
postgres:
  dsn: %s
kafka:
  brokers: [embedded]
onesignal:
  base_url: %s
  app_id: app-1
  api_key: %s
mapping:
  users:
    table: public.users
    external_id: external_id
    tags: {plan: ""}
`, dsn, url, key)
}

func TestValidateOnlineNamesEveryProblemWithItsFix(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	_, url := onesignaltest.NewTestServer(t, onesignaltest.Config{AppID: "app-1", APIKey: "right"})
	cases := []struct {
		name     string
		table    string // the users table's definition
		key      string
		wantExit int
		want     []string
	}{
		{"everything in order", `CREATE TABLE users (external_id text PRIMARY KEY, plan text)`, "right", 0,
			[]string{"the configuration is valid", "postgres: ok", "kafka: ok", "onesignal: ok"}},
		{"a table without a key and a wrong API key", `CREATE TABLE users (external_id text, plan text)`, "s3cret-wrong-key", 1,
			[]string{"has no primary key", "REPLICA IDENTITY FULL", "onesignal: ", "check onesignal.base_url, onesignal.app_id and onesignal.api_key"}},
	}
	for _, tc := range cases {
		db.Exec(t, `DROP TABLE IF EXISTS users`)
		db.Exec(t, tc.table)
		var stdout, stderr bytes.Buffer
		code := run([]string{"validate", "--online", "--config", writeFile(t, validConfig(db.DSN, url, tc.key))}, &stdout, &stderr)
		if code != tc.wantExit {
			t.Errorf("%s: exit %d, want %d\n%s%s", tc.name, code, tc.wantExit, stdout.String(), stderr.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(stdout.String(), w) {
				t.Errorf("%s: output lacks %q:\n%s", tc.name, w, stdout.String())
			}
		}
		if strings.Contains(stdout.String()+stderr.String(), tc.key) {
			t.Errorf("%s: the output shows the API key", tc.name)
		}
	}
}

func TestValidateOfflineReportsABadFileWithExitCode2(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"validate", "--config", writeFile(t, "postgres:\n  dsnn: x\n")}, &stdout, &stderr)
	if code != 2 || !strings.Contains(stdout.String(), `unknown key "dsnn"`) {
		t.Errorf("exit %d, output %q: want 2 and the unknown key named", code, stdout.String())
	}
}

// validate --online, one misconfiguration at a time against the real
// server: each is named with its fix, and the exit status is 1.
func TestValidateOnlineNamesEachMisconfiguration(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	_, url := onesignaltest.NewTestServer(t, onesignaltest.Config{AppID: "app-1", APIKey: "right"})
	db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY, plan text)`)
	db.Exec(t, `CREATE ROLE `+db.Name+`_norepl LOGIN PASSWORD 'pw'; GRANT SELECT ON users TO `+db.Name+`_norepl`)
	t.Cleanup(func() { db.Exec(t, `DROP OWNED BY `+db.Name+`_norepl; DROP ROLE `+db.Name+`_norepl`) })
	noRepl := strings.Replace(db.DSN, "postgres@", db.Name+"_norepl:pw@", 1)
	closed := freeAddr(t)
	cases := []struct {
		name   string
		config string
		setup  string
		want   []string
	}{
		{"a table that does not exist", strings.Replace(validConfig(db.DSN, url, "right"), "public.users", "public.user", 1), "",
			[]string{"table public.user does not exist", "correct the table in the mapping"}},
		{"a role that may not replicate", validConfig(noRepl, url, "right"), "",
			[]string{"may not replicate", "WITH REPLICATION"}},
		{"a slot made with another plugin", strings.Replace(validConfig(db.DSN, url, "right"), "postgres:\n", "postgres:\n  slot: "+db.Name+"_td\n", 1), "SELECT pg_create_logical_replication_slot('" + db.Name + "_td', 'test_decoding')",
			[]string{"test_decoding", "pg_drop_replication_slot"}},
		{"kafka out of reach", strings.Replace(validConfig(db.DSN, url, "right"), "[embedded]", "["+closed+"]", 1), "",
			[]string{"\nkafka at " + closed + ": connection refused: check kafka.brokers and that the broker is up\n"}},
		{"a wrong API key", validConfig(db.DSN, url, "wrong-key"), "",
			[]string{"onesignal: ", "check onesignal.base_url, onesignal.app_id and onesignal.api_key"}},
	}
	for _, tc := range cases {
		if tc.setup != "" {
			db.Exec(t, tc.setup)
		}
		var stdout, stderr bytes.Buffer
		code := run([]string{"validate", "--online", "--config", writeFile(t, tc.config)}, &stdout, &stderr)
		if code != 1 {
			t.Errorf("%s: exit %d, want 1\n%s%s", tc.name, code, stdout.String(), stderr.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(stdout.String(), w) {
				t.Errorf("%s: output lacks %q:\n%s", tc.name, w, stdout.String())
			}
		}
	}
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestValidateChecksOnlyWhatTheRoleNeeds(t *testing.T) {
	connectorOnly := "postgres:\n  dsn: postgres://cdc@db/app\nmapping:\n  users: {table: public.users, external_id: external_id}\n"
	var stdout, stderr bytes.Buffer
	if code := run([]string{"validate", "--role", "connector", "--config", writeFile(t, connectorOnly)}, &stdout, &stderr); code != 0 {
		t.Errorf("a connector's config without OneSignal keys: exit %d\n%s", code, stdout.String())
	}
	stdout.Reset()
	if code := run([]string{"validate", "--role", "sink", "--config", writeFile(t, connectorOnly)}, &stdout, &stderr); code != 2 || !strings.Contains(stdout.String(), "onesignal.api_key is empty") {
		t.Errorf("a sink's config without an API key: exit %d\n%s", code, stdout.String())
	}
	if code := run([]string{"validate", "--role", "both", "--config", writeFile(t, connectorOnly)}, &stdout, &stderr); code != 2 {
		t.Errorf("an unknown role: exit %d, want 2", code)
	}
}
