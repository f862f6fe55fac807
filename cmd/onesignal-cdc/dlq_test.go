package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
)

func TestDLQReplayListsWhatItSendsBack(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	if err := broker.EnsureTopics(t.Context(), b.Brokers(), 1, "cdc.public.users", "cdc.dlq"); err != nil {
		t.Fatal(err)
	}
	w := broker.NewWriter(b.Brokers(), 10)
	defer w.Close()
	if err := w.WriteMessages(t.Context(),
		kafka.Message{Topic: "cdc.public.users", Key: []byte(`"u0"`), Value: []byte(`{}`)},
		kafka.Message{Topic: "cdc.dlq", Key: []byte(`"u0"`), Value: []byte(`{}`), Headers: []kafka.Header{
			{Key: sink.HeaderTopic, Value: []byte("cdc.public.users")}, {Key: sink.HeaderPartition, Value: []byte("0")},
			{Key: sink.HeaderOffset, Value: []byte("0")}, {Key: sink.HeaderMessage, Value: []byte("HTTP 400: tag limit")},
		}},
	); err != nil {
		t.Fatal(err)
	}
	cfg := writeFile(t, `
kafka:
  brokers: [`+b.Brokers()[0]+`]
  topic_prefix: cdc
mapping:
  users: {table: public.users, external_id: external_id}
`)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"dlq", "replay", "--dry-run", "--config", cfg}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"cdc.dlq/0@0", "replayed", "cdc.public.users/0@0", "HTTP 400: tag limit", "would replay 1, superseded 0, without origin 0, without value 0 (of 1 dead letters)"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, stdout.String())
		}
	}
}

func TestDLQReplayRefusesTheEmbeddedBroker(t *testing.T) {
	cfg := writeFile(t, "kafka:\n  brokers: [embedded]\nmapping:\n  users: {table: public.users, external_id: external_id}\n")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"dlq", "replay", "--config", cfg}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "use a Kafka cluster") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}
