package connector

import (
	"reflect"
	"strings"
	"testing"
)

func TestAFilterReadsTheColumnsItNamesQuotedOrNot(t *testing.T) {
	t.Parallel()
	tests := []struct {
		sql   string
		cols  []string
		known bool
	}{
		{sql: `"Contact ID" > 5`, cols: []string{"Contact ID"}, known: true},
		{sql: `"deleted_at" IS NULL AND "plan" <> 'it''s "internal"'`, cols: []string{"deleted_at", "plan"}, known: true},
		{sql: `Plan = 'x'`, cols: []string{"plan"}, known: true}, // unquoted: folded, as PostgreSQL does
		{sql: `"say ""hi"""  IS NOT NULL`, cols: []string{`say "hi"`}, known: true},
		// As pg_get_expr writes filters back.
		{sql: `((plan = 'x'::text) OR (ext = ANY (ARRAY['a'::text, 'b'::text])))`, cols: []string{"plan", "ext"}, known: true},
		{sql: `(("Contact ID" > 7) AND ("Contact ID" IS NOT NULL))`, cols: []string{"Contact ID"}, known: true},
		{sql: `(seen_at < '2024-01-01 00:00:00+00'::timestamp with time zone)`, cols: []string{"seen_at"}, known: true},
		{sql: `(score >= 1.5e3::double precision) AND NOT active`, cols: []string{"score", "active"}, known: true},
		{sql: `lower("email") LIKE '%@example.com'`, cols: []string{"email"}, known: true},
		{sql: `CAST("n" AS integer) BETWEEN 1 AND 10`, cols: []string{"n"}, known: true},
		{sql: `zone = 'x'`, cols: []string{"zone"}, known: true}, // a type's word, where no type is
		{sql: `users.plan = 'x'`, known: false},
		{sql: `"users"."plan" = 'x'`, known: false},
		{sql: `plan = $1`, known: false},
		{sql: `plan = E'x\'y'`, known: false},
		{sql: `plan = 'unterminated`, known: false},
		{sql: `plan COLLATE "C" = 'x'`, cols: []string{"plan"}, known: true}, // a collation is no column
		{sql: `("status" COLLATE "C" IS NOT DISTINCT FROM 'active')`, cols: []string{"status"}, known: true},
		{sql: `plan COLLATE pg_catalog."C" = 'x'`, known: false},
		{sql: `plan ; DROP TABLE users`, known: false},
	}
	for _, tt := range tests {
		cols, known := filterColumns(tt.sql)
		if known != tt.known || known && !reflect.DeepEqual(cols, tt.cols) {
			t.Errorf("filterColumns(%s) = %q, %v; want %q, %v", tt.sql, cols, known, tt.cols, tt.known)
		}
	}
}

// crm is a CRM's contacts table: a surrogate key with a quoted mixed-case
// name, the external id in another column, a password.
func crm(identity string) *tableCatalog {
	return &tableCatalog{
		columns:  []string{"Contact ID", "external_id", "plan", "password", "deleted_at", "full_name"},
		key:      []string{"Contact ID"},
		identity: identity,
		index:    nil,
	}
}

func TestAPlanPublishesTheMappedColumnsThePrimaryKeyAndTheReplicaIdentity(t *testing.T) {
	t.Parallel()
	want := Publish{Columns: []string{"plan", "external_id"}}
	pg15 := where{version: 150004}
	tests := []struct {
		name    string
		cat     *tableCatalog
		w       where
		columns []string // the publication's list
		read    []string // what events carry
		note    string
	}{
		{name: "REPLICA IDENTITY DEFAULT", cat: crm("d"), w: pg15,
			columns: []string{"Contact ID", "external_id", "plan"}, read: []string{"Contact ID", "external_id", "plan"}},
		{name: "REPLICA IDENTITY USING INDEX", w: pg15,
			cat: func() *tableCatalog {
				c := crm("i")
				c.index = []string{"full_name"}
				return c
			}(),
			columns: []string{"Contact ID", "external_id", "plan", "full_name"}, read: []string{"Contact ID", "external_id", "plan", "full_name"}},
		{name: "REPLICA IDENTITY FULL: no list, which PostgreSQL 15 refuses", cat: crm("f"), w: pg15,
			columns: nil, read: []string{"Contact ID", "external_id", "plan"}, note: "REPLICA IDENTITY FULL"},
		{name: "PostgreSQL 14: no lists", cat: crm("d"), w: where{version: 140011},
			columns: nil, read: []string{"Contact ID", "external_id", "plan"}, note: "PostgreSQL before 15"},
		{name: "a publication FOR ALL TABLES", cat: crm("d"), w: where{version: 150004, wholly: `publication "p" is FOR ALL TABLES`},
			columns: nil, read: []string{"Contact ID", "external_id", "plan"}, note: "FOR ALL TABLES"},
		{name: "a generated column cannot be listed", w: pg15,
			cat: func() *tableCatalog {
				c := crm("d")
				c.generated = []string{"plan"}
				return c
			}(),
			columns: []string{"Contact ID", "external_id"}, read: []string{"Contact ID", "external_id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := planTable("public", "contacts", tt.cat, want, tt.w, nil, true, "", "")
			if !reflect.DeepEqual(p.columns, tt.columns) || !reflect.DeepEqual(p.read, tt.read) {
				t.Errorf("columns %q, read %q; want %q, %q", p.columns, p.read, tt.columns, tt.read)
			}
			if notes := strings.Join(p.notes, "\n"); !strings.Contains(notes, tt.note) || tt.note == "" && notes != "" {
				t.Errorf("notes %q, want one saying %q", notes, tt.note)
			}
		})
	}
	if p := planTable("public", "contacts", crm("d"), Publish{}, pg15, nil, true, "", ""); p.columns != nil || p.read != nil {
		t.Errorf("without columns to publish: columns %q, read %q; want every column", p.columns, p.read)
	}
}

func TestARowFilterIsPushedDownOnlyWhenItReadsReplicaIdentityColumns(t *testing.T) {
	t.Parallel()
	pg15 := where{version: 150004}
	tests := []struct {
		name     string
		identity string
		filter   string
		cols     []string
		known    bool
		norm     string
		pushed   bool
		note     string
	}{
		{name: "the primary key", identity: "d", filter: `"Contact ID" > 5`, cols: []string{"Contact ID"}, known: true, norm: `("Contact ID" > 5)`, pushed: true},
		{name: "another column under DEFAULT", identity: "d", filter: `"deleted_at" IS NULL`, cols: []string{"deleted_at"}, known: true, norm: `(deleted_at IS NULL)`,
			note: `the filter reads "deleted_at", which the replica identity (DEFAULT: the primary key "Contact ID") does not hold`},
		{name: "any column under FULL", identity: "f", filter: `"deleted_at" IS NULL`, cols: []string{"deleted_at"}, known: true, norm: `(deleted_at IS NULL)`, pushed: true},
		{name: "columns that cannot be told", identity: "f", filter: `x.y`, known: false, note: "cannot tell which columns"},
		{name: "a filter PostgreSQL refuses", identity: "f", filter: `"plan" = 1`, cols: []string{"plan"}, known: true, norm: "", note: "PostgreSQL does not accept"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := planTable("public", "contacts", crm(tt.identity), Publish{RowFilter: tt.filter}, pg15, tt.cols, tt.known, tt.norm, "")
			if pushed := p.filter != ""; pushed != tt.pushed {
				t.Fatalf("pushed down: %v, want %v (notes %q)", pushed, tt.pushed, p.notes)
			}
			if tt.pushed && (p.filter != tt.filter || p.norm != tt.norm) {
				t.Errorf("filter %q (%q), want %q (%q)", p.filter, p.norm, tt.filter, tt.norm)
			}
			if notes := strings.Join(p.notes, "\n"); !strings.Contains(notes, tt.note) || tt.note == "" && notes != "" {
				t.Errorf("notes %q, want one saying %q", notes, tt.note)
			}
		})
	}
	p := planTable("public", "contacts", crm("f"), Publish{RowFilter: `"plan" = 'x'`}, where{version: 140011}, []string{"plan"}, true, "", "")
	if p.filter != "" || !strings.Contains(strings.Join(p.notes, ""), "PostgreSQL before 15 has no row filters") {
		t.Errorf("PostgreSQL 14: filter %q, notes %q; want none, and a note saying why", p.filter, p.notes)
	}
}

func TestAPublicationEntryThatLosesChangesIsHarmfulAndOneThatDecodesTooMuchIsNot(t *testing.T) {
	t.Parallel()
	def := crm("d")
	plan := planTable("public", "contacts", def, Publish{Columns: []string{"plan", "external_id"}}, where{version: 150004}, nil, true, "", "")
	filtered := planTable("public", "contacts", crm("f"), Publish{Columns: []string{"plan", "external_id"}, RowFilter: `"plan" <> 'internal'`},
		where{version: 150004}, []string{"plan"}, true, `(plan <> 'internal'::text)`, "")
	tests := []struct {
		name    string
		plan    tablePlan
		cat     *tableCatalog
		entry   published
		any     bool
		harmful bool
	}{
		{name: "the planned entry", plan: plan, cat: def, entry: published{named: true, columns: []string{"Contact ID", "external_id", "plan"}}},
		{name: "every column", plan: plan, cat: def, entry: published{named: true}, any: true},
		{name: "a column more", plan: plan, cat: def, entry: published{named: true, columns: []string{"Contact ID", "external_id", "plan", "password"}}, any: true},
		{name: "a mapped column less", plan: plan, cat: def, entry: published{named: true, columns: []string{"Contact ID", "external_id"}}, any: true, harmful: true},
		{name: "the key left out", plan: plan, cat: def, entry: published{named: true, columns: []string{"external_id", "plan"}}, any: true, harmful: true},
		{name: "a row filter the mapping does not have", plan: plan, cat: def,
			entry: published{named: true, columns: []string{"Contact ID", "external_id", "plan"}, filter: `("Contact ID" > 5)`}, any: true, harmful: true},
		{name: "a row filter on a column outside the identity", plan: plan, cat: def,
			entry: published{named: true, columns: []string{"Contact ID", "external_id", "plan"}, filter: `(plan <> 'x'::text)`}, any: true, harmful: true},
		{name: "a list on a FULL table", plan: filtered, cat: crm("f"),
			entry: published{named: true, columns: crm("f").columns, filter: `(plan <> 'internal'::text)`}, any: true, harmful: true},
		{name: "the planned filter", plan: filtered, cat: crm("f"), entry: published{named: true, filter: `(plan <> 'internal'::text)`}},
		{name: "no filter where one could be pushed down", plan: filtered, cat: crm("f"), entry: published{named: true}, any: true},
		{name: "another filter", plan: filtered, cat: crm("f"), entry: published{named: true, filter: `(plan = 'pro'::text)`}, any: true, harmful: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := compare(&tt.plan, tt.cat, tt.entry)
			if d.any() != tt.any || d.harmful() != tt.harmful {
				t.Errorf("differs %v, harmful %v; want %v, %v: %s", d.any(), d.harmful(), tt.any, tt.harmful, d.describe(&tt.plan, "p", tt.entry))
			}
		})
	}
}

func TestTheFixChangesOnlyTheMappedTablesEntries(t *testing.T) {
	t.Parallel()
	plan := planTable("public", "contacts", crm("d"), Publish{Columns: []string{"plan", "external_id"}}, where{version: 150004}, nil, true, "", "")
	want := `BEGIN; ALTER PUBLICATION "my pub" DROP TABLE "public"."contacts"; ` +
		`ALTER PUBLICATION "my pub" ADD TABLE "public"."contacts" ("Contact ID", "external_id", "plan"); COMMIT;`
	if got := fixStatement("my pub", []*tablePlan{&plan}); got != want {
		t.Errorf("fix:\n%s\nwant:\n%s", got, want)
	}
}

func TestATableIsSnapshottedAgainWhenWhatItsRowsWereReadUnderChanged(t *testing.T) {
	t.Parallel()
	was := map[string]TableMark{
		"public.contacts": {Mapping: "m1"},
		"public.devices":  {Mapping: "d1", Filter: `"active"`},
		"public.orders":   {Mapping: "o1"},
		"public.gone":     {Mapping: "g1"},
	}
	now := map[string]TableMark{
		"public.contacts":      {Mapping: "m2"},
		"public.devices":       {Mapping: "d1"},
		"public.orders":        {Mapping: "o1", Filter: `"paid"`},
		"public.subscriptions": {Mapping: "s1"},
	}
	tables, why := remapped(was, now)
	if want := []string{"public.contacts", "public.devices", "public.subscriptions"}; !reflect.DeepEqual(tables, want) {
		t.Errorf("tables %q, want %q (a filter that begins to be pushed down changes nothing the sink saw)", tables, want)
	}
	for table, reason := range map[string]string{
		"public.contacts":      "the mapping of the table changed",
		"public.devices":       "the publication's row filter of the table changed",
		"public.subscriptions": "the table is new to the mapping",
	} {
		if !strings.Contains(why[table], reason) {
			t.Errorf("%s: why %q, want %q", table, why[table], reason)
		}
	}
	if tables, _ := remapped(nil, now); tables != nil {
		t.Errorf("with no marks recorded: %q, want none (the first run records them)", tables)
	}
}
