package pgcodec

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/event"
)

func TestAValueTooLargeForAnEventBecomesTheOversizedPlaceholder(t *testing.T) {
	huge := strings.Repeat("x", maxEventBytes+1)
	for _, c := range []struct {
		name string
		oid  uint32
		text string
	}{
		{"text", oidText, huge},
		{"jsonb", oidJSONB, `"` + huge + `"`},
		{"text[]", 1009, "{" + huge + "}"},
		{"bytea", oidBytea, `\x` + strings.Repeat("ab", maxEventBytes)},
	} {
		if got := textToJSON(c.oid, []byte(c.text)); !event.IsOversized(got) {
			t.Errorf("%s of %d bytes became %d bytes of JSON, want the placeholder", c.name, len(c.text), len(got))
		}
		if got := appendJSON([]byte(`{"v":`), c.oid, []byte(c.text)); string(got) != `{"v":"`+event.Oversized+`"` {
			t.Errorf("%s: appendJSON gave %d bytes, want the placeholder after the prefix", c.name, len(got))
		}
	}
	justFits := strings.Repeat("y", maxEventBytes-2)
	if got := textToJSON(oidText, []byte(justFits)); len(got) != maxEventBytes {
		t.Errorf("a value of exactly maxEventBytes of JSON became %d bytes, want it kept", len(got))
	}
}

func TestAnEventOverTheLimitLosesItsLargestValuesAndKeepsTheRest(t *testing.T) {
	const limit = 1000
	big, bigger := strings.Repeat("b", 400), strings.Repeat("B", 600)
	ev := event.Envelope{
		Op: event.OpUpdate,
		Before: event.Row{
			{Name: "id", Value: json.RawMessage(`42`)},
			{Name: "bio", Value: json.RawMessage(`"` + bigger + `"`)},
			{Name: "plan", Value: json.RawMessage(`"free"`)},
		},
		After: event.Row{
			{Name: "id", Value: json.RawMessage(`42`)},
			{Name: "bio", Value: json.RawMessage(`"` + big + `"`)},
			{Name: "plan", Value: json.RawMessage(`"pro"`)},
		},
		Source: event.Source{Schema: "public", Table: "users"},
	}
	value := encodeWithin(&ev, limit, []string{"id"})
	if len(value) > limit {
		t.Fatalf("the event is %d bytes, over the limit of %d", len(value), limit)
	}
	if oversized := oversizedColumns(t, value); strings.Join(oversized, ",") != "bio" {
		t.Errorf("oversized columns %q, want [bio]", oversized)
	}
	got, err := event.Decode(value)
	if err != nil {
		t.Fatalf("the event does not decode: %v", err)
	}
	before, _ := got.Before.Get("bio")
	after, _ := got.After.Get("bio")
	plan, _ := got.After.Get("plan")
	if !event.IsOversized(before) {
		t.Errorf("the largest value (the old bio) is %.20s…, want the placeholder", before)
	}
	if string(after) != `"`+big+`"` && !event.IsOversized(after) {
		t.Errorf("the new bio is %.20s…", after)
	}
	if string(plan) != `"pro"` {
		t.Errorf("plan %s, want the untouched \"pro\"", plan)
	}

	// A key column stays, however large: it names the row.
	keyed := event.Envelope{Op: event.OpCreate, After: event.Row{
		{Name: "id", Value: json.RawMessage(`"` + strings.Repeat("k", 800) + `"`)},
		{Name: "bio", Value: json.RawMessage(`"` + big + `"`)},
	}}
	if oversized := oversizedColumns(t, encodeWithin(&keyed, limit, []string{"id"})); strings.Join(oversized, ",") != "bio" {
		t.Errorf("oversized columns %q, want [bio]: the key column must stay", oversized)
	}

	small := event.Envelope{Op: event.OpCreate, After: event.Row{{Name: "id", Value: json.RawMessage(`1`)}}}
	if value := encodeWithin(&small, limit, []string{"id"}); string(value) != string(small.Encode(nil)) {
		t.Errorf("an event within the limit changed: %s", value)
	}
}

// oversizedColumns names the columns of the event value whose value, in
// either row image, is the oversized placeholder.
func oversizedColumns(t *testing.T, value []byte) []string {
	t.Helper()
	ev, err := event.Decode(value)
	if err != nil {
		t.Fatalf("the event does not decode: %v", err)
	}
	var names []string
	for _, row := range []event.Row{ev.Before, ev.After} {
		for _, f := range row {
			if event.IsOversized(f.Value) && !slices.Contains(names, f.Name) {
				names = append(names, f.Name)
			}
		}
	}
	return names
}

func TestAStreamedRowWithHugeValuesStaysWithinTheEventLimit(t *testing.T) {
	d := newTestDecoder(t)
	// Three values each under the per-value limit, together well over it.
	third := strings.Repeat("e", maxEventBytes/2)
	msg := tuple(pgout{}.u8('I').i32(16384).u8('N'), s("7"), s(third), s("t"), s("1"), s(`"`+third+`"`))
	st := mustStep(t, d, 0x120, msg)
	c := st.Changes[0]
	if len(c.Value) > maxEventBytes {
		t.Fatalf("the event is %d bytes, over maxEventBytes %d", len(c.Value), maxEventBytes)
	}
	if len(oversizedColumns(t, c.Value)) == 0 {
		t.Error("no column was sent as the oversized placeholder")
	}
	ev := decodeEvent(t, st)
	if v, _ := ev.After.Get("id"); string(v) != "7" {
		t.Errorf("id %s, want 7", v)
	}
	if v, _ := ev.After.Get("vip"); string(v) != "true" {
		t.Errorf("vip %s, want true", v)
	}
	if string(c.Key) != `{"id":7}` {
		t.Errorf("key %s, want {\"id\":7}", c.Key)
	}
}
