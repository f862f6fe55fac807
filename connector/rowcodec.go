package connector

import (
	"encoding/binary"
	"slices"
	"strconv"

	"github.com/jackc/pglogrepl"

	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// The common row changes (an INSERT, an UPDATE that kept the key, a DELETE
// under the default replica identity) are encoded straight from the
// message's bytes into the event's JSON, with what is constant per table
// worked out once per Relation message: no pgoutput message, tuple or
// event.Row is built, and an event costs two allocations, its key and its
// value, carved from a shared block. Everything else (a key change,
// REPLICA IDENTITY FULL, an oversized event, anything malformed, a snapshot
// window open on the stream) takes the general path in decode.go, which
// makes the same bytes: TestTheRowCodecWritesWhatTheGeneralPathWrites and
// FuzzDecode hold the two to that.

// rowCodec is what the encoder needs of a relation.
type rowCodec struct {
	cols []colCodec
	// source is the source block around its per-event numbers:
	// {"version":…,"name":…,"ts_ms": | ts | ,"snapshot":"false",…,"txId": | xid …
	sourceHead, sourceMid []byte
	// pad is the columns the relation lacks, written as not sent.
	pad   []byte
	keyed bool // events have a key
}

type colCodec struct {
	name  []byte // "name":
	oid   uint32
	ident bool // in the replica identity: present in a 'K' tuple
	keep  bool // events carry it
	key   bool // in the Kafka key
}

// codec returns the relation's codec, built on first use.
func (r *relation) rowCodec() *rowCodec {
	if r.codec != nil {
		return r.codec
	}
	c := &rowCodec{cols: make([]colCodec, len(r.columns)), keyed: len(r.key) > 0}
	for i, m := range r.columns {
		c.cols[i] = colCodec{
			name:  append(event.AppendString(nil, m.Name), ':'),
			oid:   m.DataType,
			ident: m.Flags&1 != 0,
			keep:  r.keep == nil || r.keep[i],
			key:   slices.Contains(r.key, m.Name),
		}
	}
	for _, name := range r.pad {
		c.pad = append(c.pad, ',')
		c.pad = event.AppendString(c.pad, name)
		c.pad = append(c.pad, ':')
		c.pad = append(c.pad, event.UnavailableValue()...)
	}
	r.codec = c
	return c
}

// sourceParts renders the source block's constant parts for the decoder's
// database, prefix and version.
func (c *rowCodec) sourceParts(d *decoder, r *relation) {
	if c.sourceHead != nil {
		return
	}
	h := append([]byte(nil), `{"version":`...)
	h = event.AppendString(h, d.version)
	h = append(h, `,"connector":"postgresql","name":`...)
	h = event.AppendString(h, d.topicPrefix)
	h = append(h, `,"ts_ms":`...)
	m := append([]byte(nil), `,"snapshot":"false","db":`...)
	m = event.AppendString(m, d.db)
	m = append(m, `,"schema":`...)
	m = event.AppendString(m, r.schema)
	m = append(m, `,"table":`...)
	m = event.AppendString(m, r.table)
	m = append(m, `,"txId":`...)
	c.sourceHead, c.sourceMid = h, m
}

// fastRow encodes an Insert, an Update without an old tuple or a Delete
// with a key tuple, when the general path is not needed. ok is false when
// it is: the caller then decodes the message as decode.go does.
func (d *decoder) fastRow(walStart pglogrepl.LSN, data []byte) (st step, ok bool) {
	if d.general || !d.inTx || len(data) < 6 {
		return step{}, false
	}
	var op event.Op
	switch data[0] {
	case 'I':
		op = event.OpCreate
	case 'U':
		op = event.OpUpdate
	case 'D':
		op = event.OpDelete
	default:
		return step{}, false
	}
	rel := d.relations[binary.BigEndian.Uint32(data[1:5])]
	if rel == nil {
		return step{}, false
	}
	switch {
	case data[5] == 'N' && op != event.OpDelete:
	case data[5] == 'K' && op == event.OpDelete:
	default:
		return step{}, false
	}
	c := rel.rowCodec()
	c.sourceParts(d, rel)

	b, k := d.buf[:0], d.keyBuf[:0]
	var end int
	b = append(b, `{"before":`...)
	if op == event.OpDelete {
		if b, k, end, ok = c.row(b, k, data, 6, true); !ok {
			return step{}, false
		}
		b = append(b, `,"after":null`...)
	} else {
		b = append(b, `null,"after":`...)
		if b, k, end, ok = c.row(b, k, data, 6, false); !ok {
			return step{}, false
		}
		if len(c.pad) > 0 {
			pad := c.pad
			if b[len(b)-2] == '{' { // no column of its own
				pad = pad[1:]
			}
			b = append(b[:len(b)-1], pad...)
			b = append(b, '}')
		}
	}
	if end != len(data) {
		return step{}, false
	}
	b = append(b, `,"source":`...)
	b = append(b, c.sourceHead...)
	b = strconv.AppendInt(b, d.commitTime.UnixMilli(), 10)
	b = append(b, c.sourceMid...)
	b = strconv.AppendInt(b, int64(d.xid), 10)
	b = append(b, `,"lsn":`...)
	b = strconv.AppendInt(b, int64(walStart), 10)
	if d.commitLSN != 0 {
		b = append(b, `,"commit_lsn":`...)
		b = strconv.AppendInt(b, int64(d.commitLSN), 10)
	}
	b = append(b, `},"op":"`...)
	b = append(b, op...)
	b = append(b, `","ts_ms":`...)
	b = strconv.AppendInt(b, d.now().UnixMilli(), 10)
	b = append(b, '}')
	d.buf, d.keyBuf = b, k
	if cap(d.buf) > 4*maxEventBytes {
		d.buf = nil // do not keep a huge row's buffer
	}
	if len(b) > maxEventBytes {
		return step{}, false // encodeWithin takes the largest values out
	}

	var key []byte
	if c.keyed {
		key = d.carve(k)
	}
	d.one = change{topic: rel.topic, key: key, value: d.carve(b), op: op, table: rel.name, keyCols: rel.key}
	if d.oneStep == nil {
		d.oneStep = []*change{&d.one}
	}
	return step{kind: stepChanges, changes: d.oneStep}, true
}

// row appends the JSON object of the tuple at data[pos:] and, when the
// relation is keyed, its key object to k. keyOnly is a 'K' tuple, whose
// non-identity columns are nulls and left out. It returns where the tuple
// ended; ok is false for a tuple the general path must handle (a column
// count that is not the relation's, binary data, a short message).
func (c *rowCodec) row(b, k, data []byte, pos int, keyOnly bool) (_, _ []byte, end int, ok bool) {
	if pos+2 > len(data) {
		return b, k, 0, false
	}
	n := int(binary.BigEndian.Uint16(data[pos:]))
	pos += 2
	if n != len(c.cols) {
		return b, k, 0, false
	}
	b = append(b, '{')
	if c.keyed {
		k = append(k, '{')
	}
	first, firstKey := true, true
	for i := range n {
		if pos >= len(data) {
			return b, k, 0, false
		}
		kind := data[pos]
		pos++
		var text []byte
		switch kind {
		case 'n', 'u':
		case 't':
			if pos+4 > len(data) {
				return b, k, 0, false
			}
			size := uint64(binary.BigEndian.Uint32(data[pos:]))
			pos += 4
			if size > uint64(len(data)-pos) {
				return b, k, 0, false
			}
			text = data[pos : pos+int(size)]
			pos += int(size)
		default:
			return b, k, 0, false
		}
		col := &c.cols[i]
		if keyOnly && !col.ident || !col.keep {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, col.name...)
		start := len(b)
		switch kind {
		case 'n':
			b = append(b, "null"...)
		case 'u':
			b = append(b, event.UnavailableValue()...)
		default:
			b = appendJSON(b, col.oid, text)
		}
		if c.keyed && col.key {
			if !firstKey {
				k = append(k, ',')
			}
			firstKey = false
			k = append(k, col.name...)
			k = append(k, b[start:]...)
		}
	}
	b = append(b, '}')
	if c.keyed {
		k = append(k, '}')
	}
	return b, k, pos, true
}

// slabSize is the block events' keys and values are carved from: one
// allocation for a hundred events or so, freed when the last of them is
// written.
const slabSize = 64 << 10

// carve copies p into the decoder's current block.
func (d *decoder) carve(p []byte) []byte {
	if len(p) > slabSize/4 {
		return append([]byte(nil), p...)
	}
	if cap(d.slab)-len(d.slab) < len(p) {
		d.slab = make([]byte, 0, slabSize)
	}
	n := len(d.slab)
	d.slab = append(d.slab, p...)
	return d.slab[n : n+len(p) : n+len(p)]
}

// snapshotCodec encodes the rows of a snapshot chunk straight from their
// text values, as read() would through event.Row and encodeWithin: the
// same bytes (TestTheSnapshotCodecWritesWhatTheGeneralPathWrites), without
// a row, a field or a value allocated per column.
type snapshotCodec struct {
	names  [][]byte // "name":
	oids   []uint32
	inKey  []bool // the field is in the Kafka key
	keyIdx []int  // per key column, in key order, its field (-1: none)
	keyed  bool
	// the event around its row and its numbers
	head, sourceHead, sourceMid []byte

	buf, keyBuf, matchBuf, slab []byte
}

func newSnapshotCodec(fields []string, oids []uint32, key []string, version, prefix, db, schema, table string) *snapshotCodec {
	c := &snapshotCodec{oids: oids, inKey: make([]bool, len(fields)), keyed: len(key) > 0}
	for i, f := range fields {
		c.names = append(c.names, append(event.AppendString(nil, f), ':'))
		c.inKey[i] = slices.Contains(key, f)
	}
	for _, k := range key {
		c.keyIdx = append(c.keyIdx, slices.Index(fields, k))
	}
	h := append([]byte(nil), `,"source":{"version":`...)
	h = event.AppendString(h, version)
	h = append(h, `,"connector":"postgresql","name":`...)
	h = event.AppendString(h, prefix)
	h = append(h, `,"ts_ms":`...)
	m := append([]byte(nil), `,"snapshot":"true","db":`...)
	m = event.AppendString(m, db)
	m = append(m, `,"schema":`...)
	m = event.AppendString(m, schema)
	m = append(m, `,"table":`...)
	m = event.AppendString(m, table)
	m = append(m, `,"txId":0,"lsn":`...)
	c.head, c.sourceHead, c.sourceMid = []byte(`{"before":null,"after":`), h, m
	return c
}

// row encodes one row (vals[i] nil for NULL) read at lsn at time now. ok
// is false for an event over maxEventBytes, which the caller encodes with
// encodeWithin.
func (c *snapshotCodec) row(vals [][]byte, lsn pglogrepl.LSN, now int64) (r snapRow, ok bool) {
	b, k := c.buf[:0], c.keyBuf[:0]
	b = append(b, c.head...)
	b = append(b, '{')
	if c.keyed {
		k = append(k, '{')
	}
	firstKey := true
	for i, v := range vals {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, c.names[i]...)
		start := len(b)
		if v == nil {
			b = append(b, "null"...)
		} else {
			b = appendJSON(b, c.oids[i], v)
		}
		if c.keyed && c.inKey[i] {
			if !firstKey {
				k = append(k, ',')
			}
			firstKey = false
			k = append(k, c.names[i]...)
			k = append(k, b[start:]...)
		}
	}
	b = append(b, '}')
	b = append(b, c.sourceHead...)
	b = strconv.AppendInt(b, now, 10)
	b = append(b, c.sourceMid...)
	b = strconv.AppendInt(b, int64(lsn), 10)
	b = append(b, `},"op":"r","ts_ms":`...)
	b = strconv.AppendInt(b, now, 10)
	b = append(b, '}')
	c.buf = b
	if cap(c.buf) > 4*maxEventBytes {
		c.buf = nil
	}
	if len(b) > maxEventBytes {
		return snapRow{}, false
	}
	if c.keyed {
		k = append(k, '}')
		r.key = c.carve(k)
	}
	c.keyBuf = k
	r.value = c.carve(b)
	// matchKey: each key column's JSON value and a NUL, in key order. The
	// values are in the event: find them again by rendering each.
	m := c.matchBuf[:0]
	for _, i := range c.keyIdx {
		if i >= 0 {
			if vals[i] == nil {
				m = append(m, "null"...)
			} else {
				m = appendJSON(m, c.oids[i], vals[i])
			}
		}
		m = append(m, 0)
	}
	r.match, c.matchBuf = string(m), m
	return r, true
}

func (c *snapshotCodec) carve(p []byte) []byte {
	if len(p) > slabSize/4 {
		return append([]byte(nil), p...)
	}
	if cap(c.slab)-len(c.slab) < len(p) {
		c.slab = make([]byte, 0, slabSize)
	}
	n := len(c.slab)
	c.slab = append(c.slab, p...)
	return c.slab[n : n+len(p) : n+len(p)]
}
