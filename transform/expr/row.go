package expr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"

	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// rowMap is the row variable: the columns of a row image, each converted
// from its JSON when the expression reads it. A column whose value the
// event does not carry reads as CEL's unknown, which the interpreter
// carries through to the result unless the result does not depend on it
// (false && x); a column left out for its size reads as an error.
type rowMap struct {
	row event.Row
}

func newRow(r event.Row) *rowMap { return &rowMap{row: r} }

var (
	_ traits.Mapper = (*rowMap)(nil)
	_ traits.Mapper = (*object)(nil)
)

func (m *rowMap) Find(key ref.Val) (ref.Val, bool) {
	name, ok := key.(types.String)
	if !ok {
		return types.NewErr("a column name is a string, not %s", describeType(key.Type().TypeName())), false
	}
	raw, ok := m.row.Get(string(name))
	if !ok {
		return nil, false
	}
	switch {
	case event.IsUnavailable(raw):
		return types.NewUnknown(0, types.NewAttributeTrail(rowVar)), true
	case event.IsOversized(raw):
		return types.WrapErr(fmt.Errorf("column %q: %w", string(name), ErrOversized)), true
	}
	v, err := fromJSON(raw)
	if err != nil {
		return types.NewErr("column %q holds %s, which is not JSON: %v", string(name), raw, err), true
	}
	return v, true
}

func (m *rowMap) Get(key ref.Val) ref.Val {
	v, found := m.Find(key)
	if !found {
		return noColumn(key)
	}
	return v
}

func noColumn(key ref.Val) ref.Val {
	if s, ok := key.(types.String); ok {
		return types.NewErr("the row has no column %q", string(s))
	}
	return types.NewErr("the row has no column %v", key)
}

func (m *rowMap) Contains(key ref.Val) ref.Val {
	v, found := m.Find(key)
	if v != nil && types.IsError(v) && !found {
		return v
	}
	return types.Bool(found)
}

func (m *rowMap) Size() ref.Val { return types.Int(len(m.row)) }

func (m *rowMap) Iterator() traits.Iterator {
	keys := make([]string, len(m.row))
	for i, f := range m.row {
		keys[i] = f.Name
	}
	return &keyIterator{keys: keys}
}

func (m *rowMap) ConvertToNative(t reflect.Type) (any, error) {
	return nil, fmt.Errorf("the row cannot become %v", t)
}

func (m *rowMap) ConvertToType(t ref.Type) ref.Val {
	switch t {
	case types.MapType:
		return m
	case types.TypeType:
		return types.MapType
	}
	return types.NewErr("the row cannot become %s", t.TypeName())
}

func (m *rowMap) Equal(other ref.Val) ref.Val { return mapsEqual(m, other) }
func (m *rowMap) Type() ref.Type              { return types.MapType }
func (m *rowMap) Value() any                  { return m.row }

// object is a JSON object: its keys in sorted order, so that iterating it
// (obj.map(k, k)) gives the same list every time.
type object struct {
	keys []string
	vals map[string]ref.Val
}

func (o *object) Find(key ref.Val) (ref.Val, bool) {
	s, ok := key.(types.String)
	if !ok {
		return nil, false
	}
	v, ok := o.vals[string(s)]
	return v, ok
}

func (o *object) Get(key ref.Val) ref.Val {
	if v, ok := o.Find(key); ok {
		return v
	}
	return types.NewErr("no such key: %v", key)
}

func (o *object) Contains(key ref.Val) ref.Val {
	_, ok := o.Find(key)
	return types.Bool(ok)
}

func (o *object) Size() ref.Val               { return types.Int(len(o.keys)) }
func (o *object) Iterator() traits.Iterator   { return &keyIterator{keys: o.keys} }
func (o *object) Equal(other ref.Val) ref.Val { return mapsEqual(o, other) }
func (o *object) Type() ref.Type              { return types.MapType }
func (o *object) Value() any                  { return o.vals }
func (o *object) ConvertToType(t ref.Type) ref.Val {
	switch t {
	case types.MapType:
		return o
	case types.TypeType:
		return types.MapType
	}
	return types.NewErr("a JSON object cannot become %s", t.TypeName())
}

func (o *object) ConvertToNative(t reflect.Type) (any, error) {
	if t.Kind() == reflect.Interface || (t.Kind() == reflect.Map && t.Key().Kind() == reflect.String) {
		mt := t
		if t.Kind() == reflect.Interface {
			mt = reflect.TypeFor[map[string]any]()
		}
		out := reflect.MakeMapWithSize(mt, len(o.keys))
		for _, k := range o.keys {
			v, err := o.vals[k].ConvertToNative(mt.Elem())
			if err != nil {
				return nil, err
			}
			out.SetMapIndex(reflect.ValueOf(k).Convert(mt.Key()), reflect.ValueOf(v))
		}
		return out.Interface(), nil
	}
	return nil, fmt.Errorf("a JSON object cannot become %v", t)
}

// mapsEqual is CEL's map equality: the same keys, with equal values.
func mapsEqual(m traits.Mapper, other ref.Val) ref.Val {
	o, ok := other.(traits.Mapper)
	if !ok {
		return types.False
	}
	if m.Size().Equal(o.Size()) != types.True {
		return types.False
	}
	it := m.Iterator()
	for it.HasNext() == types.True {
		k := it.Next()
		a, _ := m.Find(k)
		b, found := o.Find(k)
		if !found {
			return types.False
		}
		if eq := types.Equal(a, b); eq != types.True {
			return eq // False, or the error or unknown that one side is
		}
	}
	return types.True
}

// keyIterator goes through a map's keys in a fixed order.
type keyIterator struct {
	keys []string
	i    int
}

func (it *keyIterator) HasNext() ref.Val { return types.Bool(it.i < len(it.keys)) }
func (it *keyIterator) Next() ref.Val {
	if it.i >= len(it.keys) {
		return types.NewErr("no more keys")
	}
	it.i++
	return types.String(it.keys[it.i-1])
}
func (it *keyIterator) ConvertToNative(t reflect.Type) (any, error) {
	return nil, fmt.Errorf("an iterator cannot become %v", t)
}
func (it *keyIterator) ConvertToType(ref.Type) ref.Val {
	return types.NewErr("an iterator has no other type")
}
func (it *keyIterator) Equal(ref.Val) ref.Val { return types.False }
func (it *keyIterator) Type() ref.Type        { return types.IteratorType }
func (it *keyIterator) Value() any            { return nil }

// fromJSON converts a column value as the connector writes it: null,
// true and false, a string, a number (an int when it is a whole number
// that fits, else a double), or, from json and jsonb columns and arrays,
// objects and arrays, which become maps and lists.
func fromJSON(raw json.RawMessage) (ref.Val, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return types.NullValue, nil
	}
	switch raw[0] {
	case 'n':
		if string(raw) == "null" {
			return types.NullValue, nil
		}
	case 't':
		if string(raw) == "true" {
			return types.True, nil
		}
	case 'f':
		if string(raw) == "false" {
			return types.False, nil
		}
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		return types.String(s), nil
	case '[':
		var elems []json.RawMessage
		if err := json.Unmarshal(raw, &elems); err != nil {
			return nil, err
		}
		vals := make([]ref.Val, len(elems))
		for i, e := range elems {
			v, err := fromJSON(e)
			if err != nil {
				return nil, err
			}
			vals[i] = v
		}
		return types.NewRefValList(types.DefaultTypeAdapter, vals), nil
	case '{':
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(raw, &fields); err != nil {
			return nil, err
		}
		o := &object{keys: make([]string, 0, len(fields)), vals: make(map[string]ref.Val, len(fields))}
		for k, e := range fields {
			v, err := fromJSON(e)
			if err != nil {
				return nil, err
			}
			o.keys = append(o.keys, k)
			o.vals[k] = v
		}
		sort.Strings(o.keys)
		return o, nil
	default:
		if !json.Valid(raw) {
			break
		}
		if i, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
			return types.Int(i), nil
		}
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return nil, err
		}
		if f == math.Trunc(f) && f >= -(1<<63) && f < 1<<63 {
			return types.Int(int64(f)), nil // 1e3, 10.0: whole numbers
		}
		return types.Double(f), nil
	}
	return nil, fmt.Errorf("%.40s is not a JSON value", raw)
}
