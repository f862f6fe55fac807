package badinput

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/sink/desired"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// The app the emulator plays in every group.
const (
	appID  = "3c1e8f9a-0000-4000-8000-00000000bad1"
	apiKey = "badinput-key"
)

const dlqTopic = "cdc.dlq"

// targetsTopic is the sink's targets topic: the contributions of the
// rows to each user and device, which the target stage reads.
const targetsTopic = "cdc.sink-targets"

// stack is what one group runs its daemon against: the harness's, whose
// broker is in the test process, so that the test reads the dead-letter
// topic and the group's offsets.
type stack struct {
	*daemontest.Stack
}

func newStack(t *testing.T) *stack {
	t.Helper()
	return &stack{daemontest.NewStack(t, daemontest.StackOptions{Emulator: emulator.Config{AppID: appID, APIKey: apiKey}})}
}

// config is a group's daemon configuration on the stack: the settings
// every group shares, the consumer group "badinput" and no mapping yet.
func (s *stack) config() config.Config {
	c := s.Stack.Config()
	c.Postgres.Publication = "cdc"
	c.Postgres.StatusInterval = 200 * time.Millisecond
	c.Kafka.TopicPrefix = "cdc"
	c.Kafka.Partitions = 2
	c.Kafka.ConsumerGroup = "badinput"
	c.OneSignal.Concurrency = 8
	return c
}

// usersConfig writes the configuration of a group that maps the plan
// column of public.users to a tag, and returns its path.
func (s *stack) usersConfig(t *testing.T) string {
	t.Helper()
	c := s.config()
	c.Mapping.Users = usersMapping("public.users", map[string]string{"plan": ""})
	return daemontest.WriteConfig(t, c)
}

// usersMapping maps table's external_id column to users, with tags
// (column: tag, "" keeping the column's name).
func usersMapping(table string, tags map[string]string) *transform.UsersMapping {
	return &transform.UsersMapping{Table: table, ExternalID: "external_id", Tags: tags}
}

// devicesMapping maps table's player_id to devices, owned by the user of
// user_external_id.
func devicesMapping(table string) *transform.DevicesMapping {
	return &transform.DevicesMapping{Table: table, DeviceID: "player_id", ExternalID: "user_external_id"}
}

// userTags returns the tags OneSignal holds for the user, nil when there
// is no such user.
func (s *stack) userTags(externalID string) map[string]string {
	u, ok := s.Emulator.State().UserByExternalID(externalID)
	if !ok {
		return nil
	}
	return u.Tags
}

// waitForTags waits until every user in want holds at least the tags
// given for it, or fails the test naming the users that do not.
func (s *stack) waitForTags(t *testing.T, want map[string]map[string]string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var missing []string
		for id, tags := range want {
			got := s.userTags(id)
			for k, v := range tags {
				if got[k] != v {
					missing = append(missing, fmt.Sprintf("user %q: tag %.40q is %.40q, want %.40q", id, k, got[k], v))
				}
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			sort.Strings(missing)
			t.Fatalf("OneSignal is not in step %s after the writes:\n  %s", timeout, strings.Join(missing, "\n  "))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// produce writes messages to topic as they are, each to the partition
// its key's murmur2 hash names, as the connector writes them; to the
// targets topic, to the partition of the target its key names, as the
// sink writes them.
func (s *stack) produce(t *testing.T, topic string, msgs ...kafka.Message) {
	t.Helper()
	w := broker.NewWriter(s.Kafka.Brokers(), 100)
	w.BatchBytes = 8 << 20 // room for the oversized cases; the topic decides
	if topic == targetsTopic {
		w.Balancer = broker.KeyPrefixBalancer{}
	}
	defer w.Close()
	for i := range msgs {
		msgs[i].Topic = topic
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce to %s: %v", topic, err)
	}
}

// waitForTopic waits until topic exists, as the daemon creates it, and
// returns its number of partitions.
func waitForTopic(t *testing.T, brokers []string, topic string, timeout time.Duration) int {
	t.Helper()
	c, done := broker.Plain(brokers).Client(10 * time.Second)
	defer done()
	deadline := time.Now().Add(timeout)
	for {
		md, err := c.Metadata(context.Background(), &kafka.MetadataRequest{Topics: []string{topic}})
		if err == nil && len(md.Topics) == 1 && md.Topics[0].Error == nil && len(md.Topics[0].Partitions) > 0 {
			return len(md.Topics[0].Partitions)
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s does not exist after %s (metadata: %v)", topic, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// createTopic creates topic with the given configuration entries, before
// the daemon creates it with the broker's defaults.
func (s *stack) createTopic(t *testing.T, topic string, partitions int, configs map[string]string) {
	t.Helper()
	c, done := broker.Plain(s.Kafka.Brokers()).Client(10 * time.Second)
	defer done()
	tc := kafka.TopicConfig{Topic: topic, NumPartitions: partitions, ReplicationFactor: -1}
	for _, k := range slices.Sorted(maps.Keys(configs)) {
		tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: configs[k]})
	}
	resp, err := c.CreateTopics(context.Background(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{tc}})
	if err == nil {
		err = resp.Errors[topic]
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

// targetRecord returns the first record of the targets topic whose key
// is of target (as transform.Target's Key names it), waiting for the sink
// to write it.
func (s *stack) targetRecord(t *testing.T, target string) kafkatest.Record {
	t.Helper()
	of := func(r kafkatest.Record) bool { return desired.TargetOf(r.Key) == target }
	recs := kafkatest.ReadUntil(t, s.Kafka.Brokers(), []string{targetsTopic}, 30*time.Second, func(rs []kafkatest.Record) bool {
		return slices.ContainsFunc(rs, of)
	})
	return recs[slices.IndexFunc(recs, of)]
}

// deadLetter is a message of the dead-letter topic.
type deadLetter struct {
	kafkatest.Record
	reason string // __connect.errors.exception.message
	stage  string
	status string
}

func (d deadLetter) String() string {
	return fmt.Sprintf("%s@%s (%s): %s", d.header(sink.HeaderTopic), d.header(sink.HeaderOffset), d.stage, d.reason)
}

func (d deadLetter) header(key string) string {
	for _, h := range d.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// deadLetters returns everything the dead-letter topic holds.
func (s *stack) deadLetters(t *testing.T) []deadLetter {
	t.Helper()
	n := kafkatest.MessagesIn(t, s.Kafka.Brokers(), dlqTopic)
	recs := kafkatest.ReadUntil(t, s.Kafka.Brokers(), []string{dlqTopic}, 30*time.Second, func(rs []kafkatest.Record) bool { return int64(len(rs)) >= n })
	out := make([]deadLetter, len(recs))
	for i, r := range recs {
		out[i] = deadLetter{Record: r}
		out[i].reason = out[i].header(sink.HeaderMessage)
		out[i].stage = out[i].header(sink.HeaderStage)
		out[i].status = out[i].header(sink.HeaderStatus)
	}
	return out
}

// committed returns the offsets group has committed on topic's partitions.
func committed(t *testing.T, brokers []string, group, topic string) map[int]int64 {
	t.Helper()
	c, done := broker.Plain(brokers).Client(10 * time.Second)
	defer done()
	ends := kafkatest.EndOffsets(t, brokers, topic)
	parts := slices.Sorted(maps.Keys(ends))
	resp, err := c.OffsetFetch(context.Background(), &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		t.Fatalf("offsets of group %s: %v", group, err)
	}
	out := map[int]int64{}
	for _, p := range resp.Topics[topic] {
		out[p.Partition] = p.CommittedOffset
	}
	return out
}

// waitForCommitted waits until group has committed the end of every
// partition of the event topics, then of the targets topic: each message
// is then applied, or held by the dead-letter topic, so the dead-letter
// topic is final. An event's offset is committed once its contributions
// are in the targets topic, a contribution's once OneSignal took it.
func waitForCommitted(t *testing.T, brokers []string, group string, events []string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var behind []string
		for _, topic := range append(slices.Clip(events), targetsTopic) {
			done := committed(t, brokers, group, topic)
			for p, end := range kafkatest.EndOffsets(t, brokers, topic) {
				if end > 0 && done[p] != end {
					behind = append(behind, fmt.Sprintf("%s/%d committed %d of %d", topic, p, done[p], end))
				}
			}
		}
		if len(behind) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sink did not commit everything within %s: %s", timeout, strings.Join(behind, ", "))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// jsonField reads one field of a JSON object, "" when absent.
func jsonField(raw []byte, field string) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return ""
	}
	return string(m[field])
}
