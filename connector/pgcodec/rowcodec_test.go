package pgcodec

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// everyType is a table with a column of each type the codec renders its own
// way (types.go), arrays of them, and names that need quoting.
var everyType = []col{
	{"Contact ID", oidInt8, true}, {"i2", oidInt2, false}, {"i4", oidInt4, false}, {"o", oidOID, false},
	{"b", oidBool, false}, {"by", oidBytea, false}, {"t", oidText, false}, {"j", oidJSON, false},
	{"jb", oidJSONB, false}, {"f4", oidFloat4, false}, {"f8", oidFloat8, false}, {"n", oidNumeric, false},
	{"ts", oidTimestamp, false}, {"tstz", oidTimestamptz, false}, {"d", 1082, false}, {"uuid", 2950, false},
	{"i4a", 1007, false}, {"ta", 1009, false}, {"jba", 3807, false}, {"bya", 1001, false},
	{"tstza", 1185, false}, {"ba", 1000, false}, {"na", 1231, false}, {"enum", 99999, false},
	{`Naïve "quoted" <Name> ☃`, oidText, false}, {"MixedCase", oidInt4, false},
}

// everyTypeRows are rows of everyType: typical values, NULLs, unchanged
// TOAST, Unicode, and values that do not parse as their type.
func everyTypeRows() [][]*string {
	typical := []*string{s("42"), s("-7"), s("2147483647"), s("16384"),
		s("t"), s(`\x00ff10`), s("héllo \"wörld\" <&> \u2028 ☃"), s(` {"a": [1, 2.5e3, null]} `),
		s(`{"plan": "pro", "visits": 3}`), s("1.5"), s("-0.25e-7"), s("123456789012345678901234567890.123456789"),
		s("2024-05-01 12:00:00.123456"), s("2024-05-01 23:30:00+05:30"), s("2024-05-01"), s("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
		s("{1,2,NULL,-3}"), s(`{"a b",NULL,"c\"d",e,"NULL"}`), s(`{"{\"k\": 1}","[]"}`), s(`{"\\x00ff","\\x"}`),
		s(`{"2024-05-01 00:30:00+02","1999-12-31 23:59:59.5-08"}`), s("{t,f}"), s("{1.5,NaN}"), s("sad"),
		s("Ünïcødé 日本語 🙂"), s("0")}
	odd := []*string{s("007"), s("1e5"), s("99999999999999999999"), s("x"),
		s("maybe"), s(`\xzz`), s("\xff\xfe\x00\x1f"), s("{"),
		s(`[1,`), s("NaN"), s("Infinity"), s("NaN"),
		s("infinity"), s("2024-05-01 12:00:00 BC"), s("epoch"), s(""),
		s("[0:1]={1,2}"), s("{{a,b},{c,d}}"), s("{"), s(`{"\\x0"}`),
		s("{-infinity}"), s("{maybe}"), s("{}"), s(strings.Repeat("ø", 3000)),
		s("\t\n"), s("-0")}
	nulls := make([]*string, len(everyType))
	nulls[0] = s("43")
	toasted := make([]*string, len(everyType))
	for i := range toasted {
		toasted[i] = toast
	}
	toasted[0] = s("44")
	return [][]*string{typical, odd, nulls, toasted}
}

func TestTheRowCodecWritesWhatTheGeneralPathWrites(t *testing.T) {
	const rel = 16390
	keyOnly := func(row []*string) []*string {
		k := make([]*string, len(row))
		k[0] = row[0]
		return k
	}
	type setup struct {
		name    string
		cols    []col
		columns []string // the columns read (nil: all)
		pk      []string // the primary key looked up (nil: the replica identity)
	}
	noKey := append([]col(nil), everyType...)
	noKey[0].key = false
	for _, su := range []setup{
		{name: "every column", cols: everyType},
		{name: "some columns read, one the table lacks", cols: everyType, columns: []string{"t", "jb", "tstz", "gone"}},
		{name: "only columns the table lacks", cols: everyType, columns: []string{"gone"}},
		{name: "a primary key unlike the replica identity", cols: everyType, pk: []string{"Contact ID", "MixedCase"}},
		{name: "no key", cols: noKey},
	} {
		for i, row := range everyTypeRows() {
			var msgs [][]byte
			msgs = append(msgs,
				tuple(pgout{}.u8('I').i32(rel).u8('N'), row...),
				tuple(pgout{}.u8('U').i32(rel).u8('N'), row...),
				tuple(pgout{}.u8('D').i32(rel).u8('K'), keyOnly(row)...),
				// The general path's own: a key change, REPLICA IDENTITY FULL.
				tuple(tuple(pgout{}.u8('U').i32(rel).u8('K'), s("1")).u8('N'), row...),
				tuple(pgout{}.u8('D').i32(rel).u8('O'), row...),
			)
			for j, msg := range msgs {
				t.Run(fmt.Sprintf("%s/row %d/message %d", su.name, i, j), func(t *testing.T) {
					var got [2]Step
					var errs [2]error
					for k, general := range []bool{false, true} {
						d := NewDecoder(Source{DB: "app", TopicPrefix: "cdc", Version: "v1.2.3"}, func() time.Time { return time.UnixMilli(1_700_000_000_123) }, nil)
						if su.columns != nil {
							d.columns = func(string) []string { return su.columns }
						}
						mustStep(t, d, 0x100, relationMsg(rel, "Sales", "Contacts ☃", su.cols...))
						if su.pk != nil {
							d.SetPrimaryKey(rel, su.pk)
						}
						mustStep(t, d, 0x110, beginMsg(731, time.UnixMilli(1_700_000_000_000)))
						d.general = general
						got[k], errs[k] = d.Decode(pglogrepl.LSN(0x120+j), msg)
						if errs[k] == nil {
							// Own them: the fast path reuses its step.
							changes := make([]*Change, len(got[k].Changes))
							for n, c := range got[k].Changes {
								cc := *c
								changes[n] = &cc
							}
							got[k].Changes = changes
						}
					}
					if (errs[0] == nil) != (errs[1] == nil) {
						t.Fatalf("fast path error %v, general path error %v", errs[0], errs[1])
					}
					if errs[0] != nil {
						return
					}
					assertSameChanges(t, got[0], got[1])
				})
			}
		}
	}
}

func assertSameChanges(t *testing.T, fast, general Step) {
	t.Helper()
	if fast.Kind != general.Kind || len(fast.Changes) != len(general.Changes) {
		t.Fatalf("fast path gave step %v with %d changes, general path %v with %d", fast.Kind, len(fast.Changes), general.Kind, len(general.Changes))
	}
	for i, f := range fast.Changes {
		g := general.Changes[i]
		if f.Topic != g.Topic || f.Op != g.Op || f.Table != g.Table {
			t.Errorf("change %d: fast path topic %q op %q table %q, general path %q %q %q", i, f.Topic, f.Op, f.Table, g.Topic, g.Op, g.Table)
		}
		if !bytes.Equal(f.Key, g.Key) || (f.Key == nil) != (g.Key == nil) {
			t.Errorf("change %d: fast path key %q, general path %q", i, f.Key, g.Key)
		}
		if !bytes.Equal(f.Value, g.Value) {
			t.Errorf("change %d: values differ\nfast:    %s\ngeneral: %s", i, f.Value, g.Value)
		}
		if fmt.Sprint(f.Headers()) != fmt.Sprint(g.Headers()) {
			t.Errorf("change %d: fast path headers %v, general path %v", i, f.Headers(), g.Headers())
		}
	}
}

func TestTheRowCodecHandsOversizedEventsToTheGeneralPath(t *testing.T) {
	big := strings.Repeat("x", maxEventBytes/2)
	for _, general := range []bool{false, true} {
		d := NewDecoder(Source{DB: "app", TopicPrefix: "cdc", Version: "v1"}, func() time.Time { return time.UnixMilli(1) }, nil)
		mustStep(t, d, 0x100, relationMsg(16384, "public", "users", usersCols...))
		mustStep(t, d, 0x110, beginMsg(731, time.UnixMilli(1_700_000_000_000)))
		d.general = general
		st := mustStep(t, d, 0x120, tuple(pgout{}.u8('I').i32(16384).u8('N'), s("7"), s(big), s("t"), s("1"), s(`"`+big+`"`)))
		if n := len(st.Changes[0].Value); n > maxEventBytes {
			t.Errorf("general=%v: an event of %d bytes, over the limit of %d", general, n, maxEventBytes)
		}
	}
}

func BenchmarkDecodeInsert(b *testing.B) {
	for _, general := range []bool{false, true} {
		b.Run(fmt.Sprintf("general=%v", general), func(b *testing.B) {
			d := NewDecoder(Source{DB: "app", TopicPrefix: "cdc", Version: "v1"}, time.Now, nil)
			if _, err := d.Decode(0x100, relationMsg(16384, "public", "users", usersCols...)); err != nil {
				b.Fatal(err)
			}
			if _, err := d.Decode(0x110, beginMsg(731, time.UnixMilli(1_700_000_000_000))); err != nil {
				b.Fatal(err)
			}
			d.general = general
			msg := tuple(pgout{}.u8('I').i32(16384).u8('N'), s("123456"), s("user123456@example.com"), s("t"), s("12.50"), s(`{"beta": true, "plan": "pro", "visits": 43}`))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.Decode(0x120, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// everyTypeCodec is the snapshot codec of a table with a column of every
// type (everyType), keyed by key.
func everyTypeCodec(key []string) *SnapshotCodec {
	names, oids := make([]string, len(everyType)), make([]uint32, len(everyType))
	for i, c := range everyType {
		names[i], oids[i] = c.name, uint32(c.oid)
	}
	return NewSnapshotCodec(Source{DB: "app", TopicPrefix: "cdc", Version: "v1.2.3"}, "Sales", "Contacts ☃", names, oids, key)
}

// snapshotValues is a row of everyTypeRows as a SELECT reads it: text
// values, nil for NULL (a snapshot has no unchanged TOAST values).
func snapshotValues(row []*string) [][]byte {
	vals := make([][]byte, len(row))
	for j, v := range row {
		if v != nil && v != toast {
			vals[j] = []byte(*v)
		}
	}
	return vals
}

func TestTheSnapshotCodecWritesWhatTheGeneralPathWrites(t *testing.T) {
	for _, key := range [][]string{{"Contact ID"}, {"Contact ID", "MixedCase"}, {"MixedCase", "t"}, nil, {"not selected"}} {
		for i, row := range everyTypeRows() {
			vals := snapshotValues(row)
			c := everyTypeCodec(key)
			got, ok := c.fast(vals, 0x1234, 1_700_000_000_123)
			if !ok {
				t.Fatalf("key %q, row %d: the codec refused a row under the limit", key, i)
			}
			want := c.general(vals, 0x1234, 1_700_000_000_123)
			if !bytes.Equal(got.Value, want.Value) {
				t.Errorf("key %q, row %d: values differ\ncodec:   %s\ngeneral: %s", key, i, got.Value, want.Value)
			}
			if !bytes.Equal(got.Key, want.Key) || (got.Key == nil) != (want.Key == nil) {
				t.Errorf("key %q, row %d: codec key %q, general %q", key, i, got.Key, want.Key)
			}
			if !bytes.Equal(got.Match, want.Match) {
				t.Errorf("key %q, row %d: codec match %q, general %q", key, i, got.Match, want.Match)
			}
		}
	}
}

func TestEachSnapshotRowCarriesItsOwnLSNAndTimeWhenOnlyOneOfThemChanges(t *testing.T) {
	c := everyTypeCodec([]string{"Contact ID"})
	vals := snapshotValues(everyTypeRows()[0])
	// The rest of an event is rendered once for a chunk's LSN and
	// millisecond: each change of either, and a return to an earlier
	// pair, must show in the next row.
	for _, at := range []struct {
		lsn pglogrepl.LSN
		now int64
	}{{0x10, 1000}, {0x10, 1000}, {0x10, 1001}, {0x20, 1001}, {0x10, 1000}, {0x10, 1000}} {
		got := c.Row(vals, at.lsn, at.now)
		want := everyTypeCodec([]string{"Contact ID"}).general(vals, at.lsn, at.now)
		if !bytes.Equal(got.Value, want.Value) {
			t.Errorf("lsn %s, now %d:\ncodec:   %s\ngeneral: %s", at.lsn, at.now, got.Value, want.Value)
		}
	}
}

func TestTheSnapshotCodecsRowsStayIntactWhileItEncodesMore(t *testing.T) {
	key := []string{"Contact ID", "MixedCase"}
	c := everyTypeCodec(key)
	var rows [][][]byte
	var got []SnapshotRow
	// Enough rows to fill several of the blocks rows are written into.
	for n := 0; n < 40*slabSize/1000; n++ {
		for _, row := range everyTypeRows() {
			vals := snapshotValues(row)
			rows = append(rows, vals)
			r := c.Row(vals, pglogrepl.LSN(n), int64(n))
			if cap(r.Value) != len(r.Value) || cap(r.Key) != len(r.Key) || cap(r.Match) != len(r.Match) {
				t.Fatalf("row %d: a value, key or match with room past its end, which an append by its reader would overwrite", len(got))
			}
			got = append(got, r)
		}
	}
	for i, vals := range rows {
		n := i / len(everyTypeRows())
		want := everyTypeCodec(key).general(vals, pglogrepl.LSN(n), int64(n))
		if !bytes.Equal(got[i].Value, want.Value) || !bytes.Equal(got[i].Key, want.Key) || !bytes.Equal(got[i].Match, want.Match) {
			t.Fatalf("row %d changed after later rows were encoded:\ngot:  %s %s %q\nwant: %s %s %q", i, got[i].Key, got[i].Value, got[i].Match, want.Key, want.Value, want.Match)
		}
	}
}

func TestAnotherSnapshotCodecsReleaseLeavesACodecsRowsIntact(t *testing.T) {
	key := []string{"Contact ID", "MixedCase"}
	newCodec := func() *SnapshotCodec { return everyTypeCodec(key) }
	// encode gives a codec enough rows to fill several blocks, and what
	// they must stay.
	encode := func(c *SnapshotCodec) (got, want []SnapshotRow) {
		for n := 0; n < 10*slabSize/1000; n++ {
			for _, row := range everyTypeRows() {
				vals := snapshotValues(row)
				got = append(got, c.Row(vals, pglogrepl.LSN(n), int64(n)))
				want = append(want, newCodec().general(vals, pglogrepl.LSN(n), int64(n)))
			}
		}
		return got, want
	}
	kept := newCodec()
	got, want := encode(kept)
	// A chunk written meanwhile: released, its memory carved again by the
	// next, and released again.
	for range 3 {
		other := newCodec()
		encode(other)
		other.Release()
	}
	again, wantAgain := encode(newCodec())
	for i := range got {
		if !bytes.Equal(got[i].Value, want[i].Value) || !bytes.Equal(got[i].Key, want[i].Key) || !bytes.Equal(got[i].Match, want[i].Match) {
			t.Fatalf("row %d changed when other codecs released theirs:\ngot:  %s %s %q\nwant: %s %s %q", i, got[i].Key, got[i].Value, got[i].Match, want[i].Key, want[i].Value, want[i].Match)
		}
	}
	for i := range again {
		if !bytes.Equal(again[i].Value, wantAgain[i].Value) {
			t.Fatalf("row %d, carved from released memory, is wrong:\ngot:  %s\nwant: %s", i, again[i].Value, wantAgain[i].Value)
		}
	}
	// A codec released goes on, on memory of its own.
	kept.Release()
	after, wantAfter := encode(kept)
	for i := range after {
		if !bytes.Equal(after[i].Value, wantAfter[i].Value) {
			t.Fatalf("row %d, encoded after its codec's release, is wrong:\ngot:  %s\nwant: %s", i, after[i].Value, wantAfter[i].Value)
		}
	}
}

func TestTheSnapshotCodecRefusesAnEventOverTheLimit(t *testing.T) {
	c := NewSnapshotCodec(Source{DB: "app", TopicPrefix: "cdc", Version: "v"}, "public", "t", []string{"id", "a", "b"}, []uint32{oidInt8, oidText, oidText}, []string{"id"})
	big := []byte(strings.Repeat("x", maxEventBytes/2))
	if _, ok := c.fast([][]byte{[]byte("1"), big, big}, 1, 1); ok {
		t.Error("the codec encoded an event over the limit, which encodeWithin must shorten")
	}
}

func TestASnapshotRowOfManyMidSizedValuesIsCutDownToTheEventLimit(t *testing.T) {
	names := []string{"Contact ID", "a", "b", "c", "d", "e", "f"}
	oids := []uint32{oidInt8, oidText, oidText, oidText, oidText, oidText, oidText}
	c := NewSnapshotCodec(Source{DB: "app", TopicPrefix: "cdc", Version: "v"}, "Sales", "Contacts", names, oids, []string{"Contact ID"})
	mid := []byte(strings.Repeat("y", 200<<10)) // each under the limit, together over 1 MiB
	r := c.Row([][]byte{[]byte("7"), mid, mid, mid, mid, mid, mid}, 1, 1)
	if len(r.Value) > maxEventBytes {
		t.Fatalf("the event is %d bytes, over the limit of %d", len(r.Value), maxEventBytes)
	}
	if !strings.Contains(string(r.Value), event.Oversized) || !strings.Contains(string(r.Value), `"Contact ID":7`) {
		t.Errorf("the event lacks the placeholder or the key: %.200s…", r.Value)
	}
}

// BenchmarkSnapshotRow encodes a row shaped as the snapshot benchmark's
// (`go run ./bench -phases snapshot`): a bigint key, four short texts, an
// integer, a jsonb object and two timestamptz.
func BenchmarkSnapshotRow(b *testing.B) {
	names := []string{"id", "external_id", "email", "language", "country", "score", "tags", "created_at", "updated_at"}
	oids := []uint32{oidInt8, oidText, oidText, oidText, oidText, oidInt4, oidJSONB, oidTimestamptz, oidTimestamptz}
	vals := [][]byte{
		[]byte("123456"), []byte("ext-123456"), []byte("user123456@example.com"), []byte("fr"), []byte("US"), []byte("456"),
		[]byte(`{"beta": true, "plan": "pro", "visits": 72}`), []byte("2026-12-08 02:05:24.526113+00"), []byte("2026-12-08 02:05:24.526113+00"),
	}
	c := NewSnapshotCodec(Source{DB: "app", TopicPrefix: "cdc", Version: "v1.2.3"}, "public", "bench_snapshot", names, oids, []string{"id"})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		// A chunk's rows are read at its LSN, in the same millisecond
		// mostly.
		c.Row(vals, pglogrepl.LSN(0x1000+i/10000), 1_700_000_000_000+int64(i/500))
		if i%10000 == 9999 {
			c.Release() // as a chunk of 10,000 rows is, once in Kafka
		}
	}
}
