package connector

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// Well-known type OIDs whose text form maps to a JSON form other than a string.
const (
	oidBool   = 16
	oidInt8   = 20
	oidInt2   = 21
	oidInt4   = 23
	oidOID    = 26
	oidJSON   = 114
	oidFloat4 = 700
	oidFloat8 = 701
	oidJSONB  = 3802
)

// relation is what the decoder knows of a published table, from the
// Relation message Postgres sends before the table's first row in a session
// and again whenever its definition changed.
type relation struct {
	schema, table string
	topic         string
	columns       []*pglogrepl.RelationMessageColumn
	key           []int // indexes of the replica-identity (primary key) columns
}

// decoder turns pgoutput messages into change events. It is not safe for
// concurrent use; the replication loop owns it.
type decoder struct {
	db          string
	topicPrefix string
	now         func() time.Time
	relations   map[uint32]*relation

	// the transaction being decoded
	inTx       bool
	xid        uint32
	commitTime time.Time
}

func newDecoder(db, topicPrefix string, now func() time.Time) *decoder {
	return &decoder{db: db, topicPrefix: topicPrefix, now: now, relations: make(map[uint32]*relation)}
}

// step is what one pgoutput message means for the replication loop.
type step struct {
	kind   stepKind
	change *change       // stepChange
	end    pglogrepl.LSN // stepCommit: the commit record's end LSN
}

type stepKind int

const (
	stepNone stepKind = iota
	stepBegin
	stepChange
	stepCommit
)

// change is one row change, ready for Kafka.
type change struct {
	topic string
	key   []byte
	value []byte
}

// decode interprets one pgoutput message that started at walStart.
func (d *decoder) decode(walStart pglogrepl.LSN, data []byte) (step, error) {
	msg, err := parse(data)
	if err != nil {
		return step{}, fmt.Errorf("parse pgoutput message at %s: %w", walStart, err)
	}
	switch m := msg.(type) {
	case *pglogrepl.BeginMessage:
		if d.inTx {
			return step{}, fmt.Errorf("pgoutput: begin of xid %d at %s inside xid %d", m.Xid, walStart, d.xid)
		}
		d.inTx, d.xid, d.commitTime = true, m.Xid, m.CommitTime
		return step{kind: stepBegin}, nil
	case *pglogrepl.CommitMessage:
		if !d.inTx {
			return step{}, fmt.Errorf("pgoutput: commit at %s outside a transaction", walStart)
		}
		d.inTx = false
		return step{kind: stepCommit, end: m.TransactionEndLSN}, nil
	case *pglogrepl.RelationMessage:
		d.relations[m.RelationID] = newRelation(m, d.topicPrefix)
		return step{}, nil
	case *pglogrepl.InsertMessage:
		return d.row(walStart, m.RelationID, event.OpCreate, nil, 0, m.Tuple)
	case *pglogrepl.UpdateMessage:
		return d.row(walStart, m.RelationID, event.OpUpdate, m.OldTuple, m.OldTupleType, m.NewTuple)
	case *pglogrepl.DeleteMessage:
		return d.row(walStart, m.RelationID, event.OpDelete, m.OldTuple, m.OldTupleType, nil)
	default:
		// Type, Origin, Truncate and logical decoding messages carry no row change.
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
		topic:   prefix + "." + m.Namespace + "." + m.RelationName,
		columns: m.Columns,
	}
	for i, c := range m.Columns {
		if c.Flags&1 != 0 {
			r.key = append(r.key, i)
		}
	}
	return r
}

func (d *decoder) row(walStart pglogrepl.LSN, relID uint32, op event.Op, old *pglogrepl.TupleData, oldType uint8, newT *pglogrepl.TupleData) (step, error) {
	if !d.inTx {
		return step{}, fmt.Errorf("pgoutput: row change at %s outside a transaction", walStart)
	}
	rel, ok := d.relations[relID]
	if !ok {
		return step{}, fmt.Errorf("pgoutput: row of relation %d at %s before its Relation message", relID, walStart)
	}
	ev := event.Envelope{
		Op: op,
		Source: event.Source{
			Version:   Version,
			Connector: "postgresql",
			Name:      d.topicPrefix,
			TsMs:      d.commitTime.UnixMilli(),
			Snapshot:  "false",
			DB:        d.db,
			Schema:    rel.schema,
			Table:     rel.table,
			TxID:      int64(d.xid),
			LSN:       int64(walStart),
		},
		TsMs: d.now().UnixMilli(),
	}
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
	}
	keySrc := ev.After
	if keySrc == nil {
		keySrc = ev.Before
	}
	c := &change{topic: rel.topic, key: rel.keyJSON(keySrc), value: ev.Encode(make([]byte, 0, 256))}
	return step{kind: stepChange, change: c}, nil
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
		if keyOnly && meta.Flags&1 == 0 {
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

// keyJSON is the Kafka key: the key columns of the row as a JSON object. A
// table without a key (REPLICA IDENTITY FULL or NOTHING) is keyed by null and
// spread over partitions by the balancer.
func (r *relation) keyJSON(row event.Row) []byte {
	if len(r.key) == 0 {
		return nil
	}
	key := make(event.Row, 0, len(r.key))
	for _, i := range r.key {
		if v, ok := row.Get(r.columns[i].Name); ok {
			key = append(key, event.Field{Name: r.columns[i].Name, Value: v})
		}
	}
	b, _ := key.MarshalJSON()
	return b
}

// textToJSON renders a value in Postgres' text output form as JSON: numbers
// and booleans natively, json/jsonb as they are, numeric and everything else
// as strings (numeric keeps its exact digits that way).
func textToJSON(oid uint32, text []byte) json.RawMessage {
	switch oid {
	case oidBool:
		if len(text) == 1 && text[0] == 't' {
			return json.RawMessage("true")
		}
		return json.RawMessage("false")
	case oidInt2, oidInt4, oidInt8, oidOID:
		return json.RawMessage(text)
	case oidFloat4, oidFloat8:
		if f, err := strconv.ParseFloat(string(text), 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			return json.RawMessage(text)
		}
	case oidJSON, oidJSONB:
		if json.Valid(text) {
			return json.RawMessage(text)
		}
	}
	return event.AppendString(make([]byte, 0, len(text)+2), text)
}

// Version is the connector's version, reported in every event's source block.
var Version = "dev"
