package broker_test

import (
	"context"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
)

func TestStateStoreReturnsTheNewestValueOfAKey(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	ctx := context.Background()
	s, err := broker.OpenStateStore(ctx, b.Brokers(), "cdc.connector-state")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, err := s.Load(ctx, "slot_a"); err != nil || v != nil {
		t.Fatalf("empty store gave %q, %v; want nothing", v, err)
	}
	for _, kv := range [][2]string{{"slot_a", "1"}, {"slot_b", "x"}, {"slot_a", "2"}} {
		if err := s.Save(ctx, kv[0], []byte(kv[1])); err != nil {
			t.Fatal(err)
		}
	}
	// A second store on the same topic sees what the first wrote: the
	// state survives the process.
	again, err := broker.OpenStateStore(ctx, b.Brokers(), "cdc.connector-state")
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if v, err := again.Load(ctx, "slot_a"); err != nil || string(v) != "2" {
		t.Fatalf("slot_a = %q, %v; want 2", v, err)
	}
	if v, err := again.Load(ctx, "slot_b"); err != nil || string(v) != "x" {
		t.Fatalf("slot_b = %q, %v; want x", v, err)
	}
}
