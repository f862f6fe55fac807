package sink

import (
	"go.uber.org/zap"

	"github.com/onesignal-cdc/onesignal-cdc/sink/desired"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// Repairs: `onesignal-cdc reconcile --repair` found that OneSignal holds
// something else than a target's desired state (changed by the dashboard,
// an SDK, an import) and wrote a desired.KindRepair record to the target.
// The target forgets what its memory says OneSignal accepted and plans
// again from its desired state, so every part of it is sent whole once
// more, through the usual path: its one-second window, the rate limit,
// retries and dead letters.
//
// The repair carries no values: what is sent is the desired state at the
// moment of sending, which is the newest by source position of every
// row. A stream change newer than the reconcile's read therefore wins
// over the repair, and an older one cannot come back.

// repair handles a repair record of user or device t, whose state is st.
func (g *generation) repair(t transform.Target, st *desired.State, m *fetched) {
	s := g.s
	s.stats.repairs.Add(1)
	if len(st.Contributions) == 0 {
		// Nothing of the target reached the sink (its rows were written
		// while the slot was lost, say): there is no desired state to
		// send. The rows must come through the stream again.
		s.stats.repairsUnknown.Add(1)
		s.log.Warn("a repair names a target the sink holds no desired state for; snapshot its rows again (onesignal-cdc snapshot --table)",
			zap.String("target", t.String()), zap.Int("partition", m.msg.Partition), zap.Int64("offset", m.msg.Offset))
		m.finish()
		return
	}
	g.sched.repair(t, m.msg.Partition, false)
	g.sched.submit(t, m.msg.Partition, m, false, false)
}

// repair makes t's next plan start from a memory that OneSignal accepted
// nothing of it: also after an attempt in flight now, whose answer would
// otherwise note its part as applied again. With queue it is also queued
// for its window, as a drift sweep's repair, which comes with no message
// to submit, needs.
func (s *scheduler) repair(key transform.Target, partition int, queue bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.activate(key, partition)
	t.repair = true
	if queue && !t.busy && !t.queued {
		s.enqueue(t)
	}
}

// forgetApplied drops what the memory says OneSignal accepted of the
// target: its parts and a user's records. Its window, and what a device
// said of its membership, stay. The scheduler's mutex is held.
func (t *target) forgetApplied() {
	t.applied, t.records = nil, nil
}
