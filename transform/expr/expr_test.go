package expr

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// now is the event time of the tests: 2024-05-11T12:00:00Z.
var now = time.Date(2024, 5, 11, 12, 0, 0, 0, time.UTC)

// sample is a row as the connector writes one, with a column of each kind.
const sample = `{
	"id": 7, "plan": "pro", "score": 120, "ratio": 0.25, "big": 12345678901234, "active": true, "deleted_at": null,
	"name": "  Ada Lovelace ", "email": "ADA@Example.com", "tags_csv": "a,b,,c",
	"created_at": "2024-05-01T12:00:00.5Z", "born": "1990-02-03", "seen": "2024-05-10T23:00:00",
	"price": "12.50", "prefs": {"lang": "en", "n": 2, "z": [1, 2.5, null]}, "list": ["x", "y"],
	"epoch": 1714564800, "whole": 10.0, "sci": 1e3, "huge": 1e30, "nothing": ""
}`

func mustRow(t testing.TB, js string) event.Row {
	t.Helper()
	var r event.Row
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		t.Fatalf("row %s: %v", js, err)
	}
	return r
}

func TestExpressionsGiveTheirValues(t *testing.T) {
	row := mustRow(t, sample)
	for _, tc := range []struct {
		src  string
		kind Kind
		want Value
	}{
		// Comparisons, logic, conditionals.
		{`row.plan == "pro"`, Filter, BoolValue(true)},
		{`row.plan != "internal" && row.deleted_at == null`, Filter, BoolValue(true)},
		{`row.score > 100`, Filter, BoolValue(true)},
		{`row.score > 100.5`, Filter, BoolValue(true)},
		{`row.ratio < 1`, Filter, BoolValue(true)},
		{`row.active`, Filter, BoolValue(true)},
		{`!row.active || row.id == 7`, Filter, BoolValue(true)},
		{`row.plan in ["free", "pro"]`, Filter, BoolValue(true)},
		{`row.deleted_at in ["x", null]`, Filter, BoolValue(true)},
		{`has(row.plan) && !has(row.nope)`, Filter, BoolValue(true)},
		{`has(row.prefs.lang)`, Filter, BoolValue(true)},
		{`row.email.matches("(?i)@example[.]com$")`, Filter, BoolValue(true)},
		{`row.plan.startsWith("p") && row.plan.endsWith("o") && row.plan.contains("r")`, Filter, BoolValue(true)},
		{`row.score > 100 ? "yes" : "no"`, Scalar, StringValue("yes")},
		{`row.score > 1000 ? "yes" : null`, Scalar, NullValue()},
		{`row.score > 100 ? "vip" : null`, Scalar, StringValue("vip")},
		{`row.deleted_at == null ? null : "gone"`, Scalar, NullValue()},
		{`row.score < 0 ? "neg" : row.score < 100 ? "low" : null`, Scalar, NullValue()},
		// Arithmetic and numbers.
		{`row.score * 2 + 1`, Scalar, IntValue(241)},
		{`row.ratio * 4.0`, Scalar, DoubleValue(1)},
		{`row.score / 7`, Scalar, IntValue(17)},
		{`row.score % 7`, Scalar, IntValue(1)},
		{`double(row.score) / 8.0`, Scalar, DoubleValue(15)},
		{`double(row.price) * 2.0`, Scalar, DoubleValue(25)},
		{`int(row.price.split(".")[0])`, Scalar, IntValue(12)},
		{`row.big + 1`, Scalar, IntValue(12345678901235)},
		{`row.whole + 1`, Scalar, IntValue(11)},
		{`row.sci`, Scalar, IntValue(1000)},
		{`row.huge`, Scalar, DoubleValue(1e30)},
		{`row.prefs.n * 10`, Scalar, IntValue(20)},
		{`row.prefs.z[1]`, Scalar, DoubleValue(2.5)},
		{`row.prefs.z[2]`, Scalar, NullValue()},
		{`size(row.list)`, Scalar, IntValue(2)},
		{`uint(3)`, Scalar, IntValue(3)},
		// Strings (ext.Strings).
		{`row.name.trim()`, Scalar, StringValue("Ada Lovelace")},
		{`row.email.lowerAscii()`, Scalar, StringValue("ada@example.com")},
		{`row.plan.upperAscii()`, Scalar, StringValue("PRO")},
		{`row.email.split("@")[1].lowerAscii()`, Scalar, StringValue("example.com")},
		{`row.tags_csv.split(",").filter(x, x != "").join("|")`, Scalar, StringValue("a|b|c")},
		{`row.name.trim().substring(0, 3)`, Scalar, StringValue("Ada")},
		{`row.plan.replace("p", "P")`, Scalar, StringValue("Pro")},
		{`"%s-%d".format([row.plan, row.id])`, Scalar, StringValue("pro-7")},
		{`row.plan + "/" + string(row.id)`, Scalar, StringValue("pro/7")},
		{`size(row.name)`, Scalar, IntValue(15)},
		{`row.prefs.lang`, Scalar, StringValue("en")},
		{`row.prefs.map(k, k).join(",")`, Scalar, StringValue("lang,n,z")},
		{`row["plan"]`, Scalar, StringValue("pro")},
		{`{"pro": "Pro plan", "free": "Free"}[row.plan]`, Scalar, StringValue("Pro plan")},
		{`row.plan in {"pro": true}`, Filter, BoolValue(true)},
		// Time.
		{`unix_seconds(row.created_at)`, Scalar, IntValue(1714564800)},
		{`unix_seconds(row.born)`, Scalar, IntValue(634003200)},
		{`unix_seconds(row.seen)`, Scalar, IntValue(1715382000)},
		{`unix_seconds(row.epoch)`, Scalar, IntValue(1714564800)},
		{`unix_seconds(1.9)`, Scalar, IntValue(1)},
		{`unix_seconds(row.deleted_at)`, Scalar, NullValue()},
		{`unix_seconds(now)`, Scalar, IntValue(1715428800)},
		{`unix_seconds("1714564800")`, Scalar, IntValue(1714564800)},
		{`days_since(row.created_at)`, Scalar, IntValue(9)},
		{`days_since(row.seen)`, Scalar, IntValue(0)},
		{`days_since(row.born)`, Scalar, IntValue(12516)},
		{`days_since(row.epoch)`, Scalar, IntValue(10)},
		{`days_since(row.deleted_at)`, Scalar, NullValue()},
		{`days_since("2024-05-12T12:00:00Z")`, Scalar, IntValue(-1)},
		{`days_since("2024-05-12T11:00:00Z")`, Scalar, IntValue(-1)},
		{`days_since(row.created_at) < 30`, Filter, BoolValue(true)},
		{`timestamp(row.seen) < now`, Filter, BoolValue(true)},
		{`timestamp(row.born).getFullYear()`, Scalar, IntValue(1990)},
		{`timestamp("2024-05-01T12:00:00+02:00") == timestamp("2024-05-01T10:00:00Z")`, Filter, BoolValue(true)},
		{`now - timestamp(row.created_at) > duration("72h")`, Filter, BoolValue(true)},
		{`now.getDayOfWeek()`, Scalar, IntValue(6)},
		{`string(timestamp(row.seen))`, Scalar, StringValue("2024-05-10T23:00:00Z")},
		// NULL.
		{`row.deleted_at`, Scalar, NullValue()},
		{`row.deleted_at == null`, Filter, BoolValue(true)},
		{`row.deleted_at != null && row.deleted_at > 1`, Filter, BoolValue(false)},
		{`row.deleted_at == "x"`, Filter, BoolValue(false)},
		{`row.nothing == ""`, Filter, BoolValue(true)},
	} {
		p, err := Compile(tc.src, tc.kind)
		if err != nil {
			t.Errorf("%s: %v", tc.src, err)
			continue
		}
		got, err := p.Eval(row, now)
		if err != nil {
			t.Errorf("%s: %v", tc.src, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s = %v (%d), want %v (%d)", tc.src, got, got.Kind(), tc.want, tc.want.Kind())
		}
	}
}

func TestValuesRenderAsTagsAreRendered(t *testing.T) {
	tenth := 0.1
	for _, tc := range []struct {
		v    Value
		want string
	}{
		{NullValue(), ""},
		{BoolValue(true), "true"},
		{BoolValue(false), "false"},
		{IntValue(-42), "-42"},
		{DoubleValue(2.5), "2.5"},
		{DoubleValue(6), "6"},
		{DoubleValue(tenth + 0.2), "0.30000000000000004"},
		{DoubleValue(123456789), "123456789"},
		{DoubleValue(1e21), "1e+21"},
		{DoubleValue(1.5e-7), "1.5e-07"},
		{DoubleValue(0.0001), "0.0001"},
		{DoubleValue(-0.0), "0"},
		{StringValue("héllo"), "héllo"},
	} {
		if got := tc.v.Tag(); got != tc.want {
			t.Errorf("%v renders %q, want %q", tc.v, got, tc.want)
		}
	}
}

func TestAnExpressionOverAnUnchangedTOASTValueIsUnknown(t *testing.T) {
	row := mustRow(t, `{"id": 1, "notes": "__debezium_unavailable_value", "plan": "pro"}`)
	for _, src := range []string{`row.notes`, `row.notes == "x"`, `size(row.notes) > 3 || row.plan == "x"`, `row.notes.contains("a") ? "y" : "n"`, `[row.notes].size()`} {
		kind := Scalar
		if strings.Contains(src, "==") {
			kind = Filter
		}
		p, err := Compile(src, kind)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if _, err := p.Eval(row, now); !errors.Is(err, ErrUnknown) {
			t.Errorf("%s: err = %v, want ErrUnknown", src, err)
		}
	}
	// A result that does not depend on it is known.
	p, _ := Compile(`row.plan == "pro" || row.notes == "x"`, Filter)
	if ok, err := p.Match(row, now); err != nil || !ok {
		t.Errorf("known result: %v, %v", ok, err)
	}
	// Even whether it is there: cel carries the unknown through has().
	p, _ = Compile(`has(row.notes)`, Filter)
	if _, err := p.Match(row, now); !errors.Is(err, ErrUnknown) {
		t.Errorf("has of an unchanged column: %v", err)
	}
}

func TestAnExpressionOverAnOversizedValueSaysSo(t *testing.T) {
	row := mustRow(t, `{"notes": "`+event.Oversized+`"}`)
	p, _ := Compile(`row.notes.size() > 3`, Filter)
	if _, err := p.Eval(row, now); !errors.Is(err, ErrOversized) {
		t.Errorf("err = %v, want ErrOversized", err)
	}
}

func TestFailuresOnARowNameThePlaceAndTheCause(t *testing.T) {
	row := mustRow(t, sample)
	for _, tc := range []struct {
		src, want string
	}{
		{`row.deleted_at > 10`, `1:1: row.deleted_at > 10 fails on this row: > was given a value it does not take (a NULL`},
		{`row.plan > 10`, `row.plan > 10 fails on this row`},
		{`row.nope == 1`, `the row has no column "nope"`},
		{`row.prefs.missing == 1`, `no such key: missing`},
		{`unix_seconds(row.plan)`, `unix_seconds: "pro" is not a date or timestamp as the connector writes them`},
		{`days_since("infinity") > 1`, `is PostgreSQL's infinity, which is no point in time`},
		{`row.deleted_at`, `gives null, and a filter must give true or false`},
		{`dyn(row.plan)`, `gives a string ("pro"), and a filter must give true or false`},
		{`row.id / 0 == 1`, `division by zero`},
	} {
		p, err := Compile(tc.src, Filter)
		if err != nil {
			t.Errorf("%s: %v", tc.src, err)
			continue
		}
		_, err = p.Eval(row, now)
		var ee *EvalError
		if !errors.As(err, &ee) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want an EvalError with %q", tc.src, err, tc.want)
		}
	}
	p, _ := Compile(`row.list`, Scalar)
	if _, err := p.Eval(row, now); err == nil || !strings.Contains(err.Error(), "gives a list: a tag or property takes") {
		t.Errorf("a list as a tag: %v", err)
	}
}

func TestCompileErrorsSayWhereAndWhatToWrite(t *testing.T) {
	for _, tc := range []struct {
		src  string
		kind Kind
		want string
	}{
		{`row.deleted_at IS NULL`, Filter, `1:16: Syntax error: mismatched input 'IS' expecting <EOF>: this is CEL, not SQL: write row.x == null for IS NULL`},
		{`row.a = 1`, Filter, `write == to compare`},
		{`row.a <> 1`, Filter, `write != for <>`},
		{`row.a == 1 AND row.b == 2`, Filter, `write && for AND`},
		{`row.a IN ('x', 'y')`, Filter, `write a list in brackets`},
		{"row.a == 1 &&\n  rows.b == 2", Filter, `2:3: rows is not a variable: the variables are row, the row's columns (write row.rows for column "rows"), and now`},
		{`lower(row.a)`, Scalar, `1:6: lower is not a function here: write row.x.lowerAscii()`},
		{`lowerAsci(row.a)`, Scalar, `did you mean lowerAscii?`},
		{`days_since(row.a, now)`, Scalar, `days_since takes one value`},
		{`unix_seconds(true)`, Scalar, `unix_seconds takes a timestamp, a date or timestamp string, or a number of Unix seconds, not bool`},
		{`days_since(true)`, Scalar, `days_since takes a timestamp, a date or timestamp string, or a number of Unix seconds, not bool`},
		{`"a" > 1`, Filter, `> cannot compare string with int`},
		{`row.a ? 1 : "x"`, Scalar, `the two branches of ? : give different types (int, string)`},
		{`"x" && true`, Filter, `1:1: this is a string where true or false is needed`},
		{`row.plan`, Filter, ``}, // dyn: checked on the row
		{`"pro"`, Filter, `1:1: this gives a string, and a filter must give true or false: compare it`},
		{`row.a == 1 ? "x" : 2`, Filter, `give different types`},
		{`[1, 2]`, Scalar, `1:1: this gives a list: a tag or property takes a string, a number, true or false, or null`},
		{`now`, Scalar, `this gives a timestamp: a tag or property takes`},
		{`row.a == 1 ? now : null`, Scalar, `this gives a timestamp`},
		{`row`, Scalar, `1:1: row is read one column at a time`},
		{`size(row) > 1`, Filter, `row is read one column at a time`},
		{`"a" in row`, Filter, `row is read one column at a time`},
		{`row[row.k] == 1`, Filter, `1:5: row["…"] takes a column name in quotes, not a computed one`},
		{`[1].exists(row, row == 1)`, Filter, `row names a variable of the expression already`},
		{`[1].exists(now, now == 1)`, Filter, `now names a variable of the expression already`},
		{`{"a": 1, "b": 2}.map(k, k).join(",")`, Scalar, `a map literal can only be looked up here`},
		{``, Filter, `1:1: the expression is empty`},
		{`   `, Scalar, `the expression is empty`},
		{`row.a ==`, Filter, `1:9: Syntax error`},
	} {
		_, err := Compile(tc.src, tc.kind)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%q: %v", tc.src, err)
			}
			continue
		}
		var ce *Error
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want an Error with %q", tc.src, err, tc.want)
		}
	}
}

func TestColumnsAreTheColumnsTheExpressionReads(t *testing.T) {
	p, err := Compile(`has(row.a) && row["b c"] == 1 && row.d.e == "x" && [1].exists(x, row.f == x) && row.a != null`, Filter)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(p.Columns(), ","); got != "a,b c,d,f" {
		t.Errorf("columns %s", got)
	}
}

func TestNoExpressionRunsAway(t *testing.T) {
	p, err := Compile(`[1,2,3,4,5,6,7,8,9,10].map(a, [1,2,3,4,5,6,7,8,9,10].map(b, [1,2,3,4,5,6,7,8,9,10].map(c, [1,2,3,4,5,6,7,8,9,10].map(d, [1,2,3,4,5,6,7,8,9,10].map(e, [1,2,3,4,5,6,7,8,9,10].map(f, a+b+c+d+e+f)))))).size()`, Scalar)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = p.Eval(nil, now)
	if err == nil || !strings.Contains(err.Error(), "cost limit") {
		t.Errorf("err = %v, want the cost limit", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestTheSameRowAndTimeGiveTheSameValue(t *testing.T) {
	row := mustRow(t, sample)
	p, err := Compile(`row.prefs.map(k, k).join(",") + row.prefs.filter(k, k != "n").join(",") + string(now)`, Scalar)
	if err != nil {
		t.Fatal(err)
	}
	first, err := p.Eval(row, now)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if v, _ := p.Eval(row, now); v != first {
			t.Fatalf("%v, then %v", first, v)
		}
	}
}
