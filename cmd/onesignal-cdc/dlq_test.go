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

func TestDLQReplayRefusesTheEmbeddedBrokerInMemory(t *testing.T) {
	cfg := writeFile(t, "kafka:\n  brokers: [embedded]\n  embedded_data_dir: \"\"\nmapping:\n  users: {table: public.users, external_id: external_id}\n")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"dlq", "replay", "--config", cfg}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "set kafka.embedded_data_dir, or use a Kafka cluster") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}

// The embedded broker's dead letters are in its data directory: a replay
// reads them there while no daemon runs, and says to stop the daemon when
// one holds the directory.
func TestDLQReplayReadsTheEmbeddedBrokersDataDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b, err := broker.StartEmbeddedIn("127.0.0.1:0", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := broker.EnsureTopics(t.Context(), b.Brokers(), 1, "cdc.public.users", "cdc.dlq"); err != nil {
		t.Fatal(err)
	}
	w := broker.NewWriter(b.Brokers(), 10)
	if err := w.WriteMessages(t.Context(), kafka.Message{Topic: "cdc.dlq", Key: []byte(`"u0"`), Value: []byte(`{}`), Headers: []kafka.Header{
		{Key: sink.HeaderTopic, Value: []byte("cdc.public.users")}, {Key: sink.HeaderPartition, Value: []byte("0")},
		{Key: sink.HeaderOffset, Value: []byte("0")}, {Key: sink.HeaderMessage, Value: []byte("HTTP 400: tag limit")},
	}}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	cfg := writeFile(t, "kafka:\n  brokers: [embedded]\n  embedded_data_dir: "+dir+"\n  topic_prefix: cdc\nmapping:\n  users: {table: public.users, external_id: external_id}\n")

	var stdout, stderr bytes.Buffer
	if code := run([]string{"dlq", "replay", "--dry-run", "--config", cfg}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "in use by another onesignal-cdc process: stop it first") {
		t.Errorf("with the directory in use: exit %d, stderr %q", code, stderr.String())
	}
	b.Close()
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"dlq", "replay", "--dry-run", "--config", cfg}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "HTTP 400: tag limit") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}
