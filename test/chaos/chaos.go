// Package chaos is the crash and fault harness. It runs the built
// onesignal-cdc binary as a connector process and several sink processes
// (one consumer group; three by default) against a private PostgreSQL cluster, a kfake broker in
// this process and the OneSignal emulator, in either API generation;
// drives a mixed workload on a CRM-shaped schema (surrogate keys, the
// external id in a column, devices keyed by contact and device; inserts,
// updates, deletes, key changes, external-id changes, devices moved by
// their owner and by their key, logouts, savepoints rolled back, aborted
// transactions, small and 10,000-change transactions, TOAST values, a
// column added mid-run); and meanwhile, at moments drawn from a seeded
// generator, kills the connector or a sink, or stops one with SIGTERM,
// and starts it again after a random pause; ends the walsender, restarts
// PostgreSQL, fails Kafka's produce
// and fetch requests and makes the API answer 5xx and 429, cut
// connections, or apply a request and cut the answer. All along it
// checks that the slot never confirms a transaction Kafka does not hold
// (ledger.go), and notes every partition's writes, to measure the stall
// each kill caused. Afterwards, with every fault off, it checks that Kafka
// holds every committed change, that the sinks' consumer group committed
// everything, that OneSignal says what the rows say (state.go: in the
// user model every user's tags and every device's owner, in the player
// model every device's owner and the tags it carries, and the owner of
// every email record), and that nothing went to the dead-letter topic.
//
// TestChaos runs a short schedule in the test suite; cmd/chaos runs a long
// one, whose report docs/reliability.md shows.
package chaos

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// Options shape a run.
type Options struct {
	// Model is the API generation (onesignal.model): ModelUser or
	// ModelPlayer. Default "": ModelUser.
	Model string
	// NoPlayersAnswersOK makes the emulator answer 200 to tags for an
	// external id no device carries, as the API spec has it, instead of the
	// 404 the docs describe (player model only).
	NoPlayersAnswersOK bool
	Seed               uint64        // draws the schedule, the workload and the faults' details
	Duration           time.Duration // how long the workload and the faults go on
	Gap                time.Duration // between two faults, on average
	Users              int           // rows in the users table before the connector starts (its snapshot reads them)
	Devices            int           // the device pool, seeded in the emulator as the SDK would
	Pace               time.Duration // the longest pause between two workload transactions
	BigEvery           time.Duration // one 10,000-change transaction this often; 0: one, a third of the way in
	LogDir             string        // where the daemons' logs go; "" is a temporary directory
	// Settle bounds each wait after the faults (the slot catching up, the
	// group catching up, OneSignal converging).
	Settle time.Duration
	// Sinks is the number of sink processes, members of one consumer
	// group. Default 0: 3.
	Sinks int
	// RestartPause bounds the pause before the supervisor starts a killed
	// or stopped process again: each is drawn from 50 ms to RestartPause.
	// Default 0: 3s.
	RestartPause time.Duration
	// SinkKillsAnytime kills or stops a sink when the schedule says, even
	// while it is still joining its consumer group; by default a sink
	// fault waits until the group is stable with every sink in it.
	SinkKillsAnytime bool
	Logf             func(format string, args ...any) // the timeline as it happens; nil is quiet
}

// Report is what a run found.
type Report struct {
	Seed               uint64
	Model              string
	NoPlayersAnswersOK bool
	Duration           time.Duration // of the faults and the workload
	Elapsed            time.Duration // of the whole run, the settling included

	Sinks           int            // sink processes
	RestartPause    time.Duration  // the longest pause before a killed or stopped process starts again
	Kills           map[string]int // SIGKILLs, by process (connector, sink-1, sink-2, …)
	Terms           map[string]int // SIGTERMs mid-run, by process
	ProcessFaults   []ProcessFault // every kill and SIGTERM, in order, with its stall
	Injected        map[Fault]int
	Missed          map[Fault]int // scheduled, but found nothing to break
	Hits            map[Fault]int // requests the timed faults failed
	UnexpectedExits []string      // a process ended without being killed
	StopErrors      []string      // a process did not stop cleanly on the final SIGTERM

	Transactions, Changes int            // committed by the workload (acknowledged COMMITs)
	Attempts, Unknown     int            // transactions begun; commits whose outcome is unknown
	Aborted               int            // transactions rolled back on purpose
	Big, Toast, Schema    int            // 10,000-change transactions, TOAST values written, schema changes
	Kinds                 map[string]int // committed statements by kind
	WorkloadErrors        []string
	Users, Devices        int // compared at the end
	Records               int // email records compared

	Events       int           // change records Kafka holds, repeats included
	SlotSamples  int           // confirmed_flush_lsn readings
	SlotChecked  int           // of them, checked against what Kafka held
	MaxConfirmed pglogrepl.LSN // the furthest the slot got
	Violations   []string      // the slot confirmed a transaction Kafka did not hold
	NotInKafka   []string      // committed transactions Kafka does not hold whole at the end
	BadEvents    []string      // records that do not decode

	Settled     map[string]time.Duration // how long each final wait took
	Behind      []string                 // partitions the sinks' group had not committed to their end after the settling
	Mismatches  []string                 // OneSignal against the rows
	Histories   map[string][]string      // for some mismatched ids: their events in Kafka and the API calls about them
	DeadLetters int64
	API         emulator.Stats
	Timeline    []string
	Logs        map[string]string // the daemons' log files
}

// Problems lists everything that makes the run a failure.
func (r *Report) Problems() []string {
	var out []string
	add := func(title string, items []string) {
		if len(items) > 0 {
			out = append(out, fmt.Sprintf("%s (%d):\n%s", title, len(items), indent(strings.Join(capList(items, 30), "\n"))))
		}
	}
	add("the slot confirmed transactions Kafka did not hold", r.Violations)
	add("committed transactions missing from Kafka", r.NotInKafka)
	add("records that are not change events", r.BadEvents)
	add("partitions the sinks' group did not commit to their end", r.Behind)
	add("OneSignal differs from the rows", r.Mismatches)
	if r.DeadLetters != 0 {
		out = append(out, fmt.Sprintf("%d dead letters, with only valid rows written", r.DeadLetters))
	}
	add("processes that exited without being killed", r.UnexpectedExits)
	add("processes that did not stop cleanly on SIGTERM", r.StopErrors)
	add("workload statements that failed for another reason than a lost connection", r.WorkloadErrors)
	return out
}

func capList(items []string, n int) []string {
	if len(items) <= n {
		return items
	}
	return append(slices.Clone(items[:n]), fmt.Sprintf("… and %d more", len(items)-n))
}

// String is the report as docs/reliability.md shows it.
func (r *Report) String() string {
	var b strings.Builder
	model := "the " + r.Model + " model"
	if r.Model == ModelPlayer {
		model += map[bool]string{true: " (tags for an id no device carries answered 200)", false: " (tags for an id no device carries answered 404)"}[r.NoPlayersAnswersOK]
	}
	fmt.Fprintf(&b, "seed %d, %s, faults and workload for %s, %s in all\n", r.Seed, model, r.Duration.Round(time.Second), r.Elapsed.Round(time.Second))
	fmt.Fprintf(&b, "the connector and %d sinks in one consumer group; a killed or stopped process started again after 50 ms to %s\n", r.Sinks, r.RestartPause)
	roles := append([]string{"connector"}, sinkRoleNames(r.Sinks)...)
	var kills, terms []string
	totalKills, totalTerms := 0, 0
	for _, role := range roles {
		kills = append(kills, fmt.Sprintf("%s %d", role, r.Kills[role]))
		terms = append(terms, fmt.Sprintf("%s %d", role, r.Terms[role]))
		totalKills += r.Kills[role]
		totalTerms += r.Terms[role]
	}
	fmt.Fprintf(&b, "kills survived: %s (total %d); SIGTERMs: %s (total %d)\n", strings.Join(kills, ", "), totalKills, strings.Join(terms, ", "), totalTerms)
	b.WriteString(stallDefinition)
	round := func(d time.Duration) time.Duration { return d.Round(100 * time.Millisecond) }
	var worst *ProcessFault
	for _, f := range []Fault{KillConnector, TermConnector, KillSink, TermSink} {
		var stalls []time.Duration
		var longest *ProcessFault
		for i, pf := range r.ProcessFaults {
			if pf.Fault == f {
				stalls = append(stalls, pf.Stall)
				if longest == nil || pf.Stall > longest.Stall {
					longest = &r.ProcessFaults[i]
				}
			}
		}
		if len(stalls) == 0 {
			continue
		}
		if worst == nil || longest.Stall > worst.Stall {
			worst = longest
		}
		slices.Sort(stalls)
		fmt.Fprintf(&b, "stalls after a %s (%d): longest %s (%s at +%s, %s), median %s, shortest %s\n", f, len(stalls),
			round(longest.Stall), longest.Process, longest.At.Round(time.Second), longest.Partition,
			round(stalls[len(stalls)/2]), round(stalls[0]))
	}
	if worst != nil {
		fmt.Fprintf(&b, "longest stall of the run: %s, after the %s of %s at +%s (%s)\n", round(worst.Stall), worst.Fault, worst.Process,
			worst.At.Round(100*time.Millisecond), worst.Partition)
		b.WriteString("stall per kill or SIGTERM (when, what, the pause before the process started again, when its stage was whole again, the stall):\n")
		for _, pf := range r.ProcessFaults {
			recovered := "not seen"
			if pf.Recovered > 0 {
				recovered = fmt.Sprintf("+%.1fs", pf.Recovered.Seconds())
			}
			fmt.Fprintf(&b, "  +%6.1fs %-19s %-9s pause %-6s whole %-9s stall %6s (%s)\n", pf.At.Seconds(), pf.Fault, pf.Process,
				pf.Pause.Round(10*time.Millisecond), recovered, round(pf.Stall), pf.Partition)
		}
	}
	b.WriteString("faults injected by kind:\n")
	for _, f := range Faults {
		fmt.Fprintf(&b, "  %-24s %4d", f, r.Injected[f])
		if r.Hits[f] > 0 {
			fmt.Fprintf(&b, "  (%d requests failed)", r.Hits[f])
		}
		if r.Missed[f] > 0 {
			fmt.Fprintf(&b, "  (%d found nothing to break)", r.Missed[f])
		}
		b.WriteString("\n")
	}
	st := r.API.Faults
	fmt.Fprintf(&b, "API requests faulted: 500=%d 502=%d 503=%d 429=%d resets=%d drops=%d; rate-limit 429s=%d; requests in all=%d\n",
		st.Status[500], st.Status[502], st.Status[503], st.Status[429], st.Resets, st.Drops, r.API.RateLimited, totalRequests(r.API))
	fmt.Fprintf(&b, "changes written: %d in %d transactions (%d begun, %d rolled back on purpose, %d with an unknown outcome); %d transactions of 10,000 changes; %d TOAST values; %d schema change(s)\n",
		r.Changes, r.Transactions, r.Attempts, r.Aborted, r.Unknown, r.Big, r.Toast, r.Schema)
	var kinds []string
	for _, k := range kindNames {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, r.Kinds[k]))
	}
	fmt.Fprintf(&b, "statements committed: %s\n", strings.Join(kinds, ", "))
	fmt.Fprintf(&b, "Kafka: %d change records (repeats included); slot read %d times, %d checked against Kafka, furthest %s; violations %d; committed transactions missing %d\n",
		r.Events, r.SlotSamples, r.SlotChecked, r.MaxConfirmed, len(r.Violations), len(r.NotInKafka))
	var settled []string
	for _, k := range slices.Sorted(maps.Keys(r.Settled)) {
		settled = append(settled, fmt.Sprintf("%s %s", k, r.Settled[k].Round(100*time.Millisecond)))
	}
	fmt.Fprintf(&b, "settling: %s\n", strings.Join(settled, ", "))
	compared := fmt.Sprintf("%d users, %d devices, %d email records", r.Users, r.Devices, r.Records)
	if r.Model == ModelPlayer {
		compared = fmt.Sprintf("%d devices (owner and tags), %d email records (owner and tags)", r.Devices, r.Records)
	}
	fmt.Fprintf(&b, "compared: %s; mismatches %d\n", compared, len(r.Mismatches))
	for _, m := range capList(r.Mismatches, 30) {
		fmt.Fprintf(&b, "  %s\n", m)
	}
	for _, id := range slices.Sorted(maps.Keys(r.Histories)) {
		fmt.Fprintf(&b, "  history of %q:\n", id)
		for _, line := range r.Histories[id] {
			fmt.Fprintf(&b, "    %s\n", line)
		}
	}
	fmt.Fprintf(&b, "dead letters: %d\n", r.DeadLetters)
	fmt.Fprintf(&b, "unexpected exits: %d; unclean stops: %d; workload errors: %d\n", len(r.UnexpectedExits), len(r.StopErrors), len(r.WorkloadErrors))
	return b.String()
}

func totalRequests(st emulator.Stats) int {
	n := 0
	for _, byStatus := range st.Requests {
		for _, c := range byStatus {
			n += c
		}
	}
	return n
}

// processConfig is the configuration of the processes on st, in model
// (each sink's has its own state_dir besides).
func processConfig(st *daemontest.Stack, model string) config.Config {
	c := st.Config()
	c.Postgres.Slot, c.Postgres.Publication = slotName, "chaos"
	c.Postgres.StatusInterval, c.Postgres.HeartbeatInterval = 250*time.Millisecond, time.Second
	c.Postgres.SnapshotChunkSize = 100
	c.Kafka.TopicPrefix, c.Kafka.Partitions, c.Kafka.ConsumerGroup = "cdc", partitions, group
	c.OneSignal.Model = model
	c.OneSignal.Concurrency = 16
	c.Mapping = transform.Mapping{
		Users: &transform.UsersMapping{Table: "public.users", ExternalID: "External Id", Email: "email",
			Tags: map[string]string{"Plan": "plan", "Score": "level", "Country Code": "geo", "Bio": ""}},
		Devices: &transform.DevicesMapping{Table: "public.devices", DeviceID: "device_id", ExternalID: "ext_id"},
	}
	c.Ops.Listen = ""
	return c
}

const (
	slotName   = "chaos"
	group      = "chaos"
	partitions = 4 // of every topic, the sink's targets topic included
)

var (
	changeTopics = []string{"cdc.public.users", "cdc.public.devices"}
	targetsTopic = "cdc.sink-targets"
)

// sinkRoleNames names n sink processes: sink-1, sink-2, …
func sinkRoleNames(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("sink-%d", i+1))
	}
	return out
}

// Run runs the harness and returns its report. It fails t only when the
// harness itself cannot go on (PostgreSQL does not start, say); what it
// finds in the daemon is in the report, for the caller to judge.
func Run(t testing.TB, o Options) *Report {
	t.Helper()
	if o.Model == "" {
		o.Model = ModelUser
	}
	if o.Sinks <= 0 {
		o.Sinks = 3
	}
	if o.RestartPause <= 0 {
		o.RestartPause = 3 * time.Second
	}
	h := &run{t: t, o: o, began: time.Now()}
	h.r = &Report{Seed: o.Seed, Model: o.Model, NoPlayersAnswersOK: o.NoPlayersAnswersOK, Duration: o.Duration, Sinks: o.Sinks, RestartPause: o.RestartPause,
		Settled: map[string]time.Duration{}, Logs: map[string]string{}}
	h.setUp()
	h.chaos()
	h.settle()
	h.tearDown()
	return h.r
}

// run is one run of the harness, from setUp to tearDown.
type run struct {
	t     testing.TB
	o     Options
	r     *Report
	began time.Time

	timelineMu sync.Mutex

	rng     *rand.Rand // the seed's generator, which seeds the others
	db      *pgtest.DB
	cluster *pgtest.Cluster
	kafka   *broker.Embedded
	emu     *emulator.Emulator
	trace   *apiTrace
	produce *activity // the connector's produce requests, by change-topic partition
	devices []string
	ledger  *ledger
	work    *workload
	daemons map[string]*daemon
	sinks   []string // the sinks' roles
	in      *injector
	workEnd time.Duration // when the workload ended

	stopDaemons    func()
	stopBackground func()
}

func (h *run) elapsed() time.Duration { return time.Since(h.began) }

// note adds a line to the timeline.
func (h *run) note(format string, args ...any) {
	line := fmt.Sprintf("+%7.2fs ", h.elapsed().Seconds()) + fmt.Sprintf(format, args...)
	h.timelineMu.Lock()
	h.r.Timeline = append(h.r.Timeline, line)
	h.timelineMu.Unlock()
	if h.o.Logf != nil {
		h.o.Logf("%s", line)
	}
}

// setUp starts PostgreSQL, the broker, the emulator and the daemons,
// seeds the tables and waits for the connector to stream; then the
// watchers start.
func (h *run) setUp() {
	t, o, ctx := h.t, h.o, context.Background()
	logDir := o.LogDir
	if logDir == "" {
		logDir = t.TempDir()
	}

	// The source: a cluster of the run's own, so that it can be restarted.
	h.cluster = pgtest.StartCluster(t)
	var err error
	if h.trace, err = newAPITrace(filepath.Join(logDir, "api.log"), partitions, h.elapsed); err != nil {
		t.Fatalf("chaos: %v", err)
	}
	t.Cleanup(h.trace.close) // once the API's server is closed: cleanups run last first
	st := daemontest.NewStack(t, daemontest.StackOptions{
		Cluster: h.cluster,
		Emulator: emulator.Config{
			AppID: "3c1e8f9a-0000-4000-8000-0000000c4a05", APIKey: "chaos-key",
			RateLimits:         emulator.RateLimits{Enabled: true},
			NoPlayersAnswersOK: o.NoPlayersAnswersOK,
		},
		Serve: h.trace.wrap,
	})
	h.db, h.kafka, h.emu = st.DB, st.Kafka, st.Emulator
	setup, err := connect(ctx, h.db.DSN)
	if err != nil {
		t.Fatalf("chaos: connect to the source: %v", err)
	}
	defer setup.Close(ctx)
	if _, err := setup.Exec(ctx, schema); err != nil {
		t.Fatalf("chaos: create the tables: %v", err)
	}
	h.produce = observeProduce(h.kafka.Cluster(), changeTopics, partitions, h.elapsed)
	h.devices = make([]string, o.Devices)
	for i := range h.devices {
		h.devices[i] = fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1)
		if i%10 == 9 {
			h.devices[i] = fmt.Sprintf("dev/%d %%?é", i+1) // ids that need escaping in a path
		}
		// As the SDK does on install.
		h.emu.AddSubscription(emulator.Subscription{ID: h.devices[i], Type: "AndroidPush", Token: "token-" + strconv.Itoa(i+1)})
	}

	h.rng = rand.New(rand.NewPCG(o.Seed, 0x6368616f73))
	h.ledger = newLedger(h.kafka.Brokers(), changeTopics, h.elapsed)
	h.work = newWorkload(h.rng.Uint64(), h.db.DSN, h.ledger, h.elapsed, h.devices, o.Pace)
	if err := h.work.seed(ctx, setup, o.Users); err != nil {
		t.Fatalf("chaos: seed the users: %v", err)
	}

	// One configuration file per process: the sinks' state_dir differ.
	configFor := func(role, stateDir string) string {
		c := processConfig(st, o.Model)
		c.Sink.StateDir = stateDir
		path := filepath.Join(logDir, role+".yaml")
		if err := daemontest.WriteConfigFile(path, c); err != nil {
			t.Fatal(err)
		}
		return path
	}

	h.daemons = map[string]*daemon{}
	h.sinks = sinkRoleNames(o.Sinks)
	superviseCtx, stop := context.WithCancel(ctx)
	var supervisors sync.WaitGroup
	for _, role := range append([]string{"connector"}, h.sinks...) {
		command, stateDir := "connector", ""
		if role != "connector" {
			command, stateDir = "sink", filepath.Join(logDir, role+"-state")
			if err := os.MkdirAll(stateDir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		d := &daemon{role: role, command: command, config: configFor(role, stateDir), logPath: filepath.Join(logDir, role+".log"), elapsed: h.elapsed}
		h.daemons[role] = d
		h.r.Logs[role] = d.logPath
		supervisors.Go(func() { d.supervise(superviseCtx) })
	}
	var once sync.Once
	h.stopDaemons = func() { once.Do(func() { stop(); supervisors.Wait() }) }
	t.Cleanup(h.stopDaemons)

	h.note("waiting for the connector to stream (snapshot of %d users)", o.Users)
	if err := waitFor(ctx, 2*time.Minute, func() (bool, error) { return slotActive(ctx, h.db.DSN, slotName) }); err != nil {
		t.Fatalf("chaos: the connector did not start streaming within 2 min: %v\n%s", err, tailFile(h.daemons["connector"].logPath, 4000))
	}
	h.note("streaming")

	bg, stopBackground := context.WithCancel(ctx)
	var background sync.WaitGroup
	background.Go(func() {
		if err := h.ledger.tail(bg); err != nil {
			t.Errorf("chaos: tail the change topics: %v", err)
		}
	})
	background.Go(func() { h.ledger.watchSlot(bg, h.db.DSN, slotName, 100*time.Millisecond) })
	background.Go(func() { watchGroup(bg, h.kafka.Brokers(), group, h.note) })
	var bgOnce sync.Once
	h.stopBackground = func() { bgOnce.Do(func() { stopBackground(); background.Wait() }) }
	t.Cleanup(h.stopBackground)
}

// chaos runs the workload and the schedule of faults for the run's
// duration, and on until the schedule's last fault is injected, then lets
// the API phases and sink kills still queued happen, and ends every fault.
// Injections fall behind the schedule on a slow machine (a kill waits out
// the pause before its process starts again): a fault left out would prove
// nothing about it.
func (h *run) chaos() {
	o, ctx := h.o, context.Background()
	runCtx, stopWork := context.WithCancel(ctx)
	defer stopWork()
	// The big transactions: one a third of the way in, or one every
	// BigEvery from a sixth of the way in.
	base := h.elapsed()
	bigAt := []time.Duration{base + o.Duration/3}
	if o.BigEvery > 0 {
		bigAt = nil
		for at := o.Duration / 6; at < o.Duration; at += o.BigEvery {
			bigAt = append(bigAt, base+at)
		}
	}
	var writer sync.WaitGroup
	writer.Go(func() { h.work.run(runCtx, bigAt, base+o.Duration*2/5) })

	var sinks []*daemon
	for _, role := range h.sinks {
		sinks = append(sinks, h.daemons[role])
	}
	in := &injector{
		t: h.t, rng: rand.New(rand.NewPCG(h.rng.Uint64(), 0x6661756c74)), cluster: h.cluster, dsn: h.db.DSN, slot: slotName,
		kafka: h.kafka.Cluster(), emu: h.emu, connector: h.daemons["connector"], sinks: sinks, note: h.note, elapsed: h.elapsed,
		injected: map[Fault]int{}, missed: map[Fault]int{}, hits: map[Fault]int{},
		phases: make(chan Fault, 16), phaseRNG: rand.New(rand.NewPCG(h.rng.Uint64(), 0x617069)),
		sinkFaults: make(chan Fault, 16), sinkKillsAnytime: o.SinkKillsAnytime, brokers: h.kafka.Brokers(), group: group,
		sinkRNG: rand.New(rand.NewPCG(h.rng.Uint64(), 0x73696e6b)), restartPause: o.RestartPause,
	}
	h.in = in
	in.phaser.Go(func() { in.runPhases(ctx) })
	in.phaser.Go(func() { in.runSinkFaults(ctx) })

	start := h.elapsed()
	at, faults := schedule(in.rng, o.Duration, o.Gap)
	for i, f := range faults {
		time.Sleep(start + at[i] - h.elapsed())
		in.inject(runCtx, f)
	}
	if late := h.elapsed() - (start + o.Duration); late > 0 {
		h.note("the schedule's last fault went in %s after the workload's %s", late.Round(10*time.Millisecond), o.Duration)
	}
	time.Sleep(start + o.Duration - h.elapsed())
	stopWork()
	writer.Wait()
	h.workEnd = h.elapsed()
	h.note("workload over; the API phases and sink faults still queued run now")
	in.stop()
	h.note("every fault is off")
}

// settle waits, with every fault off, for the slot to reach the end of
// the WAL (so Kafka holds every transaction), then for the sink's group
// to commit everything, then for OneSignal to say what the rows say; and
// records what differs.
func (h *run) settle() {
	ctx, r := context.Background(), h.r
	wait := func(name string, f func() (bool, error)) {
		began := time.Now()
		err := waitFor(ctx, h.o.Settle, f)
		r.Settled[name] = time.Since(began)
		if err != nil {
			h.note("%s: not within %s: %v", name, h.o.Settle, err)
			return
		}
		h.note("%s after %s", name, r.Settled[name].Round(100*time.Millisecond))
	}
	var endLSN pglogrepl.LSN
	wait("source quiet", func() (bool, error) {
		err := withConn(ctx, h.db.DSN, func(conn *pgx.Conn) (err error) {
			var s string
			if err = conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&s); err != nil {
				return err
			}
			endLSN, err = pglogrepl.ParseLSN(s)
			return err
		})
		return err == nil, err
	})
	wait("slot caught up", func() (bool, error) {
		var confirmed pglogrepl.LSN
		err := withConn(ctx, h.db.DSN, func(conn *pgx.Conn) (err error) {
			confirmed, err = confirmedFlush(ctx, conn, slotName)
			return err
		})
		return err == nil && confirmed >= endLSN && len(h.ledger.incomplete()) == 0, err
	})
	client, done := broker.Plain(h.kafka.Brokers()).Client(10 * time.Second)
	defer done()
	var lag []string
	wait("group caught up", func() (bool, error) {
		var err error
		lag, err = groupLag(ctx, client, group, append(slices.Clone(changeTopics), targetsTopic))
		return err == nil && len(lag) == 0, nil
	})
	if len(lag) > 0 {
		h.note("the group is behind: %s", strings.Join(lag, ", "))
	}
	r.Behind = lag
	var want, got oneSignalState
	wait("OneSignal in step", func() (bool, error) {
		err := withConn(ctx, h.db.DSN, func(conn *pgx.Conn) (err error) {
			want, err = expectedState(ctx, conn, h.o.Model, h.work.externalIDs(), h.devices)
			return err
		})
		if err != nil {
			return false, err
		}
		got = observedState(h.emu.State(), want)
		return reflect.DeepEqual(want, got), nil
	})
	var ids []string
	r.Mismatches, ids = mismatches(want, got)
	r.Users, r.Devices, r.Records = len(want.tags), len(want.owners), len(want.records)
	if len(ids) > 0 {
		// What Kafka and the API saw of the first few, for the report.
		ids = ids[:min(len(ids), 5)]
		r.Histories = map[string][]string{}
		events, err := kafkaHistory(ctx, h.kafka.Brokers(), changeTopics, ids)
		if err != nil {
			h.note("read the history of %v: %v", ids, err)
		}
		calls := h.trace.lines(ids)
		for _, id := range ids {
			r.Histories[id] = append(append(r.Histories[id], events[id]...), calls[id]...)
		}
		// What the sink's targets topic holds of them, and of the owners
		// their devices have and should have.
		var targets []string
		for _, id := range ids {
			if _, ok := want.owners[id]; ok {
				targets = append(targets, "device:"+id)
				for _, owner := range []string{want.owners[id], got.owners[id]} {
					if owner != "" && !slices.Contains(targets, "user:"+owner) {
						targets = append(targets, "user:"+owner)
					}
				}
			} else if owner, ok := want.records[id]; ok {
				// An email record: its own target, and its owners'.
				targets = append(targets, "record:email\x01"+id)
				for _, owner := range []string{owner, got.records[id]} {
					if owner != "" && !slices.Contains(targets, "user:"+owner) {
						targets = append(targets, "user:"+owner)
					}
				}
			} else {
				targets = append(targets, "user:"+id)
			}
		}
		committed, err := committedOffsets(ctx, client, group, targetsTopic)
		if err != nil {
			h.note("read the group's offsets of %s: %v", targetsTopic, err)
		}
		records, err := targetsHistory(ctx, h.kafka.Brokers(), targets, committed)
		if err != nil {
			h.note("read the targets topic: %v", err)
		}
		for _, target := range targets {
			r.Histories[target] = records[target]
		}
	}
	var err error
	if r.DeadLetters, err = messagesIn(ctx, client, "cdc.dlq"); err != nil {
		h.t.Errorf("chaos: count the dead letters: %v", err)
	}
	r.NotInKafka = h.ledger.incomplete()
}

// tearDown stops the watchers and the daemons and fills in the report.
func (h *run) tearDown() {
	h.stopBackground()
	h.stopDaemons()
	r := h.r
	r.Elapsed = h.elapsed()
	r.Kills, r.Terms = map[string]int{}, map[string]int{}
	for role, d := range h.daemons {
		kills, terms, unexpected, stopErrs := d.counts()
		r.Kills[role], r.Terms[role] = kills, terms
		for _, u := range unexpected {
			r.UnexpectedExits = append(r.UnexpectedExits, role+": "+u)
		}
		for _, s := range stopErrs {
			r.StopErrors = append(r.StopErrors, role+": "+s)
		}
	}
	sort.Strings(r.UnexpectedExits)
	r.Injected, r.Missed, r.Hits, r.ProcessFaults = h.in.counts()
	r.ProcessFaults = h.stalls(r.ProcessFaults)
	r.Transactions, r.Changes = h.ledger.totals()
	r.SlotSamples, r.SlotChecked, r.MaxConfirmed, r.Events, r.Violations, r.BadEvents = h.ledger.summary()
	w := h.work
	w.mu.Lock()
	r.Attempts, r.Unknown, r.Aborted, r.Big, r.Toast, r.Schema = w.attempts, w.unknown, w.aborted, w.bigDone, w.toastWrites, w.schemaDone
	r.Kinds = maps.Clone(w.kinds)
	r.WorkloadErrors = slices.Clone(w.failed)
	w.mu.Unlock()
	r.API = h.emu.Stats()
}

// stallDefinition is the report's definition of a stall (see stalls).
const stallDefinition = `stall of a kill or SIGTERM: the longest time, from the signal to 5 s after the process's stage was whole again,
  that one of the stage's partitions went without a write; a sink's writes are API requests, by the targets partition
  of their target; the connector's are produce requests carrying records for a change topic's partition; a request counts
  whatever its answer; "whole again": for a sink, its group stable with every sink, the new process in it; for the
  connector, the new process's first produce request; the window also ends at the next kill or SIGTERM in the stage,
  after 3 min, and for the connector when the workload ends
`

// stalls measures the stall each kill or SIGTERM caused: the longest time
// one partition of the killed process's stage went without a write, from
// the signal to the end of a window. A sink's writes are API requests, by
// the targets partition of their target (every OneSignal target is in
// one): what a sink's kill stops, and the group's rebalances hold up.
// The connector's are produce requests that carry records for a
// partition of a change topic. A request counts whatever its answer, so
// an API or Kafka fault phase is no stall: the process is at work,
// retrying. The window ends 5 s after the stage was whole again (for a
// sink, the group stable with every sink in it, the new process among
// them: its join sets off a rebalance that stalls the others' partitions
// too; for the connector, its new process's first produce request), at
// the next kill or SIGTERM of the same stage, 3 min after the signal, or,
// for the connector, when the workload ended (it has nothing to write
// after). A window holds any other cause too (a PostgreSQL restart that
// leaves the connector nothing to send; sinks that caught up with the
// connector while it was down): with the connector streaming and the
// sinks behind the workload, as they are most of a run, the kill is the
// cause.
func (h *run) stalls(pfs []ProcessFault) []ProcessFault {
	h.trace.requests.sort()
	h.produce.sort()
	slices.SortStableFunc(pfs, func(a, b ProcessFault) int { return cmp.Compare(a.At, b.At) })
	end := h.elapsed()
	connector := h.daemons["connector"]
	for i := range pfs {
		pf := &pfs[i]
		isConnector := pf.Process == connector.role
		next := pf.At + 3*time.Minute // the next kill or SIGTERM of the stage, or 3 min
		for _, n := range pfs[i+1:] {
			if (n.Process == connector.role) == isConnector {
				next = min(next, n.At)
				break
			}
		}
		writes, to := h.trace.requests, min(next, end)
		if isConnector {
			writes, to = h.produce, min(to, h.workEnd)
			if back, ok := connector.startedAfter(pf.At); ok {
				if first, ok := h.produce.first(back); ok && first < next {
					pf.Recovered = first
				}
			}
		}
		if pf.Recovered > 0 {
			to = min(to, pf.Recovered+5*time.Second)
		}
		if to > pf.At {
			pf.Stall, pf.Partition = writes.stall(pf.At, to)
		}
		h.note("stall after the %s of %s at +%s: %s (%s)", pf.Fault, pf.Process,
			pf.At.Round(100*time.Millisecond), pf.Stall.Round(100*time.Millisecond), pf.Partition)
	}
	return pfs
}

// slotActive reports whether a walsender streams from the slot.
func slotActive(ctx context.Context, dsn, slot string) (bool, error) {
	conn, err := connect(ctx, dsn)
	if err != nil {
		return false, nil // PostgreSQL may be restarting: ask again
	}
	defer conn.Close(ctx)
	var active bool
	err = conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = $1)`, slot).Scan(&active)
	return active, err
}

// waitFor calls f every 250 ms until it reports true, and fails after
// timeout with f's last error.
func waitFor(ctx context.Context, timeout time.Duration, f func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := f()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("still not so after %s", timeout)
			}
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// withConn runs f on a fresh connection to dsn.
func withConn(ctx context.Context, dsn string, f func(*pgx.Conn) error) error {
	conn, err := connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return f(conn)
}
