package sink

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/sink/desired"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// The row stage: events of the source topics, keyed by row, become
// contributions to targets (docs/architecture.md, steps 4 and 5).
//
// Per source partition one goroutine reads the events in order and keeps
// the row index of the partition's rows in the local store, ahead of Kafka;
// a second writes, per batch of events, first their contributions to the
// targets topic, then their rows' records to the row index's changelog,
// and only when Kafka acknowledged both marks the events done. A
// generation that ends with writes unacknowledged leaves the local index
// ahead of Kafka: the next generation restores it from the changelog.

// rowEntry is a row's record in the row index: the position of its last
// change and what the row said of OneSignal then.
type rowEntry struct {
	V     int              `json:"v"`
	Pos   desired.Position `json:"pos"`
	Parts []rowPart        `json:"parts,omitempty"`
}

type rowPart struct {
	Target     string             `json:"target"`
	Tags       map[string]string  `json:"tags,omitempty"`
	Unknown    []string           `json:"unknown,omitempty"`
	Records    []transform.Record `json:"records,omitempty"`
	Owner      string             `json:"owner,omitempty"`
	Props      map[string]string  `json:"props,omitempty"`
	Aliases    map[string]string  `json:"aliases,omitempty"`
	Many       string             `json:"many,omitempty"`
	DeleteUser bool               `json:"delete_user,omitempty"`
	Identity   string             `json:"identity,omitempty"`
	Device     string             `json:"device,omitempty"`
}

func encodeRow(pos desired.Position, p transform.Projection) []byte {
	e := rowEntry{V: 1, Pos: pos}
	for _, part := range p {
		e.Parts = append(e.Parts, rowPart{Target: part.Target.Key(), Tags: part.Tags, Unknown: part.Unknown, Records: part.Records, Owner: part.Owner,
			Props: part.Props, Aliases: part.Aliases, Many: part.Many, DeleteUser: part.DeleteUser, Identity: part.Identity, Device: part.Device})
	}
	b, err := json.Marshal(e)
	if err != nil {
		panic(fmt.Sprintf("sink: encode a row entry: %v", err))
	}
	return b
}

func decodeRow(b []byte) (desired.Position, transform.Projection, error) {
	var e rowEntry
	if err := json.Unmarshal(b, &e); err != nil {
		return desired.Position{}, nil, fmt.Errorf("row index entry: %w", err)
	}
	if e.V != 1 {
		return desired.Position{}, nil, fmt.Errorf("row index entry of format version %d: this sink reads version 1: run the newer sink", e.V)
	}
	var p transform.Projection
	for _, rp := range e.Parts {
		t, ok := transform.ParseTarget(rp.Target)
		if !ok {
			return desired.Position{}, nil, fmt.Errorf("row index entry names target %q", rp.Target)
		}
		p = append(p, transform.Part{Target: t, Tags: rp.Tags, Unknown: rp.Unknown, Records: rp.Records, Owner: rp.Owner,
			Props: rp.Props, Aliases: rp.Aliases, Many: rp.Many, DeleteUser: rp.DeleteUser, Identity: rp.Identity, Device: rp.Device})
	}
	return e.Pos, p, nil
}

// rowID names a source row: its topic and its Kafka key. A keyless event
// (a table without a primary key, under REPLICA IDENTITY FULL) is named
// by a digest of its row image, so an update or delete finds the row by
// its old image.
func rowID(topic string, key []byte, image event.Row) string {
	if len(key) > 0 {
		return topic + "\x00" + string(key)
	}
	b, _ := image.MarshalJSON()
	sum := sha256.Sum256(b)
	return topic + "\x00#" + hex.EncodeToString(sum[:16])
}

// rowsKey is where the local store keeps a row's entry: by topic and
// partition first, so a partition's rows can be dropped together.
func rowsKey(topic string, partition int, key []byte) []byte {
	b := make([]byte, 0, 2+len(topic)+5+len(key))
	b = append(b, 'r', 0)
	b = append(b, topic...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(partition))
	return append(b, key...)
}

func rowsPrefix(topic string, partition int) []byte { return rowsKey(topic, partition, nil) }

// restoreRows reads the row index of one source partition from the
// changelog into the local store, replacing what the store held.
func (s *Sink) restoreRows(ctx context.Context, topic string, partition int) error {
	if err := s.cfg.Store.DeletePrefix(rowsPrefix(topic, partition)); err != nil {
		return err
	}
	end, err := s.cfg.Kafka.EndOffset(ctx, s.cfg.RowsTopic, partition)
	if err != nil {
		return fmt.Errorf("read the end of %s partition %d: %w", s.cfg.RowsTopic, partition, err)
	}
	if end <= 0 {
		return nil
	}
	started := time.Now()
	r := s.cfg.Kafka.Reader(s.cfg.RowsTopic, partition, kafka.FirstOffset)
	defer r.Close()
	prefix := []byte(topic + "\x00")
	batch := s.cfg.Store.NewBatch()
	n := 0
	for {
		msg, err := s.read(ctx, r)
		if err != nil {
			return fmt.Errorf("restore the row index from %s partition %d: %w", s.cfg.RowsTopic, partition, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if key, ok := bytes.CutPrefix(msg.Key, prefix); ok {
			if len(msg.Value) == 0 {
				batch.Delete(rowsKey(topic, partition, key))
			} else {
				batch.Set(rowsKey(topic, partition, key), msg.Value)
			}
			n++
		}
		if batch.Len() >= 4096 {
			if err := batch.Commit(); err != nil {
				return err
			}
			batch = s.cfg.Store.NewBatch()
		}
		if msg.Offset >= end-1 {
			break
		}
	}
	if err := batch.Commit(); err != nil {
		return err
	}
	s.log.Info("row index restored", zap.String("topic", topic), zap.Int("partition", partition),
		zap.Int("records", n), zap.Duration("took", time.Since(started)))
	return nil
}

// rowWork is an event's writes: its contributions, then its row's entry.
type rowWork struct {
	m       *fetched
	targets []kafka.Message
	row     *kafka.Message // nil: no entry to write (a keyless row)
}

// consumeRows is the row stage of one source partition, until ctx ends or
// a write fails for good.
func (g *generation) consumeRows(ctx context.Context, a Assignment) error {
	s := g.s
	if err := s.restoreRows(ctx, a.Topic, a.Partition); err != nil {
		return err
	}
	work := make(chan *rowWork, s.cfg.RowBatch)
	writeErr := make(chan error, 1)
	go func() { writeErr <- g.writeRows(g.writeCtx, work) }()
	defer func() { close(work); <-writeErr }()

	r := s.cfg.Kafka.Reader(a.Topic, a.Partition, a.Committed)
	s.readers.add(r)
	defer func() { s.readers.remove(r); r.Close() }()
	for {
		m, err := g.fetch(ctx, r, g.rowSlots)
		if err != nil || m == nil {
			return err
		}
		w, err := g.rowEvent(ctx, m)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if w == nil {
			continue
		}
		select {
		case work <- w:
		case err := <-writeErr:
			writeErr <- err
			return err
		case <-ctx.Done():
			return nil
		}
	}
}

// rowEvent decodes an event and turns it into its writes; nil when the
// event is done already (skipped, or dead-lettered).
func (g *generation) rowEvent(ctx context.Context, m *fetched) (*rowWork, error) {
	s := g.s
	ev, err := event.Decode(m.msg.Value)
	if errors.Is(err, event.ErrTombstone) {
		m.finish()
		return nil, nil
	}
	if err != nil {
		return nil, g.reject(ctx, m, &rejected{stage: "decode", err: fmt.Errorf("message %s: %w", m.where(), err)})
	}
	if ev.Op == event.OpTruncate {
		s.log.Warn("the source table was truncated; OneSignal keeps its users and tags (re-snapshot the table to set them from its rows)",
			zap.String("topic", m.msg.Topic), zap.Int("partition", m.msg.Partition), zap.Int64("offset", m.msg.Offset),
			zap.String("table", ev.Source.Schema+"."+ev.Source.Table))
		m.finish()
		return nil, nil
	}
	image := ev.After
	if ev.Op == event.OpDelete || (ev.Op == event.OpUpdate && ev.Before != nil && len(m.msg.Key) == 0) {
		image = ev.Before
	}
	id := rowID(m.msg.Topic, m.msg.Key, image)
	pos, ordered := positionOf(ev.Source, m.msg)
	local := rowsKey(m.msg.Topic, m.msg.Partition, m.msg.Key)

	var old transform.Projection
	known, indexed := false, false
	if len(m.msg.Key) > 0 {
		stored, ok, err := s.cfg.Store.Get(local)
		if err != nil {
			return nil, err
		}
		if ok {
			was, p, err := decodeRow(stored)
			if err != nil {
				return nil, err
			}
			switch {
			case !ordered:
				// A change of an unordered source follows the row's
				// previous one in its partition: it is newer, whatever
				// its LSN says, and its position is made to say so.
				if !pos.After(was) {
					pos = desired.Position{Commit: was.Commit, LSN: was.LSN + 1}
				}
			case !pos.After(was) && !(pos == was && redelivered(m.msg)):
				s.stats.replays.Add(1)
				m.finish() // a replay, or stale: the row's newer state is in
				return nil, nil
			}
			old, known, indexed = p, true, true
		}
	}
	if !known {
		old, known = s.mapping.Previous(ev)
	}
	if ev.Op == event.OpDelete && !known && hasHeader(m.msg, event.HeaderSnapshotting) {
		// A row the table's initial snapshot did not read, deleted while
		// it ran: it never reached the sink, nor OneSignal.
		s.stats.unread.Add(1)
		m.finish()
		return nil, nil
	}
	if ev.Op == event.OpDelete && !known {
		table, col := s.mapping.Identifies(ev)
		return nil, g.reject(ctx, m, &rejected{stage: "transform", err: fmt.Errorf(
			"message %s: %w: the delete of a %s row that the sink has not seen carries no %q column, so it names no user or device. "+
				"If the connector's initial snapshot was running, the row was deleted before the snapshot read it and never reached OneSignal: nothing is missing. "+
				"Otherwise (postgres.snapshot: never, or the sink's topics were lost) run ALTER TABLE %s REPLICA IDENTITY FULL so deletes carry the old row, "+
				"and snapshot the table again (onesignal-cdc snapshot --table %s) so the sink knows every row",
			m.where(), transform.ErrBadRow, table, col, table, table)})
	}
	now, err := s.mapping.Project(ev, old)
	if problems, ok := errors.AsType[transform.Problems](err); ok {
		// Values OneSignal would refuse are left out; the rest of the row
		// goes on, and a copy of the event goes to the dead-letter topic
		// naming each field and its rule.
		if s.cfg.DeadLetters == nil {
			return nil, &rejected{stage: "transform", err: fmt.Errorf("message %s: %w", m.where(), problems)}
		}
		if err := s.deadLetter(ctx, m.msg, &rejected{stage: "transform", err: fmt.Errorf("message %s: %w: %w", m.where(), transform.ErrBadRow, problems)}); err != nil {
			return nil, err
		}
		err = nil
	}
	if err != nil {
		return nil, g.reject(ctx, m, &rejected{stage: "transform", err: fmt.Errorf("message %s: %w", m.where(), err)})
	}
	if indexed && reflect.DeepEqual(old, now) && !redelivered(m.msg) {
		// A change to columns the mapping does not read: OneSignal has
		// it already. The entry keeps its older position, which is safe:
		// a replay of this event would again change nothing.
		s.stats.unmapped.Add(1)
		m.finish()
		return nil, nil
	}
	w := &rowWork{m: m}
	src := desired.Source{Topic: m.msg.Topic, Partition: m.msg.Partition, Offset: m.msg.Offset}
	created := ev.Op == event.OpCreate || ev.Op == event.OpSnapshot
	for _, part := range now.Fed() { // held parts stay in the row index
		c := &desired.Contribution{Row: id, Pos: pos, Created: created, Tags: part.Tags, Unknown: part.Unknown,
			Records: part.Records, Owner: part.Owner, Source: src, Props: part.Props, Aliases: part.Aliases,
			Many: part.Many, DeleteUser: part.DeleteUser, Identity: part.Identity, Device: part.Device}
		w.targets = append(w.targets, targetMessage(s.cfg.TargetsTopic, desired.ContributionRecord(part.Target, c)))
	}
	// A users row that names another user now, or the delete half of a
	// primary-key change, moved: the user it named is not deleted for it
	// (on_delete: delete_user), only untagged.
	keyChange := hasHeader(m.msg, event.HeaderNewKey)
	moved := keyChange
	for _, part := range now.Fed() {
		moved = moved || (part.DeleteUser && isUser(part.Target))
	}
	// What the row is after the change, and the user it feeds then (see
	// desired.Contribution's Next and To).
	var next string
	after := now
	if keyChange {
		next = rowID(m.msg.Topic, []byte(headerValue(m.msg, event.HeaderNewKey)), nil)
		after = s.newRowProjection(m.msg, ev, old)
	}
	to := successor(after, cmp.Or(next, id))
	if h, ok := heldPart(old); ok && to != "" && to != transform.HeldRow(id).Key() && (next != "" || len(h.Unknown) > 0) {
		// The row fed no one and goes on: what is known of it here, and
		// what users handed over to it, goes with it.
		tags := make(map[string]string, len(h.Tags)+len(h.Unknown))
		for tag := range h.Tags {
			tags[tag] = ""
		}
		for _, tag := range h.Unknown {
			tags[tag] = ""
		}
		c := &desired.Contribution{Row: id, Pos: pos, Gone: true, Tags: tags, Was: h.Tags, Next: next, To: to, Source: src}
		w.targets = append(w.targets, targetMessage(s.cfg.TargetsTopic, desired.ContributionRecord(transform.HeldRow(id), c)))
	}
	for _, part := range old.Fed() {
		if _, still := now.Find(part.Target); still {
			continue
		}
		// The row no longer feeds this target: its tags go, and a
		// device's gone part names the owner it had (identity
		// verification hashes it to unlink).
		tags := make(map[string]string, len(part.Tags)+len(part.Unknown))
		for tag := range part.Tags {
			tags[tag] = ""
		}
		for _, tag := range part.Unknown {
			tags[tag] = ""
		}
		c := &desired.Contribution{Row: id, Pos: pos, Gone: true, Tags: tags, Was: part.Tags, Aliases: part.Aliases, Owner: part.Owner, Source: src,
			Many: part.Many, DeleteUser: part.DeleteUser && !moved, Identity: part.Identity, Device: part.Device}
		if isUser(part.Target) {
			c.Next, c.To = next, to
		}
		w.targets = append(w.targets, targetMessage(s.cfg.TargetsTopic, desired.ContributionRecord(part.Target, c)))
	}
	var entry []byte
	if len(m.msg.Key) > 0 {
		entry = encodeRow(pos, now)
	}
	if err := recordsFit(w.targets, entry); err != nil {
		return nil, g.reject(ctx, m, &rejected{stage: "transform", err: fmt.Errorf("message %s: %w", m.where(), err)})
	}
	if entry != nil {
		if err := s.cfg.Store.Set(local, entry); err != nil {
			return nil, err
		}
		w.row = &kafka.Message{Topic: s.cfg.RowsTopic, Partition: m.msg.Partition, Key: []byte(m.msg.Topic + "\x00" + string(m.msg.Key)), Value: entry}
	}
	s.stats.contributions.Add(int64(len(w.targets)))
	return w, nil
}

// maxWriteBytes bounds what one write takes, so that kafka-go's batch of
// one partition stays under its 1 MiB and the broker's message size limit
// whatever the partitions: an event is at most 256 KiB (the connector's
// limit), and so is each record it gives (maxRecordBytes).
const maxWriteBytes = 512 << 10

// maxRecordBytes is the most one record of the sink's topics may take. An
// event the connector wrote gives no more; one from elsewhere (Debezium
// with a raised message limit) may, and Kafka would refuse its records
// for ever, holding back the partition behind it: its row is refused.
const maxRecordBytes = 256 << 10

// recordsFit returns an error naming the first of an event's records, its
// contributions (targets) and its row index entry (nil for none), that is
// over maxRecordBytes.
func recordsFit(targets []kafka.Message, entry []byte) error {
	over := func(what string, n int) error {
		return fmt.Errorf("%w: %s takes %d bytes, more than the %d KiB the sink writes of one row to its topics: "+
			"shorten the mapped values, or leave the column out of the mapping (OneSignal recommends about 1 KB of tags per user)",
			transform.ErrBadRow, what, n, maxRecordBytes>>10)
	}
	for _, m := range targets {
		if n := len(m.Key) + len(m.Value); n > maxRecordBytes {
			what := desired.TargetOf(m.Key)
			if t, ok := transform.ParseTarget(what); ok {
				what = t.String()
			}
			return over("what the row gives "+what, n)
		}
	}
	if len(entry) > maxRecordBytes {
		return over("the row's entry in the row index", len(entry))
	}
	return nil
}

// size is how many bytes w writes.
func (w *rowWork) size() int {
	n := 0
	for _, m := range w.targets {
		n += len(m.Key) + len(m.Value)
	}
	if w.row != nil {
		n += len(w.row.Key) + len(w.row.Value)
	}
	return n
}

// targetMessage is rec as a message of the targets topic.
func targetMessage(topic string, rec *desired.Record) kafka.Message {
	return kafka.Message{Topic: topic, Key: rec.Key(), Value: rec.Value()}
}

// writeRows writes the row stage's work in batches, contributions first,
// until work is closed (then the batch in hand is finished) or ctx ends.
func (g *generation) writeRows(ctx context.Context, work <-chan *rowWork) error {
	s := g.s
	var batch []*rowWork
	for {
		w, ok := <-work
		if !ok {
			return nil
		}
		batch = append(batch[:0], w)
		size := w.size()
	more:
		for len(batch) < s.cfg.RowBatch && size < maxWriteBytes {
			select {
			case w, ok := <-work:
				if !ok {
					break more
				}
				batch = append(batch, w)
				size += w.size()
			default:
				break more
			}
		}
		var targets, rows []kafka.Message
		for _, w := range batch {
			targets = append(targets, w.targets...)
			if w.row != nil {
				rows = append(rows, *w.row)
			}
		}
		if err := g.write(ctx, s.cfg.Targets, "targets", targets); err != nil {
			return stopped(ctx, err)
		}
		if err := g.write(ctx, s.cfg.Rows, "row index", rows); err != nil {
			return stopped(ctx, err)
		}
		for _, w := range batch {
			w.m.finish()
		}
	}
}

// write writes msgs, retrying until Kafka acknowledged them; an error
// when it did not (ctx ended, or a permanent failure), and then the
// messages must stay not done.
func (g *generation) write(ctx context.Context, w Writer, what string, msgs []kafka.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	err := g.s.cfg.Retry.Do(ctx, func() error { return broker.ClassifyWrite(w.WriteMessages(ctx, msgs...)) }, func(err error, wait time.Duration) {
		g.s.log.Warn("write to kafka failed; retrying", zap.String("topic", what), zap.Int("messages", len(msgs)), zap.Error(err), zap.Duration("wait", wait))
	})
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("write %d messages to the %s topic: %w", len(msgs), what, err)
	}
	return nil
}

// stopped is nil when err is only ctx ending, else err.
func stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// positionOf is where the event's change stands in the source's order:
// its transaction's commit LSN and its own LSN, and ordered true. A
// snapshot row has no commit and counts as committed at its LSN.
//
// An event from Debezium (its source has a "sequence") is not ordered: its
// LSN is where the change was written, not where its transaction
// committed, so a change committed after the snapshot read its row can
// carry a lower LSN than the snapshot row. Its position is its LSN, which
// orders the changes of different rows roughly, and the row stage keeps
// each row's positions growing in its partition's order (Debezium keeps a
// row's changes in order), never skipping one as a replay; a replay after
// a restart of Debezium's is followed by the newer changes again. An event
// without any LSN takes its Kafka offset, unordered too.
func positionOf(src event.Source, msg kafka.Message) (desired.Position, bool) {
	switch {
	case src.LSN == 0:
		return desired.Position{LSN: msg.Offset + 1}, false
	case src.Sequence != "":
		return desired.Position{Commit: src.LSN, LSN: src.LSN}, false
	case src.CommitLSN == 0:
		return desired.Position{Commit: src.LSN, LSN: src.LSN}, true
	}
	return desired.Position{Commit: src.CommitLSN, LSN: src.LSN}, true
}

// HeaderRedelivery marks a message that `onesignal-cdc dlq replay` wrote
// back to its topic from the dead-letter topic; its value is where the
// dead letter was ("topic/partition@offset"). Such a message repeats a
// change the sink has seen, and must be applied all the same, unless a
// newer change of its row or key came since.
const HeaderRedelivery = "onesignal_cdc.redelivery.of"

func redelivered(m kafka.Message) bool { return hasHeader(m, HeaderRedelivery) }

// isUser reports whether t is a user's target.
func isUser(t transform.Target) bool { return !t.Device && !t.Row && !t.Record && !t.Held }

// successor is, of a row that is p after a change and is named row then,
// the target that the values its changes do not carry go to: the user it
// feeds, else, when it feeds no one, the target that holds them for it
// (transform.HeldRow); "" when the row is gone.
func successor(p transform.Projection, row string) string {
	for _, part := range p.Fed() {
		if isUser(part.Target) {
			return part.Target.Key()
		}
	}
	if _, ok := heldPart(p); ok {
		return transform.HeldRow(row).Key()
	}
	return ""
}

// heldPart is the part of p that holds what a row feeding no one gives,
// the union of them if the row's table is mapped twice.
func heldPart(p transform.Projection) (transform.Part, bool) {
	var h transform.Part
	found := false
	for _, part := range p {
		if !part.Target.Held {
			continue
		}
		if !found {
			h, found = transform.Part{Target: part.Target, Tags: maps.Clone(part.Tags), Unknown: slices.Clone(part.Unknown)}, true
			continue
		}
		if h.Tags == nil {
			h.Tags = map[string]string{}
		}
		maps.Copy(h.Tags, part.Tags)
		h.Unknown = append(h.Unknown, part.Unknown...)
	}
	return h, found
}

// newRowProjection is the row after a primary-key change, read from the
// delete half's event.HeaderNewRow (the create half is on another
// partition): nil without the header, or when the row does not project.
func (s *Sink) newRowProjection(msg kafka.Message, ev *event.Envelope, old transform.Projection) transform.Projection {
	b := headerValue(msg, event.HeaderNewRow)
	if b == "" {
		return nil
	}
	var row event.Row
	if err := row.UnmarshalJSON([]byte(b)); err != nil {
		return nil
	}
	next := *ev
	next.Op, next.Before, next.After = event.OpUpdate, nil, row
	p, err := s.mapping.Project(&next, old)
	if _, problems := errors.AsType[transform.Problems](err); err != nil && !problems {
		return nil
	}
	return p
}

// hasHeader reports whether m carries a header named key.
func hasHeader(m kafka.Message, key string) bool {
	for _, h := range m.Headers {
		if h.Key == key {
			return true
		}
	}
	return false
}
