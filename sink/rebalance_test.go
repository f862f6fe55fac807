package sink_test

import (
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
)

func TestATargetWhosePartitionWentToAnotherSinkAndCameBackIsSentItsStateAgain(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	const n = 8
	plans := func(plan func(u int) string) []change {
		var cs []change
		for u := range n {
			cs = append(cs, change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(u), after: contact(u, fmt.Sprintf("u%d", u), plan(u), u)})
		}
		return cs
	}
	recA, recB := newRecorder(nil, nil), newRecorder(nil, nil)
	st.startWith(crm, options{api: recA.wrap})
	st.produce(plans(func(int) string { return "pro" })...)
	st.waitDrained()

	// A second sink joins; changes go on until it has written some users.
	b := st.startWith(crm, options{api: recB.wrap})
	for round := 1; recB.count() == 0; round++ {
		if round > 30 {
			t.Fatal("the second sink wrote no user in 30 rounds")
		}
		st.produce(plans(func(int) string { return fmt.Sprintf("r%d", round) })...)
		st.waitDrained()
	}
	byB := byTarget(recB.recorded())
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	// Its users go back to the first sink, and back to the tags that one
	// wrote last: OneSignal holds the second sink's since.
	lastA := lastTags(recA.recorded())
	st.produce(plans(func(u int) string {
		if tags, ok := lastA[fmt.Sprintf("user u%d", u)]; ok {
			return tags["plan"]
		}
		return "pro"
	})...)
	st.waitDrained()
	var wrong []string
	s := st.emu.State()
	for target := range byB {
		ext := strings.TrimPrefix(target, "user ")
		want := map[string]string{"plan": lastA[target]["plan"], "score": lastA[target]["score"]}
		if got := tagsOf(s, ext); !maps.Equal(got, want) {
			wrong = append(wrong, fmt.Sprintf("%s has %v, want %v", ext, got, want))
		}
	}
	if len(wrong) > 0 {
		t.Errorf("users the second sink wrote kept its tags after their partition came back: %s", strings.Join(wrong, "; "))
	}
}
