package pgcodec

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
func (c *rowCodec) sourceParts(d *Decoder, r *relation) {
	if c.sourceHead != nil {
		return
	}
	h := append([]byte(nil), `{"version":`...)
	h = event.AppendString(h, d.src.Version)
	h = append(h, `,"connector":"postgresql","name":`...)
	h = event.AppendString(h, d.src.TopicPrefix)
	h = append(h, `,"ts_ms":`...)
	m := append([]byte(nil), `,"snapshot":"false","db":`...)
	m = event.AppendString(m, d.src.DB)
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
func (d *Decoder) fastRow(walStart pglogrepl.LSN, data []byte) (st Step, ok bool) {
	if d.general || !d.inTx || len(data) < 6 {
		return Step{}, false
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
		return Step{}, false
	}
	rel := d.relations[binary.BigEndian.Uint32(data[1:5])]
	if rel == nil {
		return Step{}, false
	}
	switch {
	case data[5] == 'N' && op != event.OpDelete:
	case data[5] == 'K' && op == event.OpDelete:
	default:
		return Step{}, false
	}
	c := rel.rowCodec()
	c.sourceParts(d, rel)

	b, k := d.buf[:0], d.keyBuf[:0]
	var end int
	b = append(b, `{"before":`...)
	if op == event.OpDelete {
		if b, k, end, ok = c.row(b, k, data, 6, true); !ok {
			return Step{}, false
		}
		b = append(b, `,"after":null`...)
	} else {
		b = append(b, `null,"after":`...)
		if b, k, end, ok = c.row(b, k, data, 6, false); !ok {
			return Step{}, false
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
		return Step{}, false
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
		return Step{}, false // encodeWithin takes the largest values out
	}

	var key []byte
	if c.keyed {
		key = carve(&d.slab, k, newSlab)
	}
	d.one = Change{Topic: rel.topic, Key: key, Value: carve(&d.slab, b, newSlab), Op: op, Table: rel.name, KeyCols: rel.key}
	if d.oneStep == nil {
		d.oneStep = []*Change{&d.one}
	}
	return Step{Kind: StepChanges, Changes: d.oneStep}, true
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

// carve copies p into the block *slab, or into a new one, from fresh,
// when it is full.
func carve(slab *[]byte, p []byte, fresh func() []byte) []byte {
	if len(p) > slabSize/4 {
		return append([]byte(nil), p...)
	}
	if cap(*slab)-len(*slab) < len(p) {
		*slab = fresh()
	}
	n := len(*slab)
	*slab = append(*slab, p...)
	return (*slab)[n : n+len(p) : n+len(p)]
}

// newSlab is a new block, from the heap: the GC frees it with the last
// event carved from it.
func newSlab() []byte { return make([]byte, 0, slabSize) }
