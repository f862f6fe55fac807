// Package deadletter sends the messages of the dead-letter topic back to
// the topics they came from, once whatever refused them is fixed.
//
// A dead letter is replayed only if no newer event of its key has reached
// its topic since: the sink would otherwise apply an old state over a
// newer one. The copy carries sink.HeaderRedelivery, which tells the sink
// to apply it although it has seen the event before. Which dead letters
// were handled is kept as the committed offsets of a consumer group, so a
// second run handles only the dead letters that came after the first.
//
// The chain: the copies are written and acknowledged by Kafka first, then
// the group's offsets are committed. A crash in between replays the same
// dead letters again on the next run, and then each finds its own copy
// after it in the topic, and counts as superseded: nothing is sent twice
// and nothing is lost.
package deadletter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/internal/errtext"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
)

// MessageWriter writes messages, returning once Kafka acknowledged them,
// each to the partition its Partition field names (a kafka-go Writer with
// broker.MessagePartition as its balancer).
type MessageWriter interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Config says which dead letters to replay.
type Config struct {
	Cluster broker.Cluster
	Topic   string // the dead-letter topic
	// Group is the consumer group whose committed offsets on Topic mark
	// the dead letters already handled.
	Group string
	// FromBeginning handles every dead letter Kafka still holds, not only
	// those after the group's offsets.
	FromBeginning bool
	// DryRun decides and reports, but writes and commits nothing.
	DryRun bool
}

// Action is what became of one dead letter.
type Action string

// The actions.
const (
	Replayed   Action = "replayed"   // written back to its topic
	Superseded Action = "superseded" // a newer event of its key came since: not replayed
	NoOrigin   Action = "no-origin"  // without the headers that name its topic: not replayed
	// ValueDropped: the message was too large for the dead-letter topic,
	// which holds it without its value; the original is still in its
	// topic, at the origin, for as long as that topic keeps it.
	ValueDropped Action = "value-dropped"
)

// Outcome is one dead letter's fate.
type Outcome struct {
	At     string // where the dead letter is: topic/partition@offset
	Origin string // where it came from: topic/partition@offset
	Action Action
	Reason string // why it was dead-lettered, from its headers
	By     string // Superseded: where the newer event is
}

// Report lists what a replay did, in dead-letter topic order per partition.
type Report struct{ Outcomes []Outcome }

// Count returns how many dead letters met action a.
func (r Report) Count(a Action) int {
	n := 0
	for _, o := range r.Outcomes {
		if o.Action == a {
			n++
		}
	}
	return n
}

type origin struct {
	topic     string
	partition int
}

type letter struct {
	msg    kafka.Message
	head   sink.Letter // what its headers say
	from   origin
	offset int64 // in its origin partition
	ok     bool  // from and offset were read from the headers
}

// Replay handles the dead letters of cfg.Topic after the group's offsets
// (or all of them), writing the ones to replay with w.
func Replay(ctx context.Context, cfg Config, w MessageWriter) (Report, error) {
	rep, err := replay(ctx, cfg, w)
	return rep, errtext.Plain(err) // kafka-go names its Go methods in its errors
}

func replay(ctx context.Context, cfg Config, w MessageWriter) (Report, error) {
	client, done := cfg.Cluster.Client(30 * time.Second)
	defer done()
	ranges, err := partitionRanges(ctx, client, cfg.Topic)
	if err != nil {
		return Report{}, err
	}
	if !cfg.FromBeginning {
		if err := startAtCommitted(ctx, client, cfg.Group, cfg.Topic, ranges); err != nil {
			return Report{}, err
		}
	}
	var letters []letter
	for p, r := range ranges {
		err := cfg.Cluster.ReadRange(ctx, cfg.Topic, p, r.first, r.last, func(m kafka.Message) {
			letters = append(letters, parse(m))
		})
		if err != nil {
			return Report{}, err
		}
	}
	newest, err := newestByKey(ctx, client, cfg.Cluster, letters)
	if err != nil {
		return Report{}, err
	}

	var rep Report
	var out []kafka.Message
	for _, l := range letters {
		o := Outcome{At: where(l.msg.Topic, l.msg.Partition, l.msg.Offset), Reason: l.head.Reason}
		switch {
		case !l.ok:
			o.Action = NoOrigin
		case l.head.ValueDropped:
			o.Action, o.Origin = ValueDropped, where(l.from.topic, l.from.partition, l.offset)
		default:
			o.Origin = where(l.from.topic, l.from.partition, l.offset)
			if at, ok := newest[l.from][string(l.msg.Key)]; ok && at > l.offset && len(l.msg.Key) > 0 {
				o.Action, o.By = Superseded, where(l.from.topic, l.from.partition, at)
				break
			}
			o.Action = Replayed
			out = append(out, redelivery(l, o.At))
		}
		rep.Outcomes = append(rep.Outcomes, o)
	}
	if cfg.DryRun {
		return rep, nil
	}
	if len(out) > 0 {
		if err := w.WriteMessages(ctx, out...); err != nil {
			return Report{}, fmt.Errorf("write %d dead letters back: %w", len(out), err)
		}
	}
	return rep, commit(ctx, client, cfg.Group, cfg.Topic, ranges)
}

// redelivery is the message to write back: the original, with the dead
// letter's headers taken off and the redelivery mark put on.
func redelivery(l letter, at string) kafka.Message {
	hs := append(sink.WithoutLetter(l.msg.Headers), kafka.Header{Key: sink.HeaderRedelivery, Value: []byte(at)})
	// Back to the partition it came from: a record of the sink's targets
	// topic is partitioned by a part of its key only, and an event's
	// partition holds its key's other events, in order.
	return kafka.Message{Topic: l.from.topic, Partition: l.from.partition, Key: l.msg.Key, Value: l.msg.Value, Headers: hs}
}

func parse(m kafka.Message) letter {
	l := letter{msg: m}
	l.head, l.ok = sink.ReadLetter(m)
	if l.ok {
		l.from, l.offset = origin{l.head.Topic, l.head.Partition}, l.head.Offset
	}
	return l
}

// newestByKey returns, per origin partition, the offset of the newest
// event of each dead letter's key from the oldest dead letter on. Only the
// dead letters' keys are kept, which bounds its memory by theirs.
// Tombstones do not count: they follow deletes and carry no state.
func newestByKey(ctx context.Context, client *kafka.Client, cluster broker.Cluster, letters []letter) (map[origin]map[string]int64, error) {
	from := map[origin]int64{}
	keys := map[origin]map[string]bool{}
	for _, l := range letters {
		if !l.ok {
			continue
		}
		if f, ok := from[l.from]; !ok || l.offset < f {
			from[l.from] = l.offset
		}
		if keys[l.from] == nil {
			keys[l.from] = map[string]bool{}
		}
		keys[l.from][string(l.msg.Key)] = true
	}
	newest := map[origin]map[string]int64{}
	for o, first := range from {
		ranges, err := partitionRanges(ctx, client, o.topic)
		if err != nil {
			return nil, err
		}
		r, ok := ranges[o.partition]
		if !ok {
			return nil, fmt.Errorf("topic %q has no partition %d, which dead letters came from: was it deleted and recreated?", o.topic, o.partition)
		}
		first = max(first+1, r.first)
		seen := map[string]int64{}
		err = cluster.ReadRange(ctx, o.topic, o.partition, first, r.last, func(m kafka.Message) {
			if m.Value != nil && keys[o][string(m.Key)] {
				seen[string(m.Key)] = m.Offset
			}
		})
		if err != nil {
			return nil, err
		}
		newest[o] = seen
	}
	return newest, nil
}

// offsetRange is a partition's offsets [first, last).
type offsetRange struct{ first, last int64 }

func partitionRanges(ctx context.Context, client *kafka.Client, topic string) (map[int]offsetRange, error) {
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("read metadata of %q: %w", topic, err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		var terr error
		if len(md.Topics) == 1 {
			terr = md.Topics[0].Error
		}
		return nil, fmt.Errorf("topic %q: %w", topic, errors.Join(errors.New("not found"), terr))
	}
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
	}
	res, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("list offsets of %q: %w", topic, err)
	}
	ranges := map[int]offsetRange{}
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("list offsets of %q partition %d: %w", topic, po.Partition, po.Error)
		}
		ranges[po.Partition] = offsetRange{first: po.FirstOffset, last: po.LastOffset}
	}
	return ranges, nil
}

func startAtCommitted(ctx context.Context, client *kafka.Client, group, topic string, ranges map[int]offsetRange) error {
	ps := make([]int, 0, len(ranges))
	for p := range ranges {
		ps = append(ps, p)
	}
	res, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ps}})
	if err == nil {
		err = res.Error
	}
	if errors.Is(err, kafka.GroupIdNotFound) {
		return nil // never run: everything is new
	}
	if err != nil {
		return fmt.Errorf("read the offsets of group %q: %w", group, err)
	}
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return fmt.Errorf("read the offset of group %q on %q partition %d: %w", group, topic, po.Partition, po.Error)
		}
		r := ranges[po.Partition]
		if po.CommittedOffset > r.first {
			r.first = min(po.CommittedOffset, r.last)
			ranges[po.Partition] = r
		}
	}
	return nil
}

func commit(ctx context.Context, client *kafka.Client, group, topic string, ranges map[int]offsetRange) error {
	var cs []kafka.OffsetCommit
	for p, r := range ranges {
		cs = append(cs, kafka.OffsetCommit{Partition: p, Offset: r.last})
	}
	slices.SortFunc(cs, func(a, b kafka.OffsetCommit) int { return a.Partition - b.Partition })
	res, err := client.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: group, GenerationID: -1, Topics: map[string][]kafka.OffsetCommit{topic: cs}})
	if err != nil {
		return fmt.Errorf("commit the offsets of group %q: %w", group, err)
	}
	for _, ps := range res.Topics {
		for _, p := range ps {
			if p.Error != nil {
				return fmt.Errorf("commit the offset of group %q on %q partition %d: %w", group, topic, p.Partition, p.Error)
			}
		}
	}
	return nil
}

func where(topic string, partition int, offset int64) string {
	return topic + "/" + strconv.Itoa(partition) + "@" + strconv.FormatInt(offset, 10)
}
