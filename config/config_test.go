package config

import (
	"fmt"
	"os"
	"path/filepath"
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
