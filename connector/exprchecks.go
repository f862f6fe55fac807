package connector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/transform/expr"
)

// Expression is one of the mapping's expressions (filters, computed tags,
// properties), as transform.Mapping.Expressions gives them, for Inspect: the
// table whose rows it reads, the setting that holds it, and the program.
type Expression struct {
	Table   string
	Setting string
	Program *expr.Program
}

// columnInfo is a column's type as the catalog has it.
type columnInfo struct {
	name     string
	typ      string // format_type, e.g. "character varying(20)"
	typname  string // pg_type.typname of the type, or of the element type of an array
	array    bool
	nullable bool
}

// checkExpressions evaluates every expression over the rows a table's
// column types allow, as the connector writes them: once with every column
// holding a value of its type, and once with each nullable column it
// reads NULL. A type error (a text column compared with a number) or a
// NULL the expression does not handle would dead-letter every such row at
// run time; here it is a finding naming the setting and the fix.
//
// Only failures of type are reported, not of value: a text column's sample
// value is "x", which unix_seconds cannot read, yet the column's real
// values may all be dates.
func (c *checker) checkExpressions(ctx context.Context) error {
	byTable := map[string][]Expression{}
	for _, e := range c.cfg.Expressions {
		if e.Program != nil {
			byTable[e.Table] = append(byTable[e.Table], e)
		}
	}
	for _, t := range c.tables {
		exprs := byTable[t.schema+"."+t.name]
		if len(exprs) == 0 {
			continue
		}
		cols, err := c.columnTypes(ctx, t)
		if err != nil {
			return err
		}
		for _, e := range exprs {
			c.checkExpression(t, e, cols)
		}
	}
	return nil
}

func (c *checker) columnTypes(ctx context.Context, t tableInfo) (map[string]columnInfo, error) {
	rows, err := c.conn.Query(ctx, `
		SELECT a.attname::text, format_type(a.atttypid, a.atttypmod),
		       COALESCE(e.typname, ty.typname)::text, e.oid IS NOT NULL, NOT a.attnotnull
		FROM pg_attribute a
		JOIN pg_class cl ON cl.oid = a.attrelid JOIN pg_namespace n ON n.oid = cl.relnamespace
		JOIN pg_type ty ON ty.oid = a.atttypid
		LEFT JOIN pg_type e ON e.oid = ty.typelem AND ty.typcategory = 'A'
		WHERE n.nspname = $1 AND cl.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped`, t.schema, t.name)
	if err != nil {
		return nil, fmt.Errorf("read the column types of %s.%s: %w", t.schema, t.name, err)
	}
	defer rows.Close()
	out := map[string]columnInfo{}
	for rows.Next() {
		var ci columnInfo
		if err := rows.Scan(&ci.name, &ci.typ, &ci.typname, &ci.array, &ci.nullable); err != nil {
			return nil, fmt.Errorf("read the column types of %s.%s: %w", t.schema, t.name, err)
		}
		out[ci.name] = ci
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the column types of %s.%s: %w", t.schema, t.name, err)
	}
	return out, nil
}

// checkNow is the event time of the sample rows.
var checkNow = time.Date(2024, 5, 11, 12, 0, 0, 0, time.UTC)

func (c *checker) checkExpression(t tableInfo, e Expression, cols map[string]columnInfo) {
	p := e.Program
	read := p.Columns()
	for _, col := range read {
		if _, ok := cols[col]; !ok {
			return // checkColumns reports it
		}
	}
	table := t.schema + "." + t.name
	// A float column's values reach the expression as an int when they
	// are whole (2) and as a double when not (2.5): try both.
	for _, variant := range []int{0, 1} {
		row := sampleRow(read, cols, variant, "")
		err := failure(p, row)
		if err == nil {
			continue
		}
		c.add(fmt.Sprintf("%s (%s) fails on the rows of %s: %s; the columns it reads: %s",
			quote(p.Source()), e.Setting, table, reason(err), describeColumns(read, cols)),
			fmt.Sprintf("correct %s: convert the values to the types the expression compares, e.g. int(row.x), double(row.x) or string(row.x) "+
				"(a numeric column arrives as text: double(row.price); a float column as an int when whole: double(row.ratio))", e.Setting))
		return
	}
	for _, col := range read {
		if !cols[col].nullable {
			continue
		}
		err := failure(p, sampleRow(read, cols, 0, col))
		if err == nil {
			continue
		}
		c.add(fmt.Sprintf("%s (%s) fails when %s is NULL, and the column may be NULL: each such row of %s would be dead-lettered",
			quote(snippet(p, err)), e.Setting, col, table),
			fmt.Sprintf("handle NULL in %s: %s", e.Setting, nullFix(p, err, col)))
	}
}

// failure is Eval's error on row when it is one of type: a value given
// to an operator or function that does not take its type, or a result of
// a type the setting does not take (null for a filter). Other errors come
// from the made-up values of the sample row, and ErrUnknown cannot happen.
func failure(p *expr.Program, row event.Row) error {
	_, err := p.Eval(row, checkNow)
	var ee *expr.EvalError
	if errors.As(err, &ee) && (strings.Contains(ee.Reason, "was given a value it does not take") || strings.HasPrefix(ee.Reason, "gives ")) {
		return err
	}
	return nil
}

func reason(err error) string {
	var ee *expr.EvalError
	if errors.As(err, &ee) {
		if ee.Snippet != "" {
			return quote(ee.Snippet) + " " + ee.Reason
		}
		return ee.Reason
	}
	return err.Error()
}

func snippet(p *expr.Program, err error) string {
	var ee *expr.EvalError
	if errors.As(err, &ee) && ee.Snippet != "" {
		return ee.Snippet
	}
	return p.Source()
}

var plainName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// columnRef is how an expression names col: row.col, or row["col"].
func columnRef(col string) string {
	if plainName.MatchString(col) {
		return "row." + col
	}
	b, _ := json.Marshal(col)
	return "row[" + string(b) + "]"
}

// nullFix says how to write the failing part so that a NULL passes.
func nullFix(p *expr.Program, err error, col string) string {
	ref := columnRef(col)
	part := snippet(p, err)
	var ee *expr.EvalError
	if errors.As(err, &ee) && strings.Contains(ee.Reason, "gives null") {
		return fmt.Sprintf("write %s == true, which is false for NULL", ref)
	}
	if p.Kind() == expr.Filter {
		return fmt.Sprintf("write %s != null && %s", ref, part)
	}
	return fmt.Sprintf("write %s == null ? null : %s (null deletes the tag, or leaves the property out)", ref, part)
}

func quote(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 100 {
		s = string(r[:97]) + "…"
	}
	return s
}

func describeColumns(read []string, cols map[string]columnInfo) string {
	parts := make([]string, 0, len(read))
	for _, col := range read {
		ci := cols[col]
		parts = append(parts, fmt.Sprintf("%s (%s, %s)", col, ci.typ, celKind(ci)))
	}
	return strings.Join(parts, ", ")
}

// celKind says what a column's values are to an expression.
func celKind(ci columnInfo) string {
	if ci.array {
		return "a list"
	}
	switch ci.typname {
	case "bool":
		return "true or false"
	case "int2", "int4", "int8", "oid":
		return "an int"
	case "float4", "float8":
		return "a number: an int when whole, else a double"
	case "json", "jsonb":
		return "JSON: a map, list, string, number or bool"
	case "numeric", "money":
		return "a string of the number: double(…) reads it"
	case "date", "timestamp", "timestamptz":
		return "a string of the time: timestamp(…) reads it"
	}
	return "a string"
}

// sampleRow is a row of the columns read, each a value of its type as
// the connector writes it, except null, which is NULL. variant 1 gives
// float columns a whole number.
func sampleRow(read []string, cols map[string]columnInfo, variant int, null string) event.Row {
	sort.Strings(read)
	row := make(event.Row, 0, len(read))
	for _, col := range read {
		v := json.RawMessage("null")
		if col != null {
			v = sample(cols[col], variant)
		}
		row = append(row, event.Field{Name: col, Value: v})
	}
	return row
}

func sample(ci columnInfo, variant int) json.RawMessage {
	v := scalarSample(ci.typname, variant)
	if ci.array {
		return json.RawMessage("[" + string(v) + "]")
	}
	return v
}

func scalarSample(typname string, variant int) json.RawMessage {
	switch typname {
	case "bool":
		return json.RawMessage("true")
	case "int2", "int4", "int8", "oid":
		return json.RawMessage("1")
	case "float4", "float8":
		if variant == 1 {
			return json.RawMessage("2")
		}
		return json.RawMessage("1.5")
	case "numeric":
		return json.RawMessage(`"1.50"`)
	case "json", "jsonb":
		return json.RawMessage(`{}`)
	case "date":
		return json.RawMessage(`"2024-05-01"`)
	case "timestamp":
		return json.RawMessage(`"2024-05-01T12:00:00"`)
	case "timestamptz":
		return json.RawMessage(`"2024-05-01T10:00:00Z"`)
	case "time", "timetz":
		return json.RawMessage(`"12:00:00"`)
	case "uuid":
		return json.RawMessage(`"5eb5a37e-b458-11e3-ac11-000c2940e62c"`)
	}
	return json.RawMessage(`"x"`)
}
