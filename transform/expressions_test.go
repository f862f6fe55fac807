package transform

import (
	"encoding/json"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// crmWithExpressions is a CRM's contacts with a soft delete, a computed tag
// and a property from an expression.
func crmWithExpressions(t *testing.T) *Mapping {
	t.Helper()
	m := &Mapping{Users: &UsersMapping{
		Table: "crm.Contacts", ExternalID: "External Id",
		Tags:       map[string]string{"Plan": "plan"},
		Filter:     `row.deleted_at == null && row.Plan != "internal"`,
		Computed:   map[string]string{"vip": `row.Score > 100 ? "yes" : "no"`, "signup": `unix_seconds(row.created_at)`},
		Properties: map[string]string{"language": `=row.Lang.lowerAscii()`},
	}}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	return m
}

func contactEvent(op event.Op, after map[string]any) *event.Envelope {
	var r event.Row
	for _, k := range []string{"Contact ID", "External Id", "Plan", "Score", "Lang", "created_at", "deleted_at"} {
		v, ok := after[k]
		if !ok {
			continue
		}
		b, _ := json.Marshal(v)
		r = append(r, event.Field{Name: k, Value: b})
	}
	return &event.Envelope{Op: op, After: r, Source: event.Source{Schema: "crm", Table: "Contacts", TsMs: 1_700_000_000_000}}
}

func contactRow(ext, plan string, score int, deleted any) map[string]any {
	return map[string]any{"Contact ID": 1, "External Id": ext, "Plan": plan, "Score": score, "Lang": "DE",
		"created_at": "2024-01-02T03:04:05Z", "deleted_at": deleted}
}

func TestComputedTagsAndPropertiesComeFromTheirExpressions(t *testing.T) {
	m := crmWithExpressions(t)
	p, err := m.Project(contactEvent(event.OpCreate, contactRow("ana/1 ?", "pro", 150, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	part, ok := p.Find(User("ana/1 ?"))
	if !ok {
		t.Fatalf("projection %+v names no user", p)
	}
	if part.Tags["vip"] != "yes" || part.Tags["signup"] != "1704164645" || part.Tags["plan"] != "pro" {
		t.Errorf("tags %v, want vip yes, signup 1704164645, plan pro", part.Tags)
	}
	if part.Props["language"] != "de" {
		t.Errorf("properties %v, want language de", part.Props)
	}
}

func TestARowTheFilterLeavesOutFeedsNothingAndOneThatPassesAgainFeedsEverything(t *testing.T) {
	m := crmWithExpressions(t)
	before, err := m.Project(contactEvent(event.OpCreate, contactRow("ana", "pro", 1, nil)), nil)
	if err != nil || len(before) == 0 {
		t.Fatalf("a passing row: %v, %v", before, err)
	}
	out, err := m.Project(contactEvent(event.OpUpdate, contactRow("ana", "pro", 1, "2026-01-01T00:00:00Z")), before)
	if err != nil || len(out.Fed()) != 0 {
		t.Errorf("a soft-deleted row projects %v, %v; want nothing (its tags go)", out, err)
	}
	internal, _ := m.Project(contactEvent(event.OpUpdate, contactRow("ana", "internal", 1, nil)), nil)
	if len(internal.Fed()) != 0 {
		t.Errorf("an internal row projects %v, want nothing", internal)
	}
	again, err := m.Project(contactEvent(event.OpUpdate, contactRow("ana", "gold", 1, nil)), nil)
	if part, ok := again.Find(User("ana")); err != nil || !ok || part.Tags["plan"] != "gold" || part.Tags["vip"] != "no" {
		t.Errorf("a row passing again projects %+v, %v; want its whole view", again, err)
	}
}

func TestAFilterOverAnUnchangedTOASTValueKeepsTheRowsVerdict(t *testing.T) {
	m := crmWithExpressions(t)
	row := contactRow("ana", "pro", 1, nil)
	row["deleted_at"] = event.Unavailable
	was := Projection{{Target: User("ana"), Tags: map[string]string{"plan": "pro"}}}
	p, err := m.Project(contactEvent(event.OpUpdate, row), was)
	if err != nil || len(p) == 0 {
		t.Errorf("a row the sink knew fed its user, with the filter unknown: %v, %v; want it still fed", p, err)
	}
	if p, _ := m.Project(contactEvent(event.OpUpdate, row), nil); len(p.Fed()) != 0 {
		t.Errorf("a row the sink did not know, with the filter unknown: %v; want nothing", p)
	}
}
