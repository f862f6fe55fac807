package sink

import (
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

func TestTheSchedulerForgetsAppliedEffectsWhenAPartitionChangedHands(t *testing.T) {
	s := newScheduler(SystemClock{}, 100)
	op := transform.Op{Kind: transform.SetTags, ExternalID: "u1", Tags: map[string]string{"plan": "pro"}}
	apply := func() (same bool) {
		s.submit(op, &fetched{progress: &progress{open: 1, done: func() {}}})
		tg := s.active[targetOf(op)]
		r, same := s.take(tg)
		s.release(tg, r, applied)
		return same
	}
	if apply() {
		t.Fatal("the first request counts as unchanged")
	}
	if !apply() {
		t.Fatal("an equal request right after is not skipped")
	}
	s.forgetEffects()
	if apply() {
		t.Fatal("after forgetting, an equal request is still skipped: another consumer may have changed the user meanwhile")
	}
}
