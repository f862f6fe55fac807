package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
)

// What the embedded broker holds in a data directory, events and the
// connector's state, is there again when a new broker opens it.
func TestTheEmbeddedBrokerKeepsEventsAndStateInItsDataDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	b, err := broker.StartEmbeddedIn("127.0.0.1:0", dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := broker.EnsureTopics(ctx, b.Brokers(), 3, "cdc.public.users"); err != nil {
		t.Fatal(err)
	}
	w := broker.NewWriter(b.Brokers(), 10)
	for _, k := range []string{"a", "b", "c"} {
		if err := w.WriteMessages(ctx, kafka.Message{Topic: "cdc.public.users", Key: []byte(k), Value: []byte("v" + k)}); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	s, err := broker.OpenStateStore(ctx, b.Brokers(), "cdc.connector-state")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, "slot", []byte("snapshot done")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	b.Close()

	again, err := broker.StartEmbeddedIn("127.0.0.1:0", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	recs := kafkatest.ReadUntil(t, again.Brokers(), []string{"cdc.public.users"}, 20*time.Second, func(rs []kafkatest.Record) bool { return len(rs) >= 3 })
	if len(recs) != 3 {
		t.Errorf("read %d events after the restart, want 3", len(recs))
	}
	s, err = broker.OpenStateStore(ctx, again.Brokers(), "cdc.connector-state")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, err := s.Load(ctx, "slot"); err != nil || string(v) != "snapshot done" {
		t.Errorf("state after the restart: %q, %v", v, err)
	}
}

func TestTwoEmbeddedBrokersCannotShareADataDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b, err := broker.StartEmbeddedIn("127.0.0.1:0", dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = broker.StartEmbeddedIn("127.0.0.1:0", dir)
	if err == nil || !strings.Contains(err.Error(), "in use by another onesignal-cdc process") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("a second broker on the directory: %v", err)
	}
	b.Close()
	b, err = broker.StartEmbeddedIn("127.0.0.1:0", dir)
	if err != nil {
		t.Fatalf("the directory is still locked after Close: %v", err)
	}
	b.Close()
}

func TestAnEmbeddedBrokerInAnUnwritablePlaceNamesTheKey(t *testing.T) {
	_, err := broker.StartEmbeddedIn("127.0.0.1:0", "/proc/onesignal-cdc-data")
	if err == nil || !strings.Contains(err.Error(), "kafka.embedded_data_dir") {
		t.Fatalf("err = %v, want it to name kafka.embedded_data_dir", err)
	}
}
