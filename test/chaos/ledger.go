package chaos

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// The slot check. The connector may confirm an LSN to PostgreSQL only once
// Kafka holds every transaction that commits before it: on reconnecting,
// the walsender decodes from confirmed_flush_lsn and skips every
// transaction whose commit record starts below it (PostgreSQL's
// SnapBuildXactNeedsSkip compares the commit record's start with the
// confirmed position). So a transaction T is owed to Kafka as soon as
// confirmed_flush_lsn > commit_lsn(T), the start of T's commit record,
// which every event of T carries as source.commit_lsn.
//
// The workload knows of each transaction it committed its xid (read inside
// it) and how many row changes it made (the rows each statement affected),
// which is the number of events it must become: one per row change, told
// apart by source.lsn, since a replay after a crash repeats an event with
// the same lsn. The ledger tails the change topics and counts, per xid,
// the distinct lsns Kafka holds.
//
// Each sample: read X = confirmed_flush_lsn; then list the topics' end
// offsets and wait until the tail has read up to them; then every
// committed transaction with commit_lsn < X must be complete in Kafka.
// Kafka only grows, so what the tail holds after X was read is at least
// what Kafka held when X was read: the check never blames the connector
// for an event that was in Kafka in time. It can miss a violation that
// Kafka repairs between the two reads (a confirm a few milliseconds early);
// the window is the tail's lag, and a crash in that window turns it into a
// loss that the final check (every committed transaction complete in
// Kafka) catches for certain.
//
// A transaction none of whose events the tail has seen has no known
// commit_lsn; for it the check uses pg_current_wal_insert_lsn() read
// after the commit returned, which is at or past the end of its commit
// record: X ≥ that LSN also means the slot passed the commit.

// txn is a transaction the workload committed (the server acknowledged
// the COMMIT).
type txn struct {
	xid     uint32
	changes int           // row changes: the events it must become
	after   pglogrepl.LSN // the WAL insert position read after the commit; 0 if the read failed
	what    string        // a summary of its statements, for reports
	at      time.Duration // when it committed, from the start of the run
}

// seenTxn is what the change topics hold of one transaction.
type seenTxn struct {
	commit pglogrepl.LSN      // source.commit_lsn
	lsns   map[int64]struct{} // distinct source.lsn; nil once complete
	count  int
}

type topicPartition struct {
	topic     string
	partition int32
}

type ledger struct {
	topics  []string
	brokers []string
	elapsed func() time.Duration

	mu         sync.Mutex
	seen       map[uint32]*seenTxn
	pending    map[uint32]*txn // committed, not yet complete in Kafka
	committed  int
	changes    int
	next       map[topicPartition]int64 // the offset after the last record the tail read
	events     int                      // records read, repeats included
	violations []string
	flagged    map[uint32]bool // transactions already reported by the slot check
	samples    int             // slot samples taken
	checked    int             // slot samples checked (the tail caught up in time)
	maxLSN     pglogrepl.LSN   // the highest confirmed_flush_lsn seen
	badEvents  []string        // records that did not decode
}

func newLedger(brokers, topics []string, elapsed func() time.Duration) *ledger {
	return &ledger{
		topics: topics, brokers: brokers, elapsed: elapsed,
		seen: map[uint32]*seenTxn{}, pending: map[uint32]*txn{},
		next: map[topicPartition]int64{}, flagged: map[uint32]bool{},
	}
}

// commit records a transaction the server acknowledged.
func (l *ledger) commit(t *txn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.committed++
	l.changes += t.changes
	if t.changes == 0 {
		return
	}
	if s := l.seen[t.xid]; s != nil && s.count >= t.changes {
		s.lsns = nil
		return
	}
	l.pending[t.xid] = t
}

// tail reads the change topics from their start until ctx ends.
func (l *ledger) tail(ctx context.Context) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(l.brokers...), kgo.ConsumeTopics(l.topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		// Fetch errors (injected ones among them) are retried by the
		// client; the records that did arrive count.
		fs.EachRecord(l.add)
	}
}

func (l *ledger) add(r *kgo.Record) {
	ev, err := event.Decode(r.Value)
	l.mu.Lock()
	defer l.mu.Unlock()
	tp := topicPartition{r.Topic, r.Partition}
	if r.Offset+1 > l.next[tp] {
		l.next[tp] = r.Offset + 1
	}
	l.events++
	if err != nil {
		l.badEvents = append(l.badEvents, fmt.Sprintf("%s/%d@%d: %v", r.Topic, r.Partition, r.Offset, err))
		return
	}
	if ev.Op == event.OpSnapshot || ev.Op == event.OpTruncate {
		return // not a change of a workload transaction
	}
	xid := uint32(ev.Source.TxID)
	s := l.seen[xid]
	if s == nil {
		s = &seenTxn{commit: pglogrepl.LSN(ev.Source.CommitLSN), lsns: map[int64]struct{}{}}
		l.seen[xid] = s
	}
	if s.lsns == nil {
		return // complete already
	}
	if _, ok := s.lsns[ev.Source.LSN]; ok {
		return // a repeat
	}
	s.lsns[ev.Source.LSN] = struct{}{}
	s.count++
	if t := l.pending[xid]; t != nil && s.count >= t.changes {
		delete(l.pending, xid)
		s.lsns = nil
	}
}

// caughtUp reports whether the tail has read up to ends.
func (l *ledger) caughtUp(ends map[topicPartition]int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for tp, end := range ends {
		if l.next[tp] < end {
			return false
		}
	}
	return true
}

// check is one slot sample: confirmed is what the slot said before the
// tail caught up with Kafka.
func (l *ledger) check(confirmed pglogrepl.LSN, readAt time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.checked++
	for xid, t := range l.pending {
		s := l.seen[xid]
		var passed bool
		var why string
		switch {
		case s != nil && s.commit != 0:
			passed, why = confirmed > s.commit, fmt.Sprintf("its commit record at %s", s.commit)
		case t.after != 0:
			passed, why = confirmed >= t.after, fmt.Sprintf("the WAL position %s read after its commit", t.after)
		}
		if !passed || l.flagged[xid] {
			continue
		}
		l.flagged[xid] = true
		have := 0
		if s != nil {
			have = s.count
		}
		l.violations = append(l.violations, fmt.Sprintf(
			"at +%s the slot confirmed %s, past %s, while Kafka held %d of the %d events of transaction %d (committed at +%s: %s)",
			readAt.Round(time.Millisecond), confirmed, why, have, t.changes, xid, t.at.Round(time.Millisecond), t.what))
	}
}

// incomplete lists the committed transactions Kafka does not hold whole.
func (l *ledger) incomplete() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for xid, t := range l.pending {
		have := 0
		if s := l.seen[xid]; s != nil {
			have = s.count
		}
		out = append(out, fmt.Sprintf("transaction %d (committed at +%s: %s): %d of %d events in Kafka",
			xid, t.at.Round(time.Millisecond), t.what, have, t.changes))
	}
	sort.Strings(out)
	return out
}

// watchSlot samples the slot every interval until ctx ends.
func (l *ledger) watchSlot(ctx context.Context, dsn, slot string, interval time.Duration) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	client, done := broker.Plain(l.brokers).Client(5 * time.Second)
	defer done()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if conn == nil {
			c, err := connect(ctx, dsn)
			if err != nil {
				continue // PostgreSQL is restarting
			}
			conn = c
		}
		confirmed, err := confirmedFlush(ctx, conn, slot)
		if err != nil {
			conn.Close(context.Background())
			conn = nil
			continue
		}
		readAt := l.elapsed()
		l.mu.Lock()
		l.samples++
		l.maxLSN = max(l.maxLSN, confirmed)
		l.mu.Unlock()
		ends, err := endOffsets(ctx, client, l.topics)
		if err != nil {
			continue // a sample the injected Kafka faults spoil proves nothing either way
		}
		deadline := time.Now().Add(10 * time.Second)
		for !l.caughtUp(ends) && time.Now().Before(deadline) && ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Millisecond):
			}
		}
		if l.caughtUp(ends) {
			l.check(confirmed, readAt)
		}
	}
}

// confirmedFlush reads the slot's confirmed_flush_lsn (0 while it has none).
func confirmedFlush(ctx context.Context, conn *pgx.Conn, slot string) (pglogrepl.LSN, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var s *string
	err := conn.QueryRow(ctx, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&s)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && s == nil) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return pglogrepl.ParseLSN(*s)
}

func connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return pgx.Connect(ctx, dsn)
}

// endOffsets returns the high watermark of every partition of topics.
func endOffsets(ctx context.Context, c *kafka.Client, topics []string) (map[topicPartition]int64, error) {
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, tp := range md.Topics {
		if tp.Error != nil {
			return nil, fmt.Errorf("metadata of %s: %w", tp.Name, tp.Error)
		}
		for _, p := range tp.Partitions {
			req.Topics[tp.Name] = append(req.Topics[tp.Name], kafka.LastOffsetOf(p.ID))
		}
	}
	resp, err := c.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("list offsets: %w", err)
	}
	out := map[topicPartition]int64{}
	for topic, ps := range resp.Topics {
		for _, po := range ps {
			if po.Error != nil {
				return nil, fmt.Errorf("list offsets of %s/%d: %w", topic, po.Partition, po.Error)
			}
			out[topicPartition{topic, int32(po.Partition)}] = po.LastOffset
		}
	}
	return out, nil
}

// groupLag lists the partitions of topics whose committed offset in group
// is short of their end; none means the group has caught up.
func groupLag(ctx context.Context, c *kafka.Client, group string, topics []string) ([]string, error) {
	ends, err := endOffsets(ctx, c, topics)
	if err != nil {
		return nil, err
	}
	req := &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{}}
	for tp := range ends {
		req.Topics[tp.topic] = append(req.Topics[tp.topic], int(tp.partition))
	}
	resp, err := c.OffsetFetch(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("offsets of group %s: %w", group, err)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("offsets of group %s: %w", group, resp.Error)
	}
	committed := map[topicPartition]int64{}
	for topic, ps := range resp.Topics {
		for _, p := range ps {
			committed[topicPartition{topic, int32(p.Partition)}] = p.CommittedOffset
		}
	}
	var behind []string
	for tp, end := range ends {
		if end > 0 && committed[tp] != end {
			behind = append(behind, fmt.Sprintf("%s/%d at %d of %d", tp.topic, tp.partition, committed[tp], end))
		}
	}
	sort.Strings(behind)
	return behind, nil
}

// committedOffsets returns group's committed offsets of topic, by
// partition.
func committedOffsets(ctx context.Context, c *kafka.Client, group, topic string) (map[int]int64, error) {
	n, err := endOffsets(ctx, c, []string{topic})
	if err != nil {
		return nil, err
	}
	req := &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{}}
	for tp := range n {
		req.Topics[topic] = append(req.Topics[topic], int(tp.partition))
	}
	resp, err := c.OffsetFetch(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("offsets of group %s: %w", group, err)
	}
	out := map[int]int64{}
	for _, p := range resp.Topics[topic] {
		out[p.Partition] = p.CommittedOffset
	}
	return out, nil
}

// messagesIn is how many messages topics have ever held.
func messagesIn(ctx context.Context, c *kafka.Client, topics ...string) (int64, error) {
	ends, err := endOffsets(ctx, c, topics)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, end := range ends {
		n += end
	}
	return n, nil
}

// summary describes the ledger for the report.
func (l *ledger) summary() (samples, checked int, maxLSN pglogrepl.LSN, events int, violations, bad []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.samples, l.checked, l.maxLSN, l.events, append([]string(nil), l.violations...), append([]string(nil), l.badEvents...)
}

func (l *ledger) totals() (committed, changes int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.committed, l.changes
}

// describe is a one-line summary of a statement list.
func describe(stmts []string) string {
	if len(stmts) > 4 {
		return strings.Join(stmts[:4], "; ") + fmt.Sprintf("; … (%d statements)", len(stmts))
	}
	return strings.Join(stmts, "; ")
}

// watchGroup notes in the timeline every change of the sink's consumer
// group (its state and members), until ctx ends: when the sink stalls,
// the timeline says whether it was waiting for its group.
func watchGroup(ctx context.Context, brokers []string, group string, note func(string, ...any)) {
	c, done := broker.Plain(brokers).Client(5 * time.Second)
	defer done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		resp, err := c.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
		if err != nil || len(resp.Groups) == 0 {
			continue
		}
		g := resp.Groups[0]
		var members []string
		for _, m := range g.Members {
			parts := 0
			for _, tp := range m.MemberAssignments.Topics {
				parts += len(tp.Partitions)
			}
			id := m.MemberID
			if i := strings.LastIndexByte(id, '-'); i >= 0 {
				id = id[i+1:] // the random part
			}
			if len(id) > 8 {
				id = id[:8]
			}
			members = append(members, fmt.Sprintf("%s(%d partitions)", id, parts))
		}
		sort.Strings(members)
		now := fmt.Sprintf("%s, members %v", g.GroupState, members)
		if now != last {
			note("group %s: %s", group, now)
			last = now
		}
	}
}
