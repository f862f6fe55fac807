// Package event defines the change event that travels from the connector,
// through Kafka, to the sink: one row change in a Debezium-compatible JSON
// envelope (the shape Debezium's JSON converter writes with schemas disabled).
//
// The connector builds events from pgoutput tuples and encodes them with
// Encode; the sink decodes them with Decode, which also accepts envelopes
// wrapped in Debezium's {"schema": …, "payload": …} form. docs/events.md is
// the user-facing description of this format.
package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
)

// Op is the kind of row change, with Debezium's codes.
type Op string

const (
	OpCreate   Op = "c"
	OpUpdate   Op = "u"
	OpDelete   Op = "d"
	OpSnapshot Op = "r" // a row read by a snapshot
	OpTruncate Op = "t" // the table was truncated; no row images
)

// The Kafka headers of a primary-key change, which the connector writes as
// a delete under the old key and a create under the new one, as Debezium
// names them: the delete carries the new key, the create the old one (each
// as the message key is written), so that a consumer can tell the row
// moved rather than went.
const (
	HeaderNewKey = "__debezium.newkey"
	HeaderOldKey = "__debezium.oldkey"
	// HeaderNewRow is this connector's own: the delete half also carries
	// the row after the change (its JSON object, as "after" is written),
	// so that a consumer of the old key's partition can tell where the
	// row went without the create half, on another partition. Left out
	// when the row is larger than MaxNewRowHeader.
	HeaderNewRow = "onesignal-cdc.newrow"
)

// HeaderSnapshotting marks a delete written while its table's initial
// snapshot runs (a new slot, or topics the broker lost): the row may be one
// the snapshot will never read, so a consumer that has not seen it has
// lost nothing.
const HeaderSnapshotting = "onesignal-cdc.snapshotting"

// MaxNewRowHeader bounds the HeaderNewRow header: a row larger than this is
// not copied into the delete half of its key change.
const MaxNewRowHeader = 64 << 10

// Unavailable is the value carried by a column whose value Postgres did not
// send: an unchanged TOASTed value in an update or delete under REPLICA
// IDENTITY DEFAULT. It is Debezium's placeholder, so a consumer can tell
// "unchanged, not sent" from NULL.
const Unavailable = "__debezium_unavailable_value"

// unavailableJSON is Unavailable as a JSON string.
var unavailableJSON = json.RawMessage(`"` + Unavailable + `"`)

// Field is one column of a row: its name and its value as JSON.
type Field struct {
	Name  string
	Value json.RawMessage // JSON null for SQL NULL
}

// Row is a row image in column order. It encodes as a JSON object whose
// keys keep that order.
type Row []Field

// Get returns the JSON value of the named column.
func (r Row) Get(name string) (json.RawMessage, bool) {
	for _, f := range r {
		if f.Name == name {
			return f.Value, true
		}
	}
	return nil, false
}

// IsUnavailable reports whether v is the unchanged-TOAST placeholder.
func IsUnavailable(v json.RawMessage) bool { return bytes.Equal(v, unavailableJSON) }

// UnavailableValue returns the placeholder as a JSON value.
func UnavailableValue() json.RawMessage { return unavailableJSON }

// Oversized is the value the connector sends in place of a column value too
// large for an event: a Kafka message holds about 1 MiB by default, and an
// event that big would stop the connector at the broker. The row's other
// columns are sent as they are. Unlike Unavailable it does not mean
// "unchanged": the value is known, and lost to this event; the sink refuses
// it wherever the mapping needs the value (a tag, an id, an address).
const Oversized = "__onesignal_cdc_oversized_value"

// oversizedJSON is Oversized as a JSON string.
var oversizedJSON = json.RawMessage(`"` + Oversized + `"`)

// IsOversized reports whether v is the placeholder of an oversized value.
func IsOversized(v json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(v), oversizedJSON) }

// OversizedValue returns the oversized placeholder as a JSON value. Its
// capacity is capped, so an append to it copies.
func OversizedValue() json.RawMessage { return oversizedJSON[:len(oversizedJSON):len(oversizedJSON)] }

// MarshalJSON writes the row as an object in column order.
func (r Row) MarshalJSON() ([]byte, error) {
	if r == nil {
		return []byte("null"), nil
	}
	return r.appendJSON(make([]byte, 0, 64*len(r))), nil
}

func (r Row) appendJSON(b []byte) []byte {
	b = append(b, '{')
	for i, f := range r {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendString(b, f.Name)
		b = append(b, ':')
		if len(f.Value) == 0 {
			b = append(b, "null"...)
		} else {
			b = append(b, f.Value...)
		}
	}
	return append(b, '}')
}

// UnmarshalJSON reads an object, keeping its key order.
func (r *Row) UnmarshalJSON(data []byte) error {
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		*r = nil
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("row is not a JSON object")
	}
	row := Row{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return fmt.Errorf("row: %w", err)
		}
		name, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("row column %q: %w", name, err)
		}
		row = append(row, Field{Name: name, Value: v})
	}
	*r = row
	return nil
}

// Source says where a change came from, with Debezium's field names.
type Source struct {
	Version   string `json:"version"`
	Connector string `json:"connector"`
	Name      string `json:"name"`     // the topic prefix
	TsMs      int64  `json:"ts_ms"`    // commit time of the transaction
	Snapshot  string `json:"snapshot"` // "true", "last" or "false", as Debezium writes it
	DB        string `json:"db"`
	Schema    string `json:"schema"`
	Table     string `json:"table"`
	TxID      int64  `json:"txId"`
	LSN       int64  `json:"lsn"` // LSN of the change's WAL record
	// CommitLSN is the LSN of the transaction's commit record; ordering by
	// (commit_lsn, lsn) is commit order. Not a Debezium field.
	CommitLSN int64 `json:"commit_lsn,omitempty"`
	// Sequence is Debezium's ["<LSN of the last commit it had processed>",
	// "<lsn>"], as a string; only Debezium writes it, and the connector
	// never does.
	Sequence string `json:"sequence,omitempty"`
}

// appendJSON writes the source block as encoding/json would, without its
// reflection: this runs once per event on the connector's hot path.
func (s *Source) appendJSON(b []byte) []byte {
	b = append(b, `{"version":`...)
	b = AppendString(b, s.Version)
	b = append(b, `,"connector":`...)
	b = AppendString(b, s.Connector)
	b = append(b, `,"name":`...)
	b = AppendString(b, s.Name)
	b = append(b, `,"ts_ms":`...)
	b = strconv.AppendInt(b, s.TsMs, 10)
	b = append(b, `,"snapshot":`...)
	b = AppendString(b, s.Snapshot)
	b = append(b, `,"db":`...)
	b = AppendString(b, s.DB)
	b = append(b, `,"schema":`...)
	b = AppendString(b, s.Schema)
	b = append(b, `,"table":`...)
	b = AppendString(b, s.Table)
	b = append(b, `,"txId":`...)
	b = strconv.AppendInt(b, s.TxID, 10)
	b = append(b, `,"lsn":`...)
	b = strconv.AppendInt(b, s.LSN, 10)
	if s.CommitLSN != 0 {
		b = append(b, `,"commit_lsn":`...)
		b = strconv.AppendInt(b, s.CommitLSN, 10)
	}
	return append(b, '}')
}

// Envelope is one row change.
type Envelope struct {
	Before Row    `json:"before"`
	After  Row    `json:"after"`
	Source Source `json:"source"`
	Op     Op     `json:"op"`
	TsMs   int64  `json:"ts_ms"` // when the connector produced the event
}

// Encode appends the envelope's JSON to b.
func (e *Envelope) Encode(b []byte) []byte {
	b = append(b, `{"before":`...)
	b = appendRow(b, e.Before)
	b = append(b, `,"after":`...)
	b = appendRow(b, e.After)
	b = append(b, `,"source":`...)
	b = e.Source.appendJSON(b)
	b = append(b, `,"op":`...)
	b = AppendString(b, e.Op)
	b = append(b, `,"ts_ms":`...)
	b = strconv.AppendInt(b, e.TsMs, 10)
	return append(b, '}')
}

func appendRow(b []byte, r Row) []byte {
	if r == nil {
		return append(b, "null"...)
	}
	return r.appendJSON(b)
}

// ErrTombstone is returned by Decode for a Kafka tombstone (an empty value),
// which carries no change.
var ErrTombstone = errors.New("tombstone: message has no value")

// Decode parses a change event. It accepts the bare envelope and Debezium's
// schema-wrapped form {"schema": …, "payload": envelope}.
func Decode(data []byte) (*Envelope, error) {
	if len(bytes.TrimSpace(data)) == 0 || bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return nil, ErrTombstone
	}
	var probe struct {
		Schema  json.RawMessage `json:"schema"`
		Payload json.RawMessage `json:"payload"`
		Op      Op              `json:"op"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok && te.Field != "" {
			return nil, fmt.Errorf("event envelope: %w", plainJSON(err))
		}
		return nil, fmt.Errorf("event is not a JSON object: %w", plainJSON(err))
	}
	if probe.Op == "" && len(probe.Payload) > 0 {
		if bytes.Equal(bytes.TrimSpace(probe.Payload), []byte("null")) {
			return nil, ErrTombstone // old Kafka Connect wrote tombstones as {"schema":null,"payload":null}
		}
		data = probe.Payload
	}
	var e Envelope
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("event envelope: %w", plainJSON(err))
	}
	switch e.Op {
	case OpCreate, OpSnapshot:
		if e.After == nil {
			return nil, fmt.Errorf("event op %q has no \"after\" row", e.Op)
		}
	case OpUpdate:
		if e.After == nil {
			return nil, errors.New(`event op "u" has no "after" row`)
		}
	case OpDelete:
		if e.Before == nil {
			return nil, errors.New(`event op "d" has no "before" row: set REPLICA IDENTITY on the source table`)
		}
	case OpTruncate:
	case "":
		return nil, errors.New(`event has no "op": not a Debezium change envelope`)
	default:
		return nil, fmt.Errorf("event op %q is not one of c, u, d, r, t", e.Op)
	}
	return &e, nil
}

// plainJSON words encoding/json's type errors, which name Go's types
// ("json: cannot unmarshal string into Go struct field Source.source.lsn
// of type int64"), in the event's terms: "source.lsn is a JSON string,
// not a number". Other errors are returned as they are.
func plainJSON(err error) error {
	te, ok := errors.AsType[*json.UnmarshalTypeError](err)
	if !ok {
		return err
	}
	if te.Field == "" {
		return fmt.Errorf("it is a JSON %s", te.Value)
	}
	want := "another kind of value"
	switch te.Type.Kind() {
	case reflect.String:
		want = "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		want = "a number"
	case reflect.Bool:
		want = "true or false"
	case reflect.Slice, reflect.Array:
		want = "an array"
	case reflect.Map, reflect.Struct:
		want = "an object"
	}
	return fmt.Errorf("%s is a JSON %s, not %s", te.Field, te.Value, want)
}
