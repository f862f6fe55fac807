package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestGoodConfigsLoad(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.good.yml")
	if len(files) == 0 {
		t.Fatal("no testdata/*.good.yml")
	}
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// Each testdata/X.bad.yml fails with every line of X.bad.yml.err in its error.
func TestBadConfigsReportEveryProblemAtOnce(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.bad.yml")
	if len(files) == 0 {
		t.Fatal("no testdata/*.bad.yml")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want, err := os.ReadFile(f + ".err")
			if err != nil {
				t.Fatal(err)
			}
			_, err = Load(f)
			if err == nil {
				t.Fatal("loaded without error")
			}
			for _, line := range strings.Split(strings.TrimSpace(string(want)), "\n") {
				if !strings.Contains(err.Error(), line) {
					t.Errorf("error lacks %q:\n%v", line, err)
				}
			}
		})
	}
}

// goOrYAMLType matches what yaml's errors say that a person should not
// have to read: the package's name, YAML tags and Go type names.
var goOrYAMLType = regexp.MustCompile(`cannot unmarshal|\byaml: |!!\w+|time\.Duration|\binto u?int|\b(config|transform)\.[A-Z]\w*|map\[string\]|\[\]string`)

func TestYAMLErrorsSayWhatIsWrongWithoutGoOrYAMLNames(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.bad.yml")
	for _, f := range files {
		_, err := Load(f)
		if err == nil {
			continue
		}
		if internal := goOrYAMLType.FindString(err.Error()); internal != "" {
			t.Errorf("%s: the error shows %q:\n%v", f, internal, err)
		}
	}
}

func TestDefaultsFillWhatTheFileLeavesOut(t *testing.T) {
	cfg, err := Load("testdata/minimal.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Postgres.Slot != "onesignal_cdc" || cfg.Postgres.StatusInterval != 10*time.Second ||
		cfg.Kafka.TopicPrefix != "onesignal_cdc" || cfg.OneSignal.BaseURL != "https://api.onesignal.com" {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	if got := cfg.Mapping.Tables(); len(got) != 2 || got[0] != "public.users" || got[1] != "public.devices" {
		t.Errorf("tables %v", got)
	}
}

func TestEnvironmentOverridesSecrets(t *testing.T) {
	t.Setenv("ONESIGNAL_CDC_POSTGRES_DSN", "postgres://from-env/app")
	t.Setenv("ONESIGNAL_CDC_ONESIGNAL_API_KEY", "key-from-env")
	cfg, err := Load("testdata/minimal.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Postgres.DSN.Reveal() != "postgres://from-env/app" || cfg.OneSignal.APIKey.Reveal() != "key-from-env" {
		t.Errorf("environment not applied")
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	cfg, err := Load("testdata/minimal.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprint(cfg.OneSignal.APIKey)} {
		if strings.Contains(s, "secret") {
			t.Errorf("a secret printed: %s", s)
		}
	}
}

func TestTheExampleConfigLoads(t *testing.T) {
	t.Setenv("ONESIGNAL_CDC_ONESIGNAL_API_KEY", "key")
	if _, err := Load("../deploy/onesignal-cdc.example.yaml"); err != nil {
		t.Fatal(err)
	}
}

func TestSecretsComeFromFilesNamedByTheEnvironment(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "api_key")
	if err := os.WriteFile(key, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ONESIGNAL_CDC_ONESIGNAL_API_KEY_FILE", key)
	cfg, err := Load("testdata/minimal.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.OneSignal.APIKey.Reveal(); got != "from-file" {
		t.Errorf("api key %q, want the file's content without its newline", got)
	}

	t.Setenv("ONESIGNAL_CDC_ONESIGNAL_API_KEY", "from-env")
	cfg, err = Load("testdata/minimal.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.OneSignal.APIKey.Reveal(); got != "from-env" {
		t.Errorf("api key %q, want the variable to win over the file", got)
	}
}

func TestSecretsComeFromFilesNamedInTheConfig(t *testing.T) {
	dir := t.TempDir()
	dsn := filepath.Join(dir, "dsn")
	if err := os.WriteFile(dsn, []byte("postgres://u:pw@db/app\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yml := strings.Replace(minimalWithout(t, "dsn:"), "postgres:", "postgres:\n  dsn_file: "+dsn, 1)
	cfg, err := Parse(strings.NewReader(yml))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Postgres.DSN.Reveal(); got != "postgres://u:pw@db/app" {
		t.Errorf("dsn %q", got)
	}
}

func TestASecretFileThatCannotBeReadIsNamedInTheError(t *testing.T) {
	t.Setenv("ONESIGNAL_CDC_POSTGRES_DSN_FILE", "/nonexistent/dsn")
	_, err := Load("testdata/minimal.good.yml")
	if err == nil || !strings.Contains(err.Error(), "$ONESIGNAL_CDC_POSTGRES_DSN_FILE") || !strings.Contains(err.Error(), "/nonexistent/dsn") {
		t.Fatalf("err = %v, want one naming the variable and the file", err)
	}
}

func TestEachRoleNeedsOnlyItsOwnSettings(t *testing.T) {
	noAPIKey := minimalWithout(t, "api_key:")
	if _, err := ParseFor(strings.NewReader(noAPIKey), Connector); err != nil {
		t.Errorf("connector without an API key: %v", err)
	}
	if _, err := ParseFor(strings.NewReader(noAPIKey), Sink); err == nil || !strings.Contains(err.Error(), "onesignal.api_key is empty") {
		t.Errorf("sink without an API key: err = %v", err)
	}
	noDSN := minimalWithout(t, "dsn:")
	if _, err := ParseFor(strings.NewReader(noDSN), Sink); err != nil {
		t.Errorf("sink without a DSN: %v", err)
	}
	if _, err := ParseFor(strings.NewReader(noDSN), Connector); err == nil || !strings.Contains(err.Error(), "postgres.dsn is empty") {
		t.Errorf("connector without a DSN: err = %v", err)
	}
}

// minimalWithout returns testdata/minimal.good.yml without the lines
// containing key, and fails if there is none.
func minimalWithout(t *testing.T, key string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/minimal.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.Contains(l, key) {
			keep = append(keep, l)
		}
	}
	if len(keep) == strings.Count(string(b), "\n")+1 {
		t.Fatalf("minimal.good.yml has no %q", key)
	}
	return strings.Join(keep, "\n")
}

// The examples in docs/examples load, given the secrets their comments
// say come from the environment.
func TestTheDocumentedExamplesLoad(t *testing.T) {
	files, _ := filepath.Glob("../docs/examples/*.yaml")
	if len(files) < 4 {
		t.Fatalf("%d examples in docs/examples, want one per use case", len(files))
	}
	dir := t.TempDir()
	dsn, key := filepath.Join(dir, "dsn"), filepath.Join(dir, "key")
	os.WriteFile(dsn, []byte("postgres://cdc@db/app\n"), 0o600)
	os.WriteFile(key, []byte("key\n"), 0o600)
	t.Setenv("ONESIGNAL_CDC_POSTGRES_DSN_FILE", dsn)
	t.Setenv("ONESIGNAL_CDC_ONESIGNAL_API_KEY_FILE", key)
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// docs/configuration.md names every key the decoder accepts.
func TestTheConfigurationReferenceNamesEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range yamlKeys(reflect.TypeOf(Config{}), "") {
		leaf := key[strings.LastIndex(key, ".")+1:]
		if !strings.Contains(string(doc), "`"+leaf+"`") && !strings.Contains(string(doc), "`"+key+"`") && !strings.Contains(string(doc), "`"+key[strings.Index(key, ".")+1:]+"`") {
			t.Errorf("docs/configuration.md does not mention %s", key)
		}
	}
}

func yamlKeys(typ reflect.Type, prefix string) []string {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	var keys []string
	for f := range typ.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Duration(0)) {
			keys = append(keys, yamlKeys(ft, prefix+name+".")...)
			continue
		}
		keys = append(keys, prefix+name)
	}
	return keys
}

// Kafka has no default: a file without brokers must not get, silently, a
// broker in memory that loses everything when the process stops.
func TestNoBrokersIsAnErrorNamingBothWaysToFixIt(t *testing.T) {
	if len(Default().Kafka.Brokers) != 0 {
		t.Fatalf("config.Default has brokers %v, want none", Default().Kafka.Brokers)
	}
	yml := minimalWithout(t, "brokers:")
	for _, role := range []Role{All, Connector, Sink, 0} {
		_, err := ParseFor(strings.NewReader(yml), role)
		if err == nil || !strings.Contains(err.Error(), "kafka.brokers is empty: list your Kafka brokers as host:port") || !strings.Contains(err.Error(), "[embedded]") {
			t.Errorf("role %d: err = %v, want kafka.brokers named with host:port and [embedded]", role, err)
		}
	}
	if _, err := ParseFor(strings.NewReader(yml), Database); err != nil {
		t.Errorf("a command on the database alone needs no brokers: %v", err)
	}
}

func TestOnlyAProcessRunningBothHalvesMayUseTheEmbeddedBroker(t *testing.T) {
	yml := strings.Replace(minimal(t), "[kafka-1:9092]", "[embedded]", 1)
	for _, tc := range []struct {
		role Role
		want []string // "" for no error
	}{
		{All, nil},
		{Database, nil},
		{0, nil},
		{Connector, []string{"kafka.brokers is [embedded], which onesignal-cdc connector cannot use", "lives inside one process",
			"confirm to PostgreSQL changes that only its own memory holds", "onesignal-cdc run, or list your Kafka brokers"}},
		{Sink, []string{"kafka.brokers is [embedded], which onesignal-cdc sink cannot use", "no connector in another process can write to it"}},
	} {
		_, err := ParseFor(strings.NewReader(yml), tc.role)
		if tc.want == nil {
			if err != nil {
				t.Errorf("role %d: %v", tc.role, err)
			}
			continue
		}
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("role %d: err = %v, want it to say %q", tc.role, err, w)
			}
		}
	}
}

func TestBrokersMustBeHostAndPort(t *testing.T) {
	for _, tc := range []struct{ broker, want string }{
		{"kafka-1:9092", ""},
		{"10.0.0.7:9093", ""},
		{"[::1]:9092", ""},
		{"embeded", `"embeded" has no port: write host:port, e.g. "embeded:9092"; or, if you meant the development broker, spell it "embedded"`},
		{"kafka-1", `"kafka-1" has no port: write host:port, e.g. "kafka-1:9092"`},
		{"kafka-1:", `"kafka-1:" has no port: write host:port, e.g. "kafka-1:9092"`},
		{":9092", `":9092" has no host`},
		{"kafka-1:http", `the port "http" is not a number from 1 to 65535`},
		{"kafka-1:99999", `the port "99999" is not a number from 1 to 65535`},
		{"::1:9092", `"::1:9092" is not host:port`},
	} {
		yml := strings.Replace(minimal(t), "[kafka-1:9092]", "[\""+tc.broker+"\"]", 1)
		_, err := Parse(strings.NewReader(yml))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.broker, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: err = %v, want %q", tc.broker, err, tc.want)
		}
		if tc.want != "" && tc.broker != "embeded" && err != nil && strings.Contains(err.Error(), "development broker") {
			t.Errorf("%s: suggests the embedded broker for a name not like it: %v", tc.broker, err)
		}
	}
}

func TestValidateRefusesAnAppIDThatIsNotAUUID(t *testing.T) {
	for _, id := range []string{"not-a-uuid", "app-1", "5eb5a37e-b458-11e3-ac11-000c2940e62", " 5eb5a37e-b458-11e3-ac11-000c2940e62c", "5eb5a37eb45811e3ac11000c2940e62c"} {
		yml := strings.Replace(minimal(t), "5eb5a37e-b458-11e3-ac11-000c2940e62c", "\""+id+"\"", 1)
		_, err := ParseFor(strings.NewReader(yml), Sink)
		if err == nil || !strings.Contains(err.Error(), "is not an app ID: OneSignal's app IDs are UUIDs") || !strings.Contains(err.Error(), "Settings › Keys & IDs") {
			t.Errorf("app_id %q: err = %v", id, err)
		}
	}
	yml := strings.Replace(minimal(t), "5eb5a37e-b458-11e3-ac11-000c2940e62c", "not-a-uuid", 1)
	if _, err := ParseFor(strings.NewReader(yml), Connector); err != nil {
		t.Errorf("the connector reads no app ID, yet: %v", err)
	}
}

// A DSN that does not parse is named with the reason, never with the DSN
// or its password.
func TestADSNThatDoesNotParseIsNamedWithoutItsPassword(t *testing.T) {
	for _, tc := range []struct{ dsn, want string }{
		{"postgres://cdc:hunter2@db:5432/app?sslmode=bogus", "sslmode is invalid"},
		{"postgres://cdc:hunter2@db:port/app", "invalid port"},
		{"postgres://cdc:hunter2@db:5432/app%zz", "failed to parse as URL"},
		{"host=db password=hunter2 port=many", "invalid port"},
		{"host=db password='hunter2", "failed to parse as keyword/value"},
		{"postgres://cdc:hunter2@db/app?connect_timeout=soon", "invalid connect_timeout"},
		// The URL parser quotes the part it stopped at: here a password
		// with a space, written without its user.
		{"postgres://0 hunter2", "unexpected spaces found in (a part of it)"},
	} {
		t.Setenv("ONESIGNAL_CDC_POSTGRES_DSN", tc.dsn)
		_, err := ParseFor(strings.NewReader(minimal(t)), Connector)
		if err == nil || !strings.Contains(err.Error(), "postgres.dsn does not parse: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want the reason %q", tc.dsn, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "cdc@db") || strings.Contains(err.Error(), "host=db") {
			t.Errorf("the error shows the DSN: %v", err)
		}
	}
	t.Setenv("ONESIGNAL_CDC_POSTGRES_DSN", "postgres://cdc@db/app?sslmode=bogus")
	if _, err := ParseFor(strings.NewReader(minimal(t)), Sink); err != nil {
		t.Errorf("the sink never connects to PostgreSQL, yet: %v", err)
	}
}

func TestPlainHTTPIsAllowedOnlyToThisMachineOrWhenAskedFor(t *testing.T) {
	for _, tc := range []struct {
		url   string
		allow bool
		ok    bool
	}{
		{"https://api.onesignal.com", false, true},
		{"http://127.0.0.1:8089", false, true},
		{"http://127.10.0.1:8089", false, true},
		{"http://localhost:8089", false, true},
		{"http://LocalHost", false, true},
		{"http://[::1]:8089", false, true},
		{"http://api.onesignal.com", false, false},
		{"http://10.0.0.5:8089", false, false},
		{"http://localhost.example.com", false, false},
		{"http://emulator:8089", true, true},
	} {
		yml := minimal(t)
		extra := "\n  base_url: " + tc.url
		if tc.allow {
			extra += "\n  allow_insecure_http: true"
		}
		yml = strings.Replace(yml, "onesignal:", "onesignal:"+extra, 1)
		_, err := Parse(strings.NewReader(yml))
		if tc.ok && err != nil {
			t.Errorf("%s (allow %v): %v", tc.url, tc.allow, err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "is plain http to another machine") || !strings.Contains(err.Error(), "onesignal.allow_insecure_http: true")) {
			t.Errorf("%s: err = %v, want plain http refused, naming https and allow_insecure_http", tc.url, err)
		}
	}
}

// minimal returns testdata/minimal.good.yml.
func minimal(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/minimal.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestTagLimitIsReadAsMaxTagsWithADeprecationWarning(t *testing.T) {
	cfg, err := Load("testdata/player_properties.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OneSignal.MaxTags != 2 || cfg.OneSignal.TagLimit != 0 {
		t.Errorf("max_tags %d, tag_limit %d; want the old key's 2 in max_tags", cfg.OneSignal.MaxTags, cfg.OneSignal.TagLimit)
	}
	w := cfg.Warnings()
	if len(w) != 1 || !strings.Contains(w[0], "line 9: onesignal.tag_limit is deprecated: rename it onesignal.max_tags") {
		t.Errorf("warnings %q", w)
	}
	if cfg, err := Load("testdata/crm.good.yml"); err != nil || len(cfg.Warnings()) != 0 || cfg.OneSignal.MaxTags != 10 {
		t.Errorf("max_tags alone: %v, %v", err, cfg)
	}
}

func TestTheMappingsExpressionsAreCompiledOnceAtLoad(t *testing.T) {
	cfg, err := Load("testdata/crm.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	u := cfg.Mapping.Users.Compiled()
	if u.Filter == nil || len(u.Computed) != 3 || len(u.Properties) != 1 || u.Properties["country"] == nil {
		t.Fatalf("users compiled %+v", u)
	}
	if u != cfg.Mapping.Users.Compiled() {
		t.Errorf("Compiled compiles again")
	}
	if s := cfg.Mapping.Sources[0].Compiled(); s.Filter == nil || s.Computed["renews_in_days"] == nil {
		t.Errorf("source compiled %+v", s)
	}
	if d := cfg.Mapping.Devices.Compiled(); d.Filter == nil {
		t.Errorf("devices compiled %+v", d)
	}
	cols := cfg.Mapping.Columns()
	for table, want := range map[string]map[string]string{
		"public.users": {"deleted_at": "mapping.users.filter", "created_at": "mapping.users.computed.days_since_signup",
			"first_name": "mapping.users.computed.initials", "country_code": "mapping.users.properties.country", "lang": "mapping.users.properties.language",
			"Contact ID": "mapping.users.aliases.crm_id", "plan": "mapping.users.tags and mapping.users.filter"},
		"public.subscriptions": {"user_id": "mapping.sources[0].user.references.column", "status": "mapping.sources[0].filter", "plan": "mapping.sources[0].tags"},
		"public.orders":        {"customer_ext_id": "mapping.sources[1].user.external_id"},
		"public.devices":       {"contact_id": "mapping.devices.owner.references.column", "active": "mapping.devices.filter"},
	} {
		for col, key := range want {
			if got := cols[table][col]; got != key {
				t.Errorf("%s.%s: %q, want %q", table, col, got, key)
			}
		}
	}
	if got := strings.Join(cfg.Mapping.Tables(), " "); got != "public.users public.subscriptions public.orders public.devices" {
		t.Errorf("tables %s", got)
	}
}

func TestTheSinkGroupTimeoutsDefaultToOnesThatFitKubernetesAndCanBeSet(t *testing.T) {
	d := Default().Sink
	if d.SessionTimeout != 6*time.Second || d.HeartbeatInterval != 500*time.Millisecond || d.RebalanceTimeout != 30*time.Second {
		t.Errorf("defaults %+v, want 6s, 500ms and 30s", d)
	}
	cfg, err := Load("testdata/sink_group.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Sink; s.SessionTimeout != 6*time.Second || s.HeartbeatInterval != 500*time.Millisecond || s.RebalanceTimeout != 20*time.Second {
		t.Errorf("loaded %+v, want 6s, 500ms and 20s", s)
	}
}
