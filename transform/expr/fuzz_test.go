package expr

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// FuzzCompileEval: no source, however broken, makes Compile panic; no row
// makes Eval panic; and the same row at the same time gives the same
// value or the same error, twice (an expression is pure). SQL does not
// panic either.
func FuzzCompileEval(f *testing.F) {
	for _, s := range []struct{ src, row string }{
		{`row.plan == "pro" && row.deleted_at == null`, `{"plan": "pro", "deleted_at": null}`},
		{`row.score > 100 ? "vip" : null`, `{"score": 120}`},
		{`days_since(row.created_at)`, `{"created_at": "2024-05-01T12:00:00Z"}`},
		{`unix_seconds(row.d) + 1`, `{"d": "2024-05-01"}`},
		{`row.j.map(k, k).join(",")`, `{"j": {"b": 1, "a": [1, 2.5, null, {"x": true}]}}`},
		{`row.t.split(",").filter(x, x != "").size()`, `{"t": "a,,b"}`},
		{`row.n == "` + event.Unavailable + `"`, `{"n": "` + event.Unavailable + `"}`},
		{`row.x in ["a", null] || !(row.y < 3)`, `{"x": null, "y": 1e400}`},
		{`{"a": 1}[row.k]`, `{"k": "a"}`},
		{`"%s %d %f".format([row.a, row.b, row.c])`, `{"a": "x", "b": 1, "c": 1.5}`},
		{`row.a IS NULL`, `{}`},
		{`timestamp(row.t) - now`, `{"t": "infinity"}`},
		{`row.`, `not json`},
		{`[1,2,3].map(a, [1,2,3].map(b, a * b))`, `{}`},
	} {
		f.Add(s.src, s.row, int64(1715428800))
	}
	f.Fuzz(func(t *testing.T, src, rowJSON string, nowUnix int64) {
		var row event.Row
		if err := json.Unmarshal([]byte(rowJSON), &row); err != nil {
			row = nil
		}
		at := time.Unix(nowUnix%(1<<35), 0)
		for _, kind := range []Kind{Filter, Scalar} {
			p, err := Compile(src, kind)
			if err != nil {
				if _, ok := err.(*Error); !ok {
					t.Fatalf("%q: the compile error is a %T: %v", src, err, err)
				}
				continue
			}
			p.Columns()
			p.SQL()
			v1, err1 := p.Eval(row, at)
			v2, err2 := p.Eval(row, at)
			if v1 != v2 && !(isNaN(v1) && isNaN(v2)) || !reflect.DeepEqual(errText(err1), errText(err2)) {
				t.Fatalf("%q on %s: %v, %v, then %v, %v", src, rowJSON, v1, err1, v2, err2)
			}
			if kind == Filter && err1 == nil && v1.Kind() != Bool {
				t.Fatalf("%q: a filter gave %v", src, v1)
			}
		}
	})
}

func isNaN(v Value) bool {
	f, ok := v.Double()
	return ok && f != f
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
