package sink_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/sink/desired"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// repair writes repair records to targets, as reconcile --repair does.
func (st *stack) repair(targets ...transform.Target) {
	st.t.Helper()
	w, rows := sink.Cluster{Cluster: st.cluster}.Writers()
	defer w.Close()
	defer rows.Close()
	var msgs []kafka.Message
	for _, t := range targets {
		rec := &desired.Record{Target: t, Kind: desired.KindRepair}
		msgs = append(msgs, kafka.Message{Topic: st.topics.Targets, Key: rec.Key(), Value: rec.Value()})
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		st.t.Fatal(err)
	}
}

func TestARepairSendsTheDesiredStateAgainOverWhatOneSignalChangedBehindTheSinksBack(t *testing.T) {
	t.Parallel()
	forEachModel(t, func(t *testing.T, st *stack) {
		const ext, other = "team/ops 7%?Müller", "someone else"
		st.addDevices("dev/1")
		r := st.start(crm)
		st.produce(
			change{topic: contactsTopic, op: event.OpSnapshot, key: contactKey(7), after: contact(7, ext, "pro", 3)},
			change{topic: contactsTopic, op: event.OpSnapshot, key: contactKey(8), after: contact(8, other, "free", 1)},
			change{topic: devicesTopic, op: event.OpSnapshot, key: deviceKey(7, "dev/1"), after: device(7, "dev/1", ext)},
		)
		st.eventually("the rows in OneSignal", all(st.hasTags(ext, map[string]string{"plan": "pro", "score": "3"}), ownedBy("dev/1", ext)))
		st.waitDrained()

		// Behind the sink's back: a mapped tag edited, an unmapped one
		// set, the device moved.
		st.emu.SetUserTags(ext, map[string]string{"plan": "hacked", "sdk": "1"})
		st.emu.MoveDevice("dev/1", other)
		st.eventually("the drift", ownedBy("dev/1", other))

		st.repair(transform.User(ext), transform.Device("dev/1"))
		// "sdk" is not the mapping's: left alone.
		want := map[string]string{"plan": "pro", "score": "3", "sdk": "1"}
		st.eventually("the repair", all(st.hasTags(ext, want), ownedBy("dev/1", ext)))
		if got := r.sink.Stats(); got.Repairs != 2 || got.RepairsUnknown != 0 {
			t.Errorf("repairs %d (%d unknown), want 2 (0)", got.Repairs, got.RepairsUnknown)
		}

		// A target the sink never heard of: nothing to send, and said so.
		st.repair(transform.User("never streamed"))
		waitFor(t, "the unknown repair", func() error {
			if got := r.sink.Stats(); got.RepairsUnknown != 1 {
				return fmt.Errorf("repairs unknown %d, want 1", got.RepairsUnknown)
			}
			return nil
		})
	})
}
