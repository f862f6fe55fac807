package main

import (
	"bytes"
	"fmt"
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

func TestValidateOfflineReportsABadFileWithExitCode1(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"validate", "--config", writeFile(t, "postgres:\n  dsnn: x\n")}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stdout.String(), `unknown key "dsnn"`) {
		t.Errorf("exit %d, output %q: want 1 and the unknown key named", code, stdout.String())
	}
}
