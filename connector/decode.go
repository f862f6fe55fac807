package connector

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// relation is what the decoder knows of a published table, from the
// Relation message Postgres sends before the table's first row in a session
// and again whenever its definition changed.
type relation struct {
	schema, table string
	name          string // "schema.table"
	topic         string
	columns       []*pglogrepl.RelationMessageColumn
	// key names the columns of the Kafka key, in column order: the primary
	// key once the session looked it up, until then the replica identity
	// columns (none under REPLICA IDENTITY FULL, which flags every column).
	key []string
	// keep says, by column, whether events carry it (nil: all): where the
	// publication cannot list columns, the decoder leaves out those the
	// mapping does not read. pad are the columns the mapping reads that
	// the relation lacks, which events carry as not sent.
	keep []bool
	pad  []string
	// codec encodes the relation's common row changes (rowcodec.go); nil
	// until first used, and again when the key changes.
	codec *rowCodec
}

// decoder turns pgoutput messages into change events. It is not safe for
// concurrent use; the replication loop owns it.
type decoder struct {
	db          string
	topicPrefix string
	version     string // source.version
	now         func() time.Time
	relations   map[uint32]*relation
	// columns, if set, names the columns the events of a table carry
	// ("schema.table"; nil: every column).
	columns func(table string) []string

	// the transaction being decoded
	inTx       bool
	xid        uint32
	commitTime time.Time
	commitLSN  pglogrepl.LSN

	// general makes every message take the general path, as the session
	// wants while a snapshot window is open (it matches rows by their
	// images) and tests do to compare the two paths.
	general bool
	// The fast path's buffers (rowcodec.go): the event and key being
	// encoded, the block they are copied to, and the step it returns.
	buf, keyBuf, slab []byte
	one               change
	oneStep           []*change
}

func newDecoder(db, topicPrefix, version string, now func() time.Time) *decoder {
	return &decoder{db: db, topicPrefix: topicPrefix, version: version, now: now, relations: make(map[uint32]*relation)}
}

// step is what one pgoutput message means for the replication loop.
type step struct {
	kind    stepKind
	changes []*change                         // stepChanges: the events of one message, in order
	rel     uint32                            // stepRelation: the relation's OID
	topic   string                            // stepRelation: the relation's topic
	message *pglogrepl.LogicalDecodingMessage // stepMessage
	end     pglogrepl.LSN                     // stepCommit: the commit record's end LSN
}

type stepKind int

const (
	stepNone stepKind = iota
	stepBegin
	stepChanges
	stepRelation
	stepMessage
	stepCommit
)

// change is one row change, ready for Kafka.
type change struct {
	topic   string
	key     []byte
	value   []byte
	op      event.Op
	table   string    // "schema.table"
	image   event.Row // the new row, or the old one for a delete: what snapshot windows match
	keyCols []string  // the columns of key
	// oversized names the columns whose values were too large for the
	// event and were sent as event.Oversized (see encodeWithin), for the
	// stream to report.
	oversized []string
	// newKey and oldKey are, on the two halves of a primary-key change, the
	// key the row has after it (on the delete) and before it (on the
	// create): Debezium's __debezium.newkey and __debezium.oldkey headers.
	newKey, oldKey []byte
	// newRow is, on the delete half, the row after the change
	// (event.HeaderNewRow); nil when it is larger than the header's bound.
	newRow []byte
}

// headers are the Kafka headers the change's message carries.
func (c *change) headers() []kafka.Header {
	switch {
	case c.newKey != nil && c.newRow != nil:
		return []kafka.Header{{Key: event.HeaderNewKey, Value: c.newKey}, {Key: event.HeaderNewRow, Value: c.newRow}}
	case c.newKey != nil:
		return []kafka.Header{{Key: event.HeaderNewKey, Value: c.newKey}}
	case c.oldKey != nil:
		return []kafka.Header{{Key: event.HeaderOldKey, Value: c.oldKey}}
	}
	return nil
}

// decode interprets one pgoutput message that started at walStart.
func (d *decoder) decode(walStart pglogrepl.LSN, data []byte) (step, error) {
	if st, ok := d.fastRow(walStart, data); ok {
		return st, nil
	}
	msg, err := parse(data)
	if err != nil {
		return step{}, fmt.Errorf("parse pgoutput message at %s: %w", walStart, err)
	}
	switch m := msg.(type) {
	case *pglogrepl.BeginMessage:
		if d.inTx {
			return step{}, fmt.Errorf("pgoutput: begin of xid %d at %s inside xid %d", m.Xid, walStart, d.xid)
		}
		d.inTx, d.xid, d.commitTime, d.commitLSN = true, m.Xid, m.CommitTime, m.FinalLSN
		return step{kind: stepBegin}, nil
	case *pglogrepl.CommitMessage:
		if !d.inTx {
			return step{}, fmt.Errorf("pgoutput: commit at %s outside a transaction", walStart)
		}
		d.inTx = false
		return step{kind: stepCommit, end: m.TransactionEndLSN}, nil
	case *pglogrepl.RelationMessage:
		rel := newRelation(m, d.topicPrefix)
		if d.columns != nil {
			rel.project(d.columns(rel.name))
		}
		d.relations[m.RelationID] = rel
		return step{kind: stepRelation, rel: m.RelationID, topic: rel.topic}, nil
	case *pglogrepl.InsertMessage:
		return d.row(walStart, m.RelationID, event.OpCreate, nil, 0, m.Tuple)
	case *pglogrepl.UpdateMessage:
		return d.row(walStart, m.RelationID, event.OpUpdate, m.OldTuple, m.OldTupleType, m.NewTuple)
	case *pglogrepl.DeleteMessage:
		return d.row(walStart, m.RelationID, event.OpDelete, m.OldTuple, m.OldTupleType, nil)
	case *pglogrepl.TruncateMessage:
		return d.truncate(walStart, m)
	case *pglogrepl.LogicalDecodingMessage:
		return step{kind: stepMessage, message: m}, nil
	default:
		// Type and Origin messages carry no row change.
		return step{}, nil
	}
}

// parse is pglogrepl.Parse made total: it indexes its input without
// checking the length first, and a malformed frame must be an error, not a
// crash.
func parse(data []byte) (msg pglogrepl.Message, err error) {
	if len(data) == 0 {
		return nil, errors.New("empty message")
	}
	if data[0] == 'T' && len(data) >= 5 && uint64(len(data)) < 6+4*uint64(binary.BigEndian.Uint32(data[1:5])) {
		// pglogrepl would allocate the claimed relation count before
		// checking the length.
		return nil, errors.New("malformed 'T' message: relation count exceeds its length")
	}
	if err := checkTuples(data); err != nil {
		return nil, fmt.Errorf("malformed %q message: %w", data[0], err)
	}
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("malformed %q message: %v", data[0], r)
		}
	}()
	return pglogrepl.Parse(data)
}

func newRelation(m *pglogrepl.RelationMessage, prefix string) *relation {
	r := &relation{
		schema:  m.Namespace,
		table:   m.RelationName,
		name:    m.Namespace + "." + m.RelationName,
		topic:   prefix + "." + m.Namespace + "." + m.RelationName,
		columns: m.Columns,
	}
	if m.ReplicaIdentity != 'f' {
		for _, c := range m.Columns {
			if c.Flags&1 != 0 {
				r.key = append(r.key, c.Name)
			}
		}
	}
	return r
}

// project makes the relation's events carry only the columns read, and
// the primary-key and replica-identity columns whatever read says: they
// name the row. A column of read that the relation lacks is one that
// PostgreSQL did not publish when the change was made: the publication
// listed columns without it then (the connector changes the list when the
// mapping changes), or the table did not have it yet. Events carry it as
// not sent, the way an unchanged TOAST value is, so the sink keeps what it
// knew of it instead of refusing the row; the re-snapshot that follows a
// mapping change sends its value.
func (r *relation) project(read []string) {
	if read == nil {
		return
	}
	r.keep = make([]bool, len(r.columns))
	for i, c := range r.columns {
		r.keep[i] = slices.Contains(read, c.Name) || slices.Contains(r.key, c.Name)
	}
	for _, name := range read {
		if !slices.ContainsFunc(r.columns, func(c *pglogrepl.RelationMessageColumn) bool { return c.Name == name }) {
			r.pad = append(r.pad, name)
		}
	}
}

// setPrimaryKey makes the named columns the Kafka key of relation relID.
func (d *decoder) setPrimaryKey(relID uint32, cols []string) {
	rel, ok := d.relations[relID]
	if !ok {
		return
	}
	rel.key, rel.codec = rel.key[:0], nil
	for i, c := range rel.columns { // column order, as snapshot keys use
		for _, k := range cols {
			if c.Name == k {
				rel.key = append(rel.key, k)
				if rel.keep != nil {
					rel.keep[i] = true
				}
			}
		}
	}
}

func (d *decoder) row(walStart pglogrepl.LSN, relID uint32, op event.Op, old *pglogrepl.TupleData, oldType uint8, newT *pglogrepl.TupleData) (step, error) {
	if !d.inTx {
		return step{}, fmt.Errorf("pgoutput: row change at %s outside a transaction", walStart)
	}
	rel, ok := d.relations[relID]
	if !ok {
		return step{}, fmt.Errorf("pgoutput: row of relation %d at %s before its Relation message", relID, walStart)
	}
	ev := d.envelope(walStart, rel, op)
	var err error
	if old != nil {
		// 'K': only the replica identity columns; 'O': the whole old row (REPLICA IDENTITY FULL).
		if ev.Before, err = rel.image(old, oldType == 'K'); err != nil {
			return step{}, err
		}
	}
	if newT != nil {
		if ev.After, err = rel.image(newT, false); err != nil {
			return step{}, err
		}
		if oldType == 'O' {
			fillUnchangedToast(ev.After, ev.Before)
		}
		for _, name := range rel.pad {
			ev.After = append(ev.After, event.Field{Name: name, Value: event.UnavailableValue()})
		}
	}
	if op == event.OpUpdate && ev.Before != nil && len(rel.key) > 0 {
		if oldKey := keyJSON(ev.Before, rel.key); string(oldKey) != string(keyJSON(ev.After, rel.key)) {
			// The primary key changed: a delete under the old key and a
			// create under the new one, as Debezium writes it, so that
			// each key's events stay in its own partition, in order. One
			// event under the new key would reach the old key's consumers
			// out of order with the old key's later events.
			del, create := ev, ev
			del.Op, del.After = event.OpDelete, nil
			create.Op, create.Before = event.OpCreate, nil
			delCh, createCh := d.change(rel, &del), d.change(rel, &create)
			delCh.newKey, createCh.oldKey = createCh.key, delCh.key
			if row, err := create.After.MarshalJSON(); err == nil && len(row) <= event.MaxNewRowHeader {
				delCh.newRow = row
			}
			return step{kind: stepChanges, changes: []*change{delCh, createCh}}, nil
		}
	}
	return step{kind: stepChanges, changes: []*change{d.change(rel, &ev)}}, nil
}

// change encodes ev, a change to a row of rel, for Kafka.
func (d *decoder) change(rel *relation, ev *event.Envelope) *change {
	image := ev.After
	if image == nil {
		image = ev.Before
	}
	value, oversized := encodeWithin(ev, maxEventBytes, rel.key)
	return &change{topic: rel.topic, key: keyJSON(image, rel.key), value: value, op: ev.Op, table: rel.name, image: image, keyCols: rel.key, oversized: oversized}
}

// maxEventBytes bounds an event's JSON. Kafka refuses a message over
// max.message.bytes (1 MiB by default) and kafka-go's writer one over its
// BatchBytes (1 MiB): a larger event would stop the connector, and every
// change after it, at the broker. A quarter of that leaves room for the
// key and the headers, and for the producer's batch (maxBatchBytes, 512
// KiB) to take one more event and stay within the writer's 1 MiB.
const maxEventBytes = 256 << 10

// encodeWithin encodes ev. While the event is over limit, it puts
// event.Oversized in place of the largest column value left, in both row
// images, and returns the columns it replaced. What the sink needs of an
// event is small (ids, tags), so an oversized event is nearly always one
// large column the mapping does not use, and the rest of the row goes
// through; where the mapping does use it, the sink dead-letters the event
// with the reason.
//
// Key columns are never replaced: they name the row (its Kafka key, the
// snapshot's window matching), and a primary key cannot be large anyway,
// since its index entries are limited to a few kilobytes.
func encodeWithin(ev *event.Envelope, limit int, key []string) (value []byte, oversized []string) {
	value = ev.Encode(make([]byte, 0, 640))
	excess := len(value) - limit
	if excess <= 0 {
		return value, nil
	}
	var fields []*event.Field
	for _, row := range []event.Row{ev.Before, ev.After} {
		for i := range row {
			if !slices.Contains(key, row[i].Name) {
				fields = append(fields, &row[i])
			}
		}
	}
	slices.SortStableFunc(fields, func(a, b *event.Field) int { return len(b.Value) - len(a.Value) })
	marker := event.OversizedValue()
	for _, f := range fields {
		if excess <= 0 || len(f.Value) <= len(marker) {
			break
		}
		excess -= len(f.Value) - len(marker)
		f.Value = marker
		if !slices.Contains(oversized, f.Name) {
			oversized = append(oversized, f.Name)
		}
	}
	return ev.Encode(make([]byte, 0, limit)), oversized
}

// fillUnchangedToast gives the columns of after that Postgres sent as
// unchanged TOAST the value of the old row: under REPLICA IDENTITY FULL the
// old row is complete and detoasted, and the column did not change. Both
// rows are full images in column order.
func fillUnchangedToast(after, before event.Row) {
	for i, f := range after {
		if event.IsUnavailable(f.Value) && i < len(before) && before[i].Name == f.Name {
			after[i].Value = before[i].Value
		}
	}
}

// envelope starts the event of a change to rel at walStart.
func (d *decoder) envelope(walStart pglogrepl.LSN, rel *relation, op event.Op) event.Envelope {
	return event.Envelope{
		Op: op,
		Source: event.Source{
			Version:   d.version,
			Connector: "postgresql",
			Name:      d.topicPrefix,
			TsMs:      d.commitTime.UnixMilli(),
			Snapshot:  "false",
			DB:        d.db,
			Schema:    rel.schema,
			Table:     rel.table,
			TxID:      int64(d.xid),
			LSN:       int64(walStart),
			CommitLSN: int64(d.commitLSN),
		},
		TsMs: d.now().UnixMilli(),
	}
}

// truncate gives one "t" event per truncated table, with Debezium's shape:
// no key, no row images.
func (d *decoder) truncate(walStart pglogrepl.LSN, m *pglogrepl.TruncateMessage) (step, error) {
	if !d.inTx {
		return step{}, fmt.Errorf("pgoutput: truncate at %s outside a transaction", walStart)
	}
	st := step{kind: stepChanges}
	for _, id := range m.RelationIDs {
		rel, ok := d.relations[id]
		if !ok {
			return step{}, fmt.Errorf("pgoutput: truncate of relation %d at %s before its Relation message", id, walStart)
		}
		ev := d.envelope(walStart, rel, event.OpTruncate)
		st.changes = append(st.changes, &change{topic: rel.topic, value: ev.Encode(make([]byte, 0, 640)), op: event.OpTruncate})
	}
	return st, nil
}

// image converts a tuple into a row. keyOnly tuples carry nulls in the
// non-key positions, which are left out of the row.
func (r *relation) image(t *pglogrepl.TupleData, keyOnly bool) (event.Row, error) {
	if len(t.Columns) != len(r.columns) {
		return nil, fmt.Errorf("pgoutput: %s.%s tuple has %d columns, relation has %d", r.schema, r.table, len(t.Columns), len(r.columns))
	}
	row := make(event.Row, 0, len(t.Columns))
	for i, col := range t.Columns {
		meta := r.columns[i]
		if keyOnly && meta.Flags&1 == 0 || r.keep != nil && !r.keep[i] {
			continue
		}
		var v json.RawMessage
		switch col.DataType {
		case pglogrepl.TupleDataTypeNull:
			v = json.RawMessage("null")
		case pglogrepl.TupleDataTypeToast:
			v = event.UnavailableValue()
		case pglogrepl.TupleDataTypeText:
			v = textToJSON(meta.DataType, col.Data)
		case pglogrepl.TupleDataTypeBinary:
			return nil, fmt.Errorf("pgoutput: binary column %s in %s.%s: the connector asks for text format", meta.Name, r.schema, r.table)
		default:
			return nil, fmt.Errorf("pgoutput: unknown tuple data type %q for column %s", col.DataType, meta.Name)
		}
		row = append(row, event.Field{Name: meta.Name, Value: v})
	}
	return row, nil
}
