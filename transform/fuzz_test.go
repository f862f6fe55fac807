package transform

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// FuzzProject: whatever event decodes, the projection does not panic,
// gives the same result twice (it is pure), and every part names its
// target: no user or device without an id, no device without an owner, no
// tag without a name.
func FuzzProject(f *testing.F) {
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
		before, _ := testMapping.Previous(ev)
		p, err := testMapping.Project(ev, before)
		again, err2 := testMapping.Project(ev, before)
		if (err == nil) != (err2 == nil) || !reflect.DeepEqual(p, again) {
			t.Fatalf("the same event gave different results:\n%v %v\n%v %v", p, err, again, err2)
		}
		if err != nil {
			return
		}
		for _, part := range append(before, p...) {
			if part.Target.ID == "" {
				t.Fatalf("a part of %v without an id from %s", part.Target, data)
			}
			if part.Target.Device && part.Owner == "" {
				t.Fatalf("device %s without an owner from %s", part.Target.ID, data)
			}
			for k := range part.Tags {
				if k == "" {
					t.Fatalf("a tag without a name from %s", data)
				}
			}
		}
	})
}
