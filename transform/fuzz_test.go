package transform

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// FuzzTransform: whatever event decodes, the transform does not panic,
// gives the same operations twice (it is pure), and every operation
// names its target: no tag edit or link without an external id, no link
// or unlink without a device, no tag without a name.
func FuzzTransform(f *testing.F) {
	ins, _ := filepath.Glob("testdata/*.in.json")
	for _, in := range ins {
		if b, err := os.ReadFile(in); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"op":"u","source":{"schema":"public","table":"users"},"after":{"external_id":null,"plan":{"a":[1,{"b":null}]}}}`))
	f.Add([]byte(`{"op":"d","source":{"schema":"public","table":"devices"},"before":{"player_id":"","user_external_id":"x"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := event.Decode(data)
		if err != nil {
			return
		}
		ops, err := testMapping.Transform(ev)
		again, err2 := testMapping.Transform(ev)
		if (err == nil) != (err2 == nil) || !reflect.DeepEqual(ops, again) {
			t.Fatalf("the same event gave different results:\n%v %v\n%v %v", ops, err, again, err2)
		}
		if err != nil {
			return
		}
		for _, op := range ops {
			switch op.Kind {
			case SetTags, Link, AddEmail, AddSMS:
				if op.ExternalID == "" {
					t.Fatalf("%v without an external id from %s", op.Kind, data)
				}
			}
			if (op.Kind == Link || op.Kind == Unlink) && op.DeviceID == "" {
				t.Fatalf("%v without a device from %s", op.Kind, data)
			}
			for k := range op.Tags {
				if k == "" {
					t.Fatalf("a tag without a name from %s", data)
				}
			}
		}
	})
}
