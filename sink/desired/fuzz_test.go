package desired

import (
	"reflect"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// FuzzDecode: whatever the targets topic holds, Decode does not panic, and
// a record it accepts encodes back to a key and value that decode to the
// same record.
func FuzzDecode(f *testing.F) {
	for _, r := range []*Record{
		contrib("r1", 1, map[string]string{"plan": "pro"}),
		gone("r2", 2, "plan"),
		{Target: alice, Kind: KindMember, Device: "d1", Pos: Position{Commit: 3, LSN: 2}},
		{Target: alice, Kind: KindGrant, Record: transform.Record{Channel: transform.ChannelEmail, Identifier: "a@b"}, Pos: Position{Commit: 3, LSN: 2}},
		{Target: transform.Target{Record: true, ID: "sms\x01+1555"}, Kind: KindHeld, Owner: "x"},
	} {
		f.Add(r.Key(), r.Value())
	}
	f.Add([]byte("user:x\x00c\x00"), []byte(`{"v":1,"kind":"contribution"}`))
	f.Add([]byte("device:\x00r"), []byte(`{"v":1,"kind":"tags","tags":{"":""}}`))
	f.Fuzz(func(t *testing.T, key, value []byte) {
		r, err := Decode(key, value)
		if err != nil {
			return
		}
		again, err := Decode(r.Key(), r.Value())
		if err != nil {
			t.Fatalf("a decoded record does not decode again: %v\n%+v", err, r)
		}
		if !reflect.DeepEqual(again, r) {
			t.Fatalf("a decoded record changes on its way back:\n%+v\n%+v", r, again)
		}
	})
}
