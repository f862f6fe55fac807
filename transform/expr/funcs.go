package expr

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
)

// functions declares our functions: unix_seconds, days_since (through its
// macro) and timestamp of the connector's text.
func functions() cel.EnvOption {
	return func(e *cel.Env) (*cel.Env, error) {
		return e.Extend(
			cel.Function("unix_seconds",
				cel.Overload("unix_seconds_timestamp", []*cel.Type{cel.TimestampType}, cel.IntType, cel.UnaryBinding(unixSecondsOf)),
				cel.Overload("unix_seconds_string", []*cel.Type{cel.StringType}, cel.IntType, cel.UnaryBinding(unixSecondsOf)),
				cel.Overload("unix_seconds_int", []*cel.Type{cel.IntType}, cel.IntType, cel.UnaryBinding(unixSecondsOf)),
				cel.Overload("unix_seconds_double", []*cel.Type{cel.DoubleType}, cel.IntType, cel.UnaryBinding(unixSecondsOf)),
				cel.Overload("unix_seconds_null", []*cel.Type{cel.NullType}, cel.NullType, cel.UnaryBinding(unixSecondsOf)),
			),
			cel.Function(daysSinceFn,
				cel.Overload("days_since_timestamp", []*cel.Type{cel.TimestampType, cel.TimestampType}, cel.IntType, cel.BinaryBinding(daysSince)),
				cel.Overload("days_since_string", []*cel.Type{cel.StringType, cel.TimestampType}, cel.IntType, cel.BinaryBinding(daysSince)),
				cel.Overload("days_since_int", []*cel.Type{cel.IntType, cel.TimestampType}, cel.IntType, cel.BinaryBinding(daysSince)),
				cel.Overload("days_since_double", []*cel.Type{cel.DoubleType, cel.TimestampType}, cel.IntType, cel.BinaryBinding(daysSince)),
				cel.Overload("days_since_null", []*cel.Type{cel.NullType, cel.TimestampType}, cel.NullType, cel.BinaryBinding(daysSince)),
			),
			cel.Function("timestamp",
				cel.Overload("string_to_timestamp_connector", []*cel.Type{cel.StringType}, cel.TimestampType, cel.UnaryBinding(func(v ref.Val) ref.Val {
					t, err := parseTime(string(v.(types.String)))
					if err != nil {
						return types.NewErr("timestamp: %v", err)
					}
					return types.Timestamp{Time: t}
				})),
			),
		)
	}
}

// The range of CEL's timestamps, years 1 to 9999.
var (
	minTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
)

// layouts are the texts of dates and timestamps the connector writes
// (docs/events.md): timestamptz in UTC with a Z, timestamp without a zone
// (taken as UTC), date; then RFC 3339 with any offset, and PostgreSQL's own
// text with a space, for values that reach the row as text.
var layouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z07",
	"2006-01-02 15:04:05.999999999",
}

// parseTime reads a date or timestamp as the connector writes them.
func parseTime(s string) (time.Time, error) {
	for _, layout := range layouts {
		if t, err := time.Parse(layout, s); err == nil {
			t = t.UTC()
			if t.Before(minTime) || t.After(maxTime) {
				return time.Time{}, fmt.Errorf("%q is outside the years 1 to 9999", s)
			}
			return t, nil
		}
	}
	switch strings.ToLower(s) {
	case "infinity", "-infinity":
		return time.Time{}, fmt.Errorf("%q is PostgreSQL's %s, which is no point in time: test for it first, e.g. row.x == %q ? null : …", s, strings.ToLower(s), s)
	}
	return time.Time{}, fmt.Errorf("%q is not a date or timestamp as the connector writes them (2024-05-01, 2024-05-01T12:00:00, 2024-05-01T10:00:00Z)", s)
}

// toTime reads x, a timestamp, a date or timestamp string, or a number of
// Unix seconds, as a time; isNull when x is null.
func toTime(fn string, x ref.Val) (t time.Time, isNull bool, err error) {
	switch v := x.(type) {
	case types.Null:
		return time.Time{}, true, nil
	case types.Timestamp:
		return v.Time, false, nil
	case types.String:
		s := string(v)
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return fromSeconds(fn, i) // a numeric column, as text
		}
		t, err := parseTime(s)
		if err != nil {
			return time.Time{}, false, fmt.Errorf("%s: %w", fn, err)
		}
		return t, false, nil
	case types.Int:
		return fromSeconds(fn, int64(v))
	case types.Double:
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) || f < float64(minTime.Unix()) || f > float64(maxTime.Unix()) {
			return time.Time{}, false, fmt.Errorf("%s: %s is not a number of Unix seconds from the year 1 to 9999", fn, formatDouble(f))
		}
		sec := math.Floor(f)
		return time.Unix(int64(sec), int64((f-sec)*1e9)).UTC(), false, nil
	}
	return time.Time{}, false, fmt.Errorf("%s takes a timestamp, a date or timestamp string, or a number of Unix seconds, not %s", fn, describeType(x.Type().TypeName()))
}

func fromSeconds(fn string, s int64) (time.Time, bool, error) {
	if s < minTime.Unix() || s > maxTime.Unix() {
		return time.Time{}, false, fmt.Errorf("%s: %d is not a number of Unix seconds from the year 1 to 9999", fn, s)
	}
	return time.Unix(s, 0).UTC(), false, nil
}

// unixSecondsOf is unix_seconds(x): x's seconds since 1970-01-01 UTC,
// rounded down; null stays null.
func unixSecondsOf(x ref.Val) ref.Val {
	if i, ok := x.(types.Int); ok {
		return i
	}
	t, isNull, err := toTime("unix_seconds", x)
	switch {
	case err != nil:
		return types.WrapErr(err)
	case isNull:
		return types.NullValue
	}
	return types.Int(t.Unix())
}

// daysSince is days_since(x) at now: the whole days from x to now, rounded
// down (negative when x is after now); null stays null.
func daysSince(x, now ref.Val) ref.Val {
	t, isNull, err := toTime("days_since", x)
	switch {
	case err != nil:
		return types.WrapErr(err)
	case isNull:
		return types.NullValue
	}
	n := now.(types.Timestamp).Time
	secs := n.Unix() - t.Unix()
	if n.Nanosecond() < t.Nanosecond() {
		secs-- // a second not yet whole
	}
	days := secs / 86400
	if secs%86400 < 0 {
		days--
	}
	return types.Int(days)
}
