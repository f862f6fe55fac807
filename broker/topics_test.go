package broker_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
)

func TestEnsureCompactedTopicCreatesItOnceAndChecksWhatExists(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	c := broker.Plain(b.Brokers())
	ctx := t.Context()
	for range 2 { // the second time it exists
		if err := c.EnsureCompactedTopic(ctx, "cdc.sink-rows", 6); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := c.PartitionCount(ctx, "cdc.sink-rows"); err != nil || n != 6 {
		t.Fatalf("%d partitions, %v; want 6", n, err)
	}
	client, done := c.Client(0)
	defer done()
	resp, err := client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: "cdc.sink-rows", ConfigNames: []string{"cleanup.policy"},
	}}})
	if err != nil || len(resp.Resources) != 1 || len(resp.Resources[0].ConfigEntries) != 1 || resp.Resources[0].ConfigEntries[0].ConfigValue != "compact" {
		t.Fatalf("cleanup.policy: %+v, %v; want compact", resp, err)
	}

	err = c.EnsureCompactedTopic(ctx, "cdc.sink-rows", 3)
	if err == nil || !strings.Contains(err.Error(), `topic "cdc.sink-rows" has 6 partitions where 3 are needed`) {
		t.Errorf("an existing topic of another partition count gave %v", err)
	}

	if err := c.EnsureTopics(ctx, 1, "expiring"); err != nil {
		t.Fatal(err)
	}
	err = c.EnsureCompactedTopic(ctx, "expiring", 1)
	if err == nil || !strings.Contains(err.Error(), "has cleanup.policy=delete") || !strings.Contains(err.Error(), "set cleanup.policy=compact") {
		t.Errorf("an existing topic that is not compacted gave %v", err)
	}
}

func TestPartitionCountSaysATopicDoesNotExist(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	_, err := broker.Plain(b.Brokers()).PartitionCount(t.Context(), "nowhere")
	if !errors.Is(err, kafka.UnknownTopicOrPartition) || !strings.Contains(err.Error(), `topic "nowhere" does not exist`) {
		t.Errorf("PartitionCount of a missing topic gave %v", err)
	}
}
