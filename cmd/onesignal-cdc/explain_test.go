package main

// explain on a real stack: PostgreSQL, the daemon (connector and sink) in
// this process, the Kafka protocol (kfake) and the OneSignal emulator over
// HTTP, in both API generations.

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/explain"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// A CRM-shaped table: a surrogate key, the external id in a column of its
// own.
const explainTables = `
CREATE TABLE contacts ("Contact ID" serial PRIMARY KEY, "External Ref" text, "Plan" text, "Score" int);`

func explainConfig(t *testing.T, dsn, slot string, brokers []string, apiURL, model string) string {
	t.Helper()
	c := daemonConfig(dsn, slot, brokers, apiURL, "explain-test")
	c.OneSignal.APIKey, c.OneSignal.Model = "explain-test-key", model
	c.Mapping = transform.Mapping{Users: &transform.UsersMapping{Table: "public.contacts", ExternalID: "External Ref", Tags: map[string]string{"Plan": "plan", "Score": "score"}}}
	return daemontest.WriteConfig(t, c)
}

// runExplain runs explain --json and reads its report.
func runExplain(t *testing.T, cfg string, args ...string) *explain.Report {
	t.Helper()
	cmd, _, _ := lookup([]string{"explain"})
	var out bytes.Buffer
	if err := explainTarget(t.Context(), cmd, append([]string{"--config", cfg, "--json"}, args...), &out); err != nil {
		t.Fatalf("explain %v: %v", args, err)
	}
	var rep explain.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("explain --json: %v\n%s", err, out.String())
	}
	return &rep
}

// explainText runs explain and returns its text.
func explainText(t *testing.T, cfg string, args ...string) string {
	t.Helper()
	cmd, _, _ := lookup([]string{"explain"})
	var out bytes.Buffer
	if err := explainTarget(t.Context(), cmd, append([]string{"--config", cfg}, args...), &out); err != nil {
		t.Fatalf("explain %v: %v", args, err)
	}
	return out.String()
}

func TestExplainSaysWhetherAUserSyncedAndWhyNot(t *testing.T) {
	for _, model := range []string{"user", "player"} {
		t.Run(model, func(t *testing.T) {
			const synced, refused = "team/ops 7%?Müller", "über/limit ?x%"
			db := pgtest.NewDB(t)
			db.Exec(t, explainTables)
			emu, apiURL := emulator.NewTestServer(t, emulator.Config{AppID: "5eb5a37e-b458-11e3-ac11-000c2940e62c", APIKey: "explain-test-key"})
			kafka := kafkatest.Start(t)
			cfg := explainConfig(t, db.DSN, db.Name, kafka.Brokers(), apiURL, model)
			d := startDaemon(t, config.All, cfg)
			d.waitReady(t, 200, "ok")

			db.Exec(t, `INSERT INTO contacts ("External Ref", "Plan", "Score") VALUES ($1, 'free', 3)`, synced)
			db.Exec(t, `UPDATE contacts SET "Plan" = 'pro', "Score" = 7 WHERE "External Ref" = $1`, synced)
			var rep *explain.Report
			waitUntilFor(t, 60*time.Second, "explain to say the synced user is in sync", func() bool {
				rep = runExplain(t, cfg, "--external-id", synced, "--sink", d.url)
				return rep.State == "in_sync" && len(rep.Sources) >= 2
			})
			if model == "user" {
				u, ok := emu.State().UserByExternalID(synced)
				if !ok || u.Tags["plan"] != "pro" || u.Tags["score"] != "7" {
					t.Errorf("the emulator holds %+v (found %v), want plan=pro score=7", u.Tags, ok)
				}
			}
			if rep.ID != synced || rep.Kind != "user" || rep.Records < 2 || len(rep.Sources) < 2 {
				t.Fatalf("the report names %q (%s) with %d records, %d source rows; want %q with the insert and the update:\n%+v", rep.ID, rep.Kind, rep.Records, len(rep.Sources), synced, rep)
			}
			first, last := rep.Sources[0], rep.Sources[len(rep.Sources)-1]
			if first.Topic != "cdc.public.contacts" || first.Source == nil || first.Source.Topic != "cdc.public.contacts" || !first.Created {
				t.Errorf("the first source row is %+v, want the insert, from cdc.public.contacts", first)
			}
			if last.Pos.Commit < first.Pos.Commit || last.Pos == first.Pos {
				t.Errorf("the source rows are not in position order: %v then %v", first.Pos, last.Pos)
			}
			if !last.Current || last.Tags["plan"] != "pro" || last.Tags["score"] != "7" {
				t.Errorf("the newest source row is %+v, want the update, current, with plan=pro score=7", last)
			}
			if rep.Desired == nil || rep.Desired.Tags["plan"] != "pro" || rep.Desired.Tags["score"] != "7" || !rep.Desired.Live {
				t.Errorf("the desired state is %+v, want plan=pro score=7, live", rep.Desired)
			}
			for _, p := range rep.Progress {
				if !p.Consumed {
					t.Errorf("progress %+v: not consumed, in sync", p)
				}
			}
			if len(rep.Live) != 1 || rep.Live[0].View == nil || !rep.Live[0].View.Holds {
				t.Errorf("live: %+v, want the one sink, holding the target", rep.Live)
			}
			if len(rep.DeadLetters) != 0 {
				t.Errorf("dead letters of the synced user: %+v", rep.DeadLetters)
			}
			text := explainText(t, cfg, "--external-id", synced, "--sink", d.url)
			if testing.Verbose() {
				t.Logf("explain's text:\n%s", text)
			}
			for _, want := range []string{`target: user "team/ops 7%?Müller"`, "source rows (", `plan="pro"`, "holds the target", "verdict: in sync as far as the sink knows"} {
				if !strings.Contains(text, want) {
					t.Errorf("the text lacks %q:\n%s", want, text)
				}
			}

			// OneSignal refuses every write to a user from now on: the next
			// user's change is dead-lettered.
			if err := emu.SetAnswers(emulator.Answer{Path: "/users", Status: 400, Body: `{"errors":["refused by the test"]}`}); err != nil {
				t.Fatal(err)
			}
			db.Exec(t, `INSERT INTO contacts ("External Ref", "Plan", "Score") VALUES ($1, 'pro', 1)`, refused)
			waitUntilFor(t, 60*time.Second, "explain to say the refused user is dead-lettered", func() bool {
				rep = runExplain(t, cfg, "--external-id", refused, "--sink", d.url)
				return rep.State == "dead_lettered"
			})
			if len(rep.DeadLetters) == 0 || !strings.Contains(rep.DeadLetters[0].Error, "refused by the test") || rep.DeadLetters[0].Time.IsZero() {
				t.Errorf("dead letters: %+v, want OneSignal's refusal with its time", rep.DeadLetters)
			}
			if testing.Verbose() {
				t.Logf("explain's text:\n%s", explainText(t, cfg, "--external-id", refused, "--sink", d.url))
			}
			if !strings.Contains(rep.Verdict, "dead-lettered") {
				t.Errorf("verdict %q", rep.Verdict)
			}

			rep = runExplain(t, cfg, "--external-id", "nobody/ever ?%", "--sink", d.url)
			if rep.State != "unknown" || rep.Records != 0 || len(rep.Sources) != 0 || rep.Desired != nil || len(rep.DeadLetters) != 0 {
				t.Errorf("an unknown id: %+v, want nothing known", rep)
			}
			if text := explainText(t, cfg, "--external-id", "nobody/ever ?%"); !strings.Contains(text, "verdict: nothing is known of user") {
				t.Errorf("an unknown id's text:\n%s", text)
			}
		})
	}
}

func TestExplainAsksTheLocalOpsServerByDefault(t *testing.T) {
	for listen, want := range map[string]string{
		":9090":          "http://127.0.0.1:9090",
		"0.0.0.0:9090":   "http://127.0.0.1:9090",
		"localhost:9090": "http://127.0.0.1:9090",
		"[::1]:9090":     "http://[::1]:9090",
		"127.0.0.1:0":    "",
		"10.0.0.7:9090":  "",
		"":               "",
	} {
		if got := localOps(listen); got != want {
			t.Errorf("ops.listen %q: %q, want %q", listen, got, want)
		}
	}
}
