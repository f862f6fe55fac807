package sink_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
)

// TestTheConsumerLagCountsWhatIsFetchedButNotCommitted: with OneSignal
// down the sink fetches every targets record and can commit none, so the
// lag it reports is every record of the targets topic, not the fetch lag
// (none); once OneSignal is back it falls to 0.
func TestTheConsumerLagCountsWhatIsFetchedButNotCommitted(t *testing.T) {
	t.Parallel()
	const users = 50
	st := newStack(t, sink.ModelUser, emulator.Config{Faults: emulator.Faults{Status: map[int]float64{503: 1}}})
	r := st.start(crm)
	var cs []change
	for i := range users {
		cs = append(cs, change{topic: contactsTopic, op: event.OpCreate, key: contactKey(i), after: contact(i, fmt.Sprintf("u%d", i), "pro", i)})
	}
	st.produce(cs...)
	lagOf := func(topic string) (lag int64, parts int) {
		for _, l := range r.sink.Lag(context.Background()) {
			if l.Topic == topic {
				lag += l.Lag
				parts++
			}
		}
		return lag, parts
	}
	waitFor(t, "every targets record fetched and uncommitted", func() error {
		events, _ := lagOf(contactsTopic)
		targets, parts := lagOf(st.topics.Targets)
		if events != 0 || targets != users || parts != 4 {
			return fmt.Errorf("lag %d on the events, %d on the targets topic (%d partitions)", events, targets, parts)
		}
		if s := r.sink.Stats(); s.Fetched-s.Done < users {
			return fmt.Errorf("%d in flight", s.Fetched-s.Done)
		}
		return nil
	})
	if err := st.emu.SetFaults(emulator.Faults{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "no lag once OneSignal is back", func() error {
		if lag, _ := lagOf(st.topics.Targets); lag != 0 {
			return fmt.Errorf("lag %d", lag)
		}
		return nil
	})
}
