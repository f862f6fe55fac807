package connector_test

import (
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/connector"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
	"github.com/onesignal-cdc/onesignal-cdc/transform/expr"
)

// Each expression is evaluated over rows of its table's column types, and
// with each nullable column it reads NULL: a type error and an unhandled
// NULL are findings naming the setting, the expression and the fix; what
// handles NULL, or reads columns of the right types, is not.
func TestCheckEvaluatesEveryExpressionOverTheTablesColumnTypesAndNULLs(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE users (id int PRIMARY KEY, external_id text NOT NULL, plan text NOT NULL, score int,
		price numeric(8,2) NOT NULL, ratio float8 NOT NULL, consent boolean, created_at timestamptz, prefs jsonb);
		CREATE PUBLICATION cdc FOR TABLE users`)
	compile := func(src string, kind expr.Kind) *expr.Program {
		p, err := expr.Compile(src, kind)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		return p
	}
	cfg := checkConfig(db.Name, "public.users")
	cfg.Expressions = []connector.Expression{
		// Fine: right types, NULL handled, NOT NULL columns.
		{Table: "public.users", Setting: "mapping.users.computed.ok1", Program: compile(`row.plan.upperAscii() + string(row.id)`, expr.Scalar)},
		{Table: "public.users", Setting: "mapping.users.computed.ok2", Program: compile(`row.score != null && row.score > 10 ? "high" : null`, expr.Scalar)},
		{Table: "public.users", Setting: "mapping.users.computed.ok3", Program: compile(`days_since(row.created_at)`, expr.Scalar)},
		{Table: "public.users", Setting: "mapping.users.computed.ok4", Program: compile(`double(row.price) * double(row.ratio)`, expr.Scalar)},
		{Table: "public.users", Setting: "mapping.users.computed.ok5", Program: compile(`has(row.prefs.lang) ? row.prefs.lang : null`, expr.Scalar)},
		{Table: "public.users", Setting: "mapping.users.filter", Program: compile(`row.consent == true`, expr.Filter)},
		// Wrong.
		{Table: "public.users", Setting: "mapping.users.computed.vip", Program: compile(`row.score > 10 ? "yes" : "no"`, expr.Scalar)},
		{Table: "public.users", Setting: "mapping.users.computed.cheap", Program: compile(`row.price < 10`, expr.Scalar)},
		{Table: "public.users", Setting: "mapping.users.computed.half", Program: compile(`row.ratio * 0.5`, expr.Scalar)},
		{Table: "public.devices", Setting: "mapping.devices.filter", Program: compile(`row.x == 1`, expr.Filter)}, // no such table: another finding's
	}
	cfg.Expressions = append(cfg.Expressions,
		connector.Expression{Table: "public.users", Setting: "mapping.sources[0].filter", Program: compile(`row.consent`, expr.Filter)})
	got, _, err := connector.Inspect(t.Context(), db.Conn(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, got, finding{
		problem: `row.score > 10 (mapping.users.computed.vip) fails when score is NULL, and the column may be NULL: each such row of public.users would be dead-lettered`,
		fix:     `handle NULL in mapping.users.computed.vip: write row.score == null ? null : row.score > 10`,
	}, finding{
		problem: `row.price < 10 (mapping.users.computed.cheap) fails on the rows of public.users: row.price < 10 fails on this row: < was given a value it does not take`,
		fix:     `a numeric column arrives as text: double(row.price)`,
	}, finding{
		problem: `row.ratio * 0.5 (mapping.users.computed.half) fails on the rows of public.users`,
		fix:     `correct mapping.users.computed.half`,
	}, finding{
		problem: `row.consent (mapping.sources[0].filter) fails when consent is NULL`,
		fix:     `write row.consent == true, which is false for NULL`,
	})
}
