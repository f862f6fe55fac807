package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// validAppID is the app of the emulator the validate tests run against.
const validAppID = "5eb5a37e-b458-11e3-ac11-000c2940e62c"

func validConfig(dsn, url, key string) string {
	return fmt.Sprintf(`
postgres:
  dsn: %s
kafka:
  brokers: [embedded]
onesignal:
  base_url: %s
  app_id: %s
  api_key: %s
mapping:
  users:
    table: public.users
    external_id: external_id
    tags: {plan: ""}
`, dsn, url, validAppID, key)
}

func TestValidateOnlineNamesEveryProblemWithItsFix(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	_, url := emulator.NewTestServer(t, emulator.Config{AppID: validAppID, APIKey: "right"})
	cases := []struct {
		name     string
		table    string // the users table's definition
		key      string
		wantExit int
		want     []string
	}{
		{"everything in order", `CREATE TABLE users (external_id text PRIMARY KEY, plan text)`, "right", 0,
			[]string{"the configuration is valid", "postgres: ok", "kafka: embedded development broker, in this process, not durable", "onesignal: ok"}},
		{"a table without a key and a wrong API key", `CREATE TABLE users (external_id text, plan text)`, "s3cret-wrong-key", 1,
			[]string{"has no primary key", "REPLICA IDENTITY FULL", "onesignal: OneSignal refused the API key for app " + validAppID + ", or has no such app"}},
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
	_, url := emulator.NewTestServer(t, emulator.Config{AppID: validAppID, APIKey: "right"})
	db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY, plan text)`)
	db.Exec(t, `CREATE TABLE users_devices (player_id text PRIMARY KEY, user_external_id text)`)
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
			[]string{"onesignal: OneSignal refused the API key for app " + validAppID + ", or has no such app (it answers both alike)", "onesignal.api_key to an App API key of that same app"}},
		{"an app ID of no app", strings.Replace(validConfig(db.DSN, url, "right"), validAppID, "11111111-2222-4333-8444-555555555555", 1), "",
			[]string{"onesignal: OneSignal refused the API key for app 11111111-2222-4333-8444-555555555555, or has no such app"}},
		{"the player model's wrong API key", strings.Replace(validConfig(db.DSN, url, "wrong-key"), "onesignal:\n", "onesignal:\n  model: player\n", 1), "",
			[]string{"onesignal: OneSignal refused the API key for app " + validAppID + ": set onesignal.api_key to that app's REST API key"}},
		{"the player model's legacy key, which OneSignal no longer takes", strings.Replace(validConfig(db.DSN, url, "right"), "onesignal:\n", "onesignal:\n  model: player\n  legacy_api_key: true\n", 1), "",
			[]string{"onesignal: OneSignal refused the API key for app " + validAppID + `, sent the legacy way ("Authorization: Basic …") because onesignal.legacy_api_key is true`,
				"create an App API key in the app's Settings › Keys & IDs, set onesignal.api_key to it and remove onesignal.legacy_api_key"}},
		{"the player model's app ID of no app", strings.Replace(strings.Replace(validConfig(db.DSN, url, "right"), validAppID, "11111111-2222-4333-8444-555555555555", 1), "onesignal:\n", "onesignal:\n  model: player\n", 1), "",
			[]string{`onesignal: OneSignal has no app 11111111-2222-4333-8444-555555555555 (it answered "app_id not found"): set onesignal.app_id`}},
		{"a misspelt external id column", strings.Replace(validConfig(db.DSN, url, "right"), "external_id: external_id", "external_id: externalid", 1), "",
			[]string{`table public.users has no column "externalid", which mapping.users.external_id names`, `did you mean "external_id"?`, "The table's columns: external_id, plan"}},
		{"a misspelt tag column", strings.Replace(validConfig(db.DSN, url, "right"), `tags: {plan: ""}`, `tags: {plan: "", scor: level}`, 1), "",
			[]string{`table public.users has no column "scor", which mapping.users.tags names`, "The table's columns: external_id, plan"}},
		{"a wrong device id column", validConfig(db.DSN, url, "right") + "  devices: {table: public.users_devices, device_id: device_id, external_id: user_external_id}\n", "",
			[]string{`table public.users_devices has no column "device_id", which mapping.devices.device_id names`, "The table's columns: player_id, user_external_id"}},
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
	connectorOnly := "postgres:\n  dsn: postgres://cdc@db/app\nkafka:\n  brokers: [kafka-1:9092]\nmapping:\n  users: {table: public.users, external_id: external_id}\n"
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

// The embedded broker lives inside one process: a connector or a sink on
// its own cannot use it, and validate --role says so, offline.
func TestValidateRefusesTheEmbeddedBrokerForAConnectorOrASinkAlone(t *testing.T) {
	cfg := writeFile(t, validConfig("postgres://cdc@db/app", "https://api.onesignal.com", "k"))
	for _, tc := range []struct {
		role string
		exit int
		want string
	}{
		{"run", 0, "the configuration is valid"},
		{"connector", 2, "kafka.brokers is [embedded], which onesignal-cdc connector cannot use: the embedded development broker lives inside one process"},
		{"sink", 2, "kafka.brokers is [embedded], which onesignal-cdc sink cannot use"},
	} {
		var stdout, stderr bytes.Buffer
		code := run([]string{"validate", "--role", tc.role, "--config", cfg}, &stdout, &stderr)
		if code != tc.exit || !strings.Contains(stdout.String()+stderr.String(), tc.want) {
			t.Errorf("--role %s: exit %d, want %d and %q:\n%s%s", tc.role, code, tc.exit, tc.want, stdout.String(), stderr.String())
		}
	}
	noKafka := strings.Replace(validConfig("postgres://cdc@db/app", "https://api.onesignal.com", "k"), "kafka:\n  brokers: [embedded]\n", "", 1)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"validate", "--config", writeFile(t, noKafka)}, &stdout, &stderr); code != 2 || !strings.Contains(stdout.String()+stderr.String(), "kafka.brokers is empty: list your Kafka brokers as host:port") {
		t.Errorf("no kafka section: exit %d, want 2\n%s%s", code, stdout.String(), stderr.String())
	}
}

// A connector or a sink on its own refuses the embedded broker before it
// starts anything: nothing is confirmed to PostgreSQL.
func TestAConnectorOrASinkAloneRefusesTheEmbeddedBroker(t *testing.T) {
	cfg := writeFile(t, validConfig("postgres://cdc@127.0.0.1:9/app", "https://api.onesignal.com", "k"))
	for _, cmd := range []string{"connector", "sink"} {
		var stdout, stderr bytes.Buffer
		code := run([]string{cmd, "--config", cfg}, &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), "kafka.brokers is [embedded], which onesignal-cdc "+cmd+" cannot use") {
			t.Errorf("onesignal-cdc %s: exit %d, want 2 and the embedded broker refused:\n%s", cmd, code, stderr.String())
		}
	}
}

// Under REPLICA IDENTITY DEFAULT the sink's row index finds what a delete
// was; only rows it never saw, without an initial snapshot, need more.
func TestValidateWarnsOfReplicaIdentityOnlyWhereTheRowIndexCannotHelp(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE users ("Contact ID" bigint PRIMARY KEY, external_id text, plan text)`)
	db.Exec(t, `CREATE TABLE keyed (external_id text PRIMARY KEY, plan text)`)
	db.Exec(t, `CREATE TABLE full_users ("Contact ID" bigint PRIMARY KEY, external_id text, plan text)`)
	db.Exec(t, `ALTER TABLE full_users REPLICA IDENTITY FULL`)
	_, url := emulator.NewTestServer(t, emulator.Config{AppID: validAppID, APIKey: "right"})
	const warning = "postgres: warning: with postgres.snapshot: never the sink has not seen the public."
	for _, tc := range []struct {
		name, table, snapshot string
		warns                 bool
	}{
		{"a surrogate key, DEFAULT, no snapshot", "public.users", "never", true},
		{"a surrogate key, DEFAULT, an initial snapshot", "public.users", "initial", false},
		{"the external id as the key, no snapshot", "public.keyed", "never", false},
		{"REPLICA IDENTITY FULL, no snapshot", "public.full_users", "never", false},
	} {
		cfg := strings.Replace(validConfig(db.DSN, url, "right"), "public.users", tc.table, 1)
		cfg = strings.Replace(cfg, "postgres:\n", "postgres:\n  snapshot: "+tc.snapshot+"\n  slot: "+db.Name+"\n  publication: "+db.Name+"\n", 1)
		var stdout, stderr bytes.Buffer
		code := run([]string{"validate", "--online", "--config", writeFile(t, cfg)}, &stdout, &stderr)
		if code != 0 {
			t.Errorf("%s: exit %d, want 0 (a warning is not a problem):\n%s%s", tc.name, code, stdout.String(), stderr.String())
		}
		if got := strings.Contains(stdout.String(), warning); got != tc.warns {
			t.Errorf("%s: warned %v, want %v:\n%s", tc.name, got, tc.warns, stdout.String())
		}
		if tc.warns && !strings.Contains(stdout.String(), "REPLICA IDENTITY FULL") {
			t.Errorf("%s: the warning names no fix:\n%s", tc.name, stdout.String())
		}
	}
}

// A publication an admin owns, which lists columns other than the
// mapping's: one that leaves out a mapped column is a problem, one that
// publishes more than the mapping reads a warning, each with the
// statement that mends it.
func TestValidateReportsAPublicationWhoseColumnListDiffers(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	_, url := emulator.NewTestServer(t, emulator.Config{AppID: validAppID, APIKey: "right"})
	db.Exec(t, `CREATE TABLE users ("Contact ID" bigint PRIMARY KEY, external_id text, plan text, password text)`)
	role := db.Name + "_cdc"
	db.Exec(t, `CREATE ROLE `+role+` LOGIN REPLICATION PASSWORD 'pw'`)
	t.Cleanup(func() { db.Exec(t, `DROP OWNED BY `+role+`; DROP ROLE `+role) })
	cfg := strings.Replace(validConfig(strings.Replace(db.DSN, "postgres@", role+":pw@", 1), url, "right"),
		"postgres:\n", "postgres:\n  slot: "+db.Name+"\n  publication: "+db.Name+"\n", 1)
	pub := pgx.Identifier{db.Name}.Sanitize()
	const fix = `ALTER PUBLICATION "%[1]s" DROP TABLE "public"."users"; ALTER PUBLICATION "%[1]s" ADD TABLE "public"."users" ("Contact ID", "external_id", "plan"); COMMIT;`
	for _, tc := range []struct {
		name, publication string
		exit              int
		want              string
	}{
		{"a mapped column left out", `CREATE PUBLICATION ` + pub + ` FOR TABLE users ("Contact ID", external_id)`, 1,
			`its column list leaves out "plan", which the connector needs`},
		{"every column", `CREATE PUBLICATION ` + pub + ` FOR TABLE users`, 0,
			`postgres: warning: publication "` + db.Name + `" differs from what the connector needs of table public.users: it publishes every column, where the connector needs only "Contact ID", "external_id", "plan"`},
		{"the mapped columns", `CREATE PUBLICATION ` + pub + ` FOR TABLE users ("Contact ID", external_id, plan)`, 0, "postgres: ok"},
	} {
		db.Exec(t, `DROP PUBLICATION IF EXISTS `+pub+`; `+tc.publication)
		var stdout, stderr bytes.Buffer
		code := run([]string{"validate", "--online", "--config", writeFile(t, cfg)}, &stdout, &stderr)
		if code != tc.exit || !strings.Contains(stdout.String(), tc.want) {
			t.Errorf("%s: exit %d, want %d and %q:\n%s%s", tc.name, code, tc.exit, tc.want, stdout.String(), stderr.String())
		}
		if tc.exit != 0 || strings.Contains(tc.want, "warning") {
			if f := fmt.Sprintf(fix, db.Name); !strings.Contains(stdout.String(), f) {
				t.Errorf("%s: the output lacks the fix %q:\n%s", tc.name, f, stdout.String())
			}
		}
	}
}
