package config

import (
	"strings"
	"testing"
)

// FuzzParse: no file makes the loader panic, and no error it reports
// shows a secret the file holds.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"postgres:\n  dsn: postgres://u:hunter2@db/app\nonesignal:\n  app_id: a\n  api_key: hunter2\nmapping:\n  users: {table: public.users, external_id: id}\n",
		"postgres: [1, 2]\n",
		"kafka:\n  brokers: embedded\n",
		"mapping:\n  users:\n    tags: {a: b}\n    convert: {a: flatten}\n",
		"ops:\n  listen: 9090\n",
		"\t",
		"onesignal:\n  api_key: hunter2\n  api_key_file: /x\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, yml string) {
		t.Setenv("ONESIGNAL_CDC_POSTGRES_DSN", "")
		t.Setenv("ONESIGNAL_CDC_ONESIGNAL_API_KEY", "")
		cfg, err := Parse(strings.NewReader(yml))
		if err != nil {
			if strings.Contains(err.Error(), "hunter2") && onlyInSecrets(yml, "hunter2") {
				t.Fatalf("the error shows a secret: %v", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Parse accepted a config Validate refuses: %v", err)
		}
	})
}

// onlyInSecrets reports whether every line of yml holding s sets a secret.
func onlyInSecrets(yml, s string) bool {
	for _, line := range strings.Split(yml, "\n") {
		if strings.Contains(line, s) && !strings.Contains(line, "dsn:") && !strings.Contains(line, "api_key:") {
			return false
		}
	}
	return true
}
