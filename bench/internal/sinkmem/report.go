package sinkmem

import (
	"fmt"
	"strings"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/bench/internal/harness"
	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
)

// Result is one memory measurement of the sink.
type Result struct {
	opts Options

	eventBytes int64         // keys and values written to the users topic
	produce    time.Duration // writing them
	took       time.Duration // from the daemon's start until both topics were committed
	rowsDone   time.Duration // … until the users topic was
	samples    []sample

	peakRSS, rssAtEnd int64
	stateAtEnd        int64
	topicBytes        map[string]int64 // by topic, as the broker counts them
	records           map[string]int64 // by topic
	stats             emulator.Stats
	warnings, errors  int

	daemonCPU, brokerCPU       time.Duration
	brokerRSSBefore, brokerRSS int64
}

// rawState is the bytes of the sink's durable state: its targets and
// rows topics.
func (r *Result) rawState() int64 {
	t := sink.TopicsFor(prefix)
	return r.topicBytes[t.Targets] + r.topicBytes[t.Rows]
}

// Row is the memory line of the table.
func (r *Result) Row() harness.Row {
	verdict := "met"
	if r.peakRSS > TargetRSS {
		verdict = fmt.Sprintf("**missed** by %s", harness.MiB(r.peakRSS-TargetRSS))
	}
	t := sink.TopicsFor(prefix)
	measure := fmt.Sprintf("Sink's peak RSS (VmHWM) holding the desired states of %s distinct users (`onesignal-cdc sink`, player model, no devices)",
		harness.Thousands(r.opts.Users))
	if len(r.opts.Env) > 0 {
		measure += "; **an experiment**: the sink's environment adds " + strings.Join(r.opts.Env, " ")
	}
	return harness.Row{
		Measure: measure,
		Baseline: fmt.Sprintf("the state's raw size in Kafka: **%s** (%s targets topic, %s rows topic); the broker's RSS %s",
			harness.MiB(r.rawState()), harness.MiB(r.topicBytes[t.Targets]), harness.MiB(r.topicBytes[t.Rows]), harness.MiB(r.brokerRSS)),
		Measured: fmt.Sprintf("**%s**; every user taken in after %s (%s events/s); state_dir grew to %s",
			harness.MiB(r.peakRSS), harness.Secs(r.took), harness.Thousands(int(float64(r.opts.Users)/r.took.Seconds())), harness.MiB(r.stateAtEnd)),
		Ratio:   fmt.Sprintf("%.2f", float64(r.peakRSS)/float64(r.rawState())),
		Target:  fmt.Sprintf("≤ %s (issue 11)", harness.MiB(TargetRSS)),
		Verdict: verdict,
	}
}

// Detail is the memory paragraph of the details.
func (r *Result) Detail() string {
	t := sink.TopicsFor(prefix)
	requests := 0
	for _, byStatus := range r.stats.Requests {
		for _, n := range byStatus {
			requests += n
		}
	}
	var maxState int64
	for _, s := range r.samples {
		maxState = max(maxState, s.state)
	}
	return fmt.Sprintf("Sink memory: %s snapshot events of a CRM-shaped contacts table (surrogate key \"Contact ID\", the external id in a column, ten columns, four mapped to tags; %s of keys and values) "+
		"were written to %s (%d partitions) in %s before the sink started. `onesignal-cdc sink` (player model, a devices table mapped and empty, default settings, sink.state_dir in a temporary directory) "+
		"had committed the end of the event topic after %s and of its targets topic after %s (%s events/s, from its process start); "+
		"it wrote %s records to %s and %s to %s, %d dead letters, sent %d requests to OneSignal (the emulator), and logged %d warnings and %d errors. "+
		"Its RSS as it went (time: events committed, RSS): %s; peak (VmHWM) %s, %s at the end. "+
		"%s "+
		"sink.state_dir grew from empty to %s at the end (%s at most while it ran). The sink used %s of CPU (%s per user); the broker %s, its RSS %s before the sink started and %s at the end.",
		harness.Thousands(r.opts.Users), harness.MiB(r.eventBytes), usersTopic, partitions, harness.Secs(r.produce),
		harness.Secs(r.rowsDone), harness.Secs(r.took), harness.Thousands(int(float64(r.opts.Users)/r.took.Seconds())),
		harness.Thousands(int(r.records[t.Targets])), t.Targets, harness.Thousands(int(r.records[t.Rows])), t.Rows, r.records[prefix+".dlq"], requests,
		r.warnings, r.errors,
		r.trajectory(), harness.MiB(r.peakRSS), harness.MiB(r.rssAtEnd), r.atPeak(),
		harness.MiB(r.stateAtEnd), harness.MiB(maxState),
		harness.Secs(r.daemonCPU), harness.PerEvent(r.daemonCPU, r.opts.Users), harness.Secs(r.brokerCPU), harness.MiB(r.brokerRSSBefore), harness.MiB(r.brokerRSS))
}

// atPeak splits the highest RSS sampled between the Go runtime and the
// rest: pebble's block cache and memtables (allocated outside the Go heap)
// and the binary's code.
func (r *Result) atPeak() string {
	var p sample
	for _, s := range r.samples {
		if s.rss > p.rss {
			p = s
		}
	}
	if p.goMem.sys == 0 {
		return "(The sink's /metrics could not be read for the Go runtime's share.)"
	}
	g := p.goMem
	return fmt.Sprintf("At the highest RSS sampled, %s after %s: the Go runtime held about %s of it (%s from the OS less %s given back; heap spans in use %s, heap objects %s, live or not yet swept, the next GC due at %s; stacks %s), "+
		"%s was mapped from files (the binary's code), and the rest, %s, is memory allocated outside the Go heap (pebble's block cache and memtables, at most 16 + 2 × 8 MiB by default).",
		harness.MiB(p.rss), harness.Secs(p.at), harness.MiB(g.resident()), harness.MiB(g.sys), harness.MiB(g.released),
		harness.MiB(g.heapInuse), harness.MiB(g.heapAlloc), harness.MiB(g.nextGC), harness.MiB(g.stacks),
		harness.MiB(p.rssFile), harness.MiB(p.rss-g.resident()-p.rssFile))
}

// trajectory is the RSS at each quarter of the events committed, and at
// the end.
func (r *Result) trajectory() string {
	var parts []string
	next := 1
	for _, s := range r.samples {
		if next <= 4 && s.events >= int64(r.opts.Users)*int64(next)/4 {
			parts = append(parts, fmt.Sprintf("%s: %s, %s", harness.Secs(s.at), harness.Thousands(int(s.events)), harness.MiB(s.rss)))
			for next <= 4 && s.events >= int64(r.opts.Users)*int64(next)/4 {
				next++
			}
		}
	}
	if n := len(r.samples); n > 0 {
		s := r.samples[n-1]
		parts = append(parts, fmt.Sprintf("%s: all, targets committed, %s", harness.Secs(s.at), harness.MiB(s.rss)))
	}
	return strings.Join(parts, "; ")
}

// Setup says how the memory measurement runs, for the report.
func Setup() string {
	return "The sink's memory runs the built binary as `onesignal-cdc sink`, in a process of its own, against kfake in another (it holds every record in memory) " +
		"and the emulator in the benchmark's process; the benchmark writes the snapshot events into the event topic itself, as the connector keys and encodes them"
}
