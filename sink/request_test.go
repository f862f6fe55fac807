package sink

import (
	"maps"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

func TestRequestMergesLaterValuesOverEarlierOnes(t *testing.T) {
	var r request
	r.merge(transform.Op{Kind: transform.SetTags, ExternalID: "u", Tags: map[string]string{"plan": "free", "geo": "FR"}}, nil)
	r.merge(transform.Op{Kind: transform.SetTags, ExternalID: "u", Tags: map[string]string{"plan": "pro", "geo": ""}}, nil)
	if want := map[string]string{"plan": "pro", "geo": ""}; !maps.Equal(r.tags, want) {
		t.Errorf("tags %v, want %v (\"\" deletes)", r.tags, want)
	}
	var d request
	d.merge(transform.Op{Kind: transform.Link, DeviceID: "d", ExternalID: "u1"}, nil)
	d.merge(transform.Op{Kind: transform.Unlink, DeviceID: "d"}, nil)
	if d.kind != transform.Unlink || d.owner != "" {
		t.Errorf("device request %v to %q, want the last operation: unlink", d.kind, d.owner)
	}
	d.merge(transform.Op{Kind: transform.Link, DeviceID: "d", ExternalID: "u2"}, nil)
	if d.kind != transform.Link || d.owner != "u2" || len(d.from) != 3 {
		t.Errorf("device request %v to %q from %d, want link to u2 from 3", d.kind, d.owner, len(d.from))
	}
}

func TestRequestEffectsAreEqualExactlyWhenTheStatesAre(t *testing.T) {
	tags := func(kv ...string) request {
		r := request{kind: transform.SetTags, tags: map[string]string{}}
		for i := 0; i < len(kv); i += 2 {
			r.tags[kv[i]] = kv[i+1]
		}
		return r
	}
	a, b := tags("plan", "pro", "geo", "FR"), tags("geo", "FR", "plan", "pro")
	if a.effect() != b.effect() {
		t.Error("the same tags in another order differ")
	}
	for _, other := range []request{tags("plan", "pro"), tags("plan", "pro", "geo", ""), tags("plan", "pro", "geoFR", ""), tags("plan", "pro", "geo", "F", "R", "")} {
		if a.effect() == other.effect() {
			t.Errorf("%v and %v have the same effect", a.tags, other.tags)
		}
	}
	link := request{kind: transform.Link, owner: "u"}
	unlink := request{kind: transform.Unlink}
	other := request{kind: transform.Link, owner: "v"}
	if link.effect() == unlink.effect() || link.effect() == other.effect() {
		t.Error("different owners have the same effect")
	}
}
