package broker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
)

func TestTheKeyPrefixBalancerPartitionsByTheTargetAloneAsMurmur2Would(t *testing.T) {
	t.Parallel()
	murmur2 := kafka.Murmur2Balancer{Consistent: true}
	for _, n := range []int{1, 6, 7, 64} {
		parts := make([]int, n)
		for i := range parts {
			parts[i] = i
		}
		for _, tc := range []struct{ key, target string }{
			{"a\x00x", "a"},
			{"a\x00y", "a"},
			{"a", "a"},
			{"user-42\x00public.users\x00{\"id\":42}", "user-42"},
			{"\x00row", ""},
			{"", ""},
		} {
			got := broker.KeyPrefixBalancer{}.Balance(kafka.Message{Key: []byte(tc.key)}, parts...)
			if want := murmur2.Balance(kafka.Message{Key: []byte(tc.target)}, parts...); got != want {
				t.Errorf("%d partitions: key %q went to %d, murmur2 of %q to %d", n, tc.key, got, tc.target, want)
			}
		}
	}
}

// Records of one target share a partition through a real writer, while the
// row-index writer puts each record in the partition it names.
func TestWritersPlaceRecordsByTargetAndByTheirNamedPartition(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	c := broker.Plain(b.Brokers())
	ctx := t.Context()
	for _, topic := range []string{"targets", "rows"} {
		if err := c.EnsureCompactedTopic(ctx, topic, 6); err != nil {
			t.Fatal(err)
		}
	}
	targets := c.NewWriter(10)
	targets.Balancer = broker.KeyPrefixBalancer{}
	defer targets.Close()
	rows := c.NewWriter(10)
	rows.Balancer = broker.MessagePartition{}
	defer rows.Close()
	for i := range 12 {
		key := fmt.Appendf(nil, "user-%d\x00row-%d", i%3, i)
		if err := targets.WriteMessages(ctx, kafka.Message{Topic: "targets", Key: key}); err != nil {
			t.Fatal(err)
		}
		if err := rows.WriteMessages(ctx, kafka.Message{Topic: "rows", Partition: i % 6, Key: key, Value: fmt.Appendf(nil, "%d", i%6)}); err != nil {
			t.Fatal(err)
		}
	}
	recs := kafkatest.ReadUntil(t, b.Brokers(), []string{"targets", "rows"}, 20*time.Second, func(rs []kafkatest.Record) bool { return len(rs) == 24 })
	partOf := map[string]int32{}
	for _, r := range recs {
		switch r.Topic {
		case "targets":
			target, _, _ := strings.Cut(string(r.Key), "\x00")
			if p, ok := partOf[target]; ok && p != r.Partition {
				t.Errorf("records of %s in partitions %d and %d", target, p, r.Partition)
			}
			partOf[target] = r.Partition
		case "rows":
			if fmt.Sprint(r.Partition) != string(r.Value) {
				t.Errorf("a record for partition %s is in partition %d", r.Value, r.Partition)
			}
		}
	}

	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := rows.WriteMessages(wctx, kafka.Message{Topic: "rows", Partition: 6, Key: []byte("k")}); err == nil {
		t.Error("a write to partition 6 of a 6-partition topic succeeded")
	} else {
		t.Logf("a write to a partition the topic lacks fails: %v", err)
	}
}
