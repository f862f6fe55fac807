package pgcodec

import (
	"encoding/binary"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// pgout builds pgoutput (protocol 1) messages, as the walsender sends them.
type pgout []byte

func (b pgout) u8(v byte) pgout    { return append(b, v) }
func (b pgout) i16(v int) pgout    { return binary.BigEndian.AppendUint16(b, uint16(v)) }
func (b pgout) i32(v int) pgout    { return binary.BigEndian.AppendUint32(b, uint32(v)) }
func (b pgout) i64(v int64) pgout  { return binary.BigEndian.AppendUint64(b, uint64(v)) }
func (b pgout) str(s string) pgout { return append(append(b, s...), 0) }

var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func beginMsg(xid int, commit time.Time) []byte {
	return pgout{}.u8('B').i64(0x500).i64(commit.Sub(pgEpoch).Microseconds()).i32(xid)
}

func commitMsg(end pglogrepl.LSN) []byte {
	return pgout{}.u8('C').u8(0).i64(0x500).i64(int64(end)).i64(0)
}

type col struct {
	name string
	oid  int
	key  bool
}

func relationMsg(id int, schema, table string, cols ...col) []byte {
	b := pgout{}.u8('R').i32(id).str(schema).str(table).u8('d').i16(len(cols))
	for _, c := range cols {
		flags := byte(0)
		if c.key {
			flags = 1
		}
		b = b.u8(flags).str(c.name).i32(c.oid).i32(-1)
	}
	return b
}

// tuple encodes values: nil is NULL, toast is an unchanged TOAST value,
// anything else is its text form.
var toast = new(string)

func tuple(b pgout, values ...*string) pgout {
	b = b.i16(len(values))
	for _, v := range values {
		switch v {
		case nil:
			b = b.u8('n')
		case toast:
			b = b.u8('u')
		default:
			b = b.u8('t').i32(len(*v))
			b = append(b, *v...)
		}
	}
	return b
}

func s(v string) *string { return &v }

var usersCols = []col{{"id", oidInt8, true}, {"email", 25, false}, {"vip", oidBool, false}, {"score", oidNumeric, false}, {"prefs", oidJSONB, false}}

const oidNumeric = 1700

func newTestDecoder(t *testing.T) *Decoder {
	t.Helper()
	d := NewDecoder(Source{DB: "app", TopicPrefix: "cdc", Version: "v1.2.3"}, func() time.Time { return time.UnixMilli(1_700_000_000_123) }, nil)
	mustStep(t, d, 0x100, relationMsg(16384, "public", "users", usersCols...))
	if st := mustStep(t, d, 0x110, beginMsg(731, time.UnixMilli(1_700_000_000_000))); st.Kind != StepBegin {
		t.Fatalf("begin gave step %v", st.Kind)
	}
	return d
}

func mustStep(t *testing.T, d *Decoder, lsn pglogrepl.LSN, msg []byte) Step {
	t.Helper()
	st, err := d.Decode(lsn, msg)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return st
}

func TestDecodeInsertBecomesACreateEventKeyedByThePrimaryKey(t *testing.T) {
	d := newTestDecoder(t)
	msg := tuple(pgout{}.u8('I').i32(16384).u8('N'), s("42"), s(`a"b@example.com`), s("t"), s("12.50"), s(`{"lang": "de"}`))
	st := mustStep(t, d, 0x120, msg)
	if st.Kind != StepChanges {
		t.Fatalf("step %v, want a change", st.Kind)
	}
	if st.Changes[0].Topic != "cdc.public.users" {
		t.Errorf("topic %q, want cdc.public.users", st.Changes[0].Topic)
	}
	if got := string(st.Changes[0].Key); got != `{"id":42}` {
		t.Errorf("key %s, want {\"id\":42}", got)
	}
	want := `{"before":null,"after":{"id":42,"email":"a\"b@example.com","vip":true,"score":"12.50","prefs":{"lang": "de"}},` +
		`"source":{"version":"v1.2.3","connector":"postgresql","name":"cdc","ts_ms":1700000000000,"snapshot":"false","db":"app","schema":"public","table":"users","txId":731,"lsn":288,"commit_lsn":1280},` +
		`"op":"c","ts_ms":1700000000123}`
	if got := string(st.Changes[0].Value); got != want {
		t.Errorf("value\n got %s\nwant %s", got, want)
	}
	if !json.Valid(st.Changes[0].Value) {
		t.Error("value is not valid JSON")
	}
	if st := mustStep(t, d, 0x130, commitMsg(0x140)); st.Kind != StepCommit || st.End != 0x140 {
		t.Errorf("commit gave %+v, want a commit at 0/140", st)
	}
}

func decodeEvent(t *testing.T, st Step) *event.Envelope {
	t.Helper()
	ev, err := event.Decode(st.Changes[0].Value)
	if err != nil {
		t.Fatalf("decode event: %v", err)
	}
	return ev
}

func TestDecodeUpdateCarriesUnchangedToastAsThePlaceholderNotNull(t *testing.T) {
	d := newTestDecoder(t)
	msg := tuple(pgout{}.u8('U').i32(16384).u8('N'), s("42"), toast, nil, s("1"), toast)
	ev := decodeEvent(t, mustStep(t, d, 0x120, msg))
	if ev.Op != event.OpUpdate || ev.Before != nil {
		t.Fatalf("op %q before %v, want u with no before image", ev.Op, ev.Before)
	}
	if v, _ := ev.After.Get("email"); !event.IsUnavailable(v) {
		t.Errorf("email = %s, want the unavailable placeholder", v)
	}
	if v, _ := ev.After.Get("vip"); string(v) != "null" {
		t.Errorf("vip = %s, want null", v)
	}
}

func TestDecodeUpdateOfTheKeyIsADeleteUnderTheOldKeyAndACreateUnderTheNew(t *testing.T) {
	d := newTestDecoder(t)
	msg := tuple(pgout{}.u8('U').i32(16384).u8('K'), s("41"), nil, nil, nil, nil)
	msg = tuple(msg.u8('N'), s("42"), s("x"), s("f"), s("0"), s("{}"))
	st := mustStep(t, d, 0x120, msg)
	if len(st.Changes) != 2 {
		t.Fatalf("%d events, want a delete and a create", len(st.Changes))
	}
	del, err := event.Decode(st.Changes[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	create, err := event.Decode(st.Changes[1].Value)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := json.Marshal(del.Before); del.Op != event.OpDelete || string(got) != `{"id":41}` || del.After != nil || string(st.Changes[0].Key) != `{"id":41}` {
		t.Errorf("first event: op %s before %s after %v key %s; want a delete of the old key", del.Op, got, del.After, st.Changes[0].Key)
	}
	if create.Op != event.OpCreate || create.Before != nil || string(st.Changes[1].Key) != `{"id":42}` {
		t.Errorf("second event: op %s before %v key %s; want a create under the new key", create.Op, create.Before, st.Changes[1].Key)
	}
	// Debezium's headers say the two are one row's key change, not a
	// delete and an insert: a sink that deletes users on delete must not.
	// The delete also carries the new row, so the old key's consumer can
	// tell where the row went.
	h := st.Changes[0].Headers()
	if len(h) != 2 || h[0].Key != event.HeaderNewKey || string(h[0].Value) != `{"id":42}` {
		t.Fatalf("the delete's headers are %v, want %s = the new key and the new row", h, event.HeaderNewKey)
	}
	var newRow event.Row
	if err := json.Unmarshal(h[1].Value, &newRow); h[1].Key != event.HeaderNewRow || err != nil {
		t.Fatalf("the delete's second header is %s = %s (%v), want %s = the new row", h[1].Key, h[1].Value, err, event.HeaderNewRow)
	}
	if got, _ := json.Marshal(newRow); string(got) != mustJSON(t, create.After) {
		t.Errorf("the new row header says %s, the create %s", got, mustJSON(t, create.After))
	}
	if h := st.Changes[1].Headers(); len(h) != 1 || h[0].Key != event.HeaderOldKey || string(h[0].Value) != `{"id":41}` {
		t.Errorf("the create's headers are %v, want %s = the old key", h, event.HeaderOldKey)
	}
}

func TestDecodeDeleteUnderReplicaIdentityFullCarriesTheWholeRow(t *testing.T) {
	d := newTestDecoder(t)
	msg := tuple(pgout{}.u8('D').i32(16384).u8('O'), s("42"), s("x@y"), s("f"), s("3"), s("[1,2]"))
	st := mustStep(t, d, 0x120, msg)
	ev := decodeEvent(t, st)
	if ev.Op != event.OpDelete || ev.After != nil || len(ev.Before) != 5 {
		t.Fatalf("op %q after %v before %v, want d with the whole old row", ev.Op, ev.After, ev.Before)
	}
	if string(st.Changes[0].Key) != `{"id":42}` {
		t.Errorf("key %s, want {\"id\":42}", st.Changes[0].Key)
	}
}

func TestDecodeRendersTextSafelyAsJSON(t *testing.T) {
	d := newTestDecoder(t)
	tricky := "tab\there, nul\x00, quote\", backslash\\, ünïcødé, emoji 🎉, invalid \xff, line sep \u2028"
	msg := tuple(pgout{}.u8('I').i32(16384).u8('N'), s("1"), s(tricky), s("f"), s("NaN"), s("not json"))
	st := mustStep(t, d, 0x120, msg)
	if !json.Valid(st.Changes[0].Value) {
		t.Fatalf("value is not valid JSON: %s", st.Changes[0].Value)
	}
	ev := decodeEvent(t, st)
	var got string
	v, _ := ev.After.Get("email")
	if err := json.Unmarshal(v, &got); err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(tricky, "\xff", "\ufffd", 1)
	if got != want {
		t.Errorf("text round trip\n got %q\nwant %q", got, want)
	}
	if v, _ := ev.After.Get("prefs"); string(v) != `"not json"` {
		t.Errorf("invalid json column = %s, want it as a string", v)
	}
}

func TestDecodeRefusesRowsItCannotPlace(t *testing.T) {
	d := NewDecoder(Source{DB: "app", TopicPrefix: "cdc", Version: "v1.2.3"}, time.Now, nil)
	insert := tuple(pgout{}.u8('I').i32(16384).u8('N'), s("1"))
	if _, err := d.Decode(0x10, insert); err == nil {
		t.Error("a row outside a transaction decoded without error")
	}
	mustStep(t, d, 0x20, beginMsg(1, time.Now()))
	if _, err := d.Decode(0x30, insert); err == nil || !strings.Contains(err.Error(), "before its Relation") {
		t.Errorf("a row of an unknown relation: err = %v", err)
	}
	mustStep(t, d, 0x40, relationMsg(16384, "public", "users", usersCols...))
	if _, err := d.Decode(0x50, insert); err == nil {
		t.Error("a tuple with the wrong column count decoded without error")
	}
}

func TestDecodeNeverPanicsOnTruncatedMessages(t *testing.T) {
	full := tuple(pgout{}.u8('I').i32(16384).u8('N'), s("42"), s("a"), s("t"), s("1"), s("{}"))
	for _, msg := range [][]byte{nil, {}, []byte(relationMsg(1, "a", "b", col{"x", 23, true}))[:5], full[:9], beginMsg(1, time.Now())[:4]} {
		d := newTestDecoder(t)
		_, _ = d.Decode(0x120, msg) // an error is fine; a panic is not
	}
}

func TestDecodeTruncateBecomesOneEventPerTable(t *testing.T) {
	d := newTestDecoder(t)
	mustStep(t, d, 0x118, relationMsg(16390, "public", "devices", col{"player_id", 25, true}))
	st := mustStep(t, d, 0x120, pgout{}.u8('T').i32(2).u8(0).i32(16384).i32(16390))
	if st.Kind != StepChanges || len(st.Changes) != 2 {
		t.Fatalf("step %+v, want two changes", st)
	}
	for i, topic := range []string{"cdc.public.users", "cdc.public.devices"} {
		ev := decodeEvent(t, Step{Changes: st.Changes[i:]})
		if st.Changes[i].Topic != topic || ev.Op != event.OpTruncate || ev.Before != nil || ev.After != nil || st.Changes[i].Key != nil {
			t.Errorf("change %d: topic %s op %q key %s, want a keyless truncate of %s", i, st.Changes[i].Topic, ev.Op, st.Changes[i].Key, topic)
		}
	}
}

func TestDecodeRefusesATruncateClaimingMoreRelationsThanItCarries(t *testing.T) {
	d := newTestDecoder(t)
	if _, err := d.Decode(0x120, pgout{}.u8('T').i32(1<<30).u8(0).i32(16384)); err == nil {
		t.Fatal("no error")
	}
}

// Where the publication cannot list columns, the decoder leaves out those
// the mapping does not read, keeping the key; a mapped column the
// relation lacks (not yet published when the change was made) is there,
// as not sent.
func TestDecodeKeepsOnlyTheColumnsReadAndMarksTheMissingOnesNotSent(t *testing.T) {
	d := NewDecoder(Source{DB: "app", TopicPrefix: "cdc", Version: "v1.2.3"}, time.Now, nil)
	d.columns = func(table string) []string {
		if table != "public.users" {
			t.Errorf("columns asked for %q", table)
		}
		return []string{"email", "score", "plan"}
	}
	mustStep(t, d, 0x100, relationMsg(16384, "public", "users", usersCols...))
	mustStep(t, d, 0x110, beginMsg(731, time.UnixMilli(1_700_000_000_000)))
	ins := tuple(pgout{}.u8('I').i32(16384).u8('N'), s("42"), s("a@example.com"), s("t"), s("12.50"), s(`{"lang": "de"}`))
	ev := decodeEvent(t, mustStep(t, d, 0x120, ins))
	if got, want := columnNames(ev.After), []string{"id", "email", "score", "plan"}; !slices.Equal(got, want) {
		t.Errorf("after carries %q, want %q", got, want)
	}
	if v, _ := ev.After.Get("plan"); !event.IsUnavailable(v) {
		t.Errorf("plan is %s, want the not-sent placeholder", v)
	}
	del := tuple(pgout{}.u8('D').i32(16384).u8('K'), s("42"), nil, nil, nil, nil)
	if got := columnNames(decodeEvent(t, mustStep(t, d, 0x130, del)).Before); !slices.Equal(got, []string{"id"}) {
		t.Errorf("a delete's old key carries %q, want the key", got)
	}
}

func columnNames(row event.Row) []string {
	var out []string
	for _, f := range row {
		out = append(out, f.Name)
	}
	return out
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
