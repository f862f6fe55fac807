package expr

import (
	"math"
	"strconv"
	"strings"

	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
)

// SQL returns a PostgreSQL boolean expression that means what the filter
// means, for a publication's row filter (WHERE), when the filter uses only
// comparisons of columns with literals (==, !=, <, <=, >, >=), == null and
// != null, &&, ||, ! and in with a list of literals; false otherwise.
//
// It assumes that each column compared with a string literal is text, with
// a number a number type, and with true or false a boolean: elsewhere it
// would mean something else, or fail in PostgreSQL. For a publication use
// SQLFor, which checks that against the table's column types.
func (p *Program) SQL() (string, bool) { return p.SQLFor(nil) }

// SQLFor is SQL for a table whose columns have the given types, as
// format_type or pg_type.typname names them ("text", "character
// varying(20)", "integer", "int8", "double precision", "boolean"). It is
// false when a column the filter compares is missing from types or of a
// type that PostgreSQL compares otherwise than the expression does: char(n)
// (which pads), numeric, dates and timestamps (which the connector writes as
// text), real (whose text rounds), enums and other types of the database's
// own; and for an ordering (<, >) of a double precision column, which holds
// NaN and infinities that the expression does not order. A nil types skips
// the checks.
//
// The SQL is three-valued as the filter is: it is true where the filter is
// true, false where it is false, and NULL where the filter fails (row.x < 10
// when x is NULL), so that NOT, AND and OR combine the same way. A
// publication drops a row whose filter is NULL, as the transform drops a
// row on which the filter fails.
func (p *Program) SQLFor(types map[string]string) (string, bool) {
	if p.kind != Filter {
		return "", false
	}
	t := &translator{types: types}
	sql, ok := t.expr(p.ast.Expr())
	if !ok {
		return "", false
	}
	return sql, true
}

type translator struct {
	types map[string]string // nil: not checked
}

// literalKind is what a literal compares as.
type literalKind uint8

const (
	litString literalKind = iota + 1
	litNumber
	litBool
	litNull
)

func (t *translator) expr(e ast.Expr) (string, bool) {
	switch e.Kind() {
	case ast.LiteralKind:
		if b, ok := e.AsLiteral().(types.Bool); ok {
			return strconv.FormatBool(bool(b)), true
		}
		return "", false
	case ast.SelectKind, ast.IdentKind:
		// A boolean column on its own: NULL fails the filter in both.
		col, ok := column(e)
		if !ok || !t.fits(col, litBool, false) {
			return "", false
		}
		return ident(col)
	case ast.CallKind:
	default:
		return "", false
	}
	c := e.AsCall()
	args := c.Args()
	switch fn := c.FunctionName(); fn {
	case "_&&_", "_||_":
		if len(args) != 2 {
			return "", false
		}
		l, ok1 := t.expr(args[0])
		r, ok2 := t.expr(args[1])
		if !ok1 || !ok2 {
			return "", false
		}
		op := " AND "
		if fn == "_||_" {
			op = " OR "
		}
		return "(" + l + op + r + ")", true
	case "!_":
		if len(args) != 1 {
			return "", false
		}
		x, ok := t.expr(args[0])
		if !ok {
			return "", false
		}
		return "(NOT " + x + ")", true
	case "_==_", "_!=_", "_<_", "_<=_", "_>_", "_>=_":
		if len(args) != 2 {
			return "", false
		}
		return t.compare(fn, args[0], args[1])
	case "@in":
		if len(args) != 2 {
			return "", false
		}
		return t.in(args[0], args[1])
	case "_[_]":
		// row["active"] on its own.
		col, ok := column(e)
		if !ok || !t.fits(col, litBool, false) {
			return "", false
		}
		return ident(col)
	}
	return "", false
}

// flipped is the operator with its sides swapped: 1 < row.x is row.x > 1.
var flipped = map[string]string{"_==_": "_==_", "_!=_": "_!=_", "_<_": "_>_", "_<=_": "_>=_", "_>_": "_<_", "_>=_": "_<=_"}

var sqlOps = map[string]string{"_<_": "<", "_<=_": "<=", "_>_": ">", "_>=_": ">="}

func (t *translator) compare(fn string, a, b ast.Expr) (string, bool) {
	col, ok := column(a)
	lit := b
	if !ok {
		if col, ok = column(b); !ok {
			return "", false
		}
		lit, fn = a, flipped[fn]
	}
	if lit.Kind() != ast.LiteralKind {
		return "", false
	}
	text, kind, ok := literal(lit.AsLiteral())
	if !ok {
		return "", false
	}
	id, ok := ident(col)
	if !ok {
		return "", false
	}
	ordering := fn != "_==_" && fn != "_!=_"
	if kind == litNull {
		// row.x == null; an ordering with null fails always, which a
		// row filter has no way to say.
		switch fn {
		case "_==_":
			return id + " IS NULL", true
		case "_!=_":
			return id + " IS NOT NULL", true
		}
		return "", false
	}
	if !t.fits(col, kind, ordering) {
		return "", false
	}
	if kind == litString {
		// The expression compares strings by their bytes, which is the
		// C collation's order, whatever the column's collation.
		id += ` COLLATE "C"`
	}
	switch fn {
	case "_==_":
		// null == "a" is false in the expression, not NULL.
		return id + " IS NOT DISTINCT FROM " + text, true
	case "_!=_":
		return id + " IS DISTINCT FROM " + text, true
	}
	return id + " " + sqlOps[fn] + " " + text, true
}

func (t *translator) in(a, list ast.Expr) (string, bool) {
	col, ok := column(a)
	if !ok || list.Kind() != ast.ListKind {
		return "", false
	}
	id, ok := ident(col)
	if !ok {
		return "", false
	}
	var (
		items   []string
		kind    literalKind
		hasNull bool
	)
	for _, el := range list.AsList().Elements() {
		if el.Kind() != ast.LiteralKind {
			return "", false
		}
		text, k, ok := literal(el.AsLiteral())
		if !ok {
			return "", false
		}
		if k == litNull {
			hasNull = true
			continue
		}
		if kind != 0 && k != kind {
			return "", false // ["a", 1]: not one type
		}
		kind = k
		items = append(items, text)
	}
	if kind != 0 && !t.fits(col, kind, false) {
		return "", false
	}
	if kind == litString {
		id += ` COLLATE "C"`
	}
	// x in [...] is false for a NULL x in the expression (unless null is
	// in the list), never NULL.
	var parts []string
	if hasNull {
		parts = append(parts, column0(id)+" IS NULL")
	}
	if len(items) > 0 {
		parts = append(parts, "("+id+" IN ("+strings.Join(items, ", ")+")) IS TRUE")
	}
	switch len(parts) {
	case 0:
		return "false", true
	case 1:
		return "(" + parts[0] + ")", true
	}
	return "(" + strings.Join(parts, " OR ") + ")", true
}

// column0 is a quoted column without its COLLATE clause.
func column0(id string) string { return strings.TrimSuffix(id, ` COLLATE "C"`) }

// column is the column e reads, when it is row.x or row["x"].
func column(e ast.Expr) (string, bool) {
	isRow := func(e ast.Expr) bool { return e.Kind() == ast.IdentKind && e.AsIdent() == rowVar }
	switch e.Kind() {
	case ast.SelectKind:
		s := e.AsSelect()
		if !s.IsTestOnly() && isRow(s.Operand()) {
			return s.FieldName(), true
		}
	case ast.CallKind:
		c := e.AsCall()
		if c.FunctionName() == "_[_]" && len(c.Args()) == 2 && isRow(c.Args()[0]) && c.Args()[1].Kind() == ast.LiteralKind {
			if s, ok := c.Args()[1].AsLiteral().(types.String); ok {
				return string(s), true
			}
		}
	}
	return "", false
}

// ident quotes a column name as an SQL identifier, as pgx.Identifier does.
func ident(col string) (string, bool) {
	if col == "" || strings.ContainsRune(col, 0) {
		return "", false
	}
	return `"` + strings.ReplaceAll(col, `"`, `""`) + `"`, true
}

// literal writes a CEL literal as SQL.
func literal(v ref.Val) (string, literalKind, bool) {
	switch v := v.(type) {
	case types.Null:
		return "NULL", litNull, true
	case types.Bool:
		return strconv.FormatBool(bool(v)), litBool, true
	case types.Int:
		return strconv.FormatInt(int64(v), 10), litNumber, true
	case types.Uint:
		return strconv.FormatUint(uint64(v), 10), litNumber, true
	case types.Double:
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return "", 0, false
		}
		s := strconv.FormatFloat(f, 'g', -1, 64)
		if strings.HasPrefix(s, "-") {
			s = "(" + s + ")"
		}
		return s, litNumber, true
	case types.String:
		s := string(v)
		if strings.ContainsRune(s, 0) {
			return "", 0, false // text holds no NUL
		}
		q := "'" + strings.ReplaceAll(s, "'", "''") + "'"
		if strings.Contains(s, `\`) {
			// The same whatever standard_conforming_strings says.
			q = "E'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", "''") + "'"
		}
		return q, litString, true
	}
	return "", 0, false
}

// fits reports whether col's type compares with a literal of kind as the
// expression compares the column's JSON value with it.
func (t *translator) fits(col string, kind literalKind, ordering bool) bool {
	if t.types == nil {
		return true
	}
	typ, ok := t.types[col]
	if !ok {
		return false
	}
	typ = strings.ToLower(strings.TrimSpace(typ))
	if i := strings.IndexByte(typ, '('); i >= 0 {
		typ = strings.TrimSpace(typ[:i])
	}
	switch kind {
	case litString:
		switch typ {
		case "text", "character varying", "varchar":
			return true
		}
	case litNumber:
		switch typ {
		case "smallint", "integer", "bigint", "int2", "int4", "int8", "int":
			return true
		case "double precision", "float8":
			return !ordering
		}
	case litBool:
		return typ == "boolean" || typ == "bool"
	}
	return false
}
