package sink

import (
	"fmt"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

func TestMoreThanAHundredTagChangesGoOutInRequestsOfAHundredAndTheMessageWaitsForTheLast(t *testing.T) {
	s := newScheduler(SystemClock{}, 100)
	tags := map[string]string{}
	for i := range 150 {
		tags[fmt.Sprintf("t%03d", i)] = "v"
	}
	finished := false
	m := &fetched{progress: &progress{open: 1, done: func() { finished = true }}}
	op := transform.Op{Kind: transform.SetTags, ExternalID: "u1", Tags: tags}
	s.submit(op, m)
	tg := s.active[targetOf(op)]

	first, _ := s.take(tg)
	if len(first.tags) != 100 || !first.partial {
		t.Fatalf("first request has %d tags (partial %v), want 100 and partial", len(first.tags), first.partial)
	}
	s.release(tg, first, applied)
	first.applied()
	if finished {
		t.Fatal("the message was done after the first part only")
	}
	second, _ := s.take(tg)
	if len(second.tags) != 50 || second.partial {
		t.Fatalf("second request has %d tags (partial %v), want the other 50", len(second.tags), second.partial)
	}
	for k := range first.tags {
		if _, dup := second.tags[k]; dup {
			t.Fatalf("tag %s is in both parts", k)
		}
	}
	s.release(tg, second, applied)
	second.applied()
	if !finished {
		t.Fatal("the message was not done after the last part")
	}
}
