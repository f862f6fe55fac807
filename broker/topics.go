package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// EnsureCompactedTopic creates topic, compacted (cleanup.policy=compact),
// with partitions partitions and the broker's default replication factor,
// unless it exists. An existing topic must have exactly that many
// partitions, since what such a topic holds is found by partition, and must
// be compacted, or its records would expire and the state with them; where
// the broker does not let this user read the topic's settings, the policy
// goes unchecked.
func (c Cluster) EnsureCompactedTopic(ctx context.Context, topic string, partitions int) error {
	client, done := c.Client(10 * time.Second)
	defer done()
	resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: -1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}},
	}}})
	if err != nil {
		return fmt.Errorf("create compacted topic %q: %w", topic, unprefixed(err))
	}
	err = resp.Errors[topic]
	if err == nil {
		return nil
	}
	if !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("create compacted topic %q: %w", topic, err)
	}
	n, err := c.PartitionCount(ctx, topic)
	if err != nil {
		return err
	}
	if n != partitions {
		return fmt.Errorf("topic %q has %d partitions where %d are needed (its records are found by partition): delete it to have it created again with %d, losing what it holds", topic, n, partitions, partitions)
	}
	return checkCompacted(ctx, client, topic)
}

func checkCompacted(ctx context.Context, client *kafka.Client, topic string) error {
	resp, err := client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"cleanup.policy"},
	}}})
	if err != nil {
		return fmt.Errorf("read the settings of topic %q: %w", topic, unprefixed(err))
	}
	for _, r := range resp.Resources {
		if errors.Is(r.Error, kafka.TopicAuthorizationFailed) || errors.Is(r.Error, kafka.ClusterAuthorizationFailed) {
			return nil
		}
		if r.Error != nil {
			return fmt.Errorf("read the settings of topic %q: %w", topic, r.Error)
		}
		for _, e := range r.ConfigEntries {
			if e.ConfigName == "cleanup.policy" && !strings.Contains(e.ConfigValue, "compact") {
				return fmt.Errorf("topic %q has cleanup.policy=%s, so its records expire and the state they hold with them: set cleanup.policy=compact (kafka-configs.sh --alter --entity-type topics --entity-name %s --add-config cleanup.policy=compact)", topic, e.ConfigValue, topic)
			}
		}
	}
	return nil
}

// PartitionCount returns how many partitions topic has; an error wrapping
// kafka.UnknownTopicOrPartition when it does not exist.
func (c Cluster) PartitionCount(ctx context.Context, topic string) (int, error) {
	transport := c.Transport()
	defer transport.CloseIdleConnections() // asked at every generation: leave no connection behind
	client := &kafka.Client{Addr: kafka.TCP(c.Brokers...), Timeout: 10 * time.Second, Transport: transport}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, fmt.Errorf("read the partitions of topic %q: %w", topic, unprefixed(err))
	}
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
			return 0, fmt.Errorf("topic %q does not exist: %w", topic, t.Error)
		}
		if t.Error != nil {
			return 0, fmt.Errorf("read the partitions of topic %q: %w", topic, t.Error)
		}
		return len(t.Partitions), nil
	}
	return 0, fmt.Errorf("topic %q does not exist: %w", topic, kafka.UnknownTopicOrPartition)
}

// unprefixed drops the Go method name that kafka-go puts before some of its
// errors ("kafka.(*Client).Metadata: "), which means nothing to a user.
func unprefixed(err error) error {
	if inner := errors.Unwrap(err); inner != nil && strings.HasPrefix(err.Error(), "kafka.(") {
		return inner
	}
	return err
}
