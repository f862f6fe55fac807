// Package transform turns change events into OneSignal operations, following
// the user's mapping. It is pure: no I/O, no clock, so the same event always
// gives the same operations, which is what makes replays converge.
package transform

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Mapping says which tables feed OneSignal and how.
type Mapping struct {
	// Users maps a table of users: each row is one OneSignal user, found by
	// its external id, whose data tags come from the listed columns.
	Users *UsersMapping `yaml:"users"`
	// Sources are more tables that give users tags, each finding its user
	// by an external id column of its own or a foreign key to the users
	// table. A user's tags are the union of what every source's rows give.
	Sources []SourceMapping `yaml:"sources"`
	// Devices maps a table of devices: each row links one OneSignal device
	// (a player_id in the legacy API, a subscription id in the user model)
	// to the user with that external id.
	Devices *DevicesMapping `yaml:"devices"`
	// Eval evaluates the mapping's expressions (filters, computed tags,
	// property expressions); set when the mapping is compiled.
	Eval Evaluator `yaml:"-"`
}

// Reference is a foreign key to the users table: Column holds the users
// row's primary key (a single-column key).
type Reference struct {
	Column string `yaml:"column"` // the referencing column; required
	Table  string `yaml:"table"`  // "schema.table", the mapping's users table; required
	// Key is the users table's column the reference holds (its primary key,
	// or another unique column); required.
	Key string `yaml:"key"`
}

// SourceUser says how a source's row finds its user: exactly one of its
// own column holding the external id, or a foreign key to the users table.
type SourceUser struct {
	ExternalID string     `yaml:"external_id"`
	References *Reference `yaml:"references"`
}

// How a source's several rows of one user give a tag (SourceMapping.Many).
const (
	ManyLatest = "latest" // the row changed last gives it (default)
	ManyCount  = "count"  // the number of the user's rows (that pass the filter)
	ManyAny    = "any"    // "true" when any of the user's rows gives true
)

// SourceMapping is one more table that gives users tags.
type SourceMapping struct {
	Name  string     `yaml:"name"`  // for messages; default the table
	Table string     `yaml:"table"` // "schema.table"; required
	User  SourceUser `yaml:"user"`  // required
	// Filter is a CEL condition over the row: a row for which it is false
	// gives nothing, as if deleted. Default: every row.
	Filter string `yaml:"filter"`
	// Tags, Convert and Computed are as UsersMapping's.
	Tags     map[string]string `yaml:"tags"`
	Convert  map[string]string `yaml:"convert"`
	Computed map[string]string `yaml:"computed"`
	// Many is how several rows of one user give its tags: latest
	// (default), count or any.
	Many string `yaml:"many"`
}

// UsersMapping is the users table's role.
type UsersMapping struct {
	Table      string `yaml:"table"`       // "schema.table"; required
	ExternalID string `yaml:"external_id"` // column holding the external user id; required
	// Tags maps a column to the tag it becomes. An empty tag name keeps the
	// column's name.
	Tags map[string]string `yaml:"tags"`
	// Convert names, per tag column, a conversion other than the default
	// (strings as they are, numbers as written, booleans "true"/"false"):
	// "unix_seconds" turns a date or timestamp into Unix seconds, for
	// OneSignal's time operators; "flatten" turns a JSON object or array
	// into one tag per scalar inside it, "<tag>_<key>" and "<tag>_<index>".
	Convert map[string]string `yaml:"convert"`
	// Email and Phone name columns holding the user's email address and
	// phone number (E.164, e.g. "+15551234567"); each non-empty value
	// becomes an email or SMS record of the user. Optional.
	Email string `yaml:"email"`
	Phone string `yaml:"phone"`
	// Filter is a CEL condition over the row: a row for which it is false
	// is, for OneSignal, a deleted one (its tags removed, its records
	// left). Default: every row.
	Filter string `yaml:"filter"`
	// Computed maps a tag to a CEL expression over the row (its value: a
	// string, number or boolean; null deletes the tag).
	Computed map[string]string `yaml:"computed"`
	// Properties maps a user property to a column, or, written "=<CEL>",
	// to an expression. User model: language (ISO 639-1), timezone_id
	// (IANA), country (ISO 3166-1 alpha-2), lat, long; player model:
	// language, timezone (seconds from UTC), country.
	Properties map[string]string `yaml:"properties"`
	// Aliases maps an alias label to the column holding the user's alias
	// (user model; at most 20).
	Aliases map[string]string `yaml:"aliases"`
	// OnDelete is what a deleted (or filtered out) row does to its user:
	// remove_tags (default: the mapped tags go, the user stays) or
	// delete_user (OneSignal's delete user, user model only).
	OnDelete string `yaml:"on_delete"`
}

// The choices of UsersMapping.OnDelete.
const (
	OnDeleteRemoveTags = "remove_tags"
	OnDeleteDeleteUser = "delete_user"
)

// The conversions of UsersMapping.Convert.
const (
	ConvertUnixSeconds = "unix_seconds"
	ConvertFlatten     = "flatten"
)

// DevicesMapping is the devices table's role.
type DevicesMapping struct {
	Table      string `yaml:"table"`       // "schema.table"; required
	DeviceID   string `yaml:"device_id"`   // column holding the player_id / subscription id; required
	ExternalID string `yaml:"external_id"` // column holding the owner's external user id; required unless Owner
	// Owner finds the owner by a foreign key to the users table instead
	// of an external id column.
	Owner *DeviceOwner `yaml:"owner"`
	// Filter is a CEL condition over the row: a row for which it is false
	// links nothing (its device is unlinked). Default: every row.
	Filter string `yaml:"filter"`
}

// DeviceOwner is how a device row names its owner by foreign key.
type DeviceOwner struct {
	References *Reference `yaml:"references"`
}

// Tables returns the qualified names of the mapped tables.
func (m *Mapping) Tables() []string {
	var ts []string
	if m.Users != nil {
		ts = append(ts, m.Users.Table)
	}
	if m.Devices != nil && (m.Users == nil || m.Devices.Table != m.Users.Table) {
		ts = append(ts, m.Devices.Table)
	}
	return ts
}

// Columns returns, per mapped table, the columns the mapping reads from its
// rows, each with the key of the setting that names it (such as
// "mapping.users.tags"): what must exist in the table.
func (m *Mapping) Columns() map[string]map[string]string {
	out := map[string]map[string]string{}
	add := func(table, col, key string) {
		if col == "" || table == "" {
			return
		}
		if out[table] == nil {
			out[table] = map[string]string{}
		}
		if prev, ok := out[table][col]; ok && prev != key {
			key = prev + " and " + key
		}
		out[table][col] = key
	}
	if u := m.Users; u != nil {
		add(u.Table, u.ExternalID, "mapping.users.external_id")
		for _, col := range sortedKeys(u.Tags) {
			add(u.Table, col, "mapping.users.tags")
		}
		add(u.Table, u.Email, "mapping.users.email")
		add(u.Table, u.Phone, "mapping.users.phone")
	}
	if d := m.Devices; d != nil {
		add(d.Table, d.DeviceID, "mapping.devices.device_id")
		add(d.Table, d.ExternalID, "mapping.devices.external_id")
	}
	return out
}

// Validate reports every problem with the mapping at once.
func (m *Mapping) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if m.Users == nil && m.Devices == nil {
		bad("mapping: neither users nor devices is set: map at least one table")
	}
	if u := m.Users; u != nil {
		if err := checkTable(u.Table); err != nil {
			bad("mapping.users.table: %v", err)
		}
		if u.ExternalID == "" {
			bad("mapping.users.external_id is empty: name the column that holds the external user id")
		}
		seen := map[string]string{}
		for _, col := range sortedKeys(u.Tags) {
			tag := u.tagName(col)
			if prev, dup := seen[tag]; dup {
				bad("mapping.users.tags: columns %q and %q both become tag %q: rename one", prev, col, tag)
			}
			seen[tag] = col
			if col == u.ExternalID {
				bad("mapping.users.tags: %q is the external id column; it cannot also be a tag", col)
			}
		}
		if u.Email != "" && u.Email == u.Phone {
			bad("mapping.users: email and phone are both column %q: map two different columns", u.Email)
		}
		if u.Email != "" && u.Email == u.ExternalID {
			bad("mapping.users.email: %q is the external id column: name the column that holds the email address", u.Email)
		}
		if u.Phone != "" && u.Phone == u.ExternalID {
			bad("mapping.users.phone: %q is the external id column: name the column that holds the phone number", u.Phone)
		}
		for _, col := range sortedKeys(u.Convert) {
			if _, ok := u.Tags[col]; !ok {
				bad("mapping.users.convert: %q is not a tag column: add it to mapping.users.tags", col)
			}
			if c := u.Convert[col]; c != ConvertUnixSeconds && c != ConvertFlatten {
				bad("mapping.users.convert.%s: %q is not %s or %s", col, c, ConvertUnixSeconds, ConvertFlatten)
			}
		}
	}
	if d := m.Devices; d != nil {
		if err := checkTable(d.Table); err != nil {
			bad("mapping.devices.table: %v", err)
		}
		if d.DeviceID == "" {
			bad("mapping.devices.device_id is empty: name the column that holds the player_id or subscription id")
		}
		if d.ExternalID == "" {
			bad("mapping.devices.external_id is empty: name the column that holds the owner's external user id")
		}
	}
	if m.Users != nil && m.Devices != nil && m.Users.Table == m.Devices.Table && m.Users.Table != "" {
		bad("mapping: users and devices both use table %q: map two different tables", m.Users.Table)
	}
	return errors.Join(errs...)
}

func checkTable(t string) error {
	schema, table, ok := strings.Cut(t, ".")
	if t == "" {
		return errors.New(`is empty: give it as "schema.table", e.g. "public.users"`)
	}
	if !ok || schema == "" || table == "" || strings.Contains(table, ".") {
		return fmt.Errorf(`%q is not "schema.table", e.g. "public.%s"`, t, t)
	}
	return nil
}

func (u *UsersMapping) tagName(col string) string {
	if t := u.Tags[col]; t != "" {
		return t
	}
	return col
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
