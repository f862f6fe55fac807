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
		"onesignal:\n  max_tags: 2\n  tag_limit: 3\nmapping:\n  users: {table: public.users, external_id: id, tags: {a: ''}, computed: {b: 'row.a + 1', c: 'row.'}}\n",
		"mapping:\n  users: {table: public.users, external_id: id, filter: 'row.x IS NULL', properties: {language: '=row.l'}, aliases: {crm: c}, on_delete: delete_user}\n",
		"mapping:\n  sources:\n    - {table: public.s, user: {references: {column: u, table: public.users}}, tags: {a: ''}, many: count}\n    - {table: public.s, user: {}}\n",
		"mapping:\n  devices: {table: public.d, device_id: d, owner: {references: {column: c, table: public.u}}, filter: 'row.active'}\n",
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

// onlyInSecrets reports whether every line of yml holding s sets a secret
// to it: s comes after a "dsn:" or "api_key:" on the line. A key named
// "…hunter2api_key" holds no secret, and an error may name it.
func onlyInSecrets(yml, s string) bool {
	for _, line := range strings.Split(yml, "\n") {
		at := strings.LastIndex(line, s)
		if at < 0 {
			continue
		}
		d, k := strings.Index(line, "dsn:"), strings.Index(line, "api_key:")
		if (d < 0 || d > at) && (k < 0 || k > at) {
			return false
		}
	}
	return true
}
