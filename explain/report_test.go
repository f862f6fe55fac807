package explain

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/sink"
)

func syncedReport() *Report {
	src := &Where{Topic: "cdc.public.contacts", Partition: 1, Offset: 4}
	return &Report{
		Target: "user:team/ops 7%?Müller", Kind: "user", ID: "team/ops 7%?Müller",
		TargetsTopic: "cdc.sink-targets", Partition: 0, Scanned: Range{0, 9}, Records: 1, LastRecord: 8,
		Sources: []SourceRow{{Topic: "cdc.public.contacts", Key: `{"Contact ID":7}`, Pos: Pos{Commit: 0x1927338, LSN: 0x19272D0},
			Source: src, Record: Where{"cdc.sink-targets", 0, 8}, Current: true, Tags: map[string]string{"plan": "pro", "old": ""}}},
		Desired:  &Desired{Tags: map[string]string{"plan": "pro", "old": ""}, Version: Pos{Commit: 0x1927338, LSN: 0x19272D0}, Live: true},
		Group:    "g",
		Progress: []Progress{{Topic: "cdc.sink-targets", Partition: 0, Targets: true, Newest: 8, Committed: 9, Consumed: true}, {Topic: "cdc.public.contacts", Partition: 1, Newest: 4, Committed: 5, Consumed: true}},
		Live:     []Live{{Sink: "http://127.0.0.1:9090", View: &sink.TargetView{Running: true, Holds: true, Member: "m-1", Generation: 3, Applied: []string{"tags/0"}}}},
	}
}

func TestTheVerdictNamesWhatHoldsTheTargetBack(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name, state, says string
		change            func(*Report)
	}{
		{"everything consumed and idle", "in_sync", "in sync as far as the sink knows", func(*Report) {}},
		{"nothing known", "unknown", `nothing is known of user "team/ops 7%?Müller": no record of it in cdc.sink-targets partition 0`, func(r *Report) {
			r.Records, r.Sources, r.Desired, r.Progress = 0, nil, nil, nil
		}},
		{"source messages not consumed", "waiting", "waiting: 3 source message(s) not consumed", func(r *Report) {
			r.Progress[1].Consumed, r.Progress[1].Behind, r.Progress[1].Unconsumed = false, 7, 3
		}},
		{"the targets partition not done", "waiting", "waiting: 2 message(s) of the targets partition", func(r *Report) {
			r.Progress[0].Consumed, r.Progress[0].Behind = false, 2
		}},
		{"pending at the sink", "in_progress", "in progress: 1 message(s) pending at member m-1", func(r *Report) {
			r.Live[0].View.Active, r.Live[0].View.Pending = true, []string{"cdc.sink-targets/0@8"}
		}},
		{"failing attempts", "retrying", "retrying: 4 failed attempt(s) in a row at member m-1 (http://127.0.0.1:9090): HTTP 503", func(r *Report) {
			r.Live[0].View.Active, r.Live[0].View.Attempts = true, 4
			r.Live[0].View.Last = &sink.Call{Method: "set_user", Status: 503, Error: "HTTP 503"}
		}},
		{"a dead letter", "dead_lettered", "dead-lettered: 1 message(s); the last (cdc.dlq/0@3, onesignal stage) at 2026-01-02T03:04:05Z: refused", func(r *Report) {
			r.DeadLetters = []DeadLetter{{At: Where{"cdc.dlq", 0, 3}, Time: at, Stage: "onesignal", Error: "refused"}}
		}},
		{"a superseded dead letter", "in_sync", "in sync", func(r *Report) {
			r.DeadLetters = []DeadLetter{{At: Where{"cdc.dlq", 0, 3}, Time: at, Stage: "onesignal", Error: "refused", Superseded: true}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := syncedReport()
			tc.change(r)
			says, state := verdict(r)
			if state != tc.state || !strings.Contains(says, tc.says) {
				t.Errorf("verdict %q (%s), want %s containing %q", says, state, tc.state, tc.says)
			}
		})
	}
}

func TestTheTextHasEverySectionAndQuotesTheID(t *testing.T) {
	r := syncedReport()
	r.Verdict, r.State = verdict(r)
	var b bytes.Buffer
	r.WriteText(&b)
	text := b.String()
	for _, want := range []string{
		`target: user "team/ops 7%?Müller"`,
		"cdc.sink-targets partition 0, offsets 0 to 9 read: 1 record(s) of this target",
		"source rows (1, in position order):",
		`0/1927338 0/19272D0    cdc.public.contacts {"Contact ID":7}  cdc.public.contacts/1@4  cdc.sink-targets/0@8  tags old (deleted), plan="pro"`,
		"desired state:", `tags     old (deleted), plan="pro"`, "state    live: a row feeds it",
		`sink progress (group "g"):`, "cdc.public.contacts/1  committed 5  source @4", "consumed",
		"live:", "holds the target (member m-1, generation 3, partition 0); idle: nothing pending; believes applied: tags/0",
		"dead letters:\n  none",
		"verdict: in sync as far as the sink knows",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the text lacks %q:\n%s", want, text)
		}
	}
}

func TestTheTextSaysWhenNoSinkAnswered(t *testing.T) {
	r := syncedReport()
	r.Live = []Live{{Sink: "http://127.0.0.1:9090", Error: "no answer: connection refused"}}
	var b bytes.Buffer
	r.WriteText(&b)
	if !strings.Contains(b.String(), "http://127.0.0.1:9090: no answer: connection refused\n  no sink answered") {
		t.Errorf("the live section:\n%s", b.String())
	}
	r.Live = nil
	b.Reset()
	r.WriteText(&b)
	if !strings.Contains(b.String(), "no sink asked (give --sink URL)") {
		t.Errorf("the live section without sinks:\n%s", b.String())
	}
}

func TestTheJSONCarriesTheSameContent(t *testing.T) {
	r := syncedReport()
	r.Verdict, r.State = verdict(r)
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"target", "source_rows", "desired", "sink_progress", "live", "dead_letters", "verdict", "state"} {
		if _, ok := back[key]; !ok {
			t.Errorf("the JSON lacks %q: %s", key, b)
		}
	}
	if back["id"] != "team/ops 7%?Müller" {
		t.Errorf("id %v", back["id"])
	}
}

func TestAPositionPrintsAsPostgreSQLsLSNs(t *testing.T) {
	for _, tc := range []struct {
		p    Pos
		want string
	}{
		{Pos{}, "-"},
		{Pos{Commit: 0x1_0000_00A0, LSN: 0x90}, "1/A0 0/90"},
		{Pos{Commit: 0x20, LSN: 0x10, ThenCommit: 0x8, ThenLSN: 0x4}, "0/20 0/10 (own 0/8 0/4)"},
	} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.p, got, tc.want)
		}
	}
}
