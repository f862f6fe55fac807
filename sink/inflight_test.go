package sink_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
)

// max_in_flight bounds what the sink holds; it must never stop it. Each
// test's work takes about a second: a sink that has not finished in
// stalled is stalled.
const stalled = 8 * time.Second

func TestTheSinkKeepsFetchingWhenItHasMorePartitionsThanMaxInFlight(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelUser, emulator.Config{})
	// Twelve partitions (contacts, devices, targets), four of them ever
	// busy at once; the devices partitions stay empty.
	r := st.startWith(crm, options{config: func(c *sink.Config) { c.MaxInFlight = 4 }})
	st.produce(users(20, "free")...)
	waitForWithin(t, "every message committed", stalled, func() error {
		if err := st.drained(); err != nil {
			s := r.sink.Stats()
			return fmt.Errorf("%w (%d fetched, %d done)", err, s.Fetched, s.Done)
		}
		return nil
	})
}

func TestThePlayerModelLinksMoreDevicesAtOnceThanMaxInFlight(t *testing.T) {
	t.Parallel()
	st := newStack(t, sink.ModelPlayer, emulator.Config{})
	r := st.startWith(crm, options{config: func(c *sink.Config) { c.MaxInFlight = 40 }})
	// A snapshot of the devices table: each device waits for its owner's
	// tags, which come in records of the targets topic written after it.
	var cs []change
	var conds []func(emulator.State) error
	for i := range 60 {
		dev, ext := fmt.Sprintf("d%d", i), fmt.Sprintf("u%d", i)
		st.addDevices(dev)
		cs = append(cs, change{topic: devicesTopic, op: event.OpSnapshot, key: deviceKey(i, dev), after: device(i, dev, ext)})
		conds = append(conds, ownedBy(dev, ext))
	}
	st.produce(cs...)
	waitForWithin(t, "every device linked", stalled, func() error {
		if err := all(conds...)(st.emu.State()); err != nil {
			s := r.sink.Stats()
			return fmt.Errorf("%w (%d fetched, %d done, %d waiting in the scheduler)", err, s.Fetched, s.Done, r.sink.Waiting())
		}
		return nil
	})
	st.waitDrained()
}
