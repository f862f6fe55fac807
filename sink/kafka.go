package sink

import (
	"context"
	"fmt"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/checkpoint"
)

// Cluster is the sink's Kafka and Group on a cluster: the group cfg
// names, reading partitions with the cluster's settings.
type Cluster struct {
	broker.Cluster
	Group broker.GroupConfig
}

// Reader reads one partition from offset.
func (c Cluster) Reader(topic string, partition int, offset int64) PartitionReader {
	return c.PartitionReader(topic, partition, offset, c.Group.ErrorLogger)
}

// EndOffsets reads the partitions' ends in one request.
func (c Cluster) EndOffsets(ctx context.Context, partitions []checkpoint.Partition) (map[checkpoint.Partition]int64, error) {
	tps := make([]broker.TopicPartition, len(partitions))
	for i, p := range partitions {
		tps[i] = broker.TopicPartition{Topic: p.Topic, Partition: p.Partition}
	}
	got, err := c.Cluster.EndOffsets(ctx, tps)
	if err != nil {
		return nil, err
	}
	out := make(map[checkpoint.Partition]int64, len(got))
	for tp, end := range got {
		out[checkpoint.Partition{Topic: tp.Topic, Partition: tp.Partition}] = end
	}
	return out, nil
}

// Run is the group's Run (see Group).
func (c Cluster) Run(ctx context.Context, handle func(ctx context.Context, gen *Generation) error) error {
	return c.RunGroup(ctx, c.Group, func(ctx context.Context, bg *broker.Generation) error {
		parts := make(map[string]int, len(c.Group.Topics))
		for _, topic := range c.Group.Topics {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if n, err := c.PartitionCount(pctx, topic); err == nil {
				parts[topic] = n
			}
			cancel()
		}
		gen := &Generation{ID: bg.ID, Members: bg.Members, MemberID: bg.MemberID, Partitions: parts, Commit: func(ctx context.Context, offsets map[checkpoint.Partition]int64) error {
			out := make(map[broker.TopicPartition]int64, len(offsets))
			for p, o := range offsets {
				out[broker.TopicPartition{Topic: p.Topic, Partition: p.Partition}] = o
			}
			return bg.Commit(ctx, out)
		}}
		gen.Previous = make(map[checkpoint.Partition]bool, len(bg.Previous))
		for tp := range bg.Previous {
			gen.Previous[checkpoint.Partition{Topic: tp.Topic, Partition: tp.Partition}] = true
		}
		for _, a := range bg.Assigned {
			gen.Assigned = append(gen.Assigned, Assignment{Topic: a.Topic, Partition: a.Partition, Committed: a.Committed})
		}
		for _, m := range bg.Group {
			mem := Member{ID: m.ID, ClientID: m.ClientID, Host: m.Host}
			for _, tp := range m.Assigned {
				mem.Assigned = append(mem.Assigned, checkpoint.Partition{Topic: tp.Topic, Partition: tp.Partition})
			}
			gen.Group = append(gen.Group, mem)
		}
		return handle(ctx, gen)
	})
}

// Topics are the sink's own compacted topics (docs/architecture.md).
type Topics struct {
	Targets string // <prefix>.sink-targets: contributions and more, by target
	Rows    string // <prefix>.sink-rows: the row index's changelog
}

// TopicsFor names the sink's topics under prefix.
func TopicsFor(prefix string) Topics {
	return Topics{Targets: prefix + ".sink-targets", Rows: prefix + ".sink-rows"}
}

// Prepare creates the sink's topics when missing: the targets topic with
// partitions partitions, the rows topic with as many as the event topic
// that has the most, since each row's record goes to its event's
// partition number. The event topics must exist.
func (c Cluster) Prepare(ctx context.Context, t Topics, partitions int, events []string) error {
	rows := 1
	for _, topic := range events {
		n, err := c.PartitionCount(ctx, topic)
		if err != nil {
			return err
		}
		rows = max(rows, n)
	}
	if err := c.EnsureCompactedTopic(ctx, t.Targets, partitions); err != nil {
		return err
	}
	if err := c.EnsureCompactedTopic(ctx, t.Rows, rows); err != nil {
		return err
	}
	n, err := c.PartitionCount(ctx, t.Rows)
	if err != nil {
		return err
	}
	if n < rows {
		return fmt.Errorf("topic %s has %d partitions and an event topic has %d: the row index needs at least as many; add partitions to %s (kafka-topics --alter --partitions %d)",
			t.Rows, n, rows, t.Rows, rows)
	}
	return nil
}

// Writers returns writers of the sink's topics: the targets topic's
// partitions by the target part of a key, the rows topic's by the
// partition a message names.
func (c Cluster) Writers() (targets, rows *broker.Writer) {
	targets = c.NewWriter(500)
	targets.Balancer = broker.KeyPrefixBalancer{}
	targets.BatchTimeout = time.Millisecond
	rows = c.NewWriter(500)
	rows.Balancer = broker.MessagePartition{}
	rows.BatchTimeout = time.Millisecond
	return targets, rows
}
