package deadletter_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/deadletter"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
)

const (
	users = "cdc.public.users"
	dlq   = "cdc.dlq"
)

func TestReplaySendsBackOnlyDeadLettersNoNewerEventSuperseded(t *testing.T) {
	b := kafkatest.Start(t)
	if err := broker.EnsureTopics(t.Context(), b.Brokers(), 1, users, dlq); err != nil {
		t.Fatal(err)
	}
	w := broker.NewWriter(b.Brokers(), 100)
	w.Balancer = broker.MessagePartition{}
	t.Cleanup(func() { w.Close() })
	write := func(msgs ...kafka.Message) {
		t.Helper()
		if err := w.WriteMessages(t.Context(), msgs...); err != nil {
			t.Fatal(err)
		}
	}
	event := func(key, value string) kafka.Message {
		return kafka.Message{Topic: users, Key: []byte(key), Value: []byte(value),
			Headers: []kafka.Header{{Key: "traceparent", Value: []byte("00-abc")}}}
	}
	deadLetter := func(m kafka.Message, offset int64) kafka.Message {
		m.Topic = dlq
		m.Headers = append(m.Headers,
			kafka.Header{Key: sink.HeaderTopic, Value: []byte(users)},
			kafka.Header{Key: sink.HeaderPartition, Value: []byte("0")},
			kafka.Header{Key: sink.HeaderOffset, Value: []byte(strconv.FormatInt(offset, 10))},
			kafka.Header{Key: sink.HeaderMessage, Value: []byte("HTTP 400: bad tag")},
			kafka.Header{Key: sink.HeaderStatus, Value: []byte("400")},
		)
		return m
	}
	u0, u1 := event(`"u0"`, `{"v":1}`), event(`"u1"`, `{"v":1}`)
	write(u0, u1, event(`"u2"`, `{"v":1}`), event(`"u1"`, `{"v":2}`), kafka.Message{Topic: users, Key: []byte(`"u0"`)}) // offsets 0-4; a tombstone of u0 last
	dropped := deadLetter(event(`"u2"`, ""), 2)
	dropped.Value = nil
	dropped.Headers = append(dropped.Headers, kafka.Header{Key: sink.HeaderValueDropped, Value: []byte("2097152")})
	write(deadLetter(u0, 0), deadLetter(u1, 1), kafka.Message{Topic: dlq, Key: []byte("x"), Value: []byte("no headers")}, dropped)

	cfg := deadletter.Config{Cluster: broker.Plain(b.Brokers()), Topic: dlq, Group: "replay"}
	dry := cfg
	dry.DryRun = true
	rep, err := deadletter.Replay(t.Context(), dry, w)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Count(deadletter.Replayed) != 1 || rep.Count(deadletter.Superseded) != 1 || rep.Count(deadletter.NoOrigin) != 1 || rep.Count(deadletter.ValueDropped) != 1 {
		t.Fatalf("dry run: %+v, want u0 replayed, u1 superseded, one without origin and one without its value", rep.Outcomes)
	}
	if o := rep.Outcomes[1]; o.By != users+"/0@3" || o.Reason != "HTTP 400: bad tag" {
		t.Errorf("u1's outcome %+v, want superseded by %s/0@3 with the reason", o, users)
	}

	rep, err = deadletter.Replay(t.Context(), cfg, w)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Count(deadletter.Replayed) != 1 {
		t.Fatalf("replay: %+v", rep.Outcomes)
	}
	recs := kafkatest.ReadUntil(t, b.Brokers(), []string{users}, 10*time.Second, func(rs []kafkatest.Record) bool { return len(rs) == 6 })
	back := recs[5]
	if string(back.Key) != `"u0"` || string(back.Value) != `{"v":1}` {
		t.Errorf("written back %s=%s, want u0's event", back.Key, back.Value)
	}
	hs := map[string]string{}
	for _, h := range back.Headers {
		hs[h.Key] = string(h.Value)
	}
	if len(hs) != 2 || hs["traceparent"] != "00-abc" || hs[sink.HeaderRedelivery] != dlq+"/0@0" {
		t.Errorf("headers %v: want the original ones and the redelivery mark, without the dead letter's", hs)
	}

	rep, err = deadletter.Replay(t.Context(), cfg, w)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Outcomes) != 0 {
		t.Errorf("second run handled %+v, want nothing: the first committed its progress", rep.Outcomes)
	}

	// As if the first run had crashed before committing: u0's own copy now
	// supersedes it, so it is not sent twice.
	again := cfg
	again.FromBeginning = true
	rep, err = deadletter.Replay(t.Context(), again, w)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Count(deadletter.Replayed) != 0 || rep.Outcomes[0].By != users+"/0@5" {
		t.Errorf("rerun from the beginning: %+v, want u0 superseded by its copy at offset 5", rep.Outcomes)
	}
}
