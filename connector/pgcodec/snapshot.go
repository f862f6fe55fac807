package pgcodec

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"sync"

	"github.com/jackc/pglogrepl"

	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// SnapshotRow is one row a snapshot read, encoded as its event.
type SnapshotRow struct {
	// Match is the row's primary key as MatchKey renders it: what a
	// snapshot window compares with the rows the stream carried.
	Match []byte
	Key   []byte // the Kafka key
	Value []byte // the event, op "r"
}

// SnapshotCodec encodes the rows of one SELECT over a table, read in text
// form, as snapshot events: straight from their text values, as the general
// path (General) would through event.Row and encodeWithin, the same bytes
// (TestTheSnapshotCodecWritesWhatTheGeneralPathWrites), without a row, a
// field or a value allocated per column. It is not safe for concurrent use.
type SnapshotCodec struct {
	fields []string
	key    []string
	src    Source
	schema string
	table  string

	names  [][]byte // "name":
	oids   []uint32
	inKey  []bool // the field is in the Kafka key
	keyIdx []int  // per key column, in key order, its field (-1: none)
	keyed  bool
	// inOrder: every key column is a field and the fields hold them in
	// key order, so Match is built as the fields are encoded.
	inOrder bool
	// the event around its row and its numbers
	head, sourceHead, sourceMid []byte
	// tail is the event after its row, rendered for tailLSN and tailNow:
	// a chunk's rows share both, so it is rendered once per chunk and
	// millisecond, not per row.
	tail    []byte
	tailLSN pglogrepl.LSN
	tailNow int64

	keyBuf, matchBuf, slab []byte
	// blocks are the slabs the rows were carved from, which Release
	// hands on to later codecs.
	blocks []*[slabSize]byte
}

// slabs are blocks released by codecs whose rows are all written, for
// later codecs to carve from: a snapshot otherwise allocates (and zeroes)
// its events' bytes anew, half of what the connector allocated in its
// snapshot benchmark. The pool lets the GC have them back once snapshots
// stop.
var slabs sync.Pool

// block is a block of the codec's own to carve from: a released one when
// there is one.
func (c *SnapshotCodec) block() []byte {
	p, ok := slabs.Get().(*[slabSize]byte)
	if !ok {
		p = new([slabSize]byte)
	}
	c.blocks = append(c.blocks, p)
	return p[:0:slabSize]
}

// Release hands the memory of every row the codec returned on to later
// codecs, and the codec starts on new memory. Call it only once nothing
// reads those rows again: once Kafka holds every event made from them.
// Builds with the race detector overwrite the memory first (poison), so
// that a row read after its release shows in the tests.
func (c *SnapshotCodec) Release() {
	for _, p := range c.blocks {
		if poison {
			for i := range p {
				p[i] = 0xff
			}
		}
		slabs.Put(p)
	}
	c.blocks, c.slab = nil, nil
}

// NewSnapshotCodec returns the codec of rows of schema.table with the
// given fields (column names) and their type OIDs, keyed by key (the
// primary-key columns, in column order).
func NewSnapshotCodec(src Source, schema, table string, fields []string, oids []uint32, key []string) *SnapshotCodec {
	c := &SnapshotCodec{fields: fields, key: key, src: src, schema: schema, table: table, oids: oids, inKey: make([]bool, len(fields)), keyed: len(key) > 0}
	for i, f := range fields {
		c.names = append(c.names, append(event.AppendString(nil, f), ':'))
		c.inKey[i] = slices.Contains(key, f)
	}
	c.inOrder = true
	for n, k := range key {
		i := slices.Index(fields, k)
		c.keyIdx = append(c.keyIdx, i)
		if i < 0 || (n > 0 && i <= c.keyIdx[n-1]) {
			c.inOrder = false
		}
	}
	h := append([]byte(nil), `,"source":{"version":`...)
	h = event.AppendString(h, src.Version)
	h = append(h, `,"connector":"postgresql","name":`...)
	h = event.AppendString(h, src.TopicPrefix)
	h = append(h, `,"ts_ms":`...)
	m := append([]byte(nil), `,"snapshot":"true","db":`...)
	m = event.AppendString(m, src.DB)
	m = append(m, `,"schema":`...)
	m = event.AppendString(m, schema)
	m = append(m, `,"table":`...)
	m = event.AppendString(m, table)
	m = append(m, `,"txId":0,"lsn":`...)
	c.head, c.sourceHead, c.sourceMid = []byte(`{"before":null,"after":`), h, m
	return c
}

// Row encodes one row (vals[i] nil for NULL) read at lsn at time now
// (Unix milliseconds). What it returns does not share memory with vals.
func (c *SnapshotCodec) Row(vals [][]byte, lsn pglogrepl.LSN, now int64) SnapshotRow {
	if r, ok := c.fast(vals, lsn, now); ok {
		return r
	}
	return c.general(vals, lsn, now)
}

// Event is the event of a row, as Row encodes it, for a caller that keeps
// it: its values are copies, not vals. Encode gives its bytes and Key its
// Kafka key.
func (c *SnapshotCodec) Event(vals [][]byte, lsn pglogrepl.LSN, now int64) *event.Envelope {
	row := make(event.Row, len(c.fields))
	for i := range c.fields {
		v := json.RawMessage("null")
		if vals[i] != nil {
			// textToJSON keeps a number's text as it is: the row must own it.
			v = textToJSON(c.oids[i], bytes.Clone(vals[i]))
		}
		row[i] = event.Field{Name: c.fields[i], Value: v}
	}
	return &event.Envelope{
		Op:    event.OpSnapshot,
		After: row,
		Source: event.Source{
			Version: c.src.Version, Connector: "postgresql", Name: c.src.TopicPrefix, TsMs: now,
			Snapshot: "true", DB: c.src.DB, Schema: c.schema, Table: c.table, LSN: int64(lsn),
		},
		TsMs: now,
	}
}

// general encodes a row through event.Row and encodeWithin: the path for
// an event over the limit, which takes its largest values out.
func (c *SnapshotCodec) general(vals [][]byte, lsn pglogrepl.LSN, now int64) SnapshotRow {
	ev := c.Event(vals, lsn, now)
	return SnapshotRow{Match: []byte(MatchKey(ev.After, c.key)), Key: Key(ev.After, c.key), Value: Encode(ev, c.key)}
}

// tailOf is what follows an event's row: the row's end, the source and
// the event's own ts_ms.
func (c *SnapshotCodec) tailOf(lsn pglogrepl.LSN, now int64) []byte {
	if c.tail != nil && lsn == c.tailLSN && now == c.tailNow {
		return c.tail
	}
	t := append(c.tail[:0], '}')
	t = append(t, c.sourceHead...)
	t = strconv.AppendInt(t, now, 10)
	t = append(t, c.sourceMid...)
	t = strconv.AppendInt(t, int64(lsn), 10)
	t = append(t, `},"op":"r","ts_ms":`...)
	t = strconv.AppendInt(t, now, 10)
	t = append(t, '}')
	c.tail, c.tailLSN, c.tailNow = t, lsn, now
	return t
}

// fast encodes a row straight from its text values. ok is false for an
// event over maxEventBytes, which general shortens.
//
// The event is written straight into the slab it is carved from: only
// an event that outgrows the slab's free space moves (append gives it a
// block of its own).
func (c *SnapshotCodec) fast(vals [][]byte, lsn pglogrepl.LSN, now int64) (r SnapshotRow, ok bool) {
	if cap(c.slab)-len(c.slab) < slabSize/8 {
		c.slab = c.block()
	}
	free := c.slab[len(c.slab):]
	b, k, m := free, c.keyBuf[:0], c.matchBuf[:0]
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
			if c.inOrder {
				m = append(m, b[start:]...)
				m = append(m, 0)
			}
		}
	}
	b = append(b, c.tailOf(lsn, now)...)
	if len(b) > maxEventBytes {
		return SnapshotRow{}, false
	}
	if cap(b) == cap(free) {
		c.slab = c.slab[:len(c.slab)+len(b)] // b is the slab's next bytes
	}
	r.Value = b[:len(b):len(b)]
	if c.keyed {
		k = append(k, '}')
		r.Key = carve(&c.slab, k, c.block)
	}
	c.keyBuf = k
	if !c.inOrder {
		// MatchKey: each key column's JSON value and a NUL, in key order.
		// The values are in the event: find them again by rendering each.
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
	}
	r.Match, c.matchBuf = carve(&c.slab, m, c.block), m
	return r, true
}
