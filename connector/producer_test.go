package connector

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap/zaptest"

	"github.com/onesignal-cdc/onesignal-cdc/checkpoint"
	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// flakyWriter records what it was given, failing every third write, and
// lets several writes be in flight at once.
type flakyWriter struct {
	mu       sync.Mutex
	calls    int
	written  []kafka.Message // in the order the writes were accepted
	inFlight int
	most     int
}

func (w *flakyWriter) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	w.mu.Lock()
	w.calls++
	fail := w.calls%3 == 0
	w.inFlight++
	w.most = max(w.most, w.inFlight)
	w.mu.Unlock()
	time.Sleep(time.Millisecond)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inFlight--
	if fail {
		// As kafka-go may: part of the write landed before it failed.
		w.written = append(w.written, msgs[:len(msgs)/2]...)
		return errors.New("kafka: broker not available")
	}
	w.written = append(w.written, msgs...)
	return nil
}

// runProducer runs a producer of lanes lanes and writes of batchSize
// events at most through w, reading events from in (of room for queue
// runs) until it is closed; done gives what run returned.
func runProducer(t *testing.T, w MessageWriter, batchSize, lanes, queue int) (tracker *checkpoint.LSNTracker, in chan []outgoing, done chan error) {
	p := &producer{w: w, log: zaptest.NewLogger(t), batchSize: batchSize, lanes: lanes, obs: nopObserver{}}
	in, done = make(chan []outgoing, queue), make(chan error, 1)
	go func() { done <- p.run(t.Context(), in) }()
	return checkpoint.NewLSNTracker(0), in, done
}

func TestTheProducerKeepsEachKeysEventsInOrderAcrossLanesAndRetries(t *testing.T) {
	w := &flakyWriter{}
	tracker, in, done := runProducer(t, w, 7, 4, 16)

	const keys, perKey = 20, 30
	txn := tracker.Begin()
	var sent []kafka.Message
	var events []outgoing
	for i := range keys * perKey {
		key := fmt.Sprintf("k%d", i%keys)
		if i == keys*perKey/2 {
			// A truncate in the middle: everything before it is written
			// before it, everything after it after.
			m := kafka.Message{Topic: "t", Value: []byte("truncate")}
			txn.Add()
			events = append(events, outgoing{msg: m, txn: txn, op: event.OpTruncate})
			sent = append(sent, m)
		}
		m := kafka.Message{Topic: "t", Key: []byte(key), Value: fmt.Appendf(nil, "%d", i/keys)}
		txn.Add()
		events = append(events, outgoing{msg: m, txn: txn, op: event.OpUpdate})
		sent = append(sent, m)
	}
	// In runs as the reader hands them over, of several lengths: one
	// event, a few, a whole handoff; the truncate falls inside a run.
	for n := 0; len(events) > 0; n++ {
		size := min([]int{1, 5, 13, handoff}[n%4], len(events))
		in <- events[:size:size]
		events = events[size:]
	}
	tracker.Commit(txn, 100)
	close(in)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := tracker.Confirmed(); got != 100 {
		t.Errorf("confirmed %s, want 0/64: every event was acknowledged", got)
	}
	if w.most < 2 {
		t.Errorf("at most %d writes were in flight at once, want several", w.most)
	}

	// Per key: the last copy written is the newest event, and the first
	// copies of the events appear in commit order.
	last := map[string]string{}
	firstSeen := map[string][]string{}
	seen := map[string]bool{}
	truncateAt := -1
	for i, m := range w.written {
		if len(m.Key) == 0 {
			truncateAt = i
			continue
		}
		k, v := string(m.Key), string(m.Value)
		last[k] = v
		if !seen[k+"/"+v] {
			seen[k+"/"+v] = true
			firstSeen[k] = append(firstSeen[k], v)
		}
	}
	for i := range keys {
		k := fmt.Sprintf("k%d", i)
		if last[k] != fmt.Sprint(perKey-1) {
			t.Errorf("the last event written for %s is %s, want its newest, %d", k, last[k], perKey-1)
		}
		want := make([]string, perKey)
		for j := range want {
			want[j] = fmt.Sprint(j)
		}
		if !slices.Equal(firstSeen[k], want) {
			t.Errorf("%s's events first reached Kafka in the order %v", k, firstSeen[k])
		}
	}
	// The truncate comes after every event sent before it was written.
	for _, m := range sent[:keys*perKey/2] {
		if i := slices.IndexFunc(w.written, func(x kafka.Message) bool {
			return string(x.Key) == string(m.Key) && string(x.Value) == string(m.Value)
		}); i > truncateAt {
			t.Errorf("%s=%s was first written after the truncate that followed it", m.Key, m.Value)
		}
	}
	for _, m := range sent[keys*perKey/2+1:] {
		if i := slices.IndexFunc(w.written, func(x kafka.Message) bool {
			return string(x.Key) == string(m.Key) && string(x.Value) == string(m.Value)
		}); i < truncateAt {
			t.Errorf("%s=%s was written before the truncate that came before it", m.Key, m.Value)
		}
	}
}

// gatedWriter holds every write until open is closed, and records how
// many events each write carried.
type gatedWriter struct {
	open    chan struct{}
	entered chan struct{} // one per write begun
	mu      sync.Mutex
	sizes   []int
}

func (w *gatedWriter) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	w.entered <- struct{}{}
	select {
	case <-w.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	w.mu.Lock()
	w.sizes = append(w.sizes, len(msgs))
	w.mu.Unlock()
	return nil
}

func TestALaneGathersAboutAWritesWorthWhileItsWriteIsInFlight(t *testing.T) {
	const batchSize, lanes, perLane = 256, 4, 216
	w := &gatedWriter{open: make(chan struct{}), entered: make(chan struct{}, 64)}
	tracker, in, done := runProducer(t, w, batchSize, lanes, lanes*perLane/handoff+1)

	// Keys that fall in each lane in turn, so that every run the reader
	// hands over is cut into one run per lane, as under a busy stream.
	var keys [lanes][]string
	for i, full := 0, 0; full < lanes; i++ {
		k := fmt.Sprintf("contact/%d", i)
		if l := laneOf([]byte(k), lanes); len(keys[l]) < perLane {
			if keys[l] = append(keys[l], k); len(keys[l]) == perLane {
				full++
			}
		}
	}
	txn := tracker.Begin()
	var events []outgoing
	for i := range perLane {
		for l := range lanes {
			txn.Add()
			events = append(events, outgoing{msg: kafka.Message{Topic: "t", Key: []byte(keys[l][i])}, txn: txn, op: event.OpUpdate})
		}
	}
	// One run first, which every lane writes a part of; while those
	// writes are held, the rest: each lane must find room for its share,
	// about a write's worth, to write it in one go once Kafka answers.
	in <- events[:handoff:handoff]
	for range lanes {
		<-w.entered
	}
	for events = events[handoff:]; len(events) > 0; {
		n := min(handoff, len(events))
		in <- events[:n:n]
		events = events[n:]
	}
	tracker.Commit(txn, 100)
	for deadline := time.Now().Add(5 * time.Second); len(in) > 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	drained := len(in) == 0
	close(w.open)
	close(in)
	go func() {
		for range w.entered {
		}
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(w.entered)
	if !drained {
		t.Errorf("with every lane's write in flight, the lanes found no room for %d more events each (batch size %d)", perLane-handoff/lanes, batchSize)
	}
	if len(w.sizes) > 2*lanes {
		t.Errorf("%d events were written in %d writes %v, want two per lane", lanes*perLane, len(w.sizes), w.sizes)
	}
	if got := tracker.Confirmed(); got != 100 {
		t.Errorf("confirmed %s, want 0/64", got)
	}
}

// keepingWriter fails its first write and keeps the messages it was given,
// as a transport may keep the request of an attempt given up on; every
// later write succeeds.
type keepingWriter struct {
	mu         sync.Mutex
	calls      int
	kept, seen []kafka.Message // kept: the first write's slice; seen: a copy of it
}

func (w *keepingWriter) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	if w.calls == 1 {
		w.kept, w.seen = msgs, slices.Clone(msgs)
		return errors.New("kafka: request timed out")
	}
	return nil
}

func TestTheWriteAfterARetriedOneDoesNotReuseTheMessagesTheFailedAttemptWasGiven(t *testing.T) {
	w := &keepingWriter{}
	tracker, in, done := runProducer(t, w, 5, 1, 16)
	txn := tracker.Begin()
	for i := range 20 {
		txn.Add()
		in <- []outgoing{{msg: kafka.Message{Topic: "t", Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v")}, txn: txn, op: event.OpUpdate}}
	}
	tracker.Commit(txn, 100)
	close(in)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if w.calls < 3 {
		t.Fatalf("%d writes, want the failed one, its retry and more after them", w.calls)
	}
	for i := range w.seen {
		if string(w.kept[i].Key) != string(w.seen[i].Key) {
			t.Fatalf("message %d the failed attempt was given changed from %s to %s after it", i, w.seen[i].Key, w.kept[i].Key)
		}
	}
}
