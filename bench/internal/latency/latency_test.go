package latency

import (
	"strings"
	"testing"
	"time"
)

func TestDecodeStreamReadsEachTransactionsCommitTimeAndRows(t *testing.T) {
	out := `BEGIN 7400
COMMIT 7400 (at 2026-11-30 09:12:01.000001+00)
BEGIN 7401
table public.bench_latency: UPDATE: id[integer]:17 external_id[text]:'lat-17' seq[bigint]:4018
table public.other: INSERT: id[integer]:1 seq[bigint]:5
table public.bench_latency: UPDATE: id[integer]:18 external_id[text]:'lat-18' seq[bigint]:4019
COMMIT 7401 (at 2026-11-30 09:12:01.123456+00)
message: transactional: 0 prefix: onesignal_cdc_heartbeat, sz: 0 content:
BEGIN 7402
table public.bench_latency: UPDATE: id[integer]:0 external_id[text]:'lat-0' seq[bigint]:-1
COMMIT 7402 (at 2026-11-30 14:42:02.5+05:30)
`
	arrived := time.Date(2026, 11, 30, 9, 12, 1, 200_000_000, time.UTC)
	d := &decodeStream{table: "public.bench_latency", now: func() time.Time { return arrived }}
	d.read(strings.NewReader(out))
	txns, err := d.decoded()
	if err != nil {
		t.Fatal(err)
	}
	if len(txns) != 2 {
		t.Fatalf("read %d transactions, want the 2 with rows of the table: %+v", len(txns), txns)
	}
	first := txns[0]
	if want := time.Date(2026, 11, 30, 9, 12, 1, 123_456_000, time.UTC); !first.commit.Equal(want) || !first.decoded.Equal(arrived) {
		t.Errorf("first transaction committed %s, decoded %s; want %s and %s", first.commit, first.decoded, want, arrived)
	}
	if len(first.rows) != 2 || first.rows[0] != (row{user: 17, seq: 4018}) || first.rows[1] != (row{user: 18, seq: 4019}) {
		t.Errorf("first transaction's rows = %+v", first.rows)
	}
	if want := time.Date(2026, 11, 30, 9, 12, 2, 500_000_000, time.UTC); !txns[1].commit.Equal(want) {
		t.Errorf("a commit time with a +05:30 offset read as %s, want %s", txns[1].commit, want)
	}
}

func TestDecodeStreamReportsACommitWithoutItsTime(t *testing.T) {
	d := &decodeStream{table: "public.bench_latency", now: time.Now}
	d.read(strings.NewReader("BEGIN 1\ntable public.bench_latency: UPDATE: id[integer]:1 seq[bigint]:1\nCOMMIT 1\n"))
	if _, err := d.decoded(); err == nil || !strings.Contains(err.Error(), "include-timestamp") {
		t.Errorf("err = %v, want one saying include-timestamp is off", err)
	}
}

// at is a time n milliseconds into a run.
func at(ms int) time.Time {
	return time.Unix(1_800_000_000, 0).Add(time.Duration(ms) * time.Millisecond)
}

func TestAChangeMergedIntoALaterRequestIsDeliveredWhenThatRequestArrives(t *testing.T) {
	// User 1's changes 1, 3 and 4; user 2's change 2. The sink sent change
	// 1 alone, then merged 3 into 4. Change 2 has not arrived.
	changes := []row{{1, 1}, {2, 2}, {1, 3}, {1, 4}}
	arrivals := []arrival{
		{user: 1, seq: 4, at: at(1500)}, // out of time order on purpose
		{user: 1, seq: 1, at: at(100)},
		{user: 0, seq: -1, at: at(50)}, // the probe: not a change
	}
	got := deliveries(changes, arrivals)
	want := []time.Time{at(100), {}, at(1500), at(1500)}
	for i := range want {
		if !got[i].Equal(want[i]) {
			t.Errorf("change %d delivered at %v, want %v", changes[i].seq, got[i], want[i])
		}
	}
}

func TestMeasureTakesOnlyTheMeasuredChanges(t *testing.T) {
	txns := []decodedTxn{
		{commit: at(0), decoded: at(2), rows: []row{{1, 1}, {2, 2}}},       // warm-up
		{commit: at(1000), decoded: at(1003), rows: []row{{1, 3}, {2, 4}}}, // measured
		{commit: at(2000), decoded: at(2001), rows: []row{{1, 5}, {2, 6}}}, // measured
		{commit: at(3000), decoded: at(3010), rows: []row{{1, 7}, {2, 8}}}, // tail
	}
	arrivals := []arrival{
		{user: 1, seq: 1, at: at(100)}, {user: 2, seq: 2, at: at(100)},
		{user: 1, seq: 3, at: at(1200)}, {user: 2, seq: 4, at: at(1300)},
		{user: 1, seq: 5, at: at(2300)},
		{user: 1, seq: 7, at: at(3500)}, // user 2's 6 is missing
	}
	m := measure(txns, arrivals, 3, 6, nil, nil)
	if m.decoded != 4 || m.undelivered != 1 || m.txns != 2 || !m.firstCommit.Equal(at(1000)) || !m.lastCommit.Equal(at(2000)) || m.calls != 2 {
		t.Errorf("measurement = %+v", m)
	}
	if m.daemon.n != 3 || m.daemon.p50 != 300*time.Millisecond || m.daemon.max != 300*time.Millisecond {
		t.Errorf("daemon latencies = %+v, want 200, 300 and 300 ms", m.daemon)
	}
	if m.newest.n != 3 || m.gaps.n != 1 || m.gaps.max != 1100*time.Millisecond {
		t.Errorf("newest = %+v, gaps = %+v; want 3 requests with measured changes, user 1's two 1100 ms apart", m.newest, m.gaps)
	}
	if m.baseline.n != 4 || m.baseline.max != 3*time.Millisecond {
		t.Errorf("baseline latencies = %+v, want 3, 3, 1 and 1 ms", m.baseline)
	}
}

func TestThePipelinesOwnDelayLeavesOutTheWaitForTheUsersWindow(t *testing.T) {
	txns := []decodedTxn{
		{commit: at(0), decoded: at(1), rows: []row{{1, 1}}},
		{commit: at(900), decoded: at(901), rows: []row{{1, 2}}},   // waits for the window opening at 1010
		{commit: at(2500), decoded: at(2501), rows: []row{{1, 3}}}, // the window is open: goes at once
	}
	ev := map[int64]time.Time{1: at(4), 2: at(905), 3: at(2504)}
	tg := map[int64]time.Time{1: at(7), 2: at(908), 3: at(2507)}
	arrivals := []arrival{
		{user: 1, seq: 1, at: at(10)},
		{user: 1, seq: 2, at: at(1030)}, // 20 ms after the window opened
		{user: 1, seq: 3, at: at(2512)},
	}
	txns = append(txns, decodedTxn{commit: at(1500), decoded: at(1501), rows: []row{{7, quietBase}}}) // a quiet user's
	arrivals = append(arrivals, arrival{user: 7, seq: quietBase, at: at(1514)})
	m := measure(txns, arrivals, 1, 3, ev, tg)
	if m.quiet.n != 1 || m.quiet.max != 14*time.Millisecond || m.quietUndelivered != 0 {
		t.Errorf("quiet = %+v (%d undelivered), want one change of 14 ms", m.quiet, m.quietUndelivered)
	}
	if m.newest.max != 130*time.Millisecond {
		t.Errorf("newest = %+v, want at most 130 ms (the second change's commit to arrival)", m.newest)
	}
	if m.own.n != 3 || m.own.p50 != 12*time.Millisecond || m.own.max != 20*time.Millisecond {
		t.Errorf("own = %+v, want 10, 20 and 12 ms", m.own)
	}
	if m.windowWait.max != 110*time.Millisecond {
		t.Errorf("window wait = %+v, want 110 ms for the second change", m.windowWait)
	}
	if m.tapped != 3 || m.connector.max != 5*time.Millisecond || m.rowStage.max != 3*time.Millisecond {
		t.Errorf("connector hop %+v, row stage %+v, tapped %d; want 4–5 ms, 3 ms, 3", m.connector, m.rowStage, m.tapped)
	}
	if m.targetStage.max != 20*time.Millisecond || m.targetStage.p50 != 5*time.Millisecond {
		t.Errorf("target stage = %+v, want 3, 20 and 5 ms", m.targetStage)
	}
}

func TestSummarizeTakesNearestRankPercentiles(t *testing.T) {
	var ds []time.Duration
	for i := 200; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	p := summarize(ds)
	if p.n != 200 || p.p50 != 100*time.Millisecond || p.p99 != 198*time.Millisecond || p.max != 200*time.Millisecond {
		t.Errorf("summarize(1..200 ms) = %+v, want p50 100 ms, p99 198 ms, max 200 ms", p)
	}
	if (summarize(nil) != percentiles{}) {
		t.Error("summarize(nothing) is not zero")
	}
}
