package expr

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
)

func TestFiltersOfComparisonsTranslateToSQL(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{`row.plan == "internal"`, `"plan" COLLATE "C" IS NOT DISTINCT FROM 'internal'`},
		{`row.plan != "internal"`, `"plan" COLLATE "C" IS DISTINCT FROM 'internal'`},
		{`row.deleted_at == null`, `"deleted_at" IS NULL`},
		{`null != row.deleted_at`, `"deleted_at" IS NOT NULL`},
		{`row.score > 10`, `"score" > 10`},
		{`10 <= row.score`, `"score" >= 10`},
		{`row.score < -2.5`, `"score" < (-2.5)`},
		{`row.active`, `"active"`},
		{`row["active"] == true`, `"active" IS NOT DISTINCT FROM true`},
		{`!row.active`, `(NOT "active")`},
		{`row.deleted_at == null && row.plan != "internal"`, `("deleted_at" IS NULL AND "plan" COLLATE "C" IS DISTINCT FROM 'internal')`},
		{`row.a == 1 || row.b == 2 && !(row.c == 3)`, `("a" IS NOT DISTINCT FROM 1 OR ("b" IS NOT DISTINCT FROM 2 AND (NOT "c" IS NOT DISTINCT FROM 3)))`},
		{`row.plan in ["a", "b"]`, `(("plan" COLLATE "C" IN ('a', 'b')) IS TRUE)`},
		{`row.plan in ["a", null]`, `("plan" IS NULL OR ("plan" COLLATE "C" IN ('a')) IS TRUE)`},
		{`row.plan in []`, `false`},
		{`row["we\"ird"] == "it's"`, `"we""ird" COLLATE "C" IS NOT DISTINCT FROM 'it''s'`},
		{`row.path == "a\\b"`, `"path" COLLATE "C" IS NOT DISTINCT FROM E'a\\b'`},
		{`true`, `true`},
	} {
		p, err := Compile(tc.src, Filter)
		if err != nil {
			t.Fatalf("%s: %v", tc.src, err)
		}
		got, ok := p.SQL()
		if !ok || got != tc.want {
			t.Errorf("%s: SQL %q, %v; want %q", tc.src, got, ok, tc.want)
		}
	}
}

func TestFiltersBeyondComparisonsStayInTheTransform(t *testing.T) {
	for _, src := range []string{
		`row.email.endsWith("@example.com")`,
		`days_since(row.created_at) < 30`,
		`row.a == row.b`,
		`has(row.a)`,
		`row.j.k == 1`,
		`row.a + 1 > 2`,
		`row.a < null`,
		`row.a in ["x", 1]`,
		`row.a in [row.b]`,
		`row.a == 1 ? true : false`,
		`row.a == "nul\u0000"`,
		`row.a == b"x"`,
		`size(row.a) > 1`,
	} {
		p, err := Compile(src, Filter)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if sql, ok := p.SQL(); ok {
			t.Errorf("%s: SQL %q, want none", src, sql)
		}
	}
	p, _ := Compile(`row.a == 1`, Scalar)
	if _, ok := p.SQL(); ok {
		t.Errorf("a value expression has SQL")
	}
}

func TestSQLIsRefusedForColumnsPostgreSQLComparesOtherwise(t *testing.T) {
	types := map[string]string{
		"t": "text", "v": "character varying(20)", "c": "character(3)", "n": "numeric(10,2)", "i": "integer",
		"f": "double precision", "r": "real", "d": "date", "ts": "timestamp with time zone", "b": "boolean", "e": "mood",
	}
	for _, tc := range []struct {
		src string
		ok  bool
	}{
		{`row.t == "x"`, true},
		{`row.v < "x"`, true},
		{`row.c == "x"`, false},
		{`row.n == "1.50"`, false},
		{`row.n == 1.5`, false},
		{`row.i == 1`, true},
		{`row.i > 1.5`, true},
		{`row.i == "1"`, false},
		{`row.f == 1.5`, true},
		{`row.f in [1, 2]`, true},
		{`row.f > 1.5`, false},
		{`row.r == 1.5`, false},
		{`row.d == "2024-01-01"`, false},
		{`row.ts > "2024"`, false},
		{`row.b`, true},
		{`row.i`, false},
		{`row.e == "happy"`, false},
		{`row.missing == 1`, false},
		{`row.d == null && row.e != null`, true},
	} {
		p, err := Compile(tc.src, Filter)
		if err != nil {
			t.Fatalf("%s: %v", tc.src, err)
		}
		if _, ok := p.SQLFor(types); ok != tc.ok {
			t.Errorf("%s: SQLFor gives %v, want %v", tc.src, ok, tc.ok)
		}
	}
}

// The SQL of a filter, run by PostgreSQL on a table's rows, gives what the
// filter gives on the same rows as the connector writes them: true, false,
// or NULL where the filter fails. And PostgreSQL takes it as a
// publication's row filter.
func TestTheSQLOfAFilterMeansWhatTheFilterMeansInPostgreSQL(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(t, `
		CREATE TABLE t (id int PRIMARY KEY, s text, v varchar(20), i int4, b int8, f float8, ok boolean, "odd ""col" text);
		INSERT INTO t VALUES
			(1, 'pro', 'a', 1, 10, 1.5, true, 'x'),
			(2, 'internal', 'B', -5, 0, 0, false, 'it''s'),
			(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
			(4, '', 'zz', 100, 9223372036854775807, 'NaN', true, 'a\b'),
			(5, 'Pro', 'é', 0, -9223372036854775808, 'Infinity', false, ''),
			(6, 'pro ', 'a', 2, 2, '-Infinity', NULL, 'x'),
			(7, 'über', 'Z', 3, 3, 2, true, 'y');`)
	conn := db.Conn(t)
	ctx := context.Background()
	types := columnTypes(t, conn, "t")
	if pgVersion(t, conn) >= 150000 {
		db.Exec(t, `CREATE PUBLICATION probe FOR TABLE t`)
	}
	for _, src := range []string{
		`row.s == "pro"`,
		`row.s != "pro"`,
		`row.s < "pro"`,
		`row.s >= "pro"`,
		`row.v > "Z"`,
		`row.v <= "a"`,
		`row.s == null`,
		`row.s != null`,
		`row.i > 1`,
		`row.i <= 0`,
		`row.i == 1`,
		`row.i != 1`,
		`row.b >= 10`,
		`row.b < 1.5`,
		`row.i > -5.5`,
		`row.f == 1.5`,
		`row.f != 0`,
		`row.f in [0, 2, 1.5]`,
		`row.ok`,
		`!row.ok`,
		`row.ok == true`,
		`row.ok != false`,
		`row.ok && row.i > 1`,
		`row.ok || row.i > 1`,
		`!(row.i > 1)`,
		`!(row.s == "pro")`,
		`row.s in ["pro", "", "über"]`,
		`row.s in ["pro", null]`,
		`!(row.s in ["pro"])`,
		`row.s in []`,
		`row["odd \"col"] == "it's"`,
		`row["odd \"col"] == "a\\b"`,
		`row.s == null || row.i > 2 && row.s != "über"`,
		`row.i > 1 || row.f == 2`,
		`!(row.i > 1) || !row.ok`,
		`true`,
		`false || row.ok`,
	} {
		p, err := Compile(src, Filter)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		sql, ok := p.SQLFor(types)
		if !ok {
			t.Errorf("%s: no SQL", src)
			continue
		}
		rows, err := conn.Query(ctx, `SELECT row_to_json(t)::text, (`+sql+`) FROM t ORDER BY id`)
		if err != nil {
			t.Fatalf("%s: %s: %v", src, sql, err)
		}
		type result struct {
			row string
			got *bool
		}
		results, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (res result, err error) {
			err = r.Scan(&res.row, &res.got)
			return res, err
		})
		if err != nil {
			t.Fatalf("%s: %s: %v", src, sql, err)
		}
		for _, res := range results {
			want, err := p.Match(mustRow(t, res.row), time.Now())
			switch {
			case err != nil && res.got != nil:
				t.Errorf("%s on %s: the filter fails (%v), the SQL %s gives %v", src, res.row, err, sql, *res.got)
			case err == nil && res.got == nil:
				t.Errorf("%s on %s: the filter gives %v, the SQL %s gives NULL", src, res.row, want, sql)
			case err == nil && *res.got != want:
				t.Errorf("%s on %s: the filter gives %v, the SQL %s gives %v", src, res.row, want, sql, *res.got)
			}
		}
		if pgVersion(t, conn) >= 150000 {
			if _, err := conn.Exec(ctx, `ALTER PUBLICATION probe SET TABLE t WHERE (`+sql+`)`); err != nil {
				t.Errorf("%s: PostgreSQL refuses %s as a row filter: %v", src, sql, err)
			}
		}
	}
}

func columnTypes(t *testing.T, conn *pgx.Conn, table string) map[string]string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `
		SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
		WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped`, table)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			t.Fatal(err)
		}
		out[name] = typ
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func pgVersion(t *testing.T, conn *pgx.Conn) int {
	t.Helper()
	var v int
	if err := conn.QueryRow(context.Background(), `SELECT current_setting('server_version_num')::int`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}
