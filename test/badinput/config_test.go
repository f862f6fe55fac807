package badinput

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
)

// A configuration with nothing wrong but what a case puts in.
const (
	okPostgres  = "postgres: {dsn: \"postgres://cdc@db:5432/app\"}\n"
	okOneSignal = "onesignal: {app_id: 5eb5a37e-b458-11e3-ac11-000c2940e62c, api_key: k}\n"
	okMapping   = "mapping:\n  users: {table: public.users, external_id: external_id}\n"
)

// TestConfigurationFilesAreRefusedNamingTheFix runs `onesignal-cdc
// validate` on bad configuration files: the ones config/testdata keeps
// with their expected errors, and more. Each must exit 2 with every
// expected line in its output, and no panic.
func TestConfigurationFilesAreRefusedNamingTheFix(t *testing.T) {
	t.Parallel()
	empty := writeFile(t, "empty-secret", "\n")
	notPEM := writeFile(t, "not.pem", "not a certificate\n")
	cases := []struct {
		name string
		yaml string   // the file; or
		file string   // a file of config/testdata, whose .err lists the expected lines
		role string   // validate --role; "" for run
		want []string // lines the output must hold
	}{
		// config/testdata/*.bad.yml, by name.
		{name: "the embedded broker mixed with real ones, an ftp base URL and a bare table name are each named", file: "embedded_mixed.bad.yml"},
		{name: "a file with nearly everything missing names every missing setting", file: "everything_missing.bad.yml"},
		{name: "identity verification in the user model is refused naming the player model", file: "identity_verification_user_model.bad.yml"},
		{name: "Kafka TLS without tls.enabled and an unknown SASL mechanism are named", file: "kafka_security.bad.yml"},
		{name: "an API key given twice, a misspelt model, a negative tag limit and a bad ops address are each named", file: "onesignal_wrong.bad.yml"},
		{name: "misspelt keys are named with their lines", file: "unknown_key.bad.yml"},
		{name: "an app ID that is not a UUID, a broker without a port that looks like embedded and a DSN with a bad sslmode are each named", file: "unusable_values.bad.yml"},
		{name: "a file without Kafka brokers names host:port brokers and [embedded]", file: "no_kafka_section.bad.yml"},
		{name: "plain http to a OneSignal on another machine is refused, naming https and allow_insecure_http", file: "insecure_http.bad.yml"},

		// The embedded broker is for one process running both halves.
		{
			name: "a connector alone refuses the embedded broker, saying why",
			yaml: okPostgres + okOneSignal + okMapping + "kafka: {brokers: [embedded]}\n", role: "connector",
			want: []string{"kafka.brokers is [embedded], which onesignal-cdc connector cannot use", "confirm to PostgreSQL changes that only its own memory holds"},
		},
		{
			name: "a sink alone refuses the embedded broker, saying why",
			yaml: okPostgres + okOneSignal + okMapping + "kafka: {brokers: [embedded]}\n", role: "sink",
			want: []string{"kafka.brokers is [embedded], which onesignal-cdc sink cannot use", "no connector in another process can write to it"},
		},

		// More: types, durations, nesting, files.
		{
			name: "a word where a number belongs names the line and the value",
			yaml: okPostgres + okOneSignal + okMapping + "kafka:\n  partitions: many\n",
			want: []string{"line 6: kafka.partitions: `many` is not a whole number: write a whole number"},
		},
		{
			name: "a duration written in words names the line and the value",
			yaml: "postgres:\n  dsn: postgres://cdc@db:5432/app\n  status_interval: 10 seconds\n" + okOneSignal + okMapping,
			want: []string{"line 3: postgres.status_interval: `10 seconds` is not a duration: write a duration such as 500ms"},
		},
		{
			name: "a duration written as a bare number names the line and the value",
			yaml: "postgres:\n  dsn: postgres://cdc@db:5432/app\n  heartbeat_interval: 10\n" + okOneSignal + okMapping,
			want: []string{"line 3: postgres.heartbeat_interval: 10 has no unit: write a duration such as 500ms"},
		},
		{
			name: "a phrase where a boolean belongs names the line and the value",
			yaml: okPostgres + okOneSignal + okMapping + "kafka:\n  brokers: [kafka:9093]\n  tls:\n    enabled: yes please\n",
			want: []string{"line 8: kafka.tls.enabled: `yes please` is not true or false"},
		},
		{
			name: "tags given as a list instead of a map name the line",
			yaml: okPostgres + okOneSignal + "mapping:\n  users:\n    table: public.users\n    external_id: external_id\n    tags: [plan, score]\n",
			want: []string{"line 7: mapping.users.tags: a list is not a mapping: write a mapping of names to names"},
		},
		{
			name: "an unknown key nested in kafka.tls is named with its line and where to check it",
			yaml: okPostgres + okOneSignal + okMapping + "kafka:\n  brokers: [kafka:9093]\n  tls:\n    enabled: true\n    ca_fil: /run/ca.pem\n",
			want: []string{`line 9: unknown key "ca_fil"`, "docs/configuration.md"},
		},
		{
			name: "an unknown key in mapping.devices is named with its line",
			yaml: okPostgres + okOneSignal + okMapping + "  devices: {table: public.devices, device_id: player_id, external_id: user_external_id, owner_id: x}\n",
			want: []string{`line 5: unknown key "owner_id"`},
		},
		{
			name: "a key given twice names both lines",
			yaml: okPostgres + okOneSignal + okMapping + "onesignal: {rate_limit: 100}\n",
			want: []string{`line 5: mapping key "onesignal" already defined at line 2`},
		},
		{
			name: "a tab in the indentation names the line",
			yaml: "postgres:\n\tdsn: postgres://cdc@db:5432/app\n",
			want: []string{"line 2:", "cannot start any token"},
		},
		{
			name: "an empty file names every setting it needs",
			yaml: "",
			want: []string{"postgres.dsn is empty: set it", "kafka.brokers is empty: list your Kafka brokers", "onesignal.app_id is empty", "onesignal.api_key is empty", "mapping: neither users nor devices is set"},
		},
		{
			name: "a database secret file that is missing names the file and says to mount it",
			yaml: "postgres: {dsn_file: /run/secrets/missing-dsn}\n" + okOneSignal + okMapping,
			want: []string{"postgres.dsn_file: cannot read the secret: open /run/secrets/missing-dsn: no such file or directory: mount the file or fix the path"},
		},
		{
			name: "an API key file that is missing names the file and says to mount it",
			yaml: okPostgres + "onesignal: {app_id: x, api_key_file: /run/secrets/missing-key}\n" + okMapping,
			want: []string{"onesignal.api_key_file: cannot read the secret: open /run/secrets/missing-key: no such file or directory: mount the file or fix the path"},
		},
		{
			name: "an empty API key file says to write the key into it",
			yaml: okPostgres + "onesignal: {app_id: x, api_key_file: " + empty + "}\n" + okMapping,
			want: []string{"onesignal.api_key_file: " + empty + " is empty: write the secret into it"},
		},
		{
			name: "Kafka TLS files that are missing are each named",
			yaml: okPostgres + okOneSignal + okMapping +
				"kafka:\n  brokers: [kafka:9093]\n  tls: {enabled: true, ca_file: /run/tls/missing-ca.pem, cert_file: /run/tls/missing.crt, key_file: /run/tls/missing.key}\n",
			want: []string{"kafka.tls.ca_file: open /run/tls/missing-ca.pem: no such file or directory", "kafka.tls: client certificate: open /run/tls/missing.crt"},
		},
		{
			name: "a Kafka CA file that holds no certificate is named",
			yaml: okPostgres + okOneSignal + okMapping + "kafka:\n  brokers: [kafka:9093]\n  tls: {enabled: true, ca_file: " + notPEM + "}\n",
			want: []string{"kafka.tls.ca_file: " + notPEM + " holds no PEM certificate"},
		},
		{
			name: "an API CA file that is missing says to give a readable bundle",
			yaml: okPostgres + "onesignal: {app_id: x, api_key: k, ca_file: /run/tls/missing-api-ca.pem}\n" + okMapping,
			want: []string{"onesignal.ca_file: open /run/tls/missing-api-ca.pem: no such file or directory: give a readable PEM CA bundle"},
		},
		{
			name: "a rate limit above OneSignal's names the limit to use",
			yaml: okPostgres + "onesignal: {app_id: x, api_key: k, rate_limit: 5000}\n" + okMapping,
			want: []string{"onesignal.rate_limit 5000 is above OneSignal's limit of 1000 writes/s per app: use at most 1000"},
		},
		{
			name: "a conversion of a column that is not a tag says to add it to the tags",
			yaml: okPostgres + okOneSignal + "mapping:\n  users:\n    table: public.users\n    external_id: external_id\n    tags: {plan: \"\"}\n    convert: {prefs: flatten}\n",
			want: []string{`mapping.users.convert: "prefs" is not a tag column: add it to mapping.users.tags`},
		},
		{
			name: "a legacy API key in the user model is refused, naming the player model",
			yaml: okPostgres + "onesignal: {app_id: 5eb5a37e-b458-11e3-ac11-000c2940e62c, api_key: k, model: user, legacy_api_key: true}\n" + okMapping,
			want: []string{"onesignal.legacy_api_key is for the player model: the user model takes App API keys only: remove it, or set onesignal.model: player"},
		},
		{
			name: "users and devices mapped to one table are refused",
			yaml: okPostgres + okOneSignal + okMapping + "  devices: {table: public.users, device_id: player_id, external_id: user_external_id}\n",
			want: []string{`mapping: users and devices both use table "public.users": map two different tables`},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "config.yaml")
			want := c.want
			if c.file != "" {
				path = filepath.Join("..", "..", "config", "testdata", c.file)
				errs, err := os.ReadFile(path + ".err")
				if err != nil {
					t.Fatal(err)
				}
				want = strings.Split(strings.TrimSpace(string(errs)), "\n")
			} else if err := os.WriteFile(path, []byte(c.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			args := []string{"validate", "--config", path}
			if c.role != "" {
				args = append(args, "--role", c.role)
			}
			code, out := daemontest.RunCommand(t, args...)
			if code != 2 {
				t.Errorf("validate exited %d, want 2; output:\n%s", code, out)
			}
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("the output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
				t.Errorf("validate panicked:\n%s", out)
			}
		})
	}
}
