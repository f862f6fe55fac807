package transform

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// Evaluator evaluates the mapping's expressions, compiled when the mapping
// is validated (package transform/expr). Keys name the setting that holds
// an expression, as messages write it: "mapping.users.filter",
// "mapping.users.computed.vip", "mapping.sources[0].filter",
// "mapping.users.properties.language", "mapping.devices.filter".
type Evaluator interface {
	// Filter reports whether row passes the filter at key; true when no
	// filter is set there.
	Filter(key string, row event.Row, now time.Time) (bool, error)
	// Value is the expression at key's value on row, as a JSON value (null
	// deletes the tag, leaves out the property).
	Value(key string, row event.Row, now time.Time) (json.RawMessage, error)
}

// ErrUnknown is wrapped by an Evaluator's error when the expression reads a
// column whose value the event did not carry (an unchanged TOAST value):
// the value is unknown, not wrong.
var ErrUnknown = errors.New("a column the expression reads was not sent (unchanged TOAST)")

// tagger is what a table gives its users' tags: columns, conversions and
// computed tags. The users table and each source have one.
type tagger struct {
	table    string
	setting  string // "mapping.users", "mapping.sources[0]"
	tags     map[string]string
	convert  map[string]string
	computed map[string]string
	many     string
}

func (m *UsersMapping) tagger() tagger {
	return tagger{table: m.Table, setting: "mapping.users", tags: m.Tags, convert: m.Convert, computed: m.Computed}
}

func (s *SourceMapping) tagger(i int) tagger {
	return tagger{table: s.Table, setting: fmt.Sprintf("mapping.sources[%d]", i), tags: s.Tags, convert: s.Convert, computed: s.Computed, many: s.Many}
}

func (t tagger) tagName(col string) string {
	if n := t.tags[col]; n != "" {
		return n
	}
	return col
}

// give puts into part the tags row gives; what the change did not carry
// is taken from was, what the row said before, else unknown.
func (t tagger) give(row event.Row, was Part, part *Part, eval Evaluator, now time.Time) error {
	for _, col := range sortedKeys(t.tags) {
		v, ok := row.Get(col)
		if !ok || event.IsUnavailable(v) {
			t.keep(col, was, part)
			continue
		}
		if err := t.conv(col, v, part.Tags); err != nil {
			return fmt.Errorf("%w: %s.%s: %v", ErrBadRow, t.table, col, err)
		}
	}
	for _, tag := range sortedKeys(t.computed) {
		key := t.setting + ".computed." + tag
		v, err := evaluate(eval, key, row, now)
		if errors.Is(err, ErrUnknown) {
			if old, ok := was.Tags[tag]; ok {
				part.Tags[tag] = old
			} else {
				part.Unknown = append(part.Unknown, tag)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrBadRow, key, err)
		}
		s, err := tagValue(v)
		if err != nil {
			return fmt.Errorf("%w: %s gives %s: %v", ErrBadRow, key, v, err)
		}
		part.Tags[tag] = s
	}
	return nil
}

// evaluate is eval.Value, with an error when the mapping's expressions
// were never compiled.
func evaluate(eval Evaluator, key string, row event.Row, now time.Time) (json.RawMessage, error) {
	if eval == nil {
		return nil, fmt.Errorf("the mapping's expressions were not compiled (validate the mapping first)")
	}
	return eval.Value(key, row, now)
}

// conv puts the tags that column col's value v becomes into tags.
func (t tagger) conv(col string, v json.RawMessage, tags map[string]string) error {
	name := t.tagName(col)
	switch t.convert[col] {
	case ConvertUnixSeconds:
		s, err := unixSeconds(v)
		if err != nil {
			return err
		}
		tags[name] = s
	case ConvertFlatten:
		return flatten(name, v, tags)
	default:
		s, err := tagValue(v)
		if errors.Is(err, errOversized) {
			return err
		}
		if err != nil {
			return fmt.Errorf("%v, or set %s.convert.%s: flatten", err, t.setting, col)
		}
		tags[name] = s
	}
	return nil
}

// keep carries over what was said of column col's tag before, when the
// change did not carry its value; without it the tag is unknown. A
// flattened column's tags are those named "<tag>_…".
func (t tagger) keep(col string, was Part, part *Part) {
	name := t.tagName(col)
	if t.convert[col] == ConvertFlatten {
		found := false
		for tag, v := range was.Tags {
			if strings.HasPrefix(tag, name+"_") {
				part.Tags[tag], found = v, true
			}
		}
		for _, tag := range was.Unknown {
			if tag == name || strings.HasPrefix(tag, name+"_") {
				part.Unknown, found = append(part.Unknown, tag), true
			}
		}
		if !found && was.Target.ID == "" {
			part.Unknown = append(part.Unknown, name)
		}
		return
	}
	if v, ok := was.Tags[name]; ok {
		part.Tags[name] = v
		return
	}
	part.Unknown = append(part.Unknown, name)
}
