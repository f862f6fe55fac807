package sink_test

import (
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// In the player model tags live on devices: a user's tags wait in its
// state until a device is linked to it, and the link carries them.

func TestTagsWrittenBeforeTheUsersFirstDeviceReachItsLinkAfterARestart(t *testing.T) {
	t.Parallel()
	for _, model := range models {
		t.Run(model, func(t *testing.T) {
			t.Parallel()
			st := newStack(t, model, emulator.Config{RateLimits: emulator.RateLimits{Enabled: true}})
			st.addDevices("dev-1")
			// The user's tags arrive while no device is the user's.
			first := st.start(crm)
			st.produce(change{topic: contactsTopic, op: event.OpCreate, key: contactKey(1), after: contact(1, "u1", "pro", 1)})
			st.waitDrained()
			if err := first.stop(); err != nil {
				t.Fatal(err)
			}
			// A new sink, which knows the tags from Kafka alone, links the
			// device.
			st.produce(change{topic: devicesTopic, op: event.OpCreate, key: deviceKey(1, "dev-1"), after: device(1, "dev-1", "u1")})
			st.start(crm)
			st.eventually("the device linked with the user's tags", all(
				ownedBy("dev-1", "u1"), deviceTags("dev-1", map[string]string{"plan": "pro", "score": "1"})))
			st.waitDrained()
			if n := st.emu.Stats().RateLimited; n != 0 {
				t.Errorf("the emulator answered 429 %d times", n)
			}
		})
	}
}

func TestAnUnchangedToastValueKeepsTheTagItHadAlsoThroughALink(t *testing.T) {
	t.Parallel()
	forEachModel(t, func(t *testing.T, st *stack) {
		st.addDevices("dev-1")
		st.start(crm)
		// Updates of the score alone: the plan, unchanged and TOASTed, is
		// not in them, and its tag is left as it was.
		toasted := func(score int) map[string]any {
			c := contact(1, "u1", nil, score)
			c["Plan"] = event.UnavailableValue()
			return c
		}
		st.produce(
			change{topic: contactsTopic, op: event.OpCreate, key: contactKey(1), after: contact(1, "u1", "pro", nil)},
			change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(1), after: toasted(3)},
			change{topic: devicesTopic, op: event.OpCreate, key: deviceKey(1, "dev-1"), after: device(1, "dev-1", "u1")},
			change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(1), after: toasted(4)},
		)
		st.waitDrained()
		st.eventually("the device with plan pro (from before the link) and score 4 (after it)", all(
			ownedBy("dev-1", "u1"), deviceTags("dev-1", map[string]string{"plan": "pro", "score": "4"})))
	})
}
