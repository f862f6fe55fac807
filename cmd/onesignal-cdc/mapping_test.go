package main

import (
	"bytes"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
)

// The preview's CRM-shaped schema: contacts with a surrogate key and the
// external id in a column of its own, quoted mixed-case names, a table of
// subscriptions that reference their contact, and devices naming their
// owner by external id; ids with "/", "%", "?", spaces and Unicode.
const crmSchema = `
CREATE SCHEMA crm;
CREATE TABLE crm."Contacts" ("Contact ID" int PRIMARY KEY, "External Id" text, "Plan" text, "Score" int, "E-mail" text, "Lang" text, "Region" text);
CREATE TABLE crm.subscriptions (id int PRIMARY KEY, "Contact" int REFERENCES crm."Contacts", plan_name text);
CREATE TABLE crm.devices (device_id text PRIMARY KEY, ext_id text, "Contact" int);
INSERT INTO crm."Contacts" VALUES
  (1, 'ada/1 %? é', 'pro', 7, 'ada@example.com', 'fr', 'EU'),
  (2, NULL, 'free', 1, NULL, NULL, 'US'),
  (3, 'bob 🙂', 'free', 3, NULL, 'klingon', NULL);
INSERT INTO crm.subscriptions VALUES (10, 1, 'gold'), (11, 3, 'silver');
INSERT INTO crm.devices VALUES ('dév/1 ?%', 'ada/1 %? é', 1);
`

const (
	crmAppID  = "5eb5a37e-b458-11e3-ac11-000c2940e62c"
	crmAPIKey = "s3cret-api-key-0123"
)

// crmMapping is the mapping section of the CRM schema.
const crmMapping = `
mapping:
  users:
    table: crm.Contacts
    external_id: External Id
    tags: {Plan: plan, Score: ""}
    email: E-mail
  sources:
    - table: crm.subscriptions
      user: {references: {column: Contact, table: crm.Contacts, key: Contact ID}}
      tags: {plan_name: sub_plan}
  devices: {table: crm.devices, device_id: device_id, external_id: ext_id}
`

// crmConfig is a configuration of the CRM schema whose base_url is
// baseURL, in model.
func crmConfig(dsn, model, baseURL, mapping string) string {
	return `
postgres:
  dsn: ` + dsn + `
kafka:
  brokers: [kafka-1:9092]
onesignal:
  model: ` + model + `
  app_id: ` + crmAppID + `
  api_key: ` + crmAPIKey + `
  base_url: ` + baseURL + `
` + mapping
}

// untouchable is a base_url whose every request fails the test.
func untouchable(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the preview sent %s %s to onesignal.base_url", r.Method, r.URL)
		w.WriteHeader(http.StatusTeapot)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// previewJSON runs mapping preview --json with args and returns its rows.
func previewJSON(t *testing.T, args ...string) []previewRow {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(append([]string{"mapping", "preview", "--json"}, args...), &stdout, &stderr); code != 0 {
		t.Fatalf("mapping preview %q: exit %d\n%s", args, code, stderr.String())
	}
	if strings.Contains(stdout.String()+stderr.String(), crmAPIKey) {
		t.Errorf("the output shows the API key:\n%s", stdout.String())
	}
	var rows []previewRow
	dec := json.NewDecoder(&stdout)
	for dec.More() {
		var r previewRow
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("a line of --json is not a row: %v", err)
		}
		rows = append(rows, r)
	}
	return rows
}

func findRow(t *testing.T, rows []previewRow, table, key string) previewRow {
	t.Helper()
	for _, r := range rows {
		if r.Table == table && string(r.Key) == key {
			return r
		}
	}
	t.Fatalf("no row %s %s among %d", table, key, len(rows))
	return previewRow{}
}

func (r previewRow) target(t *testing.T, kind, id string) previewTarget {
	t.Helper()
	for _, tg := range r.Targets {
		if tg.Kind == kind && tg.ID == id {
			return tg
		}
	}
	t.Fatalf("row %s %s has no target %s %q: %+v", r.Table, r.Key, kind, id, r.Targets)
	return previewTarget{}
}

// tagsSent folds the tags of the requests, in order, as OneSignal would
// apply them.
func tagsSent(t *testing.T, reqs []previewRequest) map[string]string {
	t.Helper()
	tags := map[string]string{}
	for _, q := range reqs {
		var body struct {
			Tags       map[string]string `json:"tags"`
			Properties struct {
				Tags map[string]string `json:"tags"`
			} `json:"properties"`
		}
		if len(q.Body) > 0 {
			if err := json.Unmarshal(q.Body, &body); err != nil {
				t.Fatalf("body %s: %v", q.Body, err)
			}
		}
		maps.Copy(tags, body.Tags)
		maps.Copy(tags, body.Properties.Tags)
	}
	for k, v := range tags {
		if v == "" {
			delete(tags, k)
		}
	}
	return tags
}

func TestMappingPreviewPrintsTheRequestsOfEachRowAndSendsNothing(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, crmSchema)
	ada, bob, dev := "ada/1 %? é", "bob 🙂", "dév/1 ?%"
	for _, model := range []string{"user", "player"} {
		t.Run(model, func(t *testing.T) {
			cfg := writeFile(t, crmConfig(db.DSN, model, untouchable(t), crmMapping))
			var text, stderr bytes.Buffer
			if code := run([]string{"mapping", "preview", "--config", cfg}, &text, &stderr); code != 0 {
				t.Fatalf("exit %d\n%s", code, stderr.String())
			}
			t.Logf("the preview:\n%s", text.String())
			rows := previewJSON(t, "--config", cfg)
			if len(rows) != 6 {
				t.Errorf("%d rows, want the 6 of the three tables", len(rows))
			}
			contact := findRow(t, rows, "crm.Contacts", `{"Contact ID":1}`)
			user := contact.target(t, "user", ada)
			if got, want := tagsSent(t, user.Requests), map[string]string{"plan": "pro", "Score": "7", "sub_plan": "gold"}; model == "user" && !maps.Equal(got, want) {
				t.Errorf("the user's requests set tags %v, want %v: %+v", got, want, user.Requests)
			}
			sub := findRow(t, rows, "crm.subscriptions", `{"id":10}`)
			if via := sub.target(t, "user", ada); !strings.Contains(via.Via, `crm.Contacts row whose "Contact ID" is 1`) || len(via.Requests) != len(user.Requests) {
				t.Errorf("the subscription's user: %+v, want the contact's user and its requests, through the contact", via)
			}
			device := findRow(t, rows, "crm.devices", `{"device_id":"`+dev+`"}`).target(t, "device", dev)
			escDev, escAda := url.PathEscape(dev), url.PathEscape(ada)
			switch model {
			case "user":
				if !hasRequest(user.Requests, "POST", "/apps/"+crmAppID+"/users") {
					t.Errorf("no create of the user: %+v", user.Requests)
				}
				// The record goes by the escaped external id; the user is
				// missing then, and the client creates it with the record.
				if !slices.ContainsFunc(user.Requests, func(q previewRequest) bool {
					return q.Method == "POST" && q.Path == "/apps/"+crmAppID+"/users/by/external_id/"+escAda+"/subscriptions"
				}) || !slices.ContainsFunc(user.Requests, func(q previewRequest) bool {
					return q.Status/100 == 2 && strings.Contains(string(q.Body), `"token":"ada@example.com"`)
				}) {
					t.Errorf("no email record by the escaped external id: %+v", user.Requests)
				}
				if !hasRequest(device.Requests, "PATCH", "/apps/"+crmAppID+"/subscriptions/"+escDev+"/owner") {
					t.Errorf("no transfer of the device: %+v", device.Requests)
				}
			case "player":
				if !hasRequest(device.Requests, "PUT", "/players/"+escDev) {
					t.Errorf("no edit of the device: %+v", device.Requests)
				}
				// The link carries the user's tags as they are then; those
				// that come later go by external id, and reach the device.
				if got, want := tagsSent(t, append(device.Requests, user.Requests...)), map[string]string{"plan": "pro", "Score": "7", "sub_plan": "gold"}; !maps.Equal(got, want) {
					t.Errorf("the device's link and the user's requests carry tags %v, want %v", got, want)
				}
			}
			if r := findRow(t, rows, "crm.Contacts", `{"Contact ID":3}`); len(r.target(t, "user", bob).Requests) == 0 && model == "user" {
				t.Errorf("no request for %q", bob)
			}
			none := findRow(t, rows, "crm.Contacts", `{"Contact ID":2}`)
			if len(none.Targets) != 0 || !strings.Contains(none.Nothing, `"External Id" (mapping.users.external_id), is NULL`) {
				t.Errorf("a contact without an external id: %+v, want nothing and why", none)
			}
			if flat := strings.Join(strings.Fields(text.String()), " "); !strings.Contains(flat, `"Authorization: Key [redacted]"`) || !strings.Contains(flat, "gives nothing: its external id") {
				t.Errorf("the text lacks the masked key or the row that gives nothing:\n%s", text.String())
			}
		})
	}
}

func hasRequest(reqs []previewRequest, method, path string) bool {
	for _, q := range reqs {
		if q.Method == method && q.Path == path && q.Status >= 200 && q.Status < 300 {
			return true
		}
	}
	return false
}

func TestMappingPreviewReadsOnlyTheRowsOfTableWhereAndLimitAndTheContactsTheyReference(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, crmSchema)
	for _, model := range []string{"user", "player"} {
		t.Run(model, func(t *testing.T) {
			cfg := writeFile(t, crmConfig(db.DSN, model, untouchable(t), crmMapping))

			// A subscription, and the contact it references, read so that
			// the reference resolves, and said so.
			rows := previewJSON(t, "--config", cfg, "--table", "crm.subscriptions", "--where", "plan_name = 'silver'")
			if len(rows) != 2 {
				t.Fatalf("%d rows, want the silver subscription and its contact: %+v", len(rows), rows)
			}
			sub := findRow(t, rows, "crm.subscriptions", `{"id":11}`)
			if sub.ReadFor != "" {
				t.Errorf("the subscription says it was read for a reference: %q", sub.ReadFor)
			}
			user := sub.target(t, "user", "bob 🙂")
			if got := tagsSent(t, user.Requests); got["sub_plan"] != "silver" || got["plan"] != "free" {
				t.Errorf("the subscription's user gets tags %v, want sub_plan silver and the contact's plan", got)
			}
			contact := findRow(t, rows, "crm.Contacts", `{"Contact ID":3}`)
			if want := `crm.subscriptions {"id":11} references it`; contact.ReadFor != want {
				t.Errorf("the contact was read for %q, want %q", contact.ReadFor, want)
			}

			// --limit per table, in primary-key order; --where with
			// quoted mixed-case names.
			rows = previewJSON(t, "--config", cfg, "--limit", "1")
			var got []string
			for _, r := range rows {
				got = append(got, r.Table+" "+string(r.Key))
			}
			if want := []string{`crm.Contacts {"Contact ID":1}`, `crm.subscriptions {"id":10}`, `crm.devices {"device_id":"dév/1 ?%"}`}; !slices.Equal(got, want) {
				t.Errorf("--limit 1 read %q, want %q", got, want)
			}
			rows = previewJSON(t, "--config", cfg, "--table", "crm.Contacts", "--where", `"Plan" = 'free' AND "External Id" IS NOT NULL`)
			if len(rows) != 1 || string(rows[0].Key) != `{"Contact ID":3}` {
				t.Errorf("--where read %+v, want contact 3 alone", rows)
			}
		})
	}
}

func TestMappingPreviewSaysWhyARowGivesNothingOrIsDeadLettered(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, crmSchema)
	mapping := strings.Replace(crmMapping, "    email: E-mail\n", "    email: E-mail\n    filter: 'row.Plan != \"free\"'\n    properties: {language: Lang}\n", 1)
	for _, model := range []string{"user", "player"} {
		t.Run(model, func(t *testing.T) {
			cfg, err := config.LoadFor(writeFile(t, crmConfig(db.DSN, model, untouchable(t), mapping)), config.Database)
			if err != nil {
				t.Fatal(err)
			}
			out, err := preview(t.Context(), cfg, previewOptions{table: "crm.Contacts", limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			free := findRow(t, out.rows, "crm.Contacts", `{"Contact ID":3}`)
			if len(free.Targets) != 0 || !strings.Contains(free.Nothing, `mapping.users.filter (row.Plan != "free") is false for it`) {
				t.Errorf("a filtered-out row: %+v, want nothing and the filter", free)
			}
			ada := findRow(t, out.rows, "crm.Contacts", `{"Contact ID":1}`)
			if len(ada.DeadLetters) != 0 || len(ada.Targets) != 1 {
				t.Errorf("a row that passes: %+v", ada)
			}
			var text bytes.Buffer
			out.writeText(&text, cfg)
			if want := `gives nothing: mapping.users.filter`; !strings.Contains(text.String(), want) {
				t.Errorf("the text lacks %q:\n%s", want, text.String())
			}
			db.Exec(t, `UPDATE crm."Contacts" SET "Lang" = 'klingon' WHERE "Contact ID" = 1`)
			defer db.Exec(t, `UPDATE crm."Contacts" SET "Lang" = 'fr' WHERE "Contact ID" = 1`)
			out, err = preview(t.Context(), cfg, previewOptions{table: "crm.Contacts", where: `"Contact ID" = 1`, limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			ada = findRow(t, out.rows, "crm.Contacts", `{"Contact ID":1}`)
			if len(ada.DeadLetters) != 1 || !strings.Contains(ada.DeadLetters[0].Reason, `mapping.users.properties.language: "klingon" is not an ISO 639-1 language code`) {
				t.Errorf("a row with a bad language: dead letters %+v, want the property's", ada.DeadLetters)
			}
			if tags := tagsSent(t, ada.target(t, "user", "ada/1 %? é").Requests); model == "user" && tags["plan"] != "pro" {
				t.Errorf("the rest of the row did not go out: tags %v", tags)
			}
			text.Reset()
			out.writeText(&text, cfg)
			if want := `dead-lettered (transform): `; !strings.Contains(text.String(), want) {
				t.Errorf("the text lacks %q:\n%s", want, text.String())
			}
		})
	}
}

func TestMappingPreviewLinksADeviceToTheUserOfTheContactItReferences(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, crmSchema+`INSERT INTO crm.devices VALUES ('d2', NULL, 2);`)
	for _, model := range []string{"user", "player"} {
		t.Run(model, func(t *testing.T) {
			byKey := strings.Replace(crmMapping, "devices: {table: crm.devices, device_id: device_id, external_id: ext_id}",
				`devices: {table: crm.devices, device_id: device_id, owner: {references: {column: Contact, table: crm.Contacts, key: "Contact ID"}}}`, 1)
			cfg, err := config.LoadFor(writeFile(t, crmConfig(db.DSN, model, untouchable(t), byKey)), config.Database)
			if err != nil {
				t.Fatal(err)
			}
			out, err := preview(t.Context(), cfg, previewOptions{table: "crm.devices", limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			dev := findRow(t, out.rows, "crm.devices", `{"device_id":"dév/1 ?%"}`).target(t, "device", "dév/1 ?%")
			if !strings.Contains(dev.Via, `owner "ada/1 %? é", through the crm.Contacts row whose "Contact ID" is 1`) || len(dev.Requests) == 0 {
				t.Errorf("the device: %+v, want it linked to the contact's user", dev)
			}
			if got := findRow(t, out.rows, "crm.Contacts", `{"Contact ID":1}`); got.ReadFor == "" {
				t.Errorf("the contact does not say it was read for the device's reference: %+v", got)
			}
			orphan := findRow(t, out.rows, "crm.devices", `{"device_id":"d2"}`)
			if len(orphan.Targets) != 0 || len(orphan.Notes) != 1 || !strings.Contains(orphan.Notes[0], `the crm.Contacts row whose "Contact ID" is 2, which is not there or names no user: device "d2" is linked to no one`) {
				t.Errorf("a device whose contact has no external id: %+v", orphan)
			}
		})
	}
}

func TestMappingPreviewRefusesAWhereThatIsNotSQLAndOneThatWrites(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, crmSchema+`CREATE SEQUENCE crm.s;`)
	cfg := writeFile(t, crmConfig(db.DSN, "user", untouchable(t), crmMapping))
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--table", "crm.Contacts", "--where", "plan = = 'x'"}, 2, `onesignal-cdc mapping preview: --where "plan = = 'x'": syntax error at or near "=": give an SQL condition over the columns of crm.Contacts`},
		{[]string{"--table", "crm.Contacts", "--where", "nope > 1"}, 2, `--where "nope > 1": column "nope" does not exist`},
		{[]string{"--table", "crm.Contacts", "--where", `true; DELETE FROM crm."Contacts"`}, 2, `syntax error at or near ";"`},
		{[]string{"--table", "crm.Contacts", "--where", "nextval('crm.s') > 0"}, 2, `cannot execute nextval() in a read-only transaction`},
		{[]string{"--table", "crm.Contacts", "--where", `"Contact ID" = 'x'`}, 2, `invalid input syntax for type integer`},
		{[]string{"--where", "true"}, 2, "--where reads the columns of one table: name it with --table"},
		{[]string{"--table", "crm.nope"}, 2, `--table "crm.nope" is not a mapped table (crm.Contacts, crm.subscriptions, crm.devices)`},
		{[]string{"--limit", "0"}, 2, "--limit 0: want at least 1 row"},
	}
	for _, tc := range cases {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"mapping", "preview", "--config", cfg}, tc.args...), &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tc.args, code, stderr.String(), tc.code, tc.want)
		}
	}
	var n int
	if err := db.Conn(t).QueryRow(t.Context(), `SELECT count(*) FROM crm."Contacts"`).Scan(&n); err != nil || n != 3 {
		t.Errorf("the contacts are %d (%v), want the 3 untouched", n, err)
	}
}

// mappingFile writes a file that holds only a mapping: section.
func mappingFile(t *testing.T, mapping string) string {
	t.Helper()
	return writeFile(t, strings.TrimPrefix(mapping, "\n"))
}

func TestMappingDiffCountsTheUsersAMappingChangeWouldChange(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, crmSchema)
	renamed := strings.Replace(crmMapping, "tags: {Plan: plan, Score: \"\"}", "tags: {Plan: tier, Score: \"\"}", 1)
	added := strings.Replace(crmMapping, "tags: {Plan: plan, Score: \"\"}", "tags: {Plan: plan, Score: \"\", Region: region}", 1)
	removed := `
mapping:
  users:
    table: crm.Contacts
    external_id: External Id
    tags: {Plan: plan, Score: ""}
    email: E-mail
`
	for _, model := range []string{"user", "player"} {
		t.Run(model, func(t *testing.T) {
			old := writeFile(t, crmConfig(db.DSN, model, untouchable(t), crmMapping))
			cases := []struct {
				what string
				args []string
				want []string
			}{
				{"a tag renamed", []string{old, mappingFile(t, renamed)}, []string{
					"crm.Contacts 3, crm.subscriptions 2, crm.devices 1",
					"  crm.Contacts: changed: snapshotted again\n",
					"Users: 2 would change (2 fed before, 2 after).",
					"  tags: added for 2, changed for 0, removed for 2\n",
					`  user "ada/1 %? é": tag plan "pro" → (none); tag tier (none) → "pro"` + "\n",
					`  user "bob 🙂": tag plan "free" → (none); tag tier (none) → "free"` + "\n",
					"Devices: 0 would change owner (1 linked before, 1 after).",
				}},
				{"a column added, the flags after the files, the mappings in mapping files", []string{
					"--config", old, mappingFile(t, crmMapping), mappingFile(t, added), "--limit", "1"}, []string{
					"  crm.Contacts: changed: snapshotted again\n",
					"Users: 1 would change",
					"  tags: added for 1, changed for 0, removed for 0\n",
					`  user "ada/1 %? é": tag region (none) → "EU"` + "\n",
				}},
				{"a source and the devices removed", []string{old, mappingFile(t, removed), "--limit", "1"}, []string{
					"  crm.subscriptions: no longer mapped\n",
					"  crm.devices: no longer mapped\n",
					"Users: 2 would change",
					"  tags: added for 0, changed for 0, removed for 2\n",
					`  user "ada/1 %? é": tag sub_plan "gold" → (none)` + "\n",
					"  … and 1 more\n",
					"Devices: 1 would change owner (1 linked before, 0 after).",
					`  device "dév/1 ?%": owner "ada/1 %? é" → (none)`,
				}},
				{"nothing changed", []string{old, old}, []string{
					"no table's mapping changed: the connector snapshots none again",
					"Users: 0 would change (2 fed before, 2 after).",
				}},
			}
			for _, tc := range cases {
				var stdout, stderr bytes.Buffer
				if code := run(append([]string{"mapping", "diff"}, tc.args...), &stdout, &stderr); code != 0 {
					t.Errorf("%s: exit %d\n%s", tc.what, code, stderr.String())
					continue
				}
				t.Logf("%s:\n%s", tc.what, stdout.String())
				for _, w := range tc.want {
					if !strings.Contains(stdout.String(), w) {
						t.Errorf("%s: the diff lacks %q:\n%s", tc.what, w, stdout.String())
					}
				}
				if strings.Contains(stdout.String(), crmAPIKey) {
					t.Errorf("%s: the diff shows the API key", tc.what)
				}
			}
		})
	}
}

func TestMappingDiffRefusesUnreadableAndInvalidFilesWithTheConfigsOwnErrors(t *testing.T) {
	t.Parallel()
	old := writeFile(t, crmConfig("postgres://cdc@127.0.0.1:1/app", "user", "https://api.onesignal.com", crmMapping))
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	cases := []struct {
		what string
		args []string
		want string
	}{
		{"OLD missing", []string{missing, old}, "missing.yaml: no such file"},
		{"NEW missing", []string{old, missing}, "missing.yaml: no such file"},
		{"an unknown key in a mapping file", []string{old, mappingFile(t, "\nmapping:\n  users:\n    table: crm.Contacts\n    externl_id: External Id\n")},
			`line 4: unknown key "externl_id"`},
		{"a mapping file that fails a check", []string{old, mappingFile(t, "\nmapping:\n  users: {table: Contacts, external_id: id}\n")},
			`mapping.users.table: "Contacts" is not "schema.table"`},
		{"a configuration file with a bad value", []string{old, writeFile(t, "postgres:\n  dsn: postgres://cdc@db/app\n  status_interval: 500\n"+crmMapping)},
			"line 3: postgres.status_interval: 500 has no unit"},
		{"not YAML", []string{old, writeFile(t, "mapping: [\n")}, "did not find expected node content"},
		{"no database: mapping files and no --config", []string{mappingFile(t, crmMapping), mappingFile(t, crmMapping)}, "onesignal-cdc.yaml: no such file"},
	}
	for _, tc := range cases {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"mapping", "diff"}, tc.args...), &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", tc.what, code, stderr.String(), tc.want)
		}
	}
}
