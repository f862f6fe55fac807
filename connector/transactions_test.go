package connector_test

import (
	"bytes"
	"context"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/pgtest"
)

func TestAbortedTransactionsAndRolledBackSavepointsEmitNothing(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE users (external_id text PRIMARY KEY, plan text, score int)`)
	kafka := kafkatest.Start(t)
	startConnector(t, db, kafka)

	db.Exec(t, `BEGIN;
		INSERT INTO users VALUES ('a', 'free', 1);
		SAVEPOINT s;
		INSERT INTO users VALUES ('b', 'free', 2);
		UPDATE users SET plan = 'rolled back' WHERE external_id = 'a';
		ROLLBACK TO s;
		SAVEPOINT kept;
		INSERT INTO users VALUES ('c', 'free', 3);
		RELEASE kept;
		COMMIT`)
	db.Exec(t, `BEGIN;
		INSERT INTO users VALUES ('d', 'free', 4);
		UPDATE users SET plan = 'aborted' WHERE external_id = 'a';
		DELETE FROM users WHERE external_id = 'c';
		ROLLBACK`)
	db.Exec(t, `INSERT INTO users VALUES ('z', 'free', 26)`)
	// Once the slot confirms the end of the WAL, Kafka holds every event
	// (keys are written in parallel, so z's arrival alone says nothing of
	// the others'); then everything the topic holds is read.
	end, _ := pglogrepl.ParseLSN(db.CurrentLSN(t))
	waitFor(t, 30*time.Second, "the slot to confirm the end of the WAL", func() bool {
		s, _ := db.SlotConfirmedFlush(t, db.Name)
		lsn, _ := pglogrepl.ParseLSN(s)
		return lsn >= end
	})
	kafkatest.ReadUntil(t, kafka.Brokers(), []string{"cdc.public.users"}, 30*time.Second, allOf(t, "a", "c", "z"))
	recs, _ := kafkatest.Read(t, kafka.Brokers(), []string{"cdc.public.users"}, 2*time.Second, func([]kafkatest.Record) bool { return false })
	var got []string
	for _, ev := range decodeAll(t, recs) {
		id, _ := ev.After.Get("external_id")
		plan, _ := ev.After.Get("plan")
		got = append(got, string(ev.Op)+" "+string(id)+" "+string(plan))
	}
	slices.Sort(got) // the keys' partitions interleave in any order
	if want := []string{`c "a" "free"`, `c "c" "free"`, `c "z" "free"`}; !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
}

// countingWriter acknowledges every event at once, except the last of the
// transaction (id want), which it holds for a second, and keeps only what
// the test checks, so the heap holds the connector's data and little else
// (an embedded Kafka would hold every event). While gate is open (not nil
// and not closed) a write waits for it.
type countingWriter struct {
	want int // the events of the transaction

	mu        sync.Mutex
	gate      chan struct{}
	blocked   chan struct{} // closed when a write first waits at the gate
	seen      []bool        // by id
	events    int
	bytes     int64
	maxEvent  int
	commitLSN pglogrepl.LSN
	allAt     time.Time // when the last of the transaction's events was acknowledged
}

func (w *countingWriter) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	w.mu.Lock()
	gate := w.gate
	w.mu.Unlock()
	if gate != nil {
		select {
		case <-w.blocked:
		default:
			close(w.blocked)
		}
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if last := msgs[len(msgs)-1]; bytes.Equal(last.Key, []byte(`{"id":`+strconv.Itoa(w.want)+`}`)) {
		// The transaction's last event: Kafka takes a second to
		// acknowledge it, for the slot to show whether it waits.
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range msgs {
		// The key is {"id":N}.
		id, err := strconv.Atoi(string(bytes.TrimSuffix(bytes.TrimPrefix(m.Key, []byte(`{"id":`)), []byte("}"))))
		if err != nil || id < 0 || id >= len(w.seen) {
			continue // counted as missing
		}
		if w.commitLSN == 0 {
			ev, err := event.Decode(m.Value)
			if err == nil {
				w.commitLSN = pglogrepl.LSN(ev.Source.CommitLSN)
			}
		}
		if !w.seen[id] {
			w.seen[id] = true
			w.events++
		}
		w.bytes += int64(len(m.Key) + len(m.Value))
		w.maxEvent = max(w.maxEvent, len(m.Key)+len(m.Value))
	}
	if w.events == w.want && w.allAt.IsZero() {
		w.allAt = time.Now() // before the connector can count the acknowledgement
	}
	return nil
}

// liveHeap is the bytes of live heap objects, measured after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// Not parallel: the heap is the whole test binary's, so no other test may
// run meanwhile.
func TestABigTransactionStreamsThroughBoundedMemoryAndIsConfirmedOnlyOnceAllOfItIsAcknowledged(t *testing.T) {
	const rows = 200_000
	db := pgtest.NewDB(t)
	db.Exec(t, `CREATE TABLE big (id int PRIMARY KEY, payload text)`)
	cfg := testConfig(db)
	cfg.Tables = []string{"public.big"}
	cfg.QueueSize, cfg.BatchSize = 4096, 1000
	w := &countingWriter{want: rows, gate: make(chan struct{}), blocked: make(chan struct{}), seen: make([]bool, rows+1)}
	runConnector(t, db, cfg, w)
	base := liveHeap()

	start := time.Now()
	db.Exec(t, `INSERT INTO big SELECT i, md5(i::text) || md5((-i)::text) FROM generate_series(1, $1) i`, rows)
	committed := time.Now()
	samples := sampleSlot(t, db)

	// Kafka stalls at the transaction's first write: the reader must stop
	// once the queue is full instead of reading the rest into memory. Its
	// heap stops growing then (a reader that kept the whole transaction
	// would grow until the last row).
	select {
	case <-w.blocked:
	case <-time.After(30 * time.Second):
		t.Fatal("the transaction's first events never reached the writer")
	}
	ref, still := liveHeap(), 0
	waitFor(t, 60*time.Second, "the connector to stop reading while Kafka stalls", func() bool {
		if h := liveHeap(); h > ref+128<<10 {
			ref, still = h, 0
			return false
		}
		still++
		return still == 10 // ≥ 500ms
	})
	stalled := liveHeap()
	w.mu.Lock()
	close(w.gate)
	w.gate = nil
	w.mu.Unlock()

	// Then it streams; the live heap is measured every 250ms meanwhile (a
	// collection stops the world: more often slows the stream down).
	peak, polls := stalled, 0
	waitFor(t, 60*time.Second, "every event to be acknowledged", func() bool {
		if polls++; polls%5 == 0 {
			peak = max(peak, liveHeap())
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.events == rows
	})
	streamed := time.Now()
	waitFor(t, 30*time.Second, "the slot to confirm the transaction", func() bool {
		return confirmed(t, db) > w.commitLSN
	})
	for _, s := range samples() {
		if s.lsn > w.commitLSN && !s.at.After(w.allAt) {
			t.Fatalf("at %s confirmed_flush_lsn was %s, past the commit at %s, before Kafka acknowledged the last event at %s",
				s.at.Format("15:04:05.000"), s.lsn, w.commitLSN, w.allAt.Format("15:04:05.000"))
		}
	}

	// What the connector may hold: a full queue and one batch, each event
	// with its key, value and bookkeeping (outgoing, kafka.Message), plus
	// a fixed allowance for buffers and the test's own tables.
	w.mu.Lock()
	defer w.mu.Unlock()
	perEvent := uint64(w.maxEvent) + 512
	bound := uint64(cfg.QueueSize+cfg.BatchSize)*perEvent + 8<<20
	growth := func(h uint64) uint64 { return h - min(h, base) }
	t.Logf("%d events, %d MB, in %s (commit %s, stream %s); live heap %d MB at start, +%d MB with Kafka stalled, +%d MB at most while streaming; bound +%d MB",
		w.events, w.bytes>>20, streamed.Sub(start).Round(time.Millisecond), committed.Sub(start).Round(time.Millisecond),
		streamed.Sub(committed).Round(time.Millisecond), base>>20, growth(stalled)>>20, growth(peak)>>20, bound>>20)
	if uint64(w.bytes) < 3*bound {
		t.Fatalf("the transaction's events (%d MB) are not much larger than the bound (%d MB): the test would not notice buffering", w.bytes>>20, bound>>20)
	}
	if g := growth(stalled); g > bound {
		t.Errorf("with Kafka stalled the live heap grew by %d MB, more than a full queue and batch (%d MB): the reader does not stop", g>>20, bound>>20)
	}
	if g := growth(peak); g > bound {
		t.Errorf("while streaming the live heap grew by %d MB, more than a full queue and batch (%d MB)", g>>20, bound>>20)
	}
}
