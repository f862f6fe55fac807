package sink_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/reconcile"
	"github.com/onesignal-cdc/onesignal-cdc/retry"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
)

// driftRate is the app's rate limit in the drift tests, so that the
// sweep's budget (5 % of it) is 10 repairs a second.
const driftRate = 200

// driftScene writes users and devices, waits for them in OneSignal, then
// changes OneSignal behind the sink's back and returns the drift a sweep
// must report, exactly.
func driftScene(t *testing.T, st *stack) []reconcile.Drift {
	t.Helper()
	const a, b, c, e = "team/ops 7%?Müller", "b/2 ü", "c 3", "e"
	const bulk = 20
	player := st.model == sink.ModelPlayer
	users := []struct {
		id        int
		ext, plan string
		dev       string
	}{{7, a, "pro", "dev/1"}, {8, b, "free", "dev/2"}, {9, c, "free", "dev/3"}, {10, e, "free", "dev/5"}}
	for i := range bulk {
		users = append(users, struct {
			id        int
			ext, plan string
			dev       string
		}{100 + i, fmt.Sprintf("bulk-%d", i), "p", fmt.Sprintf("bulk-dev/%d", i)})
	}
	var cs []change
	var conds []func(emulator.State) error
	for _, u := range users {
		st.addDevices(u.dev)
		cs = append(cs,
			change{topic: contactsTopic, op: event.OpSnapshot, key: contactKey(u.id), after: contact(u.id, u.ext, u.plan, 3)},
			change{topic: devicesTopic, op: event.OpSnapshot, key: deviceKey(u.id, u.dev), after: device(u.id, u.dev, u.ext)})
		conds = append(conds, ownedBy(u.dev, u.ext), deviceTags(u.dev, map[string]string{"plan": u.plan, "score": "3"}))
	}
	st.produce(cs...)
	st.eventually("the rows in OneSignal", all(conds...))
	st.waitDrained()

	// Behind the sink's back: a mapped tag edited and an unmapped one set,
	// a device moved to someone else, a user deleted with its device, an
	// unmapped tag alone (no drift), and many tags edited.
	must := func(ok bool) {
		t.Helper()
		if !ok {
			t.Fatal("the emulator does not have the target")
		}
	}
	must(st.emu.SetUserTags(a, map[string]string{"plan": "hacked", "sdk": "1"}))
	must(st.emu.MoveDevice("dev/2", "someone else"))
	must(st.emu.RemoveUser(c))
	must(st.emu.SetUserTags(e, map[string]string{"sdk": "2"}))
	want := []reconcile.Drift{
		{Kind: reconcile.WrongOwner, ExternalID: b, DeviceID: "dev/2", Want: b, Have: "someone else"},
		{Kind: reconcile.MissingDevice, ExternalID: c, DeviceID: "dev/3"},
	}
	tagDrift := func(ext, dev, want, have string) reconcile.Drift {
		d := reconcile.Drift{Kind: reconcile.WrongTag, ExternalID: ext, Tag: "plan", Want: want, Have: have}
		if player {
			d.DeviceID = dev // the player model's tags are the devices'
		}
		return d
	}
	want = append(want, tagDrift(a, "dev/1", "pro", "hacked"))
	if !player {
		want = append(want, reconcile.Drift{Kind: reconcile.MissingUser, ExternalID: c})
	}
	for i := range bulk {
		ext := fmt.Sprintf("bulk-%d", i)
		must(st.emu.SetUserTags(ext, map[string]string{"plan": "hacked"}))
		want = append(want, tagDrift(ext, fmt.Sprintf("bulk-dev/%d", i), "p", "hacked"))
	}
	sortDrift(want)
	return want
}

func sortDrift(ds []reconcile.Drift) {
	slices.SortFunc(ds, func(a, b reconcile.Drift) int {
		return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
	})
}

// driftOptions runs a sink with continuous mode on: a sweep at start,
// then only when the test asks (SweepNow).
func driftOptions(repair bool) options {
	return options{rate: driftRate, drift: &sink.DriftConfig{
		Period: time.Hour, Repair: repair, Examples: 1000,
		Poll:  onesignal.ExportPoll{First: 10 * time.Millisecond, Max: 50 * time.Millisecond, Within: 20 * time.Second, Idle: 5 * time.Second},
		Retry: retry.Policy{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond},
	}}
}

// sweep runs one more sweep and returns its report.
func sweep(t *testing.T, r *running) sink.DriftStats {
	t.Helper()
	before := r.sink.Stats().Drift.Sweeps
	r.sink.SweepNow()
	return waitSweep(t, r, before)
}

// waitSweep waits for r's sweeps to be more than before, and returns its
// report.
func waitSweep(t *testing.T, r *running, before int64) sink.DriftStats {
	t.Helper()
	var d sink.DriftStats
	waitFor(t, "the sweep", func() error {
		d = r.sink.Stats().Drift
		if d.Sweeps <= before || d.Running {
			return fmt.Errorf("sweeps %d, running %v (failed %d: %s)", d.Sweeps, d.Running, d.Failed, d.LastError)
		}
		return nil
	})
	return d
}

// waitFirstSweep waits for the sweep a sink runs at start.
func waitFirstSweep(t *testing.T, r *running) {
	t.Helper()
	waitFor(t, "the first sweep", func() error {
		if d := r.sink.Stats().Drift; d.Sweeps < 1 || d.Running {
			return fmt.Errorf("sweeps %d, running %v (failed %d: %s)", d.Sweeps, d.Running, d.Failed, d.LastError)
		}
		return nil
	})
}

// writes counts the emulator's requests but for the exports.
func writes(s emulator.Stats) int {
	n := 0
	for route, by := range s.Requests {
		if strings.Contains(route, "csv_export") {
			continue
		}
		for _, c := range by {
			n += c
		}
	}
	return n
}

func checkReport(t *testing.T, d sink.DriftStats, want []reconcile.Drift) {
	t.Helper()
	rep := d.Last
	got := slices.Clone(rep.Examples)
	sortDrift(got)
	if !slices.Equal(got, want) {
		t.Errorf("the sweep found\n%v\nwant\n%v", got, want)
	}
	counts := map[reconcile.Kind]int{}
	for _, w := range want {
		counts[w.Kind]++
	}
	for k, n := range counts {
		if rep.Counts[k] != n || d.Detected[k] != int64(n) {
			t.Errorf("%s: counted %d (detected in all %d), want %d", k, rep.Counts[k], d.Detected[k], n)
		}
	}
	// "sdk" is the SDK's: ignored on the two targets carrying it.
	if len(rep.Ignored) != 1 || rep.Ignored["sdk"] != 2 {
		t.Errorf("ignored %v, want sdk on 2", rep.Ignored)
	}
	if rep.Skipped != 0 {
		t.Errorf("skipped %d targets, want none: the sink wrote nothing during the sweep", rep.Skipped)
	}
}

func TestASweepReportsTheDriftExactlyAndLeavesItAloneWithoutRepair(t *testing.T) {
	t.Parallel()
	forEachModel(t, func(t *testing.T, st *stack) {
		r := st.startWith(crm, driftOptions(false))
		waitFirstSweep(t, r)
		want := driftScene(t, st)
		before := writes(st.emu.Stats())
		d := sweep(t, r)
		checkReport(t, d, want)
		if d.Last.Repaired != 0 || len(d.Repaired) != 0 {
			t.Errorf("repaired %d (%v), want none: repair is off", d.Last.Repaired, d.Repaired)
		}
		if n := writes(st.emu.Stats()) - before; n != 0 {
			t.Errorf("%d requests during the sweep, want none but the exports", n)
		}
		st.eventually("the drift still there", all(ownedBy("dev/2", "someone else"), deviceTags("dev/1", map[string]string{"plan": "hacked", "score": "3", "sdk": "1"})))
	})
}

func TestASweepRepairsTheDriftWithinItsShareOfTheRateLimit(t *testing.T) {
	t.Parallel()
	forEachModel(t, func(t *testing.T, st *stack) {
		r := st.startWith(crm, driftOptions(true))
		waitFirstSweep(t, r)
		want := driftScene(t, st)
		before := writes(st.emu.Stats())
		d := sweep(t, r)
		checkReport(t, d, want)
		drifted := map[string]bool{}
		for _, w := range want {
			drifted[w.ExternalID+"\x00"+w.DeviceID] = true
		}
		conds := []func(emulator.State) error{
			ownedBy("dev/2", "b/2 ü"),
			deviceTags("dev/1", map[string]string{"plan": "pro", "score": "3", "sdk": "1"}), // sdk: not the mapping's
		}
		for i := range 20 {
			conds = append(conds, deviceTags(fmt.Sprintf("bulk-dev/%d", i), map[string]string{"plan": "p", "score": "3"}))
		}
		st.eventually("the repairs", all(conds...))
		repairs := d.Last.Repaired
		if repairs < 22 {
			t.Errorf("repaired %d targets, want every drifted one", repairs)
		}

		// The budget: 5 % of the rate limit, this member holding every
		// partition. The repairs were paced while the sweep compared, so
		// its duration (by the sink's clock) bounds their requests, with
		// a second for the last ones to go out and half again as margin.
		n := writes(st.emu.Stats()) - before
		budget := 0.05 * driftRate
		elapsed := d.Last.Completed.Sub(d.Last.Started) + time.Second
		if limit := budget*elapsed.Seconds()*1.5 + 2; float64(n) > limit {
			t.Errorf("%d requests in %s, over the sweep's budget of %.0f/s (%.0f)", n, elapsed, budget, limit)
		}
		if min := time.Duration(float64(repairs-2) / budget * float64(time.Second)); elapsed < min {
			t.Errorf("the sweep took %s for %d repairs, less than its budget of %.0f/s allows (%s)", elapsed, repairs, budget, min)
		}
		t.Logf("%d repairs, %d requests in %s (budget %.0f/s)", repairs, n, elapsed, budget)

		// Swept again: the deleted device cannot come back (only an SDK
		// creates one); the rest is in step.
		d = sweep(t, r)
		var left []reconcile.Drift
		for _, x := range d.Last.Examples {
			if x.Kind != reconcile.MissingDevice {
				left = append(left, x)
			}
		}
		if len(left) > 0 {
			t.Errorf("drift left after the repairs: %v", left)
		}
	})
}

func TestEachMemberSweepsItsOwnPartitionsWithOneExportAtATime(t *testing.T) {
	t.Parallel()
	for _, model := range models {
		t.Run(model, func(t *testing.T) {
			t.Parallel()
			// An export takes a while, so the members' exports meet: the
			// second is refused (429, Retry-After) until the first is done.
			st := newStack(t, model, emulator.Config{ExportDelay: 500 * time.Millisecond})
			r1 := st.startWith(crm, driftOptions(false))
			r2 := st.startWith(crm, driftOptions(false))
			waitFor(t, "two members", func() error {
				for _, r := range []*running{r1, r2} {
					if s := r.sink.Stats(); s.Members != 2 || s.Assigned[st.topics.Targets] != 2 {
						return fmt.Errorf("members %d, targets partitions %d", s.Members, s.Assigned[st.topics.Targets])
					}
				}
				return nil
			})
			// The sweeps of the generation before ended with it; each
			// member sweeps its new partitions.
			waitFirstSweep(t, r1)
			waitFirstSweep(t, r2)
			want := driftScene(t, st)
			refusedBefore := exportRefusals(st.emu.Stats())

			before1, before2 := r1.sink.Stats().Drift.Sweeps, r2.sink.Stats().Drift.Sweeps
			r1.sink.SweepNow()
			r2.sink.SweepNow()
			d1, d2 := waitSweep(t, r1, before1), waitSweep(t, r2, before2)
			if d1.Last.Users == 0 || d2.Last.Users == 0 || d1.Last.Users+d2.Last.Users != 24 || d1.Last.Devices+d2.Last.Devices != 24 {
				t.Errorf("the members compared %d+%d users and %d+%d devices, want 24 of each, split between them",
					d1.Last.Users, d2.Last.Users, d1.Last.Devices, d2.Last.Devices)
			}
			got := append(slices.Clone(d1.Last.Examples), d2.Last.Examples...)
			sortDrift(got)
			if !slices.Equal(got, want) {
				t.Errorf("the members found\n%v\nwant\n%v", got, want)
			}
			if refused := exportRefusals(st.emu.Stats()) - refusedBefore; refused == 0 {
				t.Error("no export was refused while the other ran: the members' exports did not meet, the test proves nothing of the retry")
			}
		})
	}
}

// exportRefusals counts the exports refused with 429.
func exportRefusals(s emulator.Stats) int {
	n := 0
	for route, by := range s.Requests {
		if strings.Contains(route, "csv_export") {
			n += by[429]
		}
	}
	return n
}

func TestATargetWrittenWhileTheSweepRunsIsLeftOutNotCalledDrift(t *testing.T) {
	t.Parallel()
	for _, model := range models {
		t.Run(model, func(t *testing.T) {
			t.Parallel()
			// The export is a picture of its start, ready a while later.
			st := newStack(t, model, emulator.Config{ExportDelay: time.Second})
			r := st.startWith(crm, driftOptions(false))
			waitFirstSweep(t, r)
			const ext = "team/ops 7%?Müller"
			st.addDevices("dev/1")
			st.produce(
				change{topic: contactsTopic, op: event.OpSnapshot, key: contactKey(7), after: contact(7, ext, "pro", 3)},
				change{topic: devicesTopic, op: event.OpSnapshot, key: deviceKey(7, "dev/1"), after: device(7, "dev/1", ext)},
			)
			st.eventually("the rows in OneSignal", all(deviceTags("dev/1", map[string]string{"plan": "pro", "score": "3"}), ownedBy("dev/1", ext)))
			st.waitDrained()

			exports := func() int {
				n := 0
				for route, by := range st.emu.Stats().Requests {
					if strings.Contains(route, "csv_export") {
						n += by[200]
					}
				}
				return n
			}
			before, sweeps := exports(), r.sink.Stats().Drift.Sweeps
			r.sink.SweepNow()
			waitFor(t, "the export asked for", func() error {
				if exports() == before {
					return fmt.Errorf("no export yet")
				}
				return nil
			})
			// The stream changes the user after the export's picture.
			st.produce(change{topic: contactsTopic, op: event.OpUpdate, key: contactKey(7), after: contact(7, ext, "enterprise", 3)})
			st.eventually("the change in OneSignal", deviceTags("dev/1", map[string]string{"plan": "enterprise", "score": "3"}))
			d := waitSweep(t, r, sweeps)
			if len(d.Last.Counts) != 0 || d.Last.Skipped == 0 {
				t.Errorf("the sweep found %v and skipped %d; want no drift, the user written meanwhile skipped", d.Last.Counts, d.Last.Skipped)
			}

			// Nothing written during the next: compared, and in step.
			d = sweep(t, r)
			if len(d.Last.Counts) != 0 || d.Last.Skipped != 0 || d.Last.Users != 1 || d.Last.Devices != 1 {
				t.Errorf("the next sweep found %v, skipped %d, compared %d users and %d devices; want in step, 1 and 1",
					d.Last.Counts, d.Last.Skipped, d.Last.Users, d.Last.Devices)
			}
		})
	}
}

func TestARebalanceEndsTheSweepAndTheNewPartitionsAreSweptFromTheStart(t *testing.T) {
	t.Parallel()
	// An export slow enough that the rebalance comes while it runs.
	st := newStack(t, sink.ModelUser, emulator.Config{ExportDelay: 3 * time.Second})
	r1 := st.startWith(crm, driftOptions(false))
	waitFor(t, "the first sweep running", func() error {
		if d := r1.sink.Stats().Drift; !d.Running {
			return fmt.Errorf("no sweep running")
		}
		return nil
	})
	joined := time.Now()
	r2 := st.startWith(crm, driftOptions(false))
	waitFor(t, "two members", func() error {
		if s := r1.sink.Stats(); s.Members != 2 {
			return fmt.Errorf("members %d", s.Members)
		}
		return nil
	})
	for _, r := range []*running{r1, r2} {
		waitForWithin(t, "a sweep of the new partitions", time.Minute, func() error {
			d := r.sink.Stats().Drift
			switch {
			case d.Failed > 0:
				return fmt.Errorf("a sweep failed: %s", d.LastError)
			case d.Last == nil || d.Running:
				return fmt.Errorf("no sweep completed yet")
			}
			return nil
		})
	}
	d := r1.sink.Stats().Drift
	if !d.Last.Started.After(joined) || d.Sweeps != 1 || d.Failed != 0 {
		t.Errorf("the first member completed %d sweeps (%d failed), the last started %s, before the second member joined at %s: "+
			"the sweep of the generation before was not abandoned", d.Sweeps, d.Failed, d.Last.Started, joined)
	}
	select {
	case <-r1.done:
		t.Fatalf("the sink stopped: %v", r1.err)
	default:
	}
}
