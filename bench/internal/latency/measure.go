package latency

import (
	"math"
	"slices"
	"time"
)

// row is one row change of the workload: the user whose row it changed,
// and the seq it wrote there, which names the change. The seq goes to
// OneSignal as the user's "seq" tag.
type row struct {
	user int
	seq  int64
}

// decodedTxn is a transaction as pg_recvlogical printed it.
type decodedTxn struct {
	commit  time.Time // its commit timestamp, from the WAL
	decoded time.Time // when its COMMIT line reached the benchmark
	rows    []row
}

// arrival is a request that OneSignal (the emulator) accepted, setting a
// user's seq tag.
type arrival struct {
	user int
	seq  int64
	at   time.Time // the emulator's clock when the request arrived
}

// measurement is what the benchmark saw of the measured changes: those
// with a seq from lo to hi.
type measurement struct {
	decoded     int64 // measured changes pg_recvlogical printed
	undelivered int   // of those, the ones OneSignal does not hold yet
	// Commit to OneSignal's receipt, and commit to pg_recvlogical's output.
	daemon, baseline        percentiles
	firstCommit, lastCommit time.Time // of the measured transactions
	txns                    int       // measured transactions
	calls                   int       // accepted seq updates that arrived between those commits
	// newest is commit to receipt of the change each request carried,
	// the newest of its user's when the sink sent it: the pipeline's own
	// delay, without the wait for the user's window that merged changes
	// have on top.
	newest percentiles
	// gaps are the times between one user's requests.
	gaps percentiles
	// own is what the pipeline added to the newest change of each request
	// beyond OneSignal's per-user limit: from the later of its commit and
	// the opening of its user's window (the user's previous request plus
	// targetInterval) to the request's arrival. newest less own is the
	// wait for the window, which no pipeline can shorten.
	own, windowWait percentiles
	// The hops of every measured change (tapped): commit → readable in the
	// change topic (the connector: decoding, its produce, the broker);
	// change topic → the user's contribution readable in the targets topic
	// (the sink's row stage: fetch, row index, produce); and, for the
	// newest change of each request, contribution → arrival, from the
	// later of the contribution and the window's opening (the target
	// stage: fetch, state, scheduling, the HTTP request).
	connector, rowStage, targetStage percentiles
	tapped                           int // measured changes seen in both tapped topics
	// quiet is commit to receipt of the quiet users' changes committed
	// while the measured load was: changes that found their user's window
	// open, so the pipeline's own delay and nothing else.
	quiet            percentiles
	quietUndelivered int
}

// targetInterval is the sink's least time between two requests to one
// user, OneSignal's per-user limit.
const targetInterval = time.Second

// measure matches the decoded transactions (in commit order) with the
// arrivals at the emulator.
// ev and tg are when each seq was first readable in the change topic and
// as a contribution in the sink's targets topic (nil when not tapped).
func measure(txns []decodedTxn, arrivals []arrival, lo, hi int64, ev, tg map[int64]time.Time) measurement {
	var rows []row
	var commits []time.Time
	for _, t := range txns {
		for _, r := range t.rows {
			if r.seq > 0 { // not the probe
				rows = append(rows, r)
				commits = append(commits, t.commit)
			}
		}
	}
	delivered := deliveries(rows, arrivals)
	var m measurement
	var daemon, baseline []time.Duration
	for _, t := range txns {
		in := false
		for _, r := range t.rows {
			if r.seq >= lo && r.seq <= hi {
				in = true
				m.decoded++
				baseline = append(baseline, t.decoded.Sub(t.commit))
			}
		}
		if in {
			m.txns++
			if m.firstCommit.IsZero() {
				m.firstCommit = t.commit
			}
			m.lastCommit = t.commit
		}
	}
	for k, r := range rows {
		if r.seq < lo || r.seq > hi {
			continue
		}
		if delivered[k].IsZero() {
			m.undelivered++
			continue
		}
		daemon = append(daemon, delivered[k].Sub(commits[k]))
	}
	var quiet []time.Duration
	for k, r := range rows {
		if r.seq < quietBase || commits[k].Before(m.firstCommit) || commits[k].After(m.lastCommit) {
			continue
		}
		if delivered[k].IsZero() {
			m.quietUndelivered++
			continue
		}
		quiet = append(quiet, delivered[k].Sub(commits[k]))
	}
	m.quiet = summarize(quiet)
	commitOf := make(map[int64]time.Time, len(rows))
	for k, r := range rows {
		if r.seq >= lo && r.seq <= hi {
			commitOf[r.seq] = commits[k]
		}
	}
	var connector, rowStage []time.Duration
	for seq, commit := range commitOf {
		e, eok := ev[seq]
		c, cok := tg[seq]
		if !eok || !cok {
			continue
		}
		m.tapped++
		connector = append(connector, e.Sub(commit))
		rowStage = append(rowStage, c.Sub(e))
	}
	var newest, gaps, own, windowWait, targetStage []time.Duration
	last := map[int]time.Time{}    // each user's last measured request
	lastAny := map[int]time.Time{} // and last request of all
	for _, a := range arrivals {   // in the order the emulator saw them
		var open time.Time // the user's window: open since ever without an earlier request
		if prev, ok := lastAny[a.user]; ok {
			open = prev.Add(targetInterval)
		}
		lastAny[a.user] = a.at
		if commit, ok := commitOf[a.seq]; ok {
			newest = append(newest, a.at.Sub(commit))
			if prev, ok := last[a.user]; ok {
				gaps = append(gaps, a.at.Sub(prev))
			}
			last[a.user] = a.at
			own = append(own, a.at.Sub(later(commit, open)))
			windowWait = append(windowWait, max(open.Sub(commit), 0))
			if c, ok := tg[a.seq]; ok {
				targetStage = append(targetStage, a.at.Sub(later(c, open)))
			}
		}

		if !a.at.Before(m.firstCommit) && !a.at.After(m.lastCommit) {
			m.calls++
		}
	}
	m.daemon, m.baseline = summarize(daemon), summarize(baseline)
	m.newest, m.gaps = summarize(newest), summarize(gaps)
	m.own, m.windowWait = summarize(own), summarize(windowWait)
	m.connector, m.rowStage, m.targetStage = summarize(connector), summarize(rowStage), summarize(targetStage)
	return m
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// deliveries finds when each change reached OneSignal: at the arrival of
// the first accepted request for its user that carried it or a later
// change of that user. The sink merges a user's changes within its window
// into one request with the latest values, so a change it merged away
// arrives with the one that replaced it; later is by commit order, in
// which the changes must be given. A change not delivered yet gets the
// zero time.
func deliveries(changes []row, arrivals []arrival) []time.Time {
	// The position of each change among its user's, in commit order.
	index := make(map[int64]int, len(changes))
	count := map[int]int{}
	for _, c := range changes {
		index[c.seq] = count[c.user]
		count[c.user]++
	}
	// For each user, when OneSignal first held each position: arrivals in
	// time order, each covering every position up to the one it carried.
	arrivals = slices.Clone(arrivals)
	slices.SortStableFunc(arrivals, func(a, b arrival) int { return a.at.Compare(b.at) })
	held := map[int][]time.Time{}
	for _, a := range arrivals {
		i, ok := index[a.seq]
		if !ok {
			continue // the probe
		}
		for len(held[a.user]) <= i {
			held[a.user] = append(held[a.user], a.at)
		}
	}
	out := make([]time.Time, len(changes))
	for k, c := range changes {
		if h := held[c.user]; index[c.seq] < len(h) {
			out[k] = h[index[c.seq]]
		}
	}
	return out
}

// percentiles summarises latencies.
type percentiles struct {
	n             int
	p50, p99, max time.Duration
}

// summarize returns the nearest-rank 50th and 99th percentiles and the
// maximum of ds.
func summarize(ds []time.Duration) percentiles {
	if len(ds) == 0 {
		return percentiles{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(q float64) time.Duration {
		return s[max(int(math.Ceil(q*float64(len(s))))-1, 0)]
	}
	return percentiles{n: len(s), p50: rank(0.50), p99: rank(0.99), max: s[len(s)-1]}
}
