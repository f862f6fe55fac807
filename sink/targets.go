package sink

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/onesignal-cdc/onesignal-cdc/sink/desired"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// The target stage: records of the targets topic, keyed by target, fold
// into each target's state, and the targets they change are scheduled to
// be sent their desired state (docs/architecture.md, steps 6 and 7).
//
// The targets topic is its own changelog: a partition assigned to this
// member is read from its first record, and the records before the
// committed offset are folded into the state without a request (their
// effect is in OneSignal already); from the committed offset on, each
// record is new.

// stateKey is where the local store keeps a target's state: by partition
// first, so a partition's states can be dropped together.
func stateKey(partition int, t transform.Target) []byte {
	k := t.Key()
	b := make([]byte, 0, 6+len(k))
	b = append(b, 't', 0)
	b = binary.BigEndian.AppendUint32(b, uint32(partition))
	return append(b, k...)
}

func statePrefix(partition int) []byte {
	return binary.BigEndian.AppendUint32([]byte{'t', 0}, uint32(partition))
}

// loadState returns the state the local store holds of t.
func (s *Sink) loadState(partition int, t transform.Target) (*desired.State, error) {
	b, ok, err := s.cfg.Store.Get(stateKey(partition, t))
	if err != nil || !ok {
		return &desired.State{}, err
	}
	return desired.DecodeState(b)
}

func (s *Sink) saveState(partition int, t transform.Target, st *desired.State) error {
	return s.cfg.Store.Set(stateKey(partition, t), desired.EncodeState(st))
}

// consumeTargets is the target stage of one partition of the targets
// topic, until ctx ends.
func (g *generation) consumeTargets(ctx context.Context, a Assignment) error {
	s := g.s
	var restoredOnce sync.Once
	restored := func() { restoredOnce.Do(g.restore.Done) }
	defer restored()
	if err := s.cfg.Store.DeletePrefix(statePrefix(a.Partition)); err != nil {
		return err
	}
	committed := max(a.Committed, 0)
	end, err := s.cfg.Kafka.EndOffset(ctx, a.Topic, a.Partition)
	if err != nil {
		return fmt.Errorf("read the end of %s partition %d: %w", a.Topic, a.Partition, err)
	}
	r := s.cfg.Kafka.Reader(a.Topic, a.Partition, kafka.FirstOffset)
	s.readers.add(r)
	defer func() { s.readers.remove(r); r.Close() }()
	started, folded := time.Now(), 0
	if committed > 0 && end > 0 {
		for {
			msg, err := g.read(ctx, r)
			if err != nil || ctx.Err() != nil {
				return err
			}
			if msg.Offset >= committed {
				// The first record after the committed ones: new.
				m := &fetched{msg: msg}
				if err := g.admitFirst(ctx, m); err != nil || m.progress == nil {
					return err
				}
				break
			}
			if err := g.fold(msg); err != nil {
				return err
			}
			folded++
			if msg.Offset >= end-1 {
				break
			}
		}
	}
	restored()
	s.log.Info("target states restored", zap.String("topic", a.Topic), zap.Int("partition", a.Partition),
		zap.Int("records", folded), zap.Duration("took", time.Since(started)))
	for {
		m, err := g.fetch(ctx, r, g.targetSlots)
		if err != nil || m == nil {
			return err
		}
		if err := g.targetRecord(ctx, m); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// admitFirst handles a record read during the restore that is past the
// committed offset: it is tracked like a fetched one. m.progress stays nil
// when ctx ended.
func (g *generation) admitFirst(ctx context.Context, m *fetched) error {
	f := g.track(ctx, m.msg, g.targetSlots)
	if f == nil {
		return nil
	}
	m.progress = f.progress
	return g.targetRecord(ctx, m)
}

// fold folds a record whose effect OneSignal has into its target's state.
// A record this sink cannot read was dead-lettered when it was new.
func (g *generation) fold(msg kafka.Message) error {
	rec, err := desired.Decode(msg.Key, msg.Value)
	if err != nil {
		return nil
	}
	st, err := g.s.loadState(msg.Partition, rec.Target)
	if err != nil {
		return err
	}
	if st.Apply(rec) == desired.Changed {
		return g.s.saveState(msg.Partition, rec.Target, st)
	}
	return nil
}

// targetRecord folds a new record into its target's state and reacts:
// a contribution schedules its target; in the player model a membership
// is answered with the user's tags, a reply lets its device link, and a
// link accepted may ask the user to send its tags again; a stale record
// is healed by writing the state's newer one.
func (g *generation) targetRecord(ctx context.Context, m *fetched) error {
	s := g.s
	if len(m.msg.Value) == 0 {
		m.finish() // a tombstone: nothing the sink writes
		return nil
	}
	rec, err := desired.Decode(m.msg.Key, m.msg.Value)
	if err != nil {
		return g.reject(ctx, m, &rejected{stage: "decode", err: fmt.Errorf("message %s: %w", m.where(), err)})
	}
	t := rec.Target
	st, err := s.loadState(m.msg.Partition, t)
	if err != nil {
		return err
	}
	var before desired.Row
	var owner desired.RecordOwner // a record's, before rec
	var named []transform.Record  // the records the row named before, of a user's contribution
	switch {
	case t.Row:
		before = st.Row()
	case t.Record:
		owner = st.RecordOwner()
	case !t.Device && rec.Kind == desired.KindContribution:
		if c := st.Contributions[rec.Row]; c != nil && !c.Gone {
			named = c.Records
		}
	}
	outcome := st.Apply(rec)
	if outcome == desired.Changed {
		if err := s.saveState(m.msg.Partition, t, st); err != nil {
			return err
		}
	}
	if outcome == desired.Stale {
		s.stats.stale.Add(1)
		if cur, ok := st.Current(t, rec); ok {
			g.emitter.emit([]kafka.Message{targetMessage(s.cfg.TargetsTopic, cur)}, m.progress)
			return nil
		}
		m.finish()
		return nil
	}
	if t.Held {
		// A row that feeds no one: what users handed over of it waits
		// here for the user the row names next; nothing is sent.
		if h := st.Handover(rec); h != nil {
			g.emitter.emit([]kafka.Message{targetMessage(s.cfg.TargetsTopic, h)}, m.progress)
			return nil
		}
		m.finish()
		return nil
	}
	if t.Row {
		// A referenced row: what it resolves to goes on to users and
		// devices; nothing of it is sent to OneSignal.
		if fw := s.forwards(t, before, st.Row(), rec); len(fw) > 0 {
			g.emitter.emit(fw, m.progress)
			return nil
		}
		m.finish()
		return nil
	}
	if t.Record {
		// A record: it says who writes it; nothing of it is sent to
		// OneSignal from here.
		if gs := s.grants(t, owner, st, rec, m.msg.Offset+1); len(gs) > 0 {
			g.emitter.emit(gs, m.progress)
			return nil
		}
		m.finish()
		return nil
	}
	switch rec.Kind {
	case desired.KindContribution, desired.KindKept:
		if outcome != desired.Changed && rec.Kind == desired.KindKept {
			m.finish()
			return nil
		}
		if outcome == desired.Changed {
			var fw []kafka.Message
			if rec.Kind == desired.KindContribution {
				fw = s.recordParts(t, named, st.Contributions[rec.Row])
			}
			if h := st.Handover(rec); h != nil {
				// What the user knew of a row that left it goes to the
				// row's new user (unchanged TOAST values).
				fw = append(fw, targetMessage(s.cfg.TargetsTopic, h))
			}
			if len(fw) > 0 {
				// The records the row names, or its new user, hear of it
				// before the user is sent anything: the message is done
				// once both are.
				partition, created := m.msg.Partition, rec.Created
				g.emitter.emit(fw, &progress{done: func() { g.sched.submit(t, partition, m, created, false) }})
				return nil
			}
		}
		g.sched.submit(t, m.msg.Partition, m, rec.Created, false)
	case desired.KindReply:
		g.sched.submit(t, m.msg.Partition, m, false, false)
	case desired.KindGrant:
		switch {
		case rec.Again:
			// Another user wrote the record after this one did: this
			// one writes it again, to be the last.
			g.sched.again(t, m.msg.Partition, rec.Record)
		case outcome != desired.Changed || rec.Gone:
			m.finish() // a record taken back stays in OneSignal as it is
			return nil
		}
		g.sched.submit(t, m.msg.Partition, m, false, false)
	case desired.KindMember:
		if rec.Gone {
			m.finish()
			return nil
		}
		u := st.User()
		reply := &desired.Record{Target: transform.Device(rec.Device), Kind: desired.KindReply, Owner: t.ID,
			For: rec.Pos, Version: u.Version, Tags: u.Tags, Props: u.Props}
		g.sched.answered(t, rec.Device, u.Version)
		g.emitter.emit([]kafka.Message{targetMessage(s.cfg.TargetsTopic, reply)}, m.progress)
	case desired.KindLinked:
		// The link carried the owner's tags as of a version; at one
		// version the tags can still differ (the rows of one snapshot
		// chunk share a position), so they are compared too.
		u := st.User()
		safe := g.sched.linkedSafely(t, rec.Device, rec.Version, u.Version)
		if safe && maps.Equal(rec.Tags, u.Tags) && maps.Equal(rec.Props, u.Props) {
			m.finish()
			return nil
		}
		g.sched.submit(t, m.msg.Partition, m, false, true)
	case desired.KindRepair:
		g.repair(t, st, m)
	default:
		m.finish()
	}
	return nil
}

// emitter writes the target stage's own records to the targets topic in
// batches, and finishes each record's message once Kafka acknowledged
// what it caused.
type emitter struct {
	g    *generation
	work chan emission
}

type emission struct {
	msgs []kafka.Message
	done *progress // finished once msgs are written; may be nil
}

func (em emission) size() int {
	n := 0
	for _, m := range em.msgs {
		n += len(m.Key) + len(m.Value)
	}
	return n
}

func newEmitter(g *generation) *emitter {
	return &emitter{g: g, work: make(chan emission, 256)}
}

// emit queues msgs; done, when not nil, finishes once they are written.
func (e *emitter) emit(msgs []kafka.Message, done *progress) {
	e.work <- emission{msgs: msgs, done: done}
}

func (e *emitter) close() { close(e.work) }

// run writes what is emitted until close, or until ctx ends (the rest is
// then dropped, its messages not done).
func (e *emitter) run(ctx context.Context) {
	var batch []emission
	for {
		first, ok := <-e.work
		if !ok {
			return
		}
		batch = append(batch[:0], first)
		size := first.size()
	more:
		for len(batch) < 256 && size < maxWriteBytes {
			select {
			case em, ok := <-e.work:
				if !ok {
					break more
				}
				batch = append(batch, em)
				size += em.size()
			default:
				break more
			}
		}
		var msgs []kafka.Message
		for _, em := range batch {
			msgs = append(msgs, em.msgs...)
		}
		if err := e.g.write(ctx, e.g.s.cfg.Targets, "targets", msgs); err != nil {
			if ctx.Err() == nil {
				e.g.stop(err)
			}
			for range e.work { // drain, so emit never blocks a stopping generation
			}
			return
		}
		for _, em := range batch {
			if em.done != nil {
				em.done.finish()
			}
		}
	}
}

// recordParts are the contributions a user's target writes on to the
// email and SMS records that row c names, c having replaced the row's
// part that named records named (nil: none, or it was gone): each record
// the row names now is the user's as of c's position, and each it named
// before and no longer does is gone from the row, at that position. So a
// record's target hears of every change of each row that names its
// address, from whichever users the row named, and the newest live
// contribution names its owner (docs/architecture.md, "A record is a
// target of its own").
func (s *Sink) recordParts(t transform.Target, named []transform.Record, c *desired.Contribution) []kafka.Message {
	var out []kafka.Message
	var now []transform.Record
	if !c.Gone {
		now = c.Records
	}
	part := func(r transform.Record, gone bool) {
		f := &desired.Contribution{Row: c.Row, Pos: c.Pos, Gone: gone, Created: c.Created && !gone, Owner: t.ID, Source: c.Source}
		out = append(out, targetMessage(s.cfg.TargetsTopic, desired.ContributionRecord(transform.RecordTarget(r), f)))
	}
	for _, r := range now {
		part(r, false)
	}
	for _, r := range named {
		if !slices.Contains(now, r) {
			part(r, true)
		}
	}
	return out
}

// grants are the records a record's target writes after rec: when its
// owner changed from before, a grant to the new owner and the old one's
// taken back, both at the record's version; when a user that is not its
// owner held it (wrote it after the owner did, or may have), a grant to
// the owner to write it again.
func (s *Sink) grants(t transform.Target, before desired.RecordOwner, st *desired.State, rec *desired.Record, seq int64) []kafka.Message {
	r, ok := t.Rec()
	if !ok {
		return nil
	}
	after := st.RecordOwner()
	grant := func(to string, gone, again bool) kafka.Message {
		return targetMessage(s.cfg.TargetsTopic, &desired.Record{Target: transform.User(to), Kind: desired.KindGrant,
			Record: r, Pos: after.Version, Gone: gone, Again: again, Seq: seq})
	}
	var out []kafka.Message
	switch rec.Kind {
	case desired.KindContribution:
		if before.Owner == after.Owner {
			return nil
		}
		if after.Owner != "" {
			out = append(out, grant(after.Owner, false, false))
		}
		if before.Owner != "" {
			out = append(out, grant(before.Owner, true, false))
		}
	case desired.KindHeld:
		if after.Owner != "" && after.Owner != rec.Owner {
			out = append(out, grant(after.Owner, false, true))
		}
	}
	return out
}

// forwards are the records a referenced row's target writes on after rec
// changed it from before to after: each referencing row's part, to the
// user the referenced row names (or, for a devices row's part, to its
// device, with that user as owner), positioned at the newer of the part's
// and the referenced row's positions, so that an external id change of
// the referenced row, or a change of the referencing row, is newer than
// what was forwarded before. When the external id changed, the parts are
// taken back from the user it named before.
func (s *Sink) forwards(t transform.Target, before, after desired.Row, rec *desired.Record) []kafka.Message {
	var parts []*desired.Contribution
	if before.Identity != after.Identity {
		parts = after.Referencing // the row names another user now: every part goes again
	} else if rec.Identity == "" {
		for _, c := range after.Referencing {
			if c.Row == rec.Row {
				parts = append(parts, c) // as the state holds it: the newest of the row
			}
		}
	}
	var out []kafka.Message
	send := func(to transform.Target, c *desired.Contribution, gone bool, owner string) {
		f := *c
		f.Gone, f.Owner, f.Identity, f.Device = gone || c.Gone, owner, "", ""
		f.Pos = c.Pos.Through(after.Version)
		if f.Gone && !c.Gone {
			tags := make(map[string]string, len(c.Tags))
			for tag := range c.Tags {
				tags[tag] = ""
			}
			f.Was, f.Tags = c.Tags, tags
			f.Props, f.Aliases, f.Records = nil, nil, nil
		}
		out = append(out, targetMessage(s.cfg.TargetsTopic, desired.ContributionRecord(to, &f)))
	}
	for _, c := range parts {
		if c.Device != "" {
			switch {
			case after.Identity != "":
				send(transform.Device(c.Device), c, false, after.Identity)
			case before.Identity != "":
				send(transform.Device(c.Device), c, true, before.Identity)
			}
			continue
		}
		if before.Identity != "" && before.Identity != after.Identity {
			send(transform.User(before.Identity), c, true, "")
		}
		if after.Identity != "" {
			send(transform.User(after.Identity), c, false, "")
		}
	}
	return out
}
