package chaos

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
)

// Fault is a kind of fault the harness injects.
type Fault string

const (
	KillConnector      Fault = "kill connector"        // SIGKILL, then start it again after a pause
	TermConnector      Fault = "terminate connector"   // SIGTERM (it flushes and exits), then start it again after a pause
	KillSink           Fault = "kill sink"             // SIGKILL of one of the sinks, then start it again after a pause
	TermSink           Fault = "terminate sink"        // SIGTERM of one of the sinks (it leaves its group), then start it again after a pause
	TerminateWalsender Fault = "terminate walsender"   // pg_terminate_backend on the slot's active_pid
	RestartPostgres    Fault = "restart postgres"      // pg_ctl restart, -m fast or -m immediate (a crash)
	KafkaProduce       Fault = "kafka produce errors"  // every produce request fails for a while
	KafkaFetch         Fault = "kafka fetch errors"    // every fetch request fails for a while
	API5xx             Fault = "api 5xx"               // a share of API requests answered 500, 502 or 503
	API429             Fault = "api 429"               // a share answered 429 with Retry-After
	APIReset           Fault = "api resets"            // a share cut before they are applied
	APIDrop            Fault = "api success-then-drop" // a share applied, then cut before the answer
)

// Faults lists every kind, in the order reports show them.
var Faults = []Fault{KillConnector, TermConnector, KillSink, TermSink, TerminateWalsender, RestartPostgres, KafkaProduce, KafkaFetch, API5xx, API429, APIReset, APIDrop}

// deck is one round of the schedule: every kind of fault at least once,
// the connector's kill four times, since a crash is what the
// acknowledgement chain is most exposed to, and a sink's twice. The
// schedule deals shuffled decks one after the other, so every stretch of
// 16 faults holds each kind. A sink kill costs the killed process's
// partitions the consumer group's session timeout (sink.session_timeout)
// before they move, and runSinkFaults waits for the group to hold every
// sink again before the next.
var deck = []Fault{
	KillConnector, KillConnector, KillConnector, KillConnector, TermConnector, KillSink, KillSink, TermSink,
	TerminateWalsender, RestartPostgres, KafkaProduce, KafkaFetch,
	API5xx, API429, APIReset, APIDrop,
}

// schedule returns the faults of a run of length d with one fault every
// gap on average, each at a moment from the start.
func schedule(rng *rand.Rand, d, gap time.Duration) (at []time.Duration, faults []Fault) {
	n := int(d / gap)
	for len(faults) < n {
		hand := slices.Clone(deck)
		rng.Shuffle(len(hand), func(i, j int) { hand[i], hand[j] = hand[j], hand[i] })
		faults = append(faults, hand...)
	}
	faults = faults[:n]
	// Evenly spread over d, each moved by up to 40 % of the gap either
	// way, so that the last one still falls inside d.
	for i := range faults {
		jitter := time.Duration((rng.Float64()*0.8 - 0.4) * float64(gap))
		at = append(at, time.Duration(i)*gap+gap/2+jitter)
	}
	return at, faults
}

// Errors the harness injects into Kafka requests, all retriable. A
// produce error is one the connector must retry: NOT_ENOUGH_REPLICAS_AFTER_APPEND
// and REQUEST_TIMED_OUT are answered after the broker stored the records,
// so the retry writes them again. Of the fetch errors, kafka-go's reader
// retries the first two by itself and hands the others to the sink.
var (
	ProduceErrors = []*kerr.Error{kerr.NotEnoughReplicas, kerr.NotEnoughReplicasAfterAppend, kerr.RequestTimedOut, kerr.NotLeaderForPartition}
	FetchErrors   = []*kerr.Error{kerr.NotLeaderForPartition, kerr.RequestTimedOut, kerr.KafkaStorageError, kerr.UnknownServerError}
)

// injector makes faults happen. Faults with a duration (Kafka errors, API
// phases) end on timers of their own, so a slow fault (a PostgreSQL
// restart) does not stretch them. A fault with a duration counts as
// injected once it failed at least one request; one that met none (the
// sink was rejoining its group, say) counts as missed.
type injector struct {
	t         testing.TB
	rng       *rand.Rand
	cluster   *pgtest.Cluster
	dsn       string // the source database, as a superuser
	slot      string
	kafka     *kfake.Cluster
	emu       *emulator.Emulator
	connector *daemon
	sinks     []*daemon // the sink processes, members of one consumer group
	note      func(format string, args ...any)
	elapsed   func() time.Duration
	// restartPause bounds the pause before a killed or stopped process
	// starts again (see pause).
	restartPause time.Duration

	mu       sync.Mutex
	injected map[Fault]int
	missed   map[Fault]int // found nothing to break
	hits     map[Fault]int // requests the timed faults failed
	timers   []*time.Timer
	ends     []func() // of the Kafka faults
	quiet    bool

	phases chan Fault // API phases waiting their turn
	phaser sync.WaitGroup
	// sinkFaults are the sink kills and terminations waiting for the
	// sinks' consumer group to be whole (see runSinkFaults), unless
	// sinkKillsAnytime.
	sinkFaults       chan Fault
	sinkKillsAnytime bool
	processFaults    []ProcessFault // the kills and terminations done, in order
	brokers          []string
	group            string
	phaseRNG         *rand.Rand // runPhases' own: it runs beside inject
	sinkRNG          *rand.Rand // runSinkFaults' own
}

// ProcessFault is a process the harness killed or stopped, and the stall
// it caused.
type ProcessFault struct {
	Fault   Fault
	Process string        // connector, sink-1, sink-2, …
	At      time.Duration // when the signal went, from the start of the run
	Pause   time.Duration // after the process was gone, before the supervisor started it again
	// Recovered is when the killed process's stage was whole again: for a
	// sink, its consumer group stable with every sink in it, the new
	// process among them; for the connector, the new process's first
	// produce request to a change topic. 0: not seen before the stage's
	// next kill or SIGTERM, nor within 3 min.
	Recovered time.Duration
	// Stall is the longest time a partition of the stage went without a
	// write after the signal (see run.stalls), and Partition which one:
	// targets/N for a sink, users/N or devices/N for the connector.
	Stall     time.Duration
	Partition string
}

// inject makes one fault happen, on the caller's goroutine (the test's:
// a PostgreSQL restart fails the test when the server does not come back).
func (in *injector) inject(ctx context.Context, f Fault) {
	var detail string
	ok := true
	switch f {
	case KillConnector, TermConnector:
		pause := in.pause(in.rng)
		var at time.Duration
		at, ok = in.signalUntilDone(ctx, in.connector, f, pause)
		detail = "(no process within 10 s)"
		if ok {
			in.recordProcessFault(ProcessFault{Fault: f, Process: in.connector.role, At: at, Pause: pause})
			detail = fmt.Sprintf("at +%s, started again after %s", at.Round(10*time.Millisecond), pause.Round(time.Millisecond))
		}
	case KillSink, TermSink:
		if !in.sinkKillsAnytime {
			select {
			case in.sinkFaults <- f:
				in.note("%s queued", f)
			default:
				in.count(f, false)
				in.note("%s missed: %d sink faults queued already", f, cap(in.sinkFaults))
			}
			return
		}
		d := in.runningSink(in.rng)
		if d == nil {
			ok, detail = false, "(no sink running)"
			break
		}
		pause := in.pause(in.rng)
		var at time.Duration
		at, ok = in.signalUntilDone(ctx, d, f, pause)
		detail = d.role + " (no process within 10 s)"
		if ok {
			in.recordProcessFault(ProcessFault{Fault: f, Process: d.role, At: at, Pause: pause})
			detail = fmt.Sprintf("%s at +%s, started again after %s", d.role, at.Round(10*time.Millisecond), pause.Round(time.Millisecond))
		}
	case TerminateWalsender:
		ok, detail = in.terminateWalsender(ctx)
	case RestartPostgres:
		mode := []string{"fast", "immediate"}[in.rng.IntN(2)]
		began := time.Now()
		in.cluster.Restart(in.t, mode)
		detail = fmt.Sprintf("-m %s, back in %s", mode, time.Since(began).Round(time.Millisecond))
	case KafkaProduce:
		in.kafkaFault(f, kmsg.Produce, ProduceErrors[in.rng.IntN(len(ProduceErrors))])
		return
	case KafkaFetch:
		in.kafkaFault(f, kmsg.Fetch, FetchErrors[in.rng.IntN(len(FetchErrors))])
		return
	case API5xx, API429, APIReset, APIDrop:
		select {
		case in.phases <- f:
			in.note("%s queued", f)
		default:
			in.count(f, false)
			in.note("%s missed: %d API phases queued already", f, cap(in.phases))
		}
		return
	}
	in.count(f, ok)
	if !ok {
		detail = "missed: nothing to break " + detail
	}
	in.note("%s %s", f, detail)
}

func (in *injector) count(f Fault, ok bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if ok {
		in.injected[f]++
	} else {
		in.missed[f]++
	}
}

// signalUntilDone kills the process (a kill fault) or stops it with
// SIGTERM, waiting up to 10 s for one to be running: the supervisor may be
// between two runs. A SIGTERM also waits for the process to have run for a
// second, as a rolling update stops a pod that runs: a Go program
// signalled in its first milliseconds, before main installed its handler,
// dies of the signal instead of stopping cleanly. It returns when the
// signal went.
func (in *injector) signalUntilDone(ctx context.Context, d *daemon, f Fault, pause time.Duration) (time.Duration, bool) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var at time.Duration
		var ok bool
		if f == TermConnector || f == TermSink {
			if p := d.running(); p != nil && in.elapsed()-p.started >= time.Second {
				at, ok = d.terminateRunning(pause)
			}
		} else {
			at, ok = d.kill(pause)
		}
		if ok {
			return at, true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, false
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// pause draws the pause before a killed or stopped process starts again:
// from 50 ms (a supervisor with no backoff) to restartPause.
func (in *injector) pause(rng *rand.Rand) time.Duration {
	const least = 50 * time.Millisecond
	if in.restartPause <= least {
		return in.restartPause
	}
	return randomDuration(rng, least, in.restartPause)
}

// runningSink draws one of the sinks that have a process running, or
// returns nil when none has. A fault only ever hits a running sink, so
// the sinks are all down at once only when the one it hits was the last
// running, and then for no longer than that sink's pause (and its start):
// with more than one sink, runSinkFaults hits one only when every sink is
// in the group, so one at most is down.
func (in *injector) runningSink(rng *rand.Rand) *daemon {
	var running []*daemon
	for _, d := range in.sinks {
		if d.running() != nil {
			running = append(running, d)
		}
	}
	if len(running) == 0 {
		return nil
	}
	return running[rng.IntN(len(running))]
}

func (in *injector) recordProcessFault(pf ProcessFault) {
	in.mu.Lock()
	in.processFaults = append(in.processFaults, pf)
	in.mu.Unlock()
}

// terminateWalsender ends the backend streaming the slot, waiting up to
// 15 s for one: the connector may be reconnecting.
func (in *injector) terminateWalsender(ctx context.Context) (bool, string) {
	deadline := time.Now().Add(15 * time.Second)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		pid, err := in.walsenderPID(ctx)
		if err == nil && pid != 0 {
			return true, fmt.Sprintf("pid %d", pid)
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	return false, "(no walsender within 15 s)"
}

func (in *injector) walsenderPID(ctx context.Context) (int, error) {
	conn, err := connect(ctx, in.dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var pid int
	err = conn.QueryRow(ctx, `SELECT active_pid FROM pg_replication_slots
		WHERE slot_name = $1 AND active_pid IS NOT NULL AND pg_terminate_backend(active_pid)`, in.slot).Scan(&pid)
	if err == pgx.ErrNoRows {
		return 0, nil
	}
	return pid, err
}

// kafkaFault fails every request of key with err for 1 to 5 s, and on
// until it failed one (up to 20 s): a fault that met no request proves
// nothing, and the connector may have been restarting.
func (in *injector) kafkaFault(f Fault, key kmsg.Key, err *kerr.Error) {
	d := in.duration(time.Second, 5*time.Second)
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.quiet {
		return
	}
	h := in.kafka.Fault(kfake.Fault{Keys: []kmsg.Key{key}, Err: err, Count: -1})
	began := time.Now()
	var once sync.Once
	end := func() {
		once.Do(func() {
			h.Remove()
			hits := h.Hits()
			in.mu.Lock()
			in.hits[f] += hits
			if hits > 0 {
				in.injected[f]++
			} else {
				in.missed[f]++
			}
			in.mu.Unlock()
			in.note("%s end after %s: %s failed %d requests", f, time.Since(began).Round(time.Millisecond), err.Message, hits)
		})
	}
	var check func()
	check = func() {
		if h.Hits() == 0 && time.Since(began) < 20*time.Second {
			in.mu.Lock()
			if !in.quiet {
				in.timers = append(in.timers, time.AfterFunc(250*time.Millisecond, check))
			}
			in.mu.Unlock()
			return
		}
		end()
	}
	in.ends = append(in.ends, end)
	in.timers = append(in.timers, time.AfterFunc(d, check))
	in.note("%s: %s for %s", f, err.Message, d.Round(time.Millisecond))
}

// runPhases applies the API phases queued by inject one after the other,
// until the queue closes. Each first waits, up to a minute, for the sink
// to be calling the API: after a SIGKILL the sink rejoins its consumer
// group only once the dead member's 30 s session timed out, and a phase
// meanwhile would meet no request. A phase makes the emulator unreliable
// for 2 to 8 s.
func (in *injector) runPhases(ctx context.Context) {
	rng := in.phaseRNG
	for f := range in.phases {
		d := randomDuration(rng, 2*time.Second, 8*time.Second)
		share := 0.2 + 0.8*rng.Float64()
		faults := emulator.Faults{Seed: rng.Int64()}
		switch f {
		case API5xx:
			faults.Status = map[int]float64{500: share * 0.4, 502: share * 0.3, 503: share * 0.3}
		case API429:
			faults.Status = map[int]float64{429: share}
			faults.RetryAfter = 1 + rng.IntN(2)
		case APIReset:
			share = min(share, 0.7)
			faults.Reset = share
		case APIDrop:
			share = min(share, 0.7)
			faults.Drop = share
		}
		waited := in.waitForCalls(ctx, time.Minute)
		if err := in.emu.SetFaults(faults); err != nil {
			in.t.Errorf("chaos: set emulator faults %+v: %v", faults, err)
			continue
		}
		before := faulted(in.emu.Stats(), f)
		in.note("%s on %.0f %% of requests for %s (after %s waiting for API calls)", f, share*100, d.Round(time.Millisecond), waited.Round(100*time.Millisecond))
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
		_ = in.emu.SetFaults(emulator.Faults{})
		hits := faulted(in.emu.Stats(), f) - before
		in.mu.Lock()
		in.hits[f] += hits
		if hits > 0 {
			in.injected[f]++
		} else {
			in.missed[f]++
		}
		in.mu.Unlock()
		in.note("%s end: %d requests failed", f, hits)
	}
}

// runSinkFaults kills or terminates a sink for each fault queued by
// inject, one after the other, until the queue closes: each once the
// sinks' consumer group is stable with every sink in it, so that the
// process hit holds partitions. A process killed while it is still
// joining stays a member of kfake's group, partitions and all, for
// minutes (see docs/reliability.md), so the harness hits a sink that
// works; sinkKillsAnytime hits on the spot instead. After each it waits
// for the group to be whole again, with the new process in it, and notes
// when: the end of the window in which stalls measures the fault's stall.
func (in *injector) runSinkFaults(ctx context.Context) {
	c, done := broker.Plain(in.brokers).Client(5 * time.Second)
	defer done()
	var members []string
	for f := range in.sinkFaults {
		began := time.Now()
		whole := false
		for !whole && time.Since(began) < 3*time.Minute && ctx.Err() == nil {
			whole, members = in.groupWhole(ctx, c, nil)
			if !whole {
				sleep(ctx, 250*time.Millisecond)
			}
		}
		d := in.runningSink(in.sinkRNG)
		if d == nil {
			in.count(f, false)
			in.note("%s missed: no sink running", f)
			continue
		}
		pause := in.pause(in.sinkRNG)
		waited := time.Since(began)
		at, ok := in.signalUntilDone(ctx, d, f, pause)
		in.count(f, ok)
		in.note("%s %s at +%s, started again after %s (after %s waiting for its group to be stable with every sink%s)", f, d.role,
			at.Round(10*time.Millisecond), pause.Round(time.Millisecond), waited.Round(100*time.Millisecond), map[bool]string{true: "", false: ": it was not"}[whole])
		if !ok {
			continue
		}
		pf := ProcessFault{Fault: f, Process: d.role, At: at, Pause: pause}
		for after := time.Now(); time.Since(after) < 3*time.Minute && ctx.Err() == nil; {
			if now, _ := in.groupWhole(ctx, c, members); now {
				pf.Recovered = in.elapsed()
				break
			}
			sleep(ctx, 250*time.Millisecond)
		}
		in.recordProcessFault(pf)
		if pf.Recovered > 0 {
			in.note("group whole again %s after the %s of %s", (pf.Recovered - pf.At).Round(100*time.Millisecond), f, d.role)
		} else {
			in.note("group not whole again within 3 min of the %s of %s", f, d.role)
		}
	}
}

// groupWhole reports whether the sinks' group is stable with one member
// per sink, and none of them in before (the members of an earlier
// look); and returns its members.
func (in *injector) groupWhole(ctx context.Context, c *kafka.Client, before []string) (bool, []string) {
	resp, err := c.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{in.group}})
	if err != nil || len(resp.Groups) != 1 || resp.Groups[0].GroupState != "Stable" || len(resp.Groups[0].Members) != len(in.sinks) {
		return false, nil
	}
	var members []string
	for _, m := range resp.Groups[0].Members {
		members = append(members, m.MemberID)
	}
	// A new process is a new member: while the killed one's session
	// lasts, the old membership still looks whole.
	newcomer := before == nil
	for _, m := range members {
		if !slices.Contains(before, m) {
			newcomer = true
		}
	}
	return newcomer, members
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// faulted is how many requests the emulator has failed with faults of kind f.
func faulted(st emulator.Stats, f Fault) int {
	switch f {
	case API5xx:
		return st.Faults.Status[500] + st.Faults.Status[502] + st.Faults.Status[503]
	case API429:
		return st.Faults.Status[429]
	case APIReset:
		return st.Faults.Resets
	case APIDrop:
		return st.Faults.Drops
	}
	return 0
}

// waitForCalls waits until the emulator serves requests, up to limit, and
// returns how long it waited.
func (in *injector) waitForCalls(ctx context.Context, limit time.Duration) time.Duration {
	began := time.Now()
	last := totalRequests(in.emu.Stats())
	for time.Since(began) < limit && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
		if totalRequests(in.emu.Stats()) > last {
			break
		}
	}
	return time.Since(began)
}

func (in *injector) duration(lo, hi time.Duration) time.Duration {
	return randomDuration(in.rng, lo, hi)
}

func randomDuration(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)))
}

// stop lets the queued API phases run (the sink drains its backlog
// meanwhile), then ends every fault, counting what each did, and keeps new
// ones from starting.
func (in *injector) stop() {
	close(in.phases)
	close(in.sinkFaults)
	in.phaser.Wait()
	in.mu.Lock()
	in.quiet = true
	for _, t := range in.timers {
		t.Stop()
	}
	ends := in.ends
	in.mu.Unlock()
	for _, end := range ends {
		end() // once each: those whose timer fired are no-ops
	}
	_ = in.emu.SetFaults(emulator.Faults{})
}

func (in *injector) counts() (injected, missed, hits map[Fault]int, processFaults []ProcessFault) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return maps.Clone(in.injected), maps.Clone(in.missed), maps.Clone(in.hits), slices.Clone(in.processFaults)
}
