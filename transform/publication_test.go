package transform

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// sqlEval is an evaluator whose filters have the SQL forms it holds, by
// setting key; it evaluates nothing.
type sqlEval map[string]string

func (sqlEval) Filter(string, event.Row, time.Time) (bool, error) { return true, nil }
func (sqlEval) Value(string, event.Row, time.Time) (json.RawMessage, error) {
	return json.RawMessage("null"), nil
}

func (e sqlEval) SQL(key string, _ map[string]string) (string, bool) {
	s, ok := e[key]
	return s, ok
}

// noSQL evaluates, but cannot write any filter as SQL.
type noSQL struct{ sqlEval }

func (noSQL) SQL(string, map[string]string) (string, bool) { return "", false }

func crmMapping() *Mapping {
	return &Mapping{
		Users: &UsersMapping{
			Table: "public.contacts", ExternalID: "crm_ref", Email: "email",
			Tags:       map[string]string{"plan": "", "Lifetime Value": "ltv"},
			Convert:    map[string]string{"Lifetime Value": ConvertUnixSeconds},
			Filter:     "row.deleted_at == null",
			Properties: map[string]string{"language": "lang", "country": `=row.country_code.upperAscii()`},
			Aliases:    map[string]string{"crm_id": "Contact ID"},
		},
		Sources: []SourceMapping{{
			Name: "subscriptions", Table: "public.subscriptions",
			User:   SourceUser{References: &Reference{Column: "contact", Table: "public.contacts", Key: "Contact ID"}},
			Filter: `row.status == "active"`,
			Tags:   map[string]string{"tier": "plan_tier"},
		}},
		Devices: &DevicesMapping{
			Table: "public.devices", DeviceID: "player_id",
			Owner: &DeviceOwner{References: &Reference{Column: "contact_id", Table: "public.contacts", Key: "Contact ID"}},
		},
	}
}

func TestATablePublishesEveryColumnTheMappingReadsOfIt(t *testing.T) {
	t.Parallel()
	m := crmMapping()
	tests := []struct {
		table string
		want  []string
	}{
		// The filter's and the computed property's columns too.
		{"public.contacts", []string{"Contact ID", "Lifetime Value", "country_code", "crm_ref", "deleted_at", "email", "lang", "plan"}},
		{"public.subscriptions", []string{"contact", "status", "tier"}},
		{"public.devices", []string{"contact_id", "player_id"}},
		{"public.audit", nil}, // not mapped: nothing to say
	}
	for _, tt := range tests {
		cols, _ := m.Publish(tt.table)
		if !reflect.DeepEqual(cols, tt.want) {
			t.Errorf("Publish(%s) columns = %q, want %q", tt.table, cols, tt.want)
		}
	}
}

func TestARowFilterIsPublishedOnlyWhenEveryFilterOfTheTableHasAnSQLForm(t *testing.T) {
	t.Parallel()
	withSQL := sqlEval{
		"mapping.users.filter":      `"deleted_at" IS NULL`,
		"mapping.sources[0].filter": `"status" = 'active'`,
		"mapping.sources[1].filter": `"status" = 'trial'`,
	}
	tests := []struct {
		name   string
		eval   Evaluator
		edit   func(*Mapping)
		table  string
		types  map[string]string
		filter string
	}{
		{name: "the users table's filter", eval: withSQL, table: "public.contacts", filter: `"deleted_at" IS NULL`},
		{name: "a source's filter", eval: withSQL, table: "public.subscriptions", filter: `"status" = 'active'`},
		{name: "a table without a filter", eval: withSQL, table: "public.devices"},
		{name: "the mapping's own expressions", eval: nil, table: "public.contacts", filter: `"deleted_at" IS NULL`},
		{name: "an evaluator that writes no SQL", eval: noSQL{}, table: "public.contacts"},
		{
			name: "a comparison the column's type would change: not pushed down", table: "public.subscriptions", types: map[string]string{"status": "character(8)"},
		},
		{
			name: "the same comparison on text", table: "public.subscriptions", types: map[string]string{"status": "text"}, filter: `"status" COLLATE "C" IS NOT DISTINCT FROM 'active'`,
		},
		{name: "a filter without an SQL form", eval: sqlEval{}, table: "public.contacts"},
		{
			name: "two sources of one table: a row either keeps", eval: withSQL, table: "public.subscriptions",
			edit: func(m *Mapping) {
				m.Sources = append(m.Sources, SourceMapping{Table: "public.subscriptions", User: SourceUser{ExternalID: "ext"}, Filter: `row.status == "trial"`})
			},
			filter: `("status" = 'active') OR ("status" = 'trial')`,
		},
		{
			name: "two sources of one table, one without a filter: every row", eval: withSQL, table: "public.subscriptions",
			edit: func(m *Mapping) {
				m.Sources = append(m.Sources, SourceMapping{Table: "public.subscriptions", User: SourceUser{ExternalID: "ext"}})
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := crmMapping()
			m.Eval = tt.eval
			if tt.edit != nil {
				tt.edit(m)
			}
			_, filter := m.Publish(tt.table)
			f := ""
			if filter != nil {
				f = filter(tt.types)
			}
			if f != tt.filter {
				t.Errorf("row filter %q, want %q", f, tt.filter)
			}
		})
	}
}

func TestAFingerprintChangesWithWhatTheMappingReadsOfTheTableAndNothingElse(t *testing.T) {
	t.Parallel()
	base := crmMapping()
	fp := func(m *Mapping) map[string]string {
		return map[string]string{
			"contacts":      m.Fingerprint("public.contacts"),
			"subscriptions": m.Fingerprint("public.subscriptions"),
			"devices":       m.Fingerprint("public.devices"),
		}
	}
	before := fp(base)
	for name, fingerprint := range before {
		if len(fingerprint) != 32 {
			t.Fatalf("%s: fingerprint %q, want 32 hex digits", name, fingerprint)
		}
	}
	if before["contacts"] == before["subscriptions"] || before["subscriptions"] == before["devices"] {
		t.Fatalf("two tables share a fingerprint: %v", before)
	}
	if got := base.Fingerprint("public.audit"); got != "" {
		t.Errorf("an unmapped table's fingerprint is %q, want none", got)
	}
	tests := []struct {
		name    string
		edit    func(*Mapping)
		changed []string
	}{
		{name: "nothing", edit: func(*Mapping) {}},
		{name: "a source's name, for messages only", edit: func(m *Mapping) { m.Sources[0].Name = "subs" }},
		{name: "an empty map where there was none", edit: func(m *Mapping) { m.Sources[0].Computed = map[string]string{} }},
		{name: "the evaluator", edit: func(m *Mapping) { m.Eval = sqlEval{} }},
		{name: "a tag's name", edit: func(m *Mapping) { m.Users.Tags["plan"] = "plan_name" }, changed: []string{"contacts"}},
		{name: "a tag column added", edit: func(m *Mapping) { m.Users.Tags["score"] = "" }, changed: []string{"contacts"}},
		{name: "a conversion", edit: func(m *Mapping) { delete(m.Users.Convert, "Lifetime Value") }, changed: []string{"contacts"}},
		{name: "the filter's text", edit: func(m *Mapping) { m.Users.Filter = "row.deleted_at == null && row.plan != 'internal'" }, changed: []string{"contacts"}},
		{name: "a computed tag's expression", edit: func(m *Mapping) { m.Sources[0].Computed = map[string]string{"n": "1"} }, changed: []string{"subscriptions"}},
		{name: "a property's expression", edit: func(m *Mapping) { m.Users.Properties["country"] = "=row.cc" }, changed: []string{"contacts"}},
		{name: "on_delete", edit: func(m *Mapping) { m.Users.OnDelete = OnDeleteDeleteUser }, changed: []string{"contacts"}},
		{name: "a source's aggregate", edit: func(m *Mapping) { m.Sources[0].Many = ManyCount }, changed: []string{"subscriptions"}},
		{
			name: "the users column a reference holds: the users rows give it too",
			edit: func(m *Mapping) {
				m.Sources[0].User.References.Key = "crm_ref"
				m.Devices.Owner.References.Key = "crm_ref"
			},
			changed: []string{"contacts", "devices", "subscriptions"},
		},
		{name: "the devices' owner column", edit: func(m *Mapping) { m.Devices.Owner.References.Column = "owner" }, changed: []string{"devices"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := crmMapping()
			tt.edit(m)
			after := fp(m)
			var changed []string
			for _, name := range []string{"contacts", "devices", "subscriptions"} {
				if after[name] != before[name] {
					changed = append(changed, name)
				}
			}
			if !reflect.DeepEqual(changed, tt.changed) {
				t.Errorf("changed %q, want %q", changed, tt.changed)
			}
		})
	}
}

func TestTheOrderOfSourcesDoesNotChangeAFingerprint(t *testing.T) {
	t.Parallel()
	a := crmMapping()
	a.Sources = append(a.Sources, SourceMapping{Table: "public.subscriptions", User: SourceUser{ExternalID: "ext"}, Tags: map[string]string{"x": ""}})
	b := crmMapping()
	b.Sources = append([]SourceMapping{{Table: "public.subscriptions", User: SourceUser{ExternalID: "ext"}, Tags: map[string]string{"x": ""}}}, b.Sources...)
	if fa, fb := a.Fingerprint("public.subscriptions"), b.Fingerprint("public.subscriptions"); fa != fb {
		t.Errorf("fingerprints %s and %s differ for the same sources in another order", fa, fb)
	}
}
