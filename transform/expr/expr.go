// Package expr is the expression language of the mapping: row filters,
// computed tags and property expressions (docs/mapping.md, "Expressions").
// It is CEL (github.com/google/cel-go) over two variables, row (the new
// row image's columns, SQL NULL as null) and now (the event's commit
// time), with CEL's standard library, ext.Strings and three functions of
// our own: unix_seconds, days_since and a timestamp() that reads the
// connector's timestamp text.
//
// Its guarantee is the transform's: an expression is compiled and checked
// once, when the configuration loads, and evaluating it is pure and
// bounded. The same row and time always give the same value, and no
// expression runs longer than its cost limit. A column whose value the
// event does not carry (an unchanged TOAST value) is never guessed at: an
// expression whose result depends on it returns ErrUnknown.
package expr

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/env"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"

	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// Kind is what an expression is for, which decides the results it may
// give.
type Kind uint8

const (
	// Filter is a row filter: it gives true or false.
	Filter Kind = iota + 1
	// Scalar is a computed tag or a property: it gives a string, an int,
	// a double, a bool, or null (no value: the tag is deleted, the
	// property left out).
	Scalar
)

func (k Kind) String() string {
	switch k {
	case Filter:
		return "filter"
	case Scalar:
		return "value"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// CostLimit bounds the work of one evaluation, in CEL's cost units (about
// one per operation, and one per ten bytes a string function reads): an
// expression that would do more on a row fails on it instead of holding
// the pipeline up. A million units is some milliseconds of work, far above
// what a filter or a tag needs, even on a long string.
const CostLimit = 1_000_000

// ErrUnknown is returned by Eval when the result depends on a column whose
// value the event does not carry: an unchanged TOAST value of an update or
// a delete (event.Unavailable). The value is not known from this event,
// so the caller keeps what it had.
var ErrUnknown = errors.New("not known from this event: the expression reads a column whose unchanged value the event does not carry")

// ErrOversized is returned by Eval when the expression reads a column the
// connector left out of the event because its value was over the limit
// for an event (event.Oversized).
var ErrOversized = errors.New("the column's value was over the connector's limit for an event (256 KiB), and the event does not carry it")

// The names of the variables.
const (
	rowVar = "row"
	nowVar = "now"
)

// daysSinceFn is the function days_since(x) expands to, days_since(x, now):
// a name no one can write, so that the only way to it is the macro.
const daysSinceFn = "days_since@now"

// environment is the one CEL environment every expression compiles in.
// Building it takes milliseconds; it is safe for concurrent use.
var environment = func() *cel.Env {
	e, err := cel.NewCustomEnv(
		// The standard timestamp(string) reads RFC 3339 only; ours
		// reads the connector's text of dates and timestamps too.
		cel.StdLib(cel.StdLibSubset(&env.LibrarySubset{ExcludeFunctions: []*env.Function{
			{Name: "timestamp", Overloads: []*env.Overload{{ID: "string_to_timestamp"}}},
		}})),
		ext.Strings(),
		cel.Variable(rowVar, cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable(nowVar, cel.TimestampType),
		cel.CrossTypeNumericComparisons(true),
		cel.DefaultUTCTimeZone(true),
		cel.Macros(cel.GlobalMacro("days_since", 1, expandDaysSince)),
		functions(),
	)
	if err != nil {
		panic("expr: the CEL environment does not build: " + err.Error())
	}
	return e
}()

// expandDaysSince turns days_since(x) into days_since@now(x, now), so that
// the function reads the event's time without a clock of its own.
func expandDaysSince(eh cel.MacroExprFactory, _ ast.Expr, args []ast.Expr) (ast.Expr, *cel.Error) {
	return eh.NewCall(daysSinceFn, args[0], eh.NewIdent(nowVar)), nil
}

// Program is a compiled expression. It is safe for concurrent use.
type Program struct {
	src     string
	kind    Kind
	prg     cel.Program
	ast     *ast.AST
	columns []string
}

// Source returns the expression as it was written.
func (p *Program) Source() string { return p.src }

// Kind returns what the expression was compiled for.
func (p *Program) Kind() Kind { return p.kind }

// Columns returns the columns the expression reads (row.x, row["x"] and
// has(row.x)), sorted, each once.
func (p *Program) Columns() []string { return append([]string(nil), p.columns...) }

// Compile parses and type-checks src as an expression of kind. Its error,
// an *Error, says where in src the problem is and what to write instead.
func Compile(src string, kind Kind) (*Program, error) {
	if kind != Filter && kind != Scalar {
		return nil, fmt.Errorf("expr: compile: unknown kind %d", kind)
	}
	if strings.TrimSpace(src) == "" {
		return nil, &Error{Line: 1, Column: 1, Msg: "the expression is empty: " + emptyHint(kind)}
	}
	parsed, iss := environment.Parse(src)
	if iss.Err() != nil {
		return nil, compileError(src, iss.Errors())
	}
	nullableBranches(parsed.NativeRep())
	checked, iss := environment.Check(parsed)
	if iss.Err() != nil {
		return nil, compileError(src, iss.Errors())
	}
	a := checked.NativeRep()
	cols, err := inspect(a)
	if err != nil {
		return nil, err
	}
	if err := checkResult(a, kind); err != nil {
		return nil, err
	}
	prg, err := environment.Program(checked,
		cel.EvalOptions(cel.OptOptimize),
		cel.CostLimit(CostLimit),
	)
	if err != nil {
		return nil, &Error{Line: 1, Column: 1, Msg: "the expression cannot be prepared: " + err.Error()}
	}
	return &Program{src: src, kind: kind, prg: prg, ast: a, columns: cols}, nil
}

func emptyHint(kind Kind) string {
	if kind == Filter {
		return `write a condition over the row, such as row.deleted_at == null, or remove the setting`
	}
	return `write a value over the row, such as row.first_name + " " + row.last_name, or remove the setting`
}

// nullableBranches lets a conditional give a value or null, the way a tag
// is deleted (cond ? "x" : null): CEL's checker wants both branches of one
// type, so the branch beside a null literal is made dyn. The result's type
// is still checked branch by branch (checkResult).
func nullableBranches(a *ast.AST) {
	var next int64
	for id := range a.IDs() {
		next = max(next, id)
	}
	fac := ast.NewExprFactory()
	info := a.SourceInfo()
	ast.PostOrderVisit(a.Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		if e.Kind() != ast.CallKind || e.AsCall().FunctionName() != "_?_:_" {
			return
		}
		args := e.AsCall().Args()
		if len(args) != 3 {
			return
		}
		// args: the condition, then the branches at 1 and 2.
		for _, pair := range [][2]int{{1, 2}, {2, 1}} {
			branch, other := pair[0], pair[1]
			if isNull(args[other]) && !isNull(args[branch]) {
				next++
				if r, ok := info.GetOffsetRange(args[branch].ID()); ok {
					info.SetOffsetRange(next, r)
				}
				args[branch] = fac.NewCall(next, dynWrapper, args[branch])
			}
		}
	}))
}

// dynWrapper is the function nullableBranches wraps a branch in.
const dynWrapper = "dyn"

func isNull(e ast.Expr) bool {
	return e.Kind() == ast.LiteralKind && e.AsLiteral() == types.NullValue
}

// Eval evaluates the expression over row, a new row image as the
// connector writes it, at now, the event's commit time. A Filter gives a
// bool Value. It returns ErrUnknown when the result depends on a value the
// event does not carry, ErrOversized when it reads a value left out for
// its size, and an *EvalError for anything else that goes wrong on this
// row (a NULL the expression does not handle, a column of another type
// than it expects, a missing column).
func (p *Program) Eval(row event.Row, now time.Time) (Value, error) {
	out, _, err := p.prg.Eval(&activation{row: newRow(row), now: types.Timestamp{Time: now.UTC()}})
	if err != nil {
		if errors.Is(err, ErrUnknown) || errors.Is(err, ErrOversized) {
			return Value{}, err
		}
		return Value{}, p.evalError(out, err)
	}
	switch v := out.(type) {
	case *types.Unknown:
		return Value{}, ErrUnknown
	case *types.Err:
		if errors.Is(v, ErrOversized) {
			return Value{}, ErrOversized
		}
		return Value{}, p.evalError(out, v)
	}
	val, reason := fromCEL(out)
	if reason != "" {
		return Value{}, &EvalError{Pos: Pos{1, 1}, Snippet: p.src, Reason: "gives " + reason + ": " + resultHint(p.kind)}
	}
	if p.kind == Filter && val.kind != Bool {
		if val.kind == Null {
			return Value{}, &EvalError{Pos: Pos{1, 1}, Snippet: p.src, Reason: "gives null, and a filter must give true or false: compare the column, e.g. row.active == true"}
		}
		return Value{}, &EvalError{Pos: Pos{1, 1}, Snippet: p.src, Reason: "gives " + val.describe() + ", and a filter must give true or false"}
	}
	return val, nil
}

// Match evaluates a Filter: whether the row passes.
func (p *Program) Match(row event.Row, now time.Time) (bool, error) {
	v, err := p.Eval(row, now)
	if err != nil {
		return false, err
	}
	return v.b, nil
}

// activation gives the interpreter the two variables, without the map an
// activation of cel's own would allocate per evaluation.
type activation struct {
	row *rowMap
	now types.Timestamp
}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case rowVar:
		return a.row, true
	case nowVar:
		return a.now, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }
