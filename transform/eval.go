package transform

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/transform/expr"
)

// programs evaluates the mapping's own compiled expressions (Compiled):
// the Evaluator a mapping uses unless Eval is set.
type programs struct{ m *Mapping }

// evaluator is the mapping's Evaluator.
func (m *Mapping) evaluator() Evaluator {
	if m.Eval != nil {
		return m.Eval
	}
	return programs{m}
}

// program finds the expression at key ("mapping.users.computed.vip").
func (p programs) program(key string) (*expr.Program, error) {
	rest, ok := strings.CutPrefix(key, "mapping.")
	if !ok {
		return nil, fmt.Errorf("no expression is set at %s", key)
	}
	var c *Compiled
	switch {
	case strings.HasPrefix(rest, "users.") && p.m.Users != nil:
		c, rest = p.m.Users.Compiled(), strings.TrimPrefix(rest, "users.")
	case strings.HasPrefix(rest, "devices.") && p.m.Devices != nil:
		c, rest = p.m.Devices.Compiled(), strings.TrimPrefix(rest, "devices.")
	case strings.HasPrefix(rest, "sources["):
		i, after, ok := strings.Cut(strings.TrimPrefix(rest, "sources["), "].")
		n, err := strconv.Atoi(i)
		if !ok || err != nil || n < 0 || n >= len(p.m.Sources) {
			return nil, fmt.Errorf("no expression is set at %s", key)
		}
		c, rest = p.m.Sources[n].Compiled(), after
	}
	var prg *expr.Program
	if c != nil {
		switch {
		case rest == "filter":
			prg = c.Filter
		case strings.HasPrefix(rest, "computed."):
			prg = c.Computed[strings.TrimPrefix(rest, "computed.")]
		case strings.HasPrefix(rest, "properties."):
			prg = c.Properties[strings.TrimPrefix(rest, "properties.")]
		}
	}
	if prg == nil {
		return nil, fmt.Errorf("the expression at %s does not compile: run onesignal-cdc validate for its error", key)
	}
	return prg, nil
}

func (p programs) Filter(key string, row event.Row, now time.Time) (bool, error) {
	prg, err := p.program(key)
	if err != nil {
		return false, err
	}
	ok, err := prg.Match(row, now)
	return ok, evalErr(err)
}

func (p programs) Value(key string, row event.Row, now time.Time) (json.RawMessage, error) {
	prg, err := p.program(key)
	if err != nil {
		return nil, err
	}
	v, err := prg.Eval(row, now)
	if err != nil {
		return nil, evalErr(err)
	}
	switch v.Kind() {
	case expr.Null:
		return json.RawMessage("null"), nil
	case expr.String:
		return json.Marshal(v.Tag())
	}
	// Numbers and booleans as a tag renders them: valid JSON too.
	return json.RawMessage(v.Tag()), nil
}

// evalErr makes an expression's unknown result this package's.
func evalErr(err error) error {
	if errors.Is(err, expr.ErrUnknown) {
		return fmt.Errorf("%w: %w", ErrUnknown, err)
	}
	return err
}
