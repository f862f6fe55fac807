package sink

import (
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

func TestTheDigestOfARequestIsEqualExactlyWhenWhatItSetsIs(t *testing.T) {
	tags := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	a, b := digestTags("tags", tags("plan", "pro", "geo", "FR")), digestTags("tags", tags("geo", "FR", "plan", "pro"))
	if a != b {
		t.Error("the same tags in another order differ")
	}
	for _, other := range []map[string]string{tags("plan", "pro"), tags("plan", "pro", "geo", ""), tags("plan", "pro", "geoFR", ""), tags("plan", "pro", "geo", "F", "R", "")} {
		if a == digestTags("tags", other) {
			t.Errorf("%v and %v have the same digest", tags("plan", "pro", "geo", "FR"), other)
		}
	}
	link, unlink, other := digestTags("owner:u", nil), digestTags("owner:", nil), digestTags("owner:v", nil)
	if link == unlink || link == other {
		t.Error("different owners have the same digest")
	}
}

func TestForgettingEffectsKeepsEachTargetsWindowButNotWhatWasApplied(t *testing.T) {
	s := New(Config{}, nil, nil, &transform.Mapping{}, zap.NewNop())
	u := transform.User("u1")
	next := time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)
	v := transform.User("v1")
	s.idle.put(u, memo{partition: 3, next: next, applied: map[string][32]byte{"tags/0": digestTags("tags", map[string]string{"plan": "pro"})}})
	s.idle.put(v, memo{partition: 4, applied: map[string][32]byte{"tags/0": digestTags("tags", map[string]string{"plan": "pro"})}})
	s.forgetEffects(map[int]bool{3: true})
	if m, _ := s.idle.get(v); len(m.applied) == 0 {
		t.Error("a target of a partition held all along lost its memory")
	}
	m, ok := s.idle.get(u)
	if !ok || !m.next.Equal(next) {
		t.Errorf("the memo %+v lost the target's window, want it kept: OneSignal's one-second limit still holds", m)
	}
	if len(m.applied) != 0 {
		t.Errorf("after forgetting, the memo still says %v was applied: another member may have written the user since", m.applied)
	}
}
