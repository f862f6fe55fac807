package transform

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// What leaves PostgreSQL. The connector publishes of each table only what
// the mapping reads of it (PostgreSQL 15 column lists), and, where the
// mapping's filter has an SQL form, only the rows it keeps (row filters).
// The transform still applies every filter itself: a row filter only saves
// decoding rows the transform would drop.

// sqlFilter is what an Evaluator offers when it can write a filter as a
// PostgreSQL boolean expression over a table whose columns have the given
// types (format_type names, as the catalog gives them): ok is false when
// the filter at key has no exact SQL equivalent on those types. The
// mapping's own compiled expressions offer it (expr.Program.SQLFor).
type sqlFilter interface {
	SQL(key string, types map[string]string) (sql string, ok bool)
}

// SQL is the filter at key in PostgreSQL's words, for a table of the
// given column types.
func (p programs) SQL(key string, types map[string]string) (string, bool) {
	prg, err := p.program(key)
	if err != nil {
		return "", false
	}
	return prg.SQLFor(types)
}

// role is one part the mapping gives a table: the users table, a source,
// or the devices table.
type role struct {
	filterKey string // "mapping.users.filter", "mapping.sources[0].filter", …
	filter    string // the CEL text; "" when every row passes
}

// roles lists the parts table plays in the mapping.
func (m *Mapping) roles(table string) []role {
	var rs []role
	if u := m.Users; u != nil && u.Table == table {
		rs = append(rs, role{"mapping.users.filter", u.Filter})
	}
	for i := range m.Sources {
		if s := &m.Sources[i]; s.Table == table {
			rs = append(rs, role{fmt.Sprintf("mapping.sources[%d].filter", i), s.Filter})
		}
	}
	if d := m.Devices; d != nil && d.Table == table {
		rs = append(rs, role{"mapping.devices.filter", d.Filter})
	}
	return rs
}

// Publish returns what the publication should carry of table ("schema.table"):
// the columns the mapping reads of its rows, sorted (nil: every column, as
// for a table the mapping does not name), and the table's filter as a
// PostgreSQL boolean expression, given the table's column types (by
// name, as format_type writes them): "" when the filter has no exact SQL
// form on those types. rowFilter is nil when some part of the mapping
// reads every row of the table. A table that several parts of the mapping
// read (the users table and a source, say) publishes a row that any of
// them keeps. The connector adds the primary key and the replica identity
// to the columns, and pushes the filter down only where PostgreSQL allows
// it.
func (m *Mapping) Publish(table string) (columns []string, rowFilter func(types map[string]string) string) {
	rs := m.roles(table)
	if len(rs) == 0 {
		return nil, nil
	}
	set := map[string]bool{}
	for col := range m.Columns()[table] {
		set[col] = true
	}
	add := func(cols ...string) {
		for _, c := range cols {
			if c != "" {
				set[c] = true
			}
		}
	}
	if u := m.Users; u != nil && u.Table == table {
		add(u.ExternalID, u.Email, u.Phone)
		add(sortedKeys(u.Tags)...)
		for _, src := range u.Properties {
			if !strings.HasPrefix(src, "=") {
				add(src)
			}
		}
		for _, col := range u.Aliases {
			add(col)
		}
		add(m.referencedKeys()...) // what other tables' rows name a users row by
	}
	for i := range m.Sources {
		s := &m.Sources[i]
		if s.Table != table {
			continue
		}
		add(sortedKeys(s.Tags)...)
		add(s.User.ExternalID)
		if r := s.User.References; r != nil {
			add(r.Column)
		}
	}
	if d := m.Devices; d != nil && d.Table == table {
		add(d.DeviceID, d.ExternalID)
		if d.Owner != nil && d.Owner.References != nil {
			add(d.Owner.References.Column)
		}
	}
	columns = make([]string, 0, len(set))
	for c := range set {
		columns = append(columns, c)
	}
	slices.Sort(columns)
	for _, r := range rs {
		if r.filter == "" {
			return columns, nil // this part reads every row
		}
	}
	return columns, func(types map[string]string) string { return m.rowFilter(rs, types) }
}

// rowFilter is the SQL form of the roles' filters: a row is published when
// any role keeps it. "" when a role keeps every row, or a filter has no
// SQL form.
func (m *Mapping) rowFilter(rs []role, types map[string]string) string {
	sf, ok := m.evaluator().(sqlFilter)
	if !ok {
		return ""
	}
	var parts []string
	for _, r := range rs {
		if r.filter == "" {
			return ""
		}
		sql, ok := sf.SQL(r.filterKey, types)
		if !ok || strings.TrimSpace(sql) == "" {
			return ""
		}
		parts = append(parts, sql)
	}
	if len(parts) == 1 {
		return parts[0]
	}
	slices.Sort(parts) // the same filter whatever order the roles are in
	parts = slices.Compact(parts)
	if len(parts) == 1 {
		return parts[0]
	}
	return "(" + strings.Join(parts, ") OR (") + ")"
}

// Fingerprint is a stable hash of what the mapping reads of table and how
// it turns its rows into OneSignal state: every setting of each part the
// table plays (columns, tags, conversions, expressions as text, filters,
// keys), and the columns other tables' rows name its rows by. The
// connector keeps it per table and snapshots a table again when it
// changes, so that every row's projection follows the new mapping. Names
// given only for messages, the order of sources, and settings left at
// their zero value do not count, so a release that adds a setting does
// not change it. "" for a table the mapping does not name.
func (m *Mapping) Fingerprint(table string) string {
	if len(m.roles(table)) == 0 {
		return ""
	}
	var parts []string
	if u := m.Users; u != nil && u.Table == table {
		parts = append(parts, "users "+canonical(u))
		if keys := m.referencedKeys(); len(keys) > 0 {
			parts = append(parts, "referenced by "+canonical(keys))
		}
	}
	var sources []string
	for i := range m.Sources {
		if s := m.Sources[i]; s.Table == table {
			s.Name = "" // for messages only
			sources = append(sources, "source "+canonical(&s))
		}
	}
	slices.Sort(sources)
	parts = append(parts, sources...)
	if d := m.Devices; d != nil && d.Table == table {
		parts = append(parts, "devices "+canonical(d))
	}
	sum := sha256.Sum256([]byte("v1\n" + strings.Join(parts, "\n")))
	return hex.EncodeToString(sum[:16])
}

// canonical renders v, the mapping's settings, as JSON: struct fields by
// their YAML names, those left at their zero value (or empty) left out,
// maps with sorted keys.
func canonical(v any) string {
	b, err := json.Marshal(settings(reflect.ValueOf(v)))
	if err != nil {
		return fmt.Sprintf("%#v", v) // the mapping's settings always marshal
	}
	return string(b)
}

func settings(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return settings(v.Elem())
	case reflect.Struct:
		out := map[string]any{}
		for i := 0; i < v.NumField(); i++ {
			f, fv := v.Type().Field(i), v.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "-" || empty(fv) {
				continue
			}
			if name == "" {
				name = f.Name
			}
			out[name] = settings(fv)
		}
		return out
	}
	return v.Interface()
}

func empty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Map, reflect.Slice:
		return v.Len() == 0
	}
	return v.IsZero()
}
