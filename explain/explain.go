// Package explain answers, for one user or device, "did it sync, and if
// not, why": `onesignal-cdc explain`. It reads Kafka directly, outside
// the sink's consumer group, and never commits: the target's records in
// its partition of the targets topic, folded with the sink's own
// desired.State.Apply (the same code, not a copy of the rules), the
// group's committed offsets, the dead-letter topic, and what running
// sinks say of the target on their ops servers (/debug/target).
//
// It changes nothing anywhere. Its cost is one read of the target's
// partition of the targets topic and one of the whole dead-letter topic,
// from their first offsets to their ends at the time of the call.
package explain

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/internal/errtext"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/sink/desired"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// Config says where to look.
type Config struct {
	Cluster         broker.Cluster
	TargetsTopic    string // <prefix>.sink-targets
	DeadLetterTopic string // "" when there is none
	Group           string // the sink's consumer group
	// Sinks are the ops servers of running sinks (http://host:port),
	// asked for /debug/target; HTTP asks them (nil: a client with a
	// 5-second timeout).
	Sinks []string
	HTTP  *http.Client
}

// Explain reads everything known of target t.
func Explain(ctx context.Context, cfg Config, t transform.Target) (*Report, error) {
	rep, err := explain(ctx, cfg, t)
	return rep, errtext.Plain(err) // kafka-go names its Go methods in its errors
}

func explain(ctx context.Context, cfg Config, t transform.Target) (*Report, error) {
	rep := &Report{Target: t.Key(), ID: t.ID, Kind: "user", TargetsTopic: cfg.TargetsTopic, Group: cfg.Group}
	if t.Device {
		rep.Kind = "device"
	}
	client, done := cfg.Cluster.Client(30 * time.Second)
	defer done()
	n, err := cfg.Cluster.PartitionCount(ctx, cfg.TargetsTopic)
	if err != nil {
		return nil, fmt.Errorf("the targets topic: %w", err)
	}
	rep.Partition = sink.TargetPartition(t, n)
	first, last, err := bounds(ctx, client, cfg.TargetsTopic, rep.Partition)
	if err != nil {
		return nil, err
	}
	rep.Scanned = Range{From: first, To: last}

	st := &desired.State{}
	err = cfg.Cluster.ReadRange(ctx, cfg.TargetsTopic, rep.Partition, first, last, func(m kafka.Message) {
		if desired.TargetOf(m.Key) != rep.Target {
			return
		}
		rep.Records++
		rep.LastRecord = m.Offset
		at := Where{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
		if m.Value == nil {
			return // a tombstone: compaction's business
		}
		rec, err := desired.Decode(m.Key, m.Value)
		if err != nil {
			rep.Unreadable = append(rep.Unreadable, Other{Record: at, Kind: "unreadable", About: err.Error()})
			return
		}
		st.Apply(rec)
		if rec.Kind == desired.KindContribution {
			rep.Sources = append(rep.Sources, sourceOf(rec, at))
			return
		}
		rep.Others = append(rep.Others, Other{Record: at, Kind: string(rec.Kind), About: rec.Describe()})
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(rep.Sources, func(a, b SourceRow) int { return a.Pos.pos().Compare(b.Pos.pos()) })
	for i := range rep.Sources {
		s := &rep.Sources[i]
		if c := st.Contributions[s.row]; c != nil && c.Pos == s.Pos.pos() && c.Gone == s.Gone && c.Source == s.src {
			s.Current = true
		}
	}
	if rep.Records > 0 {
		rep.Desired = desiredOf(t, st)
	}
	if err := progress(ctx, client, cfg, rep); err != nil {
		return nil, err
	}
	if cfg.DeadLetterTopic != "" {
		if err := deadLetters(ctx, client, cfg, rep); err != nil {
			return nil, err
		}
	}
	rep.Live = live(ctx, cfg, t)
	rep.Verdict, rep.State = verdict(rep)
	return rep, nil
}

func sourceOf(rec *desired.Record, at Where) SourceRow {
	topic, key, _ := strings.Cut(rec.Row, "\x00")
	s := SourceRow{Topic: topic, Key: key, Pos: posOf(rec.Pos), Record: at, Gone: rec.Gone, Created: rec.Created,
		Tags: rec.Tags, Unknown: rec.Unknown, Owner: rec.Owner, Identity: rec.Identity, Device: rec.Device,
		row: rec.Row, src: rec.Source}
	if rec.Source != (desired.Source{}) {
		s.Source = &Where{Topic: rec.Source.Topic, Partition: rec.Source.Partition, Offset: rec.Source.Offset}
	}
	for _, r := range rec.Records {
		s.Records = append(s.Records, r.Channel+" "+r.Identifier)
	}
	return s
}

func desiredOf(t transform.Target, st *desired.State) *Desired {
	d := &Desired{}
	switch {
	case t.Device:
		dev := st.Device()
		d.Owner, d.Version = dev.Owner, posOf(dev.Version)
		d.Live = dev.Owner != ""
	default:
		u := st.User()
		d.Tags, d.Version, d.Live, d.Delete, d.Props, d.Aliases = u.Tags, posOf(u.Version), u.Live, u.Delete, u.Props, u.Aliases
		for _, r := range u.Records {
			d.Records = append(d.Records, r.Channel+" "+r.Identifier)
		}
		for _, r := range st.Granted() {
			d.Granted = append(d.Granted, r.Channel+" "+r.Identifier)
		}
		d.Devices = st.Devices()
	}
	return d
}

// progress reads the group's committed offsets of the target's partition
// and of the source rows' partitions.
func progress(ctx context.Context, client *kafka.Client, cfg Config, rep *Report) error {
	newest := map[tp]int64{} // the newest source message of the target per partition
	var order []tp
	for _, s := range rep.Sources {
		if s.Source == nil {
			continue
		}
		k := tp{s.Source.Topic, s.Source.Partition}
		if o, ok := newest[k]; !ok || s.Source.Offset > o {
			if !ok {
				order = append(order, k)
			}
			newest[k] = s.Source.Offset
		}
	}
	slices.SortFunc(order, func(a, b tp) int { return cmp.Or(strings.Compare(a.topic, b.topic), a.partition-b.partition) })
	req := map[string][]int{cfg.TargetsTopic: {rep.Partition}}
	for _, k := range order {
		req[k.topic] = append(req[k.topic], k.partition)
	}
	committed, err := committedOffsets(ctx, client, cfg.Group, req)
	if err != nil {
		return err
	}
	at := func(topic string, partition int, offset int64) Progress {
		c, ok := committed[tp{topic, partition}]
		p := Progress{Topic: topic, Partition: partition, Newest: offset, Committed: -1}
		if ok {
			p.Committed = c
		}
		p.Behind = max(0, offset+1-max(p.Committed, 0))
		p.Consumed = p.Behind == 0
		return p
	}
	if rep.Records > 0 {
		p := at(cfg.TargetsTopic, rep.Partition, rep.LastRecord)
		p.Targets = true
		rep.Progress = append(rep.Progress, p)
	}
	for _, k := range order {
		p := at(k.topic, k.partition, newest[k])
		for _, s := range rep.Sources {
			if s.Source != nil && s.Source.Topic == k.topic && s.Source.Partition == k.partition && s.Source.Offset >= p.Committed {
				p.Unconsumed++
			}
		}
		rep.Progress = append(rep.Progress, p)
	}
	return nil
}

// tp is a topic's partition.
type tp struct {
	topic     string
	partition int
}

// committedOffsets reads the group's committed offsets of the partitions
// req names; a partition without one is left out.
func committedOffsets(ctx context.Context, client *kafka.Client, group string, req map[string][]int) (map[tp]int64, error) {
	out := map[tp]int64{}
	res, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: req})
	if err == nil {
		err = res.Error
	}
	if errors.Is(err, kafka.GroupIdNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the committed offsets of group %q: %w", group, err)
	}
	for topic, ps := range res.Topics {
		for _, p := range ps {
			if p.Error == nil && p.CommittedOffset >= 0 {
				out[tp{topic, p.Partition}] = p.CommittedOffset
			}
		}
	}
	return out, nil
}

// deadLetters scans the dead-letter topic for the target's messages: a
// dead letter from one of its records or source messages, or whose key
// is a source row's or one of the target's.
func deadLetters(ctx context.Context, client *kafka.Client, cfg Config, rep *Report) error {
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{cfg.DeadLetterTopic}})
	if err != nil {
		return fmt.Errorf("read metadata of %q: %w", cfg.DeadLetterTopic, err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		return nil // no dead-letter topic yet: nothing was dead-lettered
	}
	sources := map[Where]bool{}
	keys := map[string]bool{} // topic NUL key of the source rows
	for _, s := range rep.Sources {
		sources[s.Record] = true
		if s.Source != nil {
			sources[*s.Source] = true
		}
		keys[s.row] = true
	}
	for _, p := range md.Topics[0].Partitions {
		first, last, err := bounds(ctx, client, cfg.DeadLetterTopic, p.ID)
		if err != nil {
			return err
		}
		err = cfg.Cluster.ReadRange(ctx, cfg.DeadLetterTopic, p.ID, first, last, func(m kafka.Message) {
			origin, hasOrigin := headerWhere(m, sink.HeaderTopic, sink.HeaderPartition, sink.HeaderOffset)
			src, hasSrc := headerWhere(m, sink.HeaderSourceTopic, sink.HeaderSourcePartition, sink.HeaderSourceOffset)
			match := (hasOrigin && sources[origin]) || (hasSrc && sources[src]) ||
				(hasOrigin && keys[origin.Topic+"\x00"+string(m.Key)]) ||
				(hasOrigin && origin.Topic == cfg.TargetsTopic && desired.TargetOf(m.Key) == rep.Target)
			if !match {
				return
			}
			d := DeadLetter{At: Where{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}, Time: m.Time,
				Stage: header(m, sink.HeaderStage), Error: header(m, sink.HeaderMessage)}
			if hasOrigin {
				d.Origin = &origin
			}
			if hasSrc {
				d.Source = &src
			}
			d.Status, _ = strconv.Atoi(header(m, sink.HeaderStatus))
			d.Superseded = superseded(rep, m, d)
			rep.DeadLetters = append(rep.DeadLetters, d)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// superseded reports whether a newer message of the dead letter's key
// reached the sink since: a later record of the same key in the targets
// topic, or a later contribution from the same source row.
func superseded(rep *Report, m kafka.Message, d DeadLetter) bool {
	if d.Origin == nil {
		return false
	}
	for _, s := range rep.Sources {
		switch {
		case d.Origin.Topic == s.Record.Topic && d.Origin.Partition == s.Record.Partition:
			if desired.TargetOf(m.Key) == rep.Target && s.row == rowOfKey(m.Key) && s.Record.Offset > d.Origin.Offset {
				return true
			}
		case s.Source != nil && d.Origin.Topic == s.Source.Topic && d.Origin.Partition == s.Source.Partition:
			if s.Key == string(m.Key) && s.Source.Offset > d.Origin.Offset {
				return true
			}
		}
	}
	return false
}

// rowOfKey is the row a contribution's key names: "<target>\x00c\x00<row>".
func rowOfKey(key []byte) string {
	_, rest, _ := strings.Cut(string(key), "\x00")
	row, ok := strings.CutPrefix(rest, "c\x00")
	if !ok {
		return ""
	}
	return row
}

// live asks each sink's ops server what it knows of t.
func live(ctx context.Context, cfg Config, t transform.Target) []Live {
	hc := cfg.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Second}
	}
	var out []Live
	for _, base := range cfg.Sinks {
		l := Live{Sink: base}
		v, err := inspect(ctx, hc, base, t)
		if err != nil {
			l.Error = err.Error()
		} else {
			l.View = v
		}
		out = append(out, l)
	}
	return out
}

func inspect(ctx context.Context, hc *http.Client, base string, t transform.Target) (*sink.TargetView, error) {
	u := strings.TrimRight(base, "/") + "/debug/target?id=" + url.QueryEscape(t.Key())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("sink %s: %w", base, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("no answer: %w", errors.Unwrap(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read its answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("answered %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var v sink.TargetView
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("answered what is not a target's view (an older version, or not a sink's ops server): %w", err)
	}
	return &v, nil
}

func bounds(ctx context.Context, client *kafka.Client, topic string, partition int) (first, last int64, err error) {
	res, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		topic: {kafka.FirstOffsetOf(partition), kafka.LastOffsetOf(partition)}}})
	if err != nil {
		return 0, 0, fmt.Errorf("list offsets of %s/%d: %w", topic, partition, err)
	}
	for _, po := range res.Topics[topic] {
		if po.Partition != partition {
			continue
		}
		if po.Error != nil {
			return 0, 0, fmt.Errorf("list offsets of %s/%d: %w", topic, partition, po.Error)
		}
		return po.FirstOffset, po.LastOffset, nil
	}
	return 0, 0, fmt.Errorf("list offsets of %s/%d: the broker did not answer for it", topic, partition)
}

func header(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func headerWhere(m kafka.Message, topic, partition, offset string) (Where, bool) {
	t := header(m, topic)
	p, err1 := strconv.Atoi(header(m, partition))
	o, err2 := strconv.ParseInt(header(m, offset), 10, 64)
	if t == "" || err1 != nil || err2 != nil {
		return Where{}, false
	}
	return Where{Topic: t, Partition: p, Offset: o}, true
}
