package sink_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap/zaptest"

	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
)

func TestSinkCommitsNothingPastAMergedRequestThatIsRetrying(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	produce(t, b, userEvent("u0", "a"), userEvent("u1", "x"), userEvent("u0", "b"), userEvent("u2", "x"), userEvent("u0", "c"), userEvent("u3", "x"))
	cfg := testConfig(t)
	var released atomic.Bool
	var failures atomic.Int64
	api := newRecordingAPI(cfg.Clock, func(_ context.Context, c call) error {
		if c.id == "u0" && c.tags["plan"] != "a" && !released.Load() {
			failures.Add(1)
			return unavailable503{}
		}
		return nil
	})
	run := startSink(t, b, "g", api, cfg)

	waitFor(t, "u0's merged request to fail three times", func() bool { return failures.Load() >= 3 })
	time.Sleep(200 * time.Millisecond) // several commit intervals
	if got := committed(t, b, "g"); got > 2 {
		t.Fatalf("committed offset %d while message 2 waits for its merged request", got)
	}
	released.Store(true)
	waitFor(t, "everything to be committed once the request passes", func() bool { return committed(t, b, "g") == 6 })
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}
	if got := lastTags(api.recorded())["user u0"]["plan"]; got != "c" {
		t.Errorf("u0's last request set plan %q, want c", got)
	}
}

// badRequest400For refuses calls whose plan is not "ok".
func badRequest400For(id string) func(context.Context, call) error {
	return func(_ context.Context, c call) error {
		if c.id == id && c.tags["plan"] != "ok" {
			return badRequest{}
		}
		return nil
	}
}

func TestSinkDeadLettersEveryMessageOfARefusedMergedRequest(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	produce(t, b, userEvent("u0", "ok"), userEvent("u1", "x"))
	cfg, clock := manualConfig()
	api := newRecordingAPI(clock, badRequest400For("u0"))
	run := startSink(t, b, "g", api, withDeadLetters(t, b, cfg))
	waitFor(t, "the first messages to be committed", func() bool { return committed(t, b, "g") == 2 })

	// u0 was just written to, so its next changes merge until a second
	// has passed, into one request that OneSignal refuses.
	produce(t, b, userEvent("u0", "bad1"), userEvent("u2", "x"), userEvent("u0", "bad2"))
	waitFor(t, "the new changes to be scheduled", func() bool { return run.sink.Stats().Changes == 5 })
	clock.Advance(time.Second)
	waitFor(t, "every offset to be committed", func() bool { return committed(t, b, "g") == 5 })
	dead := kafkatest.ReadUntil(t, b.Brokers(), []string{"cdc.dlq"}, 30*time.Second, func(rs []kafkatest.Record) bool { return len(rs) >= 2 })
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}

	var offsets []string
	for _, d := range dead {
		offsets = append(offsets, header(d, sink.HeaderOffset))
		if header(d, sink.HeaderStatus) != "400" || header(d, sink.HeaderStage) != "onesignal" {
			t.Errorf("dead letter of offset %s: status %q stage %q, want 400 and onesignal", header(d, sink.HeaderOffset), header(d, sink.HeaderStatus), header(d, sink.HeaderStage))
		}
	}
	slices.Sort(offsets)
	if !slices.Equal(offsets, []string{"2", "4"}) {
		t.Errorf("dead letters of offsets %v, want 2 and 4, the messages of the refused request", offsets)
	}
	if n := len(byTarget(api.recorded())["user u0"]); n != 2 {
		t.Errorf("%d requests for u0, want 2: the accepted one and the merged refused one", n)
	}
}

func TestSinkStopsWhenTheCredentialsAreRefusedForAMergedRequest(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	produce(t, b, userEvent("u0", "ok"), userEvent("u1", "x"))
	cfg, clock := manualConfig()
	api := newRecordingAPI(clock, func(_ context.Context, c call) error {
		if c.id == "u0" && c.tags["plan"] != "ok" {
			return unauthorized401{}
		}
		return nil
	})
	run := startSink(t, b, "g", api, withDeadLetters(t, b, cfg))
	waitFor(t, "the first messages to be committed", func() bool { return committed(t, b, "g") == 2 })

	produce(t, b, userEvent("u0", "a"), userEvent("u2", "x"), userEvent("u0", "b"))
	waitFor(t, "the new changes to be scheduled and u2 applied", func() bool {
		return run.sink.Stats().Changes == 5 && len(byTarget(api.recorded())["user u2"]) == 1
	})
	clock.Advance(time.Second)
	err := run.wait(t)
	if err == nil || !strings.Contains(err.Error(), "check onesignal.app_id and onesignal.api_key") || !strings.Contains(err.Error(), topic+"/0@2") {
		t.Fatalf("sink stopped with %v, want the credentials and message 2 named", err)
	}
	if got := committed(t, b, "g"); got > 2 {
		t.Fatalf("committed offset %d past the messages whose request OneSignal refused", got)
	}
}

// scriptedReader is a MessageReader that hands out msgs, then waits; it
// records the offsets committed.
type scriptedReader struct {
	mu        sync.Mutex
	msgs      []kafka.Message
	committed []int64
}

func (r *scriptedReader) FetchMessage(ctx context.Context) (kafka.Message, error) {
	r.mu.Lock()
	if len(r.msgs) > 0 {
		m := r.msgs[0]
		r.msgs = r.msgs[1:]
		r.mu.Unlock()
		return m, nil
	}
	r.mu.Unlock()
	<-ctx.Done()
	return kafka.Message{}, ctx.Err()
}

func (r *scriptedReader) CommitMessages(_ context.Context, msgs ...kafka.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		r.committed = append(r.committed, m.Offset)
	}
	return nil
}

func (r *scriptedReader) highest() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := int64(-1)
	for _, o := range r.committed {
		h = max(h, o)
	}
	return h
}

func TestSinkMarksAReplayDoneOnlyWithTheEventItRepeats(t *testing.T) {
	t.Parallel()
	at := func(m kafka.Message, offset int64) kafka.Message { m.Offset = offset; return m }
	first := userEventAt("u0", "pro", 200, 190)
	// After a rebalance the consumer fetches from the committed offset
	// again: message 0 comes back while its first copy is still applied.
	r := &scriptedReader{msgs: []kafka.Message{at(first, 0), at(userEvent("u1", "x"), 1), at(first, 0), at(userEvent("u1", "y"), 1)}}
	api := &gatedAPI{hold: "u0", release: make(chan struct{}), applied: map[string]bool{}}
	s := sink.New(testConfig(t), r, api, mapping, zaptest.NewLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()

	waitFor(t, "the replay to be skipped and u1 applied", func() bool { return s.Stats().Replays == 1 && s.Stats().Done >= 2 })
	time.Sleep(200 * time.Millisecond) // several commit intervals
	if h := r.highest(); h >= 0 {
		t.Fatalf("committed offset %d while the event message 0 repeats is still being applied", h)
	}
	close(api.release)
	waitFor(t, "both offsets to be committed", func() bool { return r.highest() == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
