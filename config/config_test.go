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
		!cfg.EmbeddedKafka() || cfg.Kafka.TopicPrefix != "onesignal_cdc" || cfg.OneSignal.BaseURL != "https://api.onesignal.com" {
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
