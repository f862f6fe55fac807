package expr

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"

	"github.com/onesignal-cdc/onesignal-cdc/internal/suggest"
)

// Pos is a place in an expression: its line and column (in characters),
// both from 1.
type Pos struct{ Line, Column int }

func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Line, p.Column) }

// Error is an expression that does not compile: where, and what to write
// instead. The configuration adds the YAML line of the setting.
type Error struct {
	Line, Column int
	Msg          string
}

func (e *Error) Error() string { return fmt.Sprintf("%d:%d: %s", e.Line, e.Column, e.Msg) }

// EvalError is an expression that fails on a row: where in the
// expression, the part of it that failed, and why.
type EvalError struct {
	Pos     Pos
	Snippet string // the failing part of the expression, as written
	Reason  string
}

func (e *EvalError) Error() string {
	if e.Snippet == "" {
		return fmt.Sprintf("%v: %s", e.Pos, e.Reason)
	}
	return fmt.Sprintf("%v: %s %s", e.Pos, e.Snippet, e.Reason)
}

// evalError words an error of cel's interpreter; out is the result it
// gave with it, which for an error carries the node that failed.
func (p *Program) evalError(out ref.Val, err error) error {
	if strings.Contains(err.Error(), "cost limit exceeded") {
		return &EvalError{Pos: Pos{1, 1}, Reason: fmt.Sprintf("does more work on this row than an expression may (cost limit %d): "+
			"it loops over a long list or string; make it do less, or filter the row first", CostLimit)}
	}
	id := int64(0)
	if e, ok := out.(*types.Err); ok {
		id = e.NodeID()
	}
	if e, ok := errors.AsType[*types.Err](err); ok && id == 0 {
		id = e.NodeID()
	}
	pos, snippet := p.place(id)
	return &EvalError{Pos: pos, Snippet: snippet, Reason: runtimeReason(p.nodeName(id), p.readsRow(id), err.Error())}
}

// place is the position of node id and its text in the source.
func (p *Program) place(id int64) (Pos, string) {
	if id == 0 || p.ast == nil {
		return Pos{1, 1}, ""
	}
	return startOf(p.ast, id), p.text(id)
}

// text is the source of node id and everything below it.
func (p *Program) text(id int64) string {
	lo, hi := span(p.ast, id)
	runes := []rune(p.src)
	if lo < 0 || lo >= len(runes) {
		return ""
	}
	return strings.TrimSpace(string(runes[lo:extend(runes, lo, hi)]))
}

// span is the offsets of the source of node id and everything below it,
// as far as cel's offsets go: a field's offset is its dot, and a call's
// ends before its closing parenthesis (extend finds the rest).
func span(a *ast.AST, id int64) (lo, hi int) {
	info := a.SourceInfo()
	lo, hi = -1, -1
	ast.PostOrderVisit(findExpr(a.Expr(), id), ast.NewExprVisitor(func(e ast.Expr) {
		if r, ok := info.GetOffsetRange(e.ID()); ok {
			if lo < 0 || int(r.Start) < lo {
				lo = int(r.Start)
			}
			hi = max(hi, int(r.Stop))
		}
	}))
	return lo, hi
}

// extend moves the end of a snippet past the name it is in and the
// brackets it leaves open.
func extend(src []rune, lo, hi int) int {
	hi = min(max(hi, lo), len(src))
	depth := 0
	for _, r := range src[lo:hi] {
		depth += bracket(r)
	}
	for hi < len(src) {
		r := src[hi]
		if r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || depth > 0 {
			depth += bracket(r)
			hi++
			continue
		}
		break
	}
	return hi
}

func bracket(r rune) int {
	switch r {
	case '(', '[', '{':
		return 1
	case ')', ']', '}':
		return -1
	}
	return 0
}

func findExpr(root ast.Expr, id int64) ast.Expr {
	var found ast.Expr = root
	ast.PostOrderVisit(root, ast.NewExprVisitor(func(e ast.Expr) {
		if e.ID() == id {
			found = e
		}
	}))
	return found
}

// nodeName is the operator or function at node id, as written.
func (p *Program) nodeName(id int64) string {
	if id == 0 || p.ast == nil {
		return ""
	}
	e := findExpr(p.ast.Expr(), id)
	if e.Kind() == ast.CallKind {
		return operatorName(e.AsCall().FunctionName())
	}
	return ""
}

// readsRow reports whether node id reads a column of row: row.x or row["x"].
func (p *Program) readsRow(id int64) bool {
	if id == 0 || p.ast == nil {
		return false
	}
	e := findExpr(p.ast.Expr(), id)
	isRow := func(e ast.Expr) bool { return e.Kind() == ast.IdentKind && e.AsIdent() == rowVar }
	switch e.Kind() {
	case ast.SelectKind:
		return isRow(e.AsSelect().Operand())
	case ast.CallKind:
		c := e.AsCall()
		return c.FunctionName() == "_[_]" && len(c.Args()) == 2 && isRow(c.Args()[0])
	}
	return false
}

var operators = map[string]string{
	"_==_": "==", "_!=_": "!=", "_<_": "<", "_<=_": "<=", "_>_": ">", "_>=_": ">=",
	"_+_": "+", "_-_": "-", "_*_": "*", "_/_": "/", "_%_": "%", "-_": "-",
	"_&&_": "&&", "_||_": "||", "!_": "!", "@in": "in", "_[_]": "[…]", "_?_:_": "? :",
	daysSinceFn: "days_since",
}

func operatorName(fn string) string {
	if op, ok := operators[fn]; ok {
		return op
	}
	return fn
}

// runtimeReason words a failure on a row.
func runtimeReason(op string, onRow bool, msg string) string {
	switch {
	case strings.Contains(msg, "no such overload"):
		if op == "" {
			return "fails on this row: an operator or function was given a value it does not take (a NULL, or a column of another type than the expression expects)"
		}
		return "fails on this row: " + op + " was given a value it does not take (a NULL, or a column of another type than the expression expects)"
	case strings.HasPrefix(msg, "no such key") && onRow:
		return "fails on this row: the row has no column " + strconv.Quote(strings.TrimPrefix(msg, "no such key: ")) +
			": the table has no such column, or the publication does not carry it"
	case strings.HasPrefix(msg, "no such key"):
		return "fails on this row: " + msg + " (a JSON object without that key: test it first with has(…))"
	case strings.HasPrefix(msg, "the row has no column"):
		return "fails on this row: " + msg
	}
	return "fails on this row: " + msg
}

// compileError words cel's first issue (the later ones mostly follow
// from it) with a fix.
func compileError(src string, errs []*cel.Error) error {
	if len(errs) == 0 {
		return &Error{Line: 1, Column: 1, Msg: "the expression does not compile"}
	}
	e := errs[0]
	line, col := e.Location.Line(), e.Location.Column()+1
	if line < 1 {
		line, col = 1, 1
	}
	return &Error{Line: line, Column: col, Msg: explain(src, e.Message)}
}

var (
	undeclared   = regexp.MustCompile(`^undeclared reference to '([^']*)'`)
	expectedType = regexp.MustCompile(`^expected type '([^']*)' but found '([^']*)'`)
	noOverload   = regexp.MustCompile(`^found no matching overload for '([^']*)' applied to '\((.*)\)'`)
	sqlIsNull    = regexp.MustCompile(`(?i)\bis\s+(not\s+)?null\b`)
	sqlBool      = regexp.MustCompile(`\b(AND|OR|NOT)\b|\b(and|or|not)\s`)
	sqlIn        = regexp.MustCompile(`(?i)\bin\s*\(`)
	singleEq     = regexp.MustCompile(`(^|[^=!<>])=($|[^=])`)
	callOf       = regexp.MustCompile(`\b([A-Za-z_][A-Za-z_0-9]*)\s*\(`)
)

// otherNames are what people write from SQL or other languages, and what
// to write instead.
var otherNames = map[string]string{
	"lower": "row.x.lowerAscii()", "upper": "row.x.upperAscii()", "len": "size(row.x)", "length": "size(row.x)",
	"coalesce": `row.x != null ? row.x : "default"`, "ifnull": `row.x != null ? row.x : "default"`,
	"concat": `row.a + " " + row.b`, "substr": "row.x.substring(0, 3)", "now": "now (a variable, no parentheses)",
	"date": "timestamp(row.x)", "to_timestamp": "timestamp(row.x)", "strlen": "size(row.x)", "trim": "row.x.trim()",
	"replace": `row.x.replace("a", "b")`, "split": `row.x.split(",")`, "contains": `row.x.contains("a")`,
	"str": "string(row.x)", "float": "double(row.x)", "round": "math is not there: int(row.x) truncates",
}

// explain adds to one of cel's compile messages what to write instead.
func explain(src, msg string) string {
	if strings.HasPrefix(msg, "Syntax error") {
		return msg + ": " + syntaxHint(src)
	}
	if m := undeclared.FindStringSubmatch(msg); m != nil {
		name := m[1]
		if isCalled(src, name) {
			if name == "days_since" {
				return "days_since takes one value: days_since(row.created_at)"
			}
			if alt, ok := otherNames[name]; ok {
				return fmt.Sprintf("%s is not a function here: write %s", name, alt)
			}
			hint := ""
			if near, ok := suggest.Closest(name, functionNames()); ok {
				hint = fmt.Sprintf(": did you mean %s?", near)
			}
			return fmt.Sprintf("%s is not a function%s (docs/mapping.md, Expressions, lists them)", name, hint)
		}
		return fmt.Sprintf("%s is not a variable: the variables are row, the row's columns (write row.%s for column %q), and now, the event's time", name, name, name)
	}
	if m := noOverload.FindStringSubmatch(msg); m != nil {
		fn, args := operatorName(m[1]), readableTypes(m[2])
		if m[1] == daysSinceFn {
			args = strings.TrimSuffix(args, ", timestamp")
		}
		switch m[1] {
		case "_?_:_":
			branches := splitTypes(args)
			if len(branches) == 3 {
				branches = branches[1:]
			}
			return fmt.Sprintf("the two branches of ? : give different types (%s): make them one type, e.g. with string(…) or int(…)",
				strings.Join(branches, ", "))
		case "_&&_", "_||_", "!_":
			return fmt.Sprintf("%s takes true or false, not (%s): compare the value, e.g. row.x == \"yes\" or row.n > 0", fn, args)
		case "unix_seconds", daysSinceFn:
			return fmt.Sprintf("%s takes a timestamp, a date or timestamp string, or a number of Unix seconds, not %s", fn, args)
		case "_==_", "_!=_", "_<_", "_<=_", "_>_", "_>=_":
			return fmt.Sprintf("%s cannot compare %s: convert one side, e.g. int(row.x), double(row.x) or string(row.x)", fn, strings.ReplaceAll(args, ", ", " with "))
		}
		return fmt.Sprintf("%s does not take (%s): convert the values, e.g. int(row.x), double(row.x) or string(row.x)", fn, args)
	}
	if m := expectedType.FindStringSubmatch(msg); m != nil {
		want, found := readableTypes(m[1]), readableTypes(m[2])
		if want == "bool" {
			return fmt.Sprintf("this is %s where true or false is needed: compare it, e.g. row.x == \"yes\" or row.n > 0", describeType(found))
		}
		return fmt.Sprintf("this is %s where %s is needed: convert it, e.g. %s(…)", describeType(found), describeType(want), want)
	}
	return msg
}

// splitTypes splits a list of type names at its top-level commas:
// "bool, map(string, int)" is two.
func splitTypes(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, r := range s {
		switch r {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	return append(out, strings.TrimSpace(s[start:]))
}

func isCalled(src, name string) bool {
	for _, m := range callOf.FindAllStringSubmatch(src, -1) {
		if m[1] == name {
			return true
		}
	}
	return false
}

// functionNames are the functions an expression may call.
func functionNames() []string {
	var names []string
	for name := range environment.Functions() {
		if !strings.ContainsAny(name, "_@") || name == "unix_seconds" {
			names = append(names, name)
		}
	}
	names = append(names, "days_since", "has")
	sort.Strings(names)
	return names
}

// readableTypes turns cel's type names in a message into ours.
func readableTypes(s string) string {
	r := strings.NewReplacer("google.protobuf.Timestamp", "timestamp", "google.protobuf.Duration", "duration", "null_type", "null")
	return r.Replace(s)
}

// syntaxHint guesses, from SQL habits, what the expression meant.
func syntaxHint(src string) string {
	var hints []string
	if sqlIsNull.MatchString(src) {
		hints = append(hints, "write row.x == null for IS NULL and row.x != null for IS NOT NULL")
	}
	if sqlBool.MatchString(src) {
		hints = append(hints, "write && for AND, || for OR and ! for NOT")
	}
	if strings.Contains(src, "<>") {
		hints = append(hints, "write != for <>")
	}
	if sqlIn.MatchString(src) {
		hints = append(hints, `write a list in brackets: row.x in ["a", "b"]`)
	}
	if singleEq.MatchString(src) {
		hints = append(hints, "write == to compare")
	}
	if len(hints) == 0 {
		return `check the expression against docs/mapping.md (Expressions): strings go in quotes ("pro" or 'pro'), columns are row.name, and in YAML an expression that starts with a quote or holds ": " goes in single quotes as a whole`
	}
	return "this is CEL, not SQL: " + strings.Join(hints, "; ")
}

// inspect checks how the expression uses row, now and map literals, and
// returns the columns it reads. Reading row one column at a time is what
// lets Columns name every column (for the publication's column lists and
// the catalog checks); a map literal may only be looked up, because the
// order in which cel iterates one is random.
func inspect(a *ast.AST) ([]string, error) {
	errAt := func(id int64, msg string) error {
		p := startOf(a, id)
		return &Error{Line: p.Line, Column: p.Column, Msg: msg}
	}
	cols := map[string]bool{}
	var walk func(e ast.Expr, rowOK, mapOK bool) error
	walk = func(e ast.Expr, rowOK, mapOK bool) error {
		switch e.Kind() {
		case ast.IdentKind:
			if e.AsIdent() == rowVar && !rowOK {
				return errAt(e.ID(), `row is read one column at a time: write row.name or row["name"] (has(row.name) tests for a column), so that the column is known when the configuration loads`)
			}
		case ast.SelectKind:
			s := e.AsSelect()
			if s.Operand().Kind() == ast.IdentKind && s.Operand().AsIdent() == rowVar {
				cols[s.FieldName()] = true
				return nil
			}
			return walk(s.Operand(), false, true)
		case ast.CallKind:
			c := e.AsCall()
			args := c.Args()
			if c.FunctionName() == "_[_]" && len(args) == 2 && args[0].Kind() == ast.IdentKind && args[0].AsIdent() == rowVar {
				k := args[1]
				if k.Kind() != ast.LiteralKind {
					return errAt(k.ID(), `row["…"] takes a column name in quotes, not a computed one, so that the column is known when the configuration loads`)
				}
				name, ok := k.AsLiteral().(types.String)
				if !ok {
					return errAt(k.ID(), `row["…"] takes a column name in quotes`)
				}
				cols[string(name)] = true
				return nil
			}
			if c.IsMemberFunction() {
				if err := walk(c.Target(), false, false); err != nil {
					return err
				}
			}
			for i, arg := range args {
				lookup := (c.FunctionName() == "_[_]" && i == 0) || (c.FunctionName() == "@in" && i == 1)
				if err := walk(arg, false, lookup); err != nil {
					return err
				}
			}
		case ast.ComprehensionKind:
			c := e.AsComprehension()
			for _, v := range []string{c.IterVar(), c.IterVar2()} {
				if v == rowVar || v == nowVar {
					return errAt(e.ID(), fmt.Sprintf("%s names a variable of the expression already: call the loop's variable something else, e.g. x", v))
				}
			}
			for _, sub := range []ast.Expr{c.IterRange(), c.AccuInit(), c.LoopCondition(), c.LoopStep(), c.Result()} {
				if err := walk(sub, false, false); err != nil {
					return err
				}
			}
		case ast.ListKind:
			for _, el := range e.AsList().Elements() {
				if err := walk(el, false, false); err != nil {
					return err
				}
			}
		case ast.MapKind:
			if !mapOK {
				return errAt(e.ID(), `a map literal can only be looked up here, as in {"us": "United States"}[row.country] or row.x in {"a": true}`)
			}
			for _, entry := range e.AsMap().Entries() {
				me := entry.AsMapEntry()
				if err := walk(me.Key(), false, false); err != nil {
					return err
				}
				if err := walk(me.Value(), false, false); err != nil {
					return err
				}
			}
		case ast.StructKind:
			for _, f := range e.AsStruct().Fields() {
				if err := walk(f.AsStructField().Value(), false, false); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(a.Expr(), false, false); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(cols))
	for c := range cols {
		out = append(out, c)
	}
	sort.Strings(out)
	return out, nil
}

// checkResult refuses an expression whose type cannot be what kind needs.
// A conditional's branches are checked one by one: with a null beside it
// a branch is dyn to cel (nullableBranches), but its own type is known.
func checkResult(a *ast.AST, kind Kind) error {
	var leaves []ast.Expr
	var collect func(e ast.Expr)
	collect = func(e ast.Expr) {
		if e.Kind() == ast.CallKind {
			c := e.AsCall()
			switch {
			case c.FunctionName() == "_?_:_" && len(c.Args()) == 3:
				collect(c.Args()[1])
				collect(c.Args()[2])
				return
			case c.FunctionName() == dynWrapper && len(c.Args()) == 1 && !c.IsMemberFunction():
				collect(c.Args()[0])
				return
			}
		}
		leaves = append(leaves, e)
	}
	collect(a.Expr())
	for _, e := range leaves {
		t := a.GetType(e.ID())
		if t == nil {
			continue
		}
		ok := false
		switch t.Kind() {
		case types.DynKind, types.AnyKind, types.BoolKind:
			ok = true
		case types.IntKind, types.UintKind, types.DoubleKind, types.StringKind, types.NullTypeKind:
			ok = kind == Scalar
		}
		if ok {
			continue
		}
		p := startOf(a, e.ID())
		what := describeType(typeName(t))
		if kind == Filter {
			fix := `compare it, e.g. row.plan == "pro", row.score > 10 or row.deleted_at == null`
			if t.Kind() == types.NullTypeKind {
				what = "null"
			}
			return &Error{Line: p.Line, Column: p.Column, Msg: fmt.Sprintf("this gives %s, and a filter must give true or false: %s", what, fix)}
		}
		return &Error{Line: p.Line, Column: p.Column, Msg: fmt.Sprintf("this gives %s: %s", what, resultHint(kind))}
	}
	return nil
}

// startOf is where the source of node id begins.
func startOf(a *ast.AST, id int64) Pos {
	lo, _ := span(a, id)
	if lo < 0 {
		return Pos{1, 1}
	}
	loc, ok := a.SourceInfo().GetLocationByOffset(int32(lo)), true
	if !ok || loc.Line() < 1 {
		return Pos{1, 1}
	}
	return Pos{Line: loc.Line(), Column: loc.Column() + 1}
}

func typeName(t *types.Type) string {
	switch t.Kind() {
	case types.ListKind:
		return "list"
	case types.MapKind:
		return "map"
	case types.TimestampKind:
		return "timestamp"
	case types.DurationKind:
		return "duration"
	case types.BytesKind:
		return "bytes"
	case types.TypeKind:
		return "type"
	case types.IntKind:
		return "int"
	case types.UintKind:
		return "uint"
	case types.DoubleKind:
		return "double"
	case types.StringKind:
		return "string"
	}
	return t.String()
}
