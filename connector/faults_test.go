package connector_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/connector"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/netcut"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
)

// runConnector runs a connector with cfg writing through w, and waits until
// its slot streams; the returned function stops it (and is also called at
// cleanup). Unlike startConnectorWith it creates no topic.
func runConnector(t *testing.T, db *pgtest.DB, cfg connector.Config, w connector.MessageWriter) (stop func()) {
	t.Helper()
	return runConnectorLogging(t, db, cfg, w, zaptest.NewLogger(t))
}

// runConnectorLogging is runConnector logging to log.
func runConnectorLogging(t *testing.T, db *pgtest.DB, cfg connector.Config, w connector.MessageWriter, log *zap.Logger) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- connector.New(cfg, w, log).Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("connector: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	conn := db.Conn(t)
	waitFor(t, 30*time.Second, "the slot to be streaming", func() bool {
		var active bool
		conn.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = $1)`, db.Name).Scan(&active)
		return active
	})
	return stop
}

// walPos names an event by where its change is in the WAL.
type walPos struct{ commit, lsn int64 }

// ackRecorder writes through w and notes when Kafka first acknowledged
// each event.
type ackRecorder struct {
	w     connector.MessageWriter
	mu    sync.Mutex
	acked map[walPos]time.Time
}

func (r *ackRecorder) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	if err := r.w.WriteMessages(ctx, msgs...); err != nil {
		return err
	}
	now := time.Now() // before the connector can count the acknowledgement
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		ev, err := event.Decode(m.Value)
		if err != nil {
			continue // the test fails on it when it reads the topic
		}
		p := walPos{ev.Source.CommitLSN, ev.Source.LSN}
		if _, ok := r.acked[p]; !ok {
			r.acked[p] = now
		}
	}
	return nil
}

func (r *ackRecorder) ackedAt(p walPos) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.acked[p]
	return at, ok
}

// slotSample is the slot's confirmed_flush_lsn as read at a moment.
type slotSample struct {
	at  time.Time // just after the value was read
	lsn pglogrepl.LSN
}

// sampleSlot reads the slot's confirmed_flush_lsn every 50ms until the
// returned function is called, which returns the samples.
func sampleSlot(t *testing.T, db *pgtest.DB) (stop func() []slotSample) {
	t.Helper()
	conn := db.Conn(t)
	quit := make(chan struct{})
	var samples []slotSample
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			var s string
			err := conn.QueryRow(context.Background(), `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, db.Name).Scan(&s)
			if err != nil {
				t.Errorf("read the slot: %v", err)
				return
			}
			l, err := pglogrepl.ParseLSN(s)
			if err != nil {
				t.Errorf("read the slot: %v", err)
				return
			}
			samples = append(samples, slotSample{time.Now(), l})
			select {
			case <-quit:
				return
			case <-tick.C:
			}
		}
	})
	var once sync.Once
	stop = func() []slotSample {
		once.Do(func() { close(quit); wg.Wait() })
		return samples
	}
	t.Cleanup(func() { stop() }) // before conn closes
	return stop
}

// updateScores updates the users rows keys round robin, one transaction per
// update every 2ms at most, setting score to 1, 2, 3, … so that each key's
// scores rise in commit order, until the returned function is called. That function
// returns the scores committed per key, in commit order.
func updateScores(t *testing.T, db *pgtest.DB, keys []string) (stop func() map[string][]int) {
	t.Helper()
	conn := db.Conn(t)
	quit := make(chan struct{})
	committed := map[string][]int{}
	var wg sync.WaitGroup
	wg.Go(func() {
		pace := time.NewTicker(2 * time.Millisecond)
		defer pace.Stop()
		for score := 1; ; score++ {
			select {
			case <-quit:
				return
			case <-pace.C:
			}
			key := keys[score%len(keys)]
			if _, err := conn.Exec(context.Background(), `UPDATE users SET score = $1 WHERE external_id = $2`, score, key); err != nil {
				t.Errorf("update: %v", err)
				return
			}
			committed[key] = append(committed[key], score)
		}
	})
	var once sync.Once
	stop = func() map[string][]int {
		once.Do(func() { close(quit); wg.Wait() })
		return committed
	}
	t.Cleanup(func() { stop() }) // before conn closes
	return stop
}

// eachNew returns a kafkatest.Read condition that decodes each record once,
// hands it to add, and then reports done(): the topic is read again from
// the start on every poll, and decoding it all each time would be slow.
func eachNew(t *testing.T, add func(kafkatest.Record, *event.Envelope), done func() bool) func([]kafkatest.Record) bool {
	seen := 0
	return func(rs []kafkatest.Record) bool {
		for _, r := range rs[seen:] {
			ev, err := event.Decode(r.Value)
			if err != nil {
				t.Fatalf("record %s/%d@%d: %v", r.Topic, r.Partition, r.Offset, err)
			}
			add(r, ev)
		}
		seen = len(rs)
		return done()
	}
}

// scoreLog collects the score of every event per external id, in partition
// order, and fails the test if a key's events are spread over partitions.
type scoreLog struct {
	t         *testing.T
	scores    map[string][]int
	partition map[string]int32
}

func (l *scoreLog) add(r kafkatest.Record, ev *event.Envelope) {
	var id string
	var score int
	idJSON, _ := ev.After.Get("external_id")
	scoreJSON, _ := ev.After.Get("score")
	if json.Unmarshal(idJSON, &id) != nil || json.Unmarshal(scoreJSON, &score) != nil {
		l.t.Fatalf("event %s has no external_id and score", r.Value)
	}
	if p, ok := l.partition[id]; ok && p != r.Partition {
		l.t.Fatalf("events of %s are in partitions %d and %d", id, p, r.Partition)
	}
	l.partition[id] = r.Partition
	l.scores[id] = append(l.scores[id], score)
}

// inCommitOrder checks a key's scores as the topic holds them against those
// committed. A failed write is retried whole, so Kafka may hold some events
// twice (an attempt that was applied but not acknowledged, then the retry):
// what must hold is that every committed score is there, that each first
// appears in commit order, and that the key's last event is its final state.
func inCommitOrder(got, committed []int) (repeats int, err error) {
	var firsts []int
	seen := map[int]bool{}
	for _, s := range got {
		if seen[s] {
			repeats++
			continue
		}
		seen[s] = true
		firsts = append(firsts, s)
	}
	switch {
	case !slices.Equal(firsts, committed):
		return repeats, fmt.Errorf("first occurrences %v, want the commit order %v", abbreviateInts(firsts), abbreviateInts(committed))
	case len(got) > 0 && got[len(got)-1] != committed[len(committed)-1]:
		return repeats, fmt.Errorf("the last event has score %d, want the final %d", got[len(got)-1], committed[len(committed)-1])
	}
	return repeats, nil
}

func abbreviateInts(s []int) string {
	if len(s) > 12 {
		return fmt.Sprintf("%v … %v (%d)", s[:6], s[len(s)-6:], len(s))
	}
	return fmt.Sprint(s)
}

func TestKafkaProduceErrorsDelayEventsButLoseNoneReorderNoneAndHoldBackTheSlot(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY, plan text, score int)`)
	kafka := kafkatest.Start(t)
	if err := broker.EnsureTopics(context.Background(), kafka.Brokers(), 3, "cdc.public.users"); err != nil {
		t.Fatal(err)
	}
	bw := broker.NewConnectorWriter(kafka.Brokers())
	t.Cleanup(func() { bw.Close() })
	acks := &ackRecorder{w: bw, acked: map[walPos]time.Time{}}
	runConnector(t, db, testConfig(db), acks)

	keys := []string{"k0", "k1", "k2", "k3", "k4"}
	db.Exec(t, `INSERT INTO users SELECT 'k' || i, 'free', 0 FROM generate_series(0, 4) i`)
	samples := sampleSlot(t, db)
	stopUpdates := updateScores(t, db, keys)
	cluster := kafka.Cluster()
	time.Sleep(500 * time.Millisecond)

	// Every produce request fails, and Kafka stores nothing, for 2s.
	rejectedFrom := time.Now()
	rejecting := cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotEnoughReplicas, Count: -1})
	time.Sleep(2 * time.Second)
	heldBelow := lsn(t, db.CurrentLSN(t)) // committed by now, acknowledged after
	rejecting.Remove()
	rejectedUntil := time.Now()
	waitFor(t, 30*time.Second, "the slot to pass what was committed during the fault", func() bool {
		return confirmed(t, db) > heldBelow
	})

	// Five produce requests are stored but answered with an error, so the
	// connector writes their events again.
	timingOut := cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.RequestTimedOut, Count: 5})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := timingOut.Wait(ctx, 5); err != nil {
		t.Fatalf("the connector made %d produce requests after the first fault, want 5: %v", timingOut.Hits(), err)
	}
	time.Sleep(500 * time.Millisecond)
	committed := stopUpdates()
	committed0 := map[string][]int{}
	for _, k := range keys {
		committed0[k] = append([]int{0}, committed[k]...) // the insert
	}

	// Everything arrives, in order per key.
	log := &scoreLog{t: t, scores: map[string][]int{}, partition: map[string]int32{}}
	var evs []*event.Envelope
	inOrder := func() bool {
		for _, k := range keys {
			if _, err := inCommitOrder(log.scores[k], committed0[k]); err != nil {
				return false
			}
		}
		return true
	}
	_, ok := kafkatest.Read(t, kafka.Brokers(), []string{"cdc.public.users"}, 30*time.Second, eachNew(t, func(r kafkatest.Record, ev *event.Envelope) {
		log.add(r, ev)
		evs = append(evs, ev)
	}, inOrder))
	repeats := 0
	for _, k := range keys {
		n, err := inCommitOrder(log.scores[k], committed0[k])
		if err != nil {
			t.Errorf("key %s: %v", k, err)
		}
		repeats += n
	}
	if !ok {
		t.Fatalf("not every committed change reached Kafka in order within 30s")
	}
	last := slices.MaxFunc(evs, func(a, b *event.Envelope) int { return cmp.Compare(a.Source.CommitLSN, b.Source.CommitLSN) })
	waitFor(t, 30*time.Second, "the slot to confirm the last transaction", func() bool {
		return confirmed(t, db) > pglogrepl.LSN(last.Source.CommitLSN)
	})

	// The slot never passed the commit of a transaction before Kafka had
	// acknowledged its events. (Standing at a commit record's start is
	// fine: Postgres resends that transaction.) In commit order, ackedBy[i]
	// is when Kafka had acknowledged every event up to the i-th.
	slices.SortFunc(evs, func(a, b *event.Envelope) int { return cmp.Compare(a.Source.CommitLSN, b.Source.CommitLSN) })
	ackedBy := make([]time.Time, len(evs))
	var held int
	heldSeen := map[walPos]bool{}
	for i, ev := range evs {
		p := walPos{ev.Source.CommitLSN, ev.Source.LSN}
		at, ok := acks.ackedAt(p)
		if !ok {
			t.Fatalf("an event at %s reached Kafka without a successful write", pglogrepl.LSN(p.lsn))
		}
		ackedBy[i] = at
		if i > 0 && ackedBy[i-1].After(at) {
			ackedBy[i] = ackedBy[i-1]
		}
		if pglogrepl.LSN(p.commit) < heldBelow && at.After(rejectedUntil) && !heldSeen[p] {
			heldSeen[p] = true
			held++
		}
	}
	var during int
	for _, s := range samples() {
		if s.at.After(rejectedFrom) && s.at.Before(rejectedUntil) {
			during++
		}
		// The events whose commit the sample passed.
		n, _ := slices.BinarySearchFunc(evs, s.lsn, func(ev *event.Envelope, l pglogrepl.LSN) int {
			return cmp.Compare(pglogrepl.LSN(ev.Source.CommitLSN), l)
		})
		if n > 0 && ackedBy[n-1].After(s.at) {
			i := slices.IndexFunc(evs[:n], func(ev *event.Envelope) bool {
				at, _ := acks.ackedAt(walPos{ev.Source.CommitLSN, ev.Source.LSN})
				return at.After(s.at)
			})
			t.Fatalf("at %s confirmed_flush_lsn was %s, past the commit at %s of an event Kafka had not acknowledged yet",
				s.at.Format("15:04:05.000"), s.lsn, pglogrepl.LSN(evs[i].Source.CommitLSN))
		}
	}
	if during == 0 || held == 0 {
		t.Fatalf("%d slot samples during the fault, %d events committed during it and acknowledged after: the test proved nothing", during, held)
	}
	t.Logf("%d events (%d repeats after retries) for %d updates; %d produce requests rejected, %d timed out; %d events held back by the fault; %d slot samples during it",
		len(evs), repeats, len(evs)-repeats-len(keys), rejecting.Hits(), timingOut.Hits(), held, during)
}

// insertRows inserts users rows n0, n1, … one transaction each, every 2ms
// at most, reconnecting whenever the connection fails, until the returned
// stop is called, which returns the ids whose commit the server
// acknowledged. acked reports their count so far.
func insertRows(t *testing.T, dsn string) (acked func() int, stop func() []string) {
	t.Helper()
	quit := make(chan struct{})
	var mu sync.Mutex
	var ids []string
	var wg sync.WaitGroup
	wg.Go(func() {
		var conn *pgx.Conn
		defer func() {
			if conn != nil {
				conn.Close(context.Background())
			}
		}()
		pace := time.NewTicker(2 * time.Millisecond)
		defer pace.Stop()
		for n := 0; ; n++ {
			select {
			case <-quit:
				return
			case <-pace.C:
			}
			if conn == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				c, err := pgx.Connect(ctx, dsn)
				cancel()
				if err != nil {
					time.Sleep(50 * time.Millisecond) // the server is restarting
					continue
				}
				conn = c
			}
			id := fmt.Sprintf("n%d", n)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := conn.Exec(ctx, `INSERT INTO users VALUES ($1, 'free', $2)`, id, n)
			cancel()
			if err != nil {
				// The commit may or may not have happened: the table
				// says, at the end.
				conn.Close(context.Background())
				conn = nil
				continue
			}
			mu.Lock()
			ids = append(ids, id)
			mu.Unlock()
		}
	})
	acked = func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(ids)
	}
	var once sync.Once
	stop = func() []string {
		once.Do(func() { close(quit); wg.Wait() })
		return ids
	}
	t.Cleanup(func() { stop() })
	return acked, stop
}

// everyRowReachesKafka reads the users table and waits until Kafka holds an
// event for each of its rows; it fails the test if a row whose commit was
// acknowledged is not in the table.
func everyRowReachesKafka(t *testing.T, db *pgtest.DB, kafka *broker.Embedded, acked []string) {
	t.Helper()
	rows, err := db.Conn(t).Query(context.Background(), `SELECT external_id FROM users`)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	inTable := map[string]bool{}
	for _, id := range ids {
		inTable[id] = true
	}
	for _, id := range acked {
		if !inTable[id] {
			t.Fatalf("%s was committed but is not in the table", id)
		}
	}
	missing, events := maps.Clone(inTable), 0
	_, ok := kafkatest.Read(t, kafka.Brokers(), []string{"cdc.public.users"}, 30*time.Second, eachNew(t, func(_ kafkatest.Record, ev *event.Envelope) {
		var id string
		v, _ := ev.After.Get("external_id")
		json.Unmarshal(v, &id)
		delete(missing, id)
		events++
	}, func() bool { return len(missing) == 0 }))
	if !ok {
		t.Fatalf("%d of the table's %d rows never reached Kafka: %v", len(missing), len(ids), slices.Collect(maps.Keys(missing))[:min(len(missing), 20)])
	}
	t.Logf("%d rows (%d acknowledged commits), %d events", len(ids), len(acked), events)
}

func TestNoCommittedChangeIsMissingAfterPostgresRestartsMidStream(t *testing.T) {
	t.Parallel()
	cluster := pgtest.StartCluster(t)
	db := cluster.NewDB(t)
	db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY, plan text, score int)`)
	kafka := kafkatest.Start(t)
	startConnector(t, db, kafka)

	acked, stop := insertRows(t, db.DSN)
	for _, mode := range []string{"fast", "immediate"} {
		n := acked()
		waitFor(t, 30*time.Second, "300 more commits", func() bool { return acked() >= n+300 })
		start := time.Now()
		cluster.Restart(t, mode)
		t.Logf("restarted the server (-m %s) in %s", mode, time.Since(start).Round(time.Millisecond))
	}
	n := acked()
	waitFor(t, 30*time.Second, "300 more commits", func() bool { return acked() >= n+300 })
	everyRowReachesKafka(t, db, kafka, stop())
}

func TestNoCommittedChangeIsMissingAfterTheNetworkToPostgresIsCut(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY, plan text, score int)`)
	kafka := kafkatest.Start(t)
	u, err := url.Parse(db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	proxy := netcut.Start(t, u.Host)
	u.Host = proxy.Addr()
	cfg := testConfig(db)
	cfg.DSN = u.String() // only the connector goes through the proxy
	startConnectorWith(t, db, kafka, cfg)

	acked, stop := insertRows(t, db.DSN)
	before := proxy.Accepted()
	for range 2 {
		n := acked()
		waitFor(t, 30*time.Second, "300 more commits", func() bool { return acked() >= n+300 })
		proxy.Cut()
		time.Sleep(1500 * time.Millisecond) // the workload goes on meanwhile
		proxy.Restore()
	}
	n := acked()
	waitFor(t, 30*time.Second, "300 more commits", func() bool { return acked() >= n+300 })
	everyRowReachesKafka(t, db, kafka, stop())
	if n := proxy.Accepted() - before; n < 2 {
		t.Errorf("the connector opened %d connections through the proxy after the first cut: it did not reconnect after each cut", n)
	}
}
