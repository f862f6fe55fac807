package expr

import (
	"math"
	"strconv"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
)

// ValueKind is the type of a Value.
type ValueKind uint8

// The types an expression gives.
const (
	Null ValueKind = iota
	Bool
	Int
	Double
	String
)

// Value is what an expression gave: null, a bool, an int, a double or a
// string. The zero Value is null.
type Value struct {
	kind ValueKind
	b    bool
	i    int64
	f    float64
	s    string
}

// NullValue, BoolValue, IntValue, DoubleValue and StringValue make Values,
// for tests and for callers that compare results.
func NullValue() Value                  { return Value{} }
func BoolValue(b bool) Value            { return Value{kind: Bool, b: b} }
func IntValue(i int64) Value            { return Value{kind: Int, i: i} }
func DoubleValue(f float64) Value       { return Value{kind: Double, f: f} }
func StringValue(s string) Value        { return Value{kind: String, s: s} }
func (v Value) Kind() ValueKind         { return v.kind }
func (v Value) IsNull() bool            { return v.kind == Null }
func (v Value) Bool() (bool, bool)      { return v.b, v.kind == Bool }
func (v Value) Int() (int64, bool)      { return v.i, v.kind == Int }
func (v Value) Double() (float64, bool) { return v.f, v.kind == Double }

// Str returns a String value's text.
func (v Value) Str() (string, bool) { return v.s, v.kind == String }

// Number returns an Int or a Double as a float64.
func (v Value) Number() (float64, bool) {
	switch v.kind {
	case Int:
		return float64(v.i), true
	case Double:
		return v.f, true
	}
	return 0, false
}

// Any returns the value as Go's nil, bool, int64, float64 or string.
func (v Value) Any() any {
	switch v.kind {
	case Bool:
		return v.b
	case Int:
		return v.i
	case Double:
		return v.f
	case String:
		return v.s
	}
	return nil
}

// Tag renders the value as a data tag, the way column tags are rendered:
// strings as they are, numbers as PostgreSQL writes them (2, 2.5, 1e+21),
// booleans as "true" and "false", and null as "" (which deletes the tag).
func (v Value) Tag() string {
	switch v.kind {
	case Bool:
		return strconv.FormatBool(v.b)
	case Int:
		return strconv.FormatInt(v.i, 10)
	case Double:
		return formatDouble(v.f)
	case String:
		return v.s
	}
	return ""
}

// String shows the value as an expression would write it, for messages.
func (v Value) String() string {
	switch v.kind {
	case String:
		return strconv.Quote(v.s)
	case Null:
		return "null"
	}
	return v.Tag()
}

func (v Value) describe() string {
	switch v.kind {
	case Null:
		return "null"
	case Bool:
		return "a bool (" + v.Tag() + ")"
	case Int:
		return "an int (" + v.Tag() + ")"
	case Double:
		return "a double (" + v.Tag() + ")"
	}
	return "a string (" + strconv.Quote(v.s) + ")"
}

// formatDouble writes f as PostgreSQL writes a double precision: the
// shortest digits that read back as f, in plain notation from 1e-4 up to
// 1e15 and with an exponent beyond ("1e+21", "1.5e-07"), NaN and the
// infinities by name. A whole number has no fraction: 6.0 is "6".
func formatDouble(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case f == 0:
		return "0" // -0 too, as a tag
	}
	if a := math.Abs(f); a >= 1e-4 && a < 1e15 {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'e', -1, 64)
}

// fromCEL turns an expression's result into a Value, or says what it is
// when it is none of the types a Value holds.
func fromCEL(v ref.Val) (Value, string) {
	switch v := v.(type) {
	case types.Null:
		return Value{}, ""
	case types.Bool:
		return BoolValue(bool(v)), ""
	case types.Int:
		return IntValue(int64(v)), ""
	case types.Uint:
		if v <= math.MaxInt64 {
			return IntValue(int64(v)), ""
		}
		return DoubleValue(float64(v)), ""
	case types.Double:
		return DoubleValue(float64(v)), ""
	case types.String:
		return StringValue(string(v)), ""
	}
	return Value{}, describeType(v.Type().TypeName())
}

// describeType names a CEL type in a sentence.
func describeType(name string) string {
	switch name {
	case "list":
		return "a list"
	case "map":
		return "a map"
	case "google.protobuf.Timestamp", "timestamp":
		return "a timestamp"
	case "google.protobuf.Duration", "duration":
		return "a duration"
	case "bytes":
		return "bytes"
	case "type":
		return "a type"
	case "optional_type":
		return "an optional"
	case "int", "uint":
		return "an " + name
	case "null_type":
		return "null"
	}
	return "a " + name
}

// resultHint says what a kind of expression must give, and how to get there.
func resultHint(kind Kind) string {
	if kind == Filter {
		return "a filter must give true or false"
	}
	return "a tag or property takes a string, a number, true or false, or null: " +
		"write unix_seconds(…) for a timestamp's Unix seconds, string(…) for its text, " +
		"d.getSeconds() for a duration's seconds, or .join(\",\") for a list of strings"
}
