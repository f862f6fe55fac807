package broker_test

import (
	"bytes"
	"runtime"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
)

// A closed writer and a finished admin client leave no connection pool
// behind: kafka-go keeps refreshing an open pool's metadata every 6 s for as
// long as the process lives, and the sink's tests once grew to 10 GB of
// such pools.
func TestClosedWritersAndClientsLeaveNoConnectionPoolRunning(t *testing.T) {
	b := kafkatest.Start(t)
	c := broker.Plain(b.Brokers())
	if err := c.EnsureTopics(t.Context(), 2, "leak"); err != nil {
		t.Fatal(err)
	}
	before := kafkaPools()
	for range 5 {
		w := c.NewWriter(broker.WriterBatchSize)
		if err := w.WriteMessages(t.Context(), kafka.Message{Topic: "leak", Key: []byte("k"), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		cw := broker.NewConnectorWriter(b.Brokers())
		if err := cw.WriteMessages(t.Context(), kafka.Message{Topic: "leak", Key: []byte("k"), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
		if err := cw.Close(); err != nil {
			t.Fatal(err)
		}
		client, done := c.Client(10 * time.Second)
		if _, err := client.Metadata(t.Context(), &kafka.MetadataRequest{Topics: []string{"leak"}}); err != nil {
			t.Fatal(err)
		}
		done()
	}
	deadline := time.Now().Add(10 * time.Second)
	for kafkaPools() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d kafka-go connection pools still run after their writers and clients were closed (%d before)", kafkaPools(), before)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kafkaPools counts the goroutines that keep a kafka-go pool's metadata
// fresh, one per open pool.
func kafkaPools() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return bytes.Count(buf[:n], []byte("kafka-go.(*connPool).discover"))
		}
		buf = make([]byte, 2*len(buf))
	}
}
