package pgcodec

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
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

// Source is what every event's source block says of where it comes from,
// beside the row's own schema, table and position.
type Source struct {
	DB          string // the database's name (source.db)
	TopicPrefix string // topics are <prefix>.<schema>.<table>; source.name
	Version     string // the build's version (source.version)
}

// Decoder turns pgoutput messages into change events. It is not safe for
// concurrent use; the replication loop owns it.
type Decoder struct {
	src       Source
	now       func() time.Time
	relations map[uint32]*relation
	// columns, if set, names the columns the events of a table carry
	// ("schema.table"; nil: every column).
	columns func(table string) []string

	// the transaction being decoded
	inTx       bool
	xid        uint32
	commitTime time.Time
	commitLSN  pglogrepl.LSN

	// general makes every message take the general path, which fills in
	// Change.Image (KeepImages), and tests compare the two paths with it.
	general bool
	// The fast path's buffers (rowcodec.go): the event and key being
	// encoded, the block they are copied to, and the step it returns.
	buf, keyBuf, slab []byte
	one               Change
	oneStep           []*Change
}

// NewDecoder returns a decoder of the events of src, stamped with the
// processing time now gives, carrying the columns columns names of each
// table (nil: every column of every table).
func NewDecoder(src Source, now func() time.Time, columns func(table string) []string) *Decoder {
	return &Decoder{src: src, now: now, columns: columns, relations: make(map[uint32]*relation)}
}

// KeepImages makes every change carry its row image (Change.Image), as
// snapshot windows need to match the stream's rows with a chunk's; it
// costs the fast path (rowcodec.go), so the replication loop turns it on
// only while a window is open.
func (d *Decoder) KeepImages(on bool) { d.general = on }

// CommitTime is the commit time of the transaction being decoded (or last
// decoded).
func (d *Decoder) CommitTime() time.Time { return d.commitTime }

// CommitLSN is the LSN of the commit record of the transaction being
// decoded (or last decoded).
func (d *Decoder) CommitLSN() pglogrepl.LSN { return d.commitLSN }

// Step is what one pgoutput message means for the replication loop.
type Step struct {
	Kind     StepKind
	Changes  []*Change                         // StepChanges: the events of one message, in order
	Relation uint32                            // StepRelation: the relation's OID
	Topic    string                            // StepRelation: the relation's topic
	Message  *pglogrepl.LogicalDecodingMessage // StepMessage
	End      pglogrepl.LSN                     // StepCommit: the commit record's end LSN
}

// StepKind says what a Step is.
type StepKind int

const (
	StepNone     StepKind = iota // nothing for the loop (a Type or Origin message)
	StepBegin                    // a transaction begins
	StepChanges                  // row changes, ready for Kafka
	StepRelation                 // a table's definition, before its first row in the session and after each change
	StepMessage                  // a logical decoding message (a watermark, a signal, a heartbeat)
	StepCommit                   // the transaction commits
)

// Change is one row change, ready for Kafka.
type Change struct {
	Topic   string
	Key     []byte // the row's primary key as JSON (Key); nil for a truncate or a table without one
	Value   []byte // the event
	Op      event.Op
	Table   string    // "schema.table"
	Image   event.Row // the new row, or the old one for a delete, for snapshot windows to match; nil on the fast path (KeepImages)
	KeyCols []string  // the columns of Key
	// newKey and oldKey are, on the two halves of a primary-key change, the
	// key the row has after it (on the delete) and before it (on the
	// create): Debezium's __debezium.newkey and __debezium.oldkey headers.
	newKey, oldKey []byte
	// newRow is, on the delete half, the row after the change
	// (event.HeaderNewRow); nil when it is larger than the header's bound.
	newRow []byte
}

// Headers are the Kafka headers the change's message carries.
func (c *Change) Headers() []kafka.Header {
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

// Decode interprets one pgoutput message that started at walStart.
func (d *Decoder) Decode(walStart pglogrepl.LSN, data []byte) (Step, error) {
	if st, ok := d.fastRow(walStart, data); ok {
		return st, nil
	}
	msg, err := parse(data)
	if err != nil {
		return Step{}, fmt.Errorf("parse pgoutput message at %s: %w", walStart, err)
	}
	switch m := msg.(type) {
	case *pglogrepl.BeginMessage:
		if d.inTx {
			return Step{}, fmt.Errorf("pgoutput: begin of xid %d at %s inside xid %d", m.Xid, walStart, d.xid)
		}
		d.inTx, d.xid, d.commitTime, d.commitLSN = true, m.Xid, m.CommitTime, m.FinalLSN
		return Step{Kind: StepBegin}, nil
	case *pglogrepl.CommitMessage:
		if !d.inTx {
			return Step{}, fmt.Errorf("pgoutput: commit at %s outside a transaction", walStart)
		}
		d.inTx = false
		return Step{Kind: StepCommit, End: m.TransactionEndLSN}, nil
	case *pglogrepl.RelationMessage:
		rel := newRelation(m, d.src.TopicPrefix)
		if d.columns != nil {
			rel.project(d.columns(rel.name))
		}
		d.relations[m.RelationID] = rel
		return Step{Kind: StepRelation, Relation: m.RelationID, Topic: rel.topic}, nil
	case *pglogrepl.InsertMessage:
		return d.row(walStart, m.RelationID, event.OpCreate, nil, 0, m.Tuple)
	case *pglogrepl.UpdateMessage:
		return d.row(walStart, m.RelationID, event.OpUpdate, m.OldTuple, m.OldTupleType, m.NewTuple)
	case *pglogrepl.DeleteMessage:
		return d.row(walStart, m.RelationID, event.OpDelete, m.OldTuple, m.OldTupleType, nil)
	case *pglogrepl.TruncateMessage:
		return d.truncate(walStart, m)
	case *pglogrepl.LogicalDecodingMessage:
		return Step{Kind: StepMessage, Message: m}, nil
	default:
		// Type and Origin messages carry no row change.
		return Step{}, nil
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

// SetPrimaryKey makes the named columns the Kafka key of relation relID.
func (d *Decoder) SetPrimaryKey(relID uint32, cols []string) {
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

func (d *Decoder) row(walStart pglogrepl.LSN, relID uint32, op event.Op, old *pglogrepl.TupleData, oldType uint8, newT *pglogrepl.TupleData) (Step, error) {
	if !d.inTx {
		return Step{}, fmt.Errorf("pgoutput: row change at %s outside a transaction", walStart)
	}
	rel, ok := d.relations[relID]
	if !ok {
		return Step{}, fmt.Errorf("pgoutput: row of relation %d at %s before its Relation message", relID, walStart)
	}
	ev := d.envelope(walStart, rel, op)
	var err error
	if old != nil {
		// 'K': only the replica identity columns; 'O': the whole old row (REPLICA IDENTITY FULL).
		if ev.Before, err = rel.image(old, oldType == 'K'); err != nil {
			return Step{}, err
		}
	}
	if newT != nil {
		if ev.After, err = rel.image(newT, false); err != nil {
			return Step{}, err
		}
		if oldType == 'O' {
			fillUnchangedToast(ev.After, ev.Before)
		}
		for _, name := range rel.pad {
			ev.After = append(ev.After, event.Field{Name: name, Value: event.UnavailableValue()})
		}
	}
	if op == event.OpUpdate && ev.Before != nil && len(rel.key) > 0 {
		if oldKey := Key(ev.Before, rel.key); string(oldKey) != string(Key(ev.After, rel.key)) {
			// The primary key changed: a delete under the old key and a
			// create under the new one, as Debezium writes it, so that
			// each key's events stay in its own partition, in order. One
			// event under the new key would reach the old key's consumers
			// out of order with the old key's later events.
			del, create := ev, ev
			del.Op, del.After = event.OpDelete, nil
			create.Op, create.Before = event.OpCreate, nil
			delCh, createCh := d.change(rel, &del), d.change(rel, &create)
			delCh.newKey, createCh.oldKey = createCh.Key, delCh.Key
			if row, err := create.After.MarshalJSON(); err == nil && len(row) <= event.MaxNewRowHeader {
				delCh.newRow = row
			}
			return Step{Kind: StepChanges, Changes: []*Change{delCh, createCh}}, nil
		}
	}
	return Step{Kind: StepChanges, Changes: []*Change{d.change(rel, &ev)}}, nil
}

// change encodes ev, a change to a row of rel, for Kafka.
func (d *Decoder) change(rel *relation, ev *event.Envelope) *Change {
	image := ev.After
	if image == nil {
		image = ev.Before
	}
	value := encodeWithin(ev, maxEventBytes, rel.key)
	return &Change{Topic: rel.topic, Key: Key(image, rel.key), Value: value, Op: ev.Op, Table: rel.name, Image: image, KeyCols: rel.key}
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
// images. What the sink needs of an
// event is small (ids, tags), so an oversized event is nearly always one
// large column the mapping does not use, and the rest of the row goes
// through; where the mapping does use it, the sink dead-letters the event
// with the reason.
//
// Key columns are never replaced: they name the row (its Kafka key, the
// snapshot's window matching), and a primary key cannot be large anyway,
// since its index entries are limited to a few kilobytes.
func encodeWithin(ev *event.Envelope, limit int, key []string) []byte {
	value := ev.Encode(make([]byte, 0, 640))
	excess := len(value) - limit
	if excess <= 0 {
		return value
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
	}
	return ev.Encode(make([]byte, 0, limit))
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
func (d *Decoder) envelope(walStart pglogrepl.LSN, rel *relation, op event.Op) event.Envelope {
	return event.Envelope{
		Op: op,
		Source: event.Source{
			Version:   d.src.Version,
			Connector: "postgresql",
			Name:      d.src.TopicPrefix,
			TsMs:      d.commitTime.UnixMilli(),
			Snapshot:  "false",
			DB:        d.src.DB,
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
func (d *Decoder) truncate(walStart pglogrepl.LSN, m *pglogrepl.TruncateMessage) (Step, error) {
	if !d.inTx {
		return Step{}, fmt.Errorf("pgoutput: truncate at %s outside a transaction", walStart)
	}
	st := Step{Kind: StepChanges}
	for _, id := range m.RelationIDs {
		rel, ok := d.relations[id]
		if !ok {
			return Step{}, fmt.Errorf("pgoutput: truncate of relation %d at %s before its Relation message", id, walStart)
		}
		ev := d.envelope(walStart, rel, event.OpTruncate)
		st.Changes = append(st.Changes, &Change{Topic: rel.topic, Value: ev.Encode(make([]byte, 0, 640)), Op: event.OpTruncate})
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

// Encode encodes ev within the event size limit: while the event is over
// it, its largest values that are not of the key columns become
// event.Oversized (encodeWithin).
func Encode(ev *event.Envelope, key []string) []byte {
	return encodeWithin(ev, maxEventBytes, key)
}

// Key is the Kafka key of a row whose primary key is key: its key columns
// as a JSON object, in the row's column order; nil without a key.
func Key(row event.Row, key []string) []byte {
	if len(key) == 0 {
		return nil
	}
	k := make(event.Row, 0, len(key))
	for _, f := range row {
		for _, name := range key {
			if f.Name == name {
				k = append(k, f)
			}
		}
	}
	b, _ := k.MarshalJSON()
	return b
}

// MatchKey renders the primary-key columns of row as snapshot windows
// compare them: SnapshotRow.Match is the same rendering.
func MatchKey(row event.Row, key []string) string {
	var b strings.Builder
	for _, k := range key {
		v, _ := row.Get(k)
		b.Write(v)
		b.WriteByte(0)
	}
	return b.String()
}
