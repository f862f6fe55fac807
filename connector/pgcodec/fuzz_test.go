package pgcodec

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// FuzzDecode feeds the pgoutput decoder arbitrary messages after a
// relation and a begin. It must never panic, and every event it makes is
// valid JSON that event.Decode reads back, with a key that is valid JSON;
// the row codec's fast path (rowcodec.go) and the general path make the
// same events, or both refuse the message.
func FuzzDecode(f *testing.F) {
	insert := tuple(pgout{}.u8('I').i32(16384).u8('N'), s("7"), s("a@b.c"), s("t"), s("1.5"), s(`{"a":1}`))
	update := tuple(tuple(pgout{}.u8('U').i32(16384).u8('O'), s("7"), nil, s("f"), nil, nil).u8('N'), s("7"), toast, s("t"), s("2"), s("[]"))
	del := tuple(pgout{}.u8('D').i32(16384).u8('K'), s("7"), nil, nil, nil, nil)
	for _, seed := range [][]byte{
		insert, update, del,
		pgout{}.u8('T').i32(1).u8(0).i32(16384),
		relationMsg(16385, "public", "devices", col{"id", 25, true}),
		commitMsg(0x200),
		pgout{}.u8('M').u8(1).i64(0x300).str("onesignal_cdc").i32(2).u8('{').u8('}'),
		[]byte("I"), {},
		tuple(pgout{}.u8('I').i32(16384).u8('N'), s("\xff\xfe"), s("\x00"), s("maybe"), s("NaN"), s("{")),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		d := NewDecoder(Source{DB: "app", TopicPrefix: "cdc", Version: "v1.2.3"}, func() time.Time { return time.UnixMilli(1) }, nil)
		if _, err := d.Decode(0x100, relationMsg(16384, "public", "users", usersCols...)); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Decode(0x110, beginMsg(731, time.UnixMilli(1_700_000_000_000))); err != nil {
			t.Fatal(err)
		}
		g := NewDecoder(Source{DB: "app", TopicPrefix: "cdc", Version: "v1.2.3"}, func() time.Time { return time.UnixMilli(1) }, nil)
		g.general = true
		if _, err := g.Decode(0x100, relationMsg(16384, "public", "users", usersCols...)); err != nil {
			t.Fatal(err)
		}
		if _, err := g.Decode(0x110, beginMsg(731, time.UnixMilli(1_700_000_000_000))); err != nil {
			t.Fatal(err)
		}
		st, err := d.Decode(pglogrepl.LSN(0x120), msg)
		gst, gerr := g.Decode(pglogrepl.LSN(0x120), msg)
		if (err == nil) != (gerr == nil) {
			t.Fatalf("fast path error %v, general path error %v", err, gerr)
		}
		if err != nil {
			return
		}
		assertSameChanges(t, st, gst)
		for _, c := range st.Changes {
			if _, err := event.Decode(c.Value); err != nil {
				t.Fatalf("the decoder made an event that does not decode: %v\n%s", err, c.Value)
			}
			if c.Key != nil && !json.Valid(c.Key) {
				t.Fatalf("the decoder made a key that is not JSON: %q", c.Key)
			}
		}
	})
}

func TestDecodeRefusesAColumnClaimingMoreBytesThanTheMessageHolds(t *testing.T) {
	d := newTestDecoder(t)
	// One text column claiming 1.5 GB in a 20-byte message.
	msg := pgout{}.u8('I').i32(16384).u8('N').i16(1).u8('t').i32(0x5e5e5e5e).str("x")
	if _, err := d.Decode(0x120, msg); err == nil {
		t.Fatal("decoded a column longer than its message")
	}
}
