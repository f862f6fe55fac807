// Package transform turns change events into OneSignal operations, following
// the user's mapping. It is pure: no I/O, no clock, so the same event always
// gives the same operations, which is what makes replays converge.
package transform

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/onesignal-cdc/onesignal-cdc/transform/expr"
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

	compiled *Compiled // by Validate
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

	compiled *Compiled // by Validate
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

	compiled *Compiled // by Validate
}

// OwnerReference is the foreign key that finds a device's owner, or nil
// when the owner is found by mapping.devices.external_id: an owner whose
// references are left empty ({column: "", table: ""}) is not set.
func (d *DevicesMapping) OwnerReference() *Reference {
	if d.Owner == nil || d.Owner.References == nil || *d.Owner.References == (Reference{}) {
		return nil
	}
	return d.Owner.References
}

// DeviceOwner is how a device row names its owner by foreign key.
type DeviceOwner struct {
	References *Reference `yaml:"references"`
}

// Tables returns the qualified names of the mapped tables: the users
// table, the sources' tables and the devices table, each once.
func (m *Mapping) Tables() []string {
	var ts []string
	add := func(t string) {
		if t != "" && !slices.Contains(ts, t) {
			ts = append(ts, t)
		}
	}
	if m.Users != nil {
		add(m.Users.Table)
	}
	for _, s := range m.Sources {
		add(s.Table)
	}
	if m.Devices != nil {
		add(m.Devices.Table)
	}
	return ts
}

// NamesTag reports whether the mapping gives a user the tag: a column's
// tag of the users table or of a source (a flattened column's are those
// named "<tag>_…"), or a computed one. A tag it does not name belongs to
// the SDKs or the dashboard, and the sink never sets it.
func (m *Mapping) NamesTag(tag string) bool {
	names := func(tags, convert, computed map[string]string, name func(string) string) bool {
		for col := range tags {
			n := name(col)
			if n == tag || convert[col] == ConvertFlatten && strings.HasPrefix(tag, n+"_") {
				return true
			}
		}
		_, ok := computed[tag]
		return ok
	}
	if u := m.Users; u != nil && names(u.Tags, u.Convert, u.Computed, u.tagName) {
		return true
	}
	for i := range m.Sources {
		s := &m.Sources[i]
		if names(s.Tags, s.Convert, s.Computed, s.tagName) {
			return true
		}
	}
	return false
}

// Columns returns, per mapped table, the columns the mapping reads from its
// rows, each with the key of the setting that names it (such as
// "mapping.users.tags" or "mapping.sources[0].filter"): what must exist in
// the table, and what its publication's column list must carry. That
// includes every column an expression reads.
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
			if strings.Contains(" and "+prev+" and ", " and "+key+" and ") {
				return
			}
			key = prev + " and " + key
		}
		out[table][col] = key
	}
	addExprs := func(table, at string, filter string, computed, props map[string]string, c *Compiled) {
		if c == nil {
			return
		}
		if c.Filter != nil {
			for _, col := range c.Filter.Columns() {
				add(table, col, at+".filter")
			}
		}
		for _, tag := range sortedKeys(computed) {
			if p := c.Computed[tag]; p != nil {
				for _, col := range p.Columns() {
					add(table, col, at+".computed."+tag)
				}
			}
		}
		for _, prop := range sortedKeys(props) {
			if p := c.Properties[prop]; p != nil {
				for _, col := range p.Columns() {
					add(table, col, at+".properties."+prop)
				}
			}
		}
	}
	if u := m.Users; u != nil {
		add(u.Table, u.ExternalID, "mapping.users.external_id")
		for _, col := range sortedKeys(u.Tags) {
			add(u.Table, col, "mapping.users.tags")
		}
		add(u.Table, u.Email, "mapping.users.email")
		add(u.Table, u.Phone, "mapping.users.phone")
		for _, prop := range sortedKeys(u.Properties) {
			if v := u.Properties[prop]; !strings.HasPrefix(v, "=") {
				add(u.Table, v, "mapping.users.properties."+prop)
			}
		}
		for _, label := range sortedKeys(u.Aliases) {
			add(u.Table, u.Aliases[label], "mapping.users.aliases."+label)
		}
		addExprs(u.Table, "mapping.users", u.Filter, u.Computed, u.Properties, u.Compiled())
	}
	for i := range m.Sources {
		s := &m.Sources[i]
		at := fmt.Sprintf("mapping.sources[%d]", i)
		add(s.Table, s.User.ExternalID, at+".user.external_id")
		if r := s.User.References; r != nil {
			add(s.Table, r.Column, at+".user.references.column")
			add(r.Table, r.Key, at+".user.references.key")
		}
		for _, col := range sortedKeys(s.Tags) {
			add(s.Table, col, at+".tags")
		}
		addExprs(s.Table, at, s.Filter, s.Computed, nil, s.Compiled())
	}
	if d := m.Devices; d != nil {
		add(d.Table, d.DeviceID, "mapping.devices.device_id")
		add(d.Table, d.ExternalID, "mapping.devices.external_id")
		if r := d.OwnerReference(); r != nil {
			add(d.Table, r.Column, "mapping.devices.owner.references.column")
			add(r.Table, r.Key, "mapping.devices.owner.references.key")
		}
		addExprs(d.Table, "mapping.devices", d.Filter, nil, nil, d.Compiled())
	}
	return out
}

// Compiled is a table role's expressions, compiled once by Validate, so
// that the transform never compiles one.
type Compiled struct {
	Filter *expr.Program // nil: every row passes
	// Computed maps a computed tag to its expression.
	Computed map[string]*expr.Program
	// Properties maps a property whose value is "=<expression>" to the
	// expression; a property mapped to a column is not here.
	Properties map[string]*expr.Program
}

// Compiled returns the users mapping's compiled expressions: those of the
// last Validate, or, for a mapping that was never validated, the ones that
// compile, compiled now.
func (u *UsersMapping) Compiled() *Compiled {
	if u.compiled != nil {
		return u.compiled
	}
	c, _ := compile(u.Filter, u.Computed, u.Properties, nil)
	return c
}

// Compiled is UsersMapping.Compiled for a source.
func (s *SourceMapping) Compiled() *Compiled {
	if s.compiled != nil {
		return s.compiled
	}
	c, _ := compile(s.Filter, s.Computed, nil, nil)
	return c
}

// Compiled is UsersMapping.Compiled for the devices mapping.
func (d *DevicesMapping) Compiled() *Compiled {
	if d.compiled != nil {
		return d.compiled
	}
	c, _ := compile(d.Filter, nil, nil, nil)
	return c
}

// compile compiles a role's expressions, reporting each that does not
// compile through bad with the path of its setting below the role.
func compile(filter string, computed, props map[string]string, bad func(path []any, format string, a ...any)) (*Compiled, bool) {
	c := &Compiled{}
	ok := true
	fail := func(path []any, src string, err error) {
		ok = false
		if bad == nil {
			return
		}
		var ee *expr.Error
		if errors.As(err, &ee) {
			bad(path, "at %d:%d of the expression %s: %s", ee.Line, ee.Column, quoteExpr(src), ee.Msg)
			return
		}
		bad(path, "%v", err)
	}
	if filter != "" {
		p, err := expr.Compile(filter, expr.Filter)
		if err != nil {
			fail([]any{"filter"}, filter, err)
		}
		c.Filter = p
	}
	for _, tag := range sortedKeys(computed) {
		p, err := expr.Compile(computed[tag], expr.Scalar)
		if err != nil {
			fail([]any{"computed", tag}, computed[tag], err)
			continue
		}
		if c.Computed == nil {
			c.Computed = map[string]*expr.Program{}
		}
		c.Computed[tag] = p
	}
	for _, prop := range sortedKeys(props) {
		src, isExpr := strings.CutPrefix(props[prop], "=")
		if !isExpr {
			continue
		}
		p, err := expr.Compile(src, expr.Scalar)
		if err != nil {
			fail([]any{"properties", prop}, src, err)
			continue
		}
		if c.Properties == nil {
			c.Properties = map[string]*expr.Program{}
		}
		c.Properties[prop] = p
	}
	return c, ok
}

// quoteExpr shows an expression in a message: in backquotes, on one line,
// its first 80 characters.
func quoteExpr(src string) string {
	s := strings.Join(strings.Fields(src), " ")
	if r := []rune(s); len(r) > 80 {
		s = string(r[:77]) + "…"
	}
	return "`" + s + "`"
}

// SettingError is a problem with one setting of the mapping. Path names
// the setting from the top of the configuration ("mapping", "sources", 0,
// "filter"), which lets the configuration put the YAML line in front of
// the message.
type SettingError struct {
	Path []any
	Msg  string
}

func (e *SettingError) Error() string {
	if strings.HasPrefix(e.Msg, " ") {
		return SettingKey(e.Path) + e.Msg // "mapping.users.external_id is empty: …"
	}
	return SettingKey(e.Path) + ": " + e.Msg
}

// Setting returns the path of the setting.
func (e *SettingError) Setting() []any { return e.Path }

// SettingKey writes a setting's path as the documentation does:
// mapping.sources[0].filter.
func SettingKey(path []any) string {
	var b strings.Builder
	for _, p := range path {
		switch p := p.(type) {
		case int:
			fmt.Fprintf(&b, "[%d]", p)
		default:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			fmt.Fprint(&b, p)
		}
	}
	return b.String()
}

// Limits are what the OneSignal side allows a mapping.
type Limits struct {
	// Model is the API generation: "user" or "player"; "" checks only
	// what holds in both.
	Model string
	// MaxTags is the most tags a user may hold (onesignal.max_tags); 0
	// is not checked. MaxTagsKey names the setting it came from.
	MaxTags    int
	MaxTagsKey string
}

// The user properties each API generation takes (UsersMapping.Properties).
var (
	UserModelProperties   = []string{"language", "timezone_id", "country", "lat", "long"}
	PlayerModelProperties = []string{"language", "timezone", "country"}
)

// MaxAliases is how many custom aliases OneSignal lets a user have.
const MaxAliases = 20

// Validate reports every problem with the mapping at once, for either API
// generation and no tag limit. It compiles every expression, and keeps
// the programs (Compiled).
func (m *Mapping) Validate() error { return m.ValidateFor(Limits{}) }

// ValidateFor is Validate for the OneSignal side lim describes. Every
// error is a *SettingError.
func (m *Mapping) ValidateFor(lim Limits) error {
	var errs []error
	at := func(path ...any) []any { return append([]any{"mapping"}, path...) }
	bad := func(path []any, format string, a ...any) {
		errs = append(errs, &SettingError{Path: path, Msg: fmt.Sprintf(format, a...)})
	}
	if m.Users == nil && m.Devices == nil && len(m.Sources) == 0 {
		bad(at(), "neither users nor devices is set: map at least one table")
	}
	// Which table each role reads: one table, one role.
	roles := map[string]string{}
	role := func(table, key string, path []any) {
		if table == "" {
			return
		}
		if prev, ok := roles[table]; ok {
			bad(at(), "%s and %s both use table %q: map two different tables (a table has one role; give its tags in one place)",
				strings.TrimPrefix(prev, "mapping."), strings.TrimPrefix(key, "mapping."), table)
			return
		}
		roles[table] = key
	}
	// Which setting gives each tag: one tag, one setting.
	tags := map[string]string{}
	var tagOrder []string
	unbounded := ""
	claim := func(tag, key string, path []any) {
		if prev, ok := tags[tag]; ok {
			if group(prev) != group(key) || !strings.Contains(key, ".tags.") {
				bad(path, "tag %q is given by %s already: two settings cannot give one tag; rename one", tag, prev)
			} // else two columns of one table's tags, reported with the table
			return
		}
		tags[tag] = key
		tagOrder = append(tagOrder, tag)
	}

	if u := m.Users; u != nil {
		m.validateUsers(u, lim, bad, at)
		role(u.Table, "mapping.users", at("users", "table"))
		for _, col := range sortedKeys(u.Tags) {
			claim(u.tagName(col), "mapping.users.tags."+col, at("users", "tags", col))
			if u.Convert[col] == ConvertFlatten && unbounded == "" {
				unbounded = "mapping.users.convert." + col
			}
		}
		for _, tag := range sortedKeys(u.Computed) {
			if col, ok := columnTag(u.Tags, tag); ok {
				bad(at("users", "computed", tag), "computed tag %q is named like the tag of column %q in mapping.users.tags: rename one", tag, col)
				continue
			}
			claim(tag, "mapping.users.computed."+tag, at("users", "computed", tag))
		}
	}
	names := map[string]int{}
	for i := range m.Sources {
		s := &m.Sources[i]
		key := fmt.Sprintf("mapping.sources[%d]", i)
		m.validateSource(i, s, bad, at)
		role(s.Table, key, at("sources", i, "table"))
		if n := s.Name; n != "" {
			if prev, dup := names[n]; dup {
				bad(at("sources", i, "name"), "mapping.sources[%d] is named %q already: give each source its own name", prev, n)
			}
			names[n] = i
		}
		for _, col := range sortedKeys(s.Tags) {
			claim(s.tagName(col), key+".tags."+col, at("sources", i, "tags", col))
			if s.Convert[col] == ConvertFlatten && unbounded == "" {
				unbounded = key + ".convert." + col
			}
		}
		for _, tag := range sortedKeys(s.Computed) {
			if col, ok := columnTag(s.Tags, tag); ok {
				bad(at("sources", i, "computed", tag), "computed tag %q is named like the tag of column %q in %s.tags: rename one", tag, col, key)
				continue
			}
			claim(tag, key+".computed."+tag, at("sources", i, "computed", tag))
		}
	}
	if d := m.Devices; d != nil {
		m.validateDevices(d, bad, at)
		role(d.Table, "mapping.devices", at("devices", "table"))
	}

	if lim.MaxTags > 0 {
		limKey := lim.MaxTagsKey
		if limKey == "" {
			limKey = "onesignal.max_tags"
		}
		if unbounded != "" {
			bad(at(), "%s is flatten, which gives as many tags as the JSON value holds, and %s %d cannot be checked against that: "+
				"map the keys you need as computed tags instead (e.g. prefs_lang: 'row.prefs.lang'), or remove %s", unbounded, limKey, lim.MaxTags, limKey)
		} else if len(tagOrder) > lim.MaxTags {
			sort.Strings(tagOrder)
			bad(at(), "the mapping gives a user up to %d tags (%s), more than %s %d: map fewer tags, or raise the limit with your OneSignal plan",
				len(tagOrder), strings.Join(tagOrder, ", "), limKey, lim.MaxTags)
		}
	}
	return errors.Join(errs...)
}

// group is the table role of a setting's key: mapping.sources[1] of
// mapping.sources[1].tags.plan.
func group(key string) string {
	if i := strings.Index(key, ".tags."); i >= 0 {
		return key[:i]
	}
	return key
}

// columnTag finds the column of tags whose tag is named tag.
func columnTag(tags map[string]string, tag string) (string, bool) {
	for _, col := range sortedKeys(tags) {
		name := tags[col]
		if name == "" {
			name = col
		}
		if name == tag {
			return col, true
		}
	}
	return "", false
}

type badFunc = func(path []any, format string, a ...any)

func (m *Mapping) validateUsers(u *UsersMapping, lim Limits, bad badFunc, at func(...any) []any) {
	if err := checkTable(u.Table); err != nil {
		bad(at("users", "table"), "%v", err)
	}
	if u.ExternalID == "" {
		bad(at("users", "external_id"), " is empty: name the column that holds the external user id")
	}
	seen := map[string]string{}
	for _, col := range sortedKeys(u.Tags) {
		tag := u.tagName(col)
		if prev, dup := seen[tag]; dup {
			bad(at("users", "tags", col), "columns %q and %q both become tag %q: rename one", prev, col, tag)
		}
		seen[tag] = col
		if col == u.ExternalID {
			bad(at("users", "tags", col), "%q is the external id column; it cannot also be a tag", col)
		}
	}
	if u.Email != "" && u.Email == u.Phone {
		bad(at("users"), "email and phone are both column %q: map two different columns", u.Email)
	}
	if u.Email != "" && u.Email == u.ExternalID {
		bad(at("users", "email"), "%q is the external id column: name the column that holds the email address", u.Email)
	}
	if u.Phone != "" && u.Phone == u.ExternalID {
		bad(at("users", "phone"), "%q is the external id column: name the column that holds the phone number", u.Phone)
	}
	checkConvert(u.Tags, u.Convert, bad, at("users"))
	checkComputedNames(u.Computed, bad, at("users"))

	c, _ := compile(u.Filter, u.Computed, u.Properties, func(path []any, format string, a ...any) {
		bad(append(at("users"), path...), format, a...)
	})
	u.compiled = c

	allowed, model := []string{"language", "timezone_id", "timezone", "country", "lat", "long"}, "either model"
	switch lim.Model {
	case "user":
		allowed, model = UserModelProperties, "the user model"
	case "player":
		allowed, model = PlayerModelProperties, "the player model"
	}
	for _, prop := range sortedKeys(u.Properties) {
		path := at("users", "properties", prop)
		if !slices.Contains(allowed, prop) {
			hint := ""
			if lim.Model == "player" && slices.Contains(UserModelProperties, prop) {
				hint = " (" + prop + " is the user model's)"
			}
			if lim.Model == "user" && prop == "timezone" {
				hint = " (the user model takes timezone_id, an IANA name such as Europe/Paris)"
			}
			bad(path, "%q is not a property of %s%s: use one of %s", prop, model, hint, strings.Join(allowed, ", "))
		}
		if v := u.Properties[prop]; v == "" || v == "=" {
			bad(path, " is empty: name the column that holds the %s, or write =<expression>, e.g. '=row.lang.lowerAscii()'", prop)
		}
	}
	if len(u.Aliases) > 0 && lim.Model == "player" {
		bad(at("users", "aliases"), "aliases are for the user model: the player model has external_user_id only: remove them, or set onesignal.model: user")
	}
	if len(u.Aliases) > MaxAliases {
		bad(at("users", "aliases"), "%d aliases are more than OneSignal's %d custom aliases per user: map at most %d", len(u.Aliases), MaxAliases, MaxAliases)
	}
	for _, label := range sortedKeys(u.Aliases) {
		path := at("users", "aliases", label)
		switch {
		case label == "" || strings.TrimSpace(label) != label:
			bad(path, "the alias label %q is empty or has spaces around it: write the label OneSignal shows, such as crm_id", label)
		case label == "external_id" || label == "onesignal_id":
			bad(path, "%q is OneSignal's own alias: the external id comes from mapping.users.external_id; choose another label", label)
		}
		if u.Aliases[label] == "" {
			bad(path, " is empty: name the column that holds the user's %s", label)
		}
	}
	switch u.OnDelete {
	case "", OnDeleteRemoveTags:
	case OnDeleteDeleteUser:
		if lim.Model == "player" {
			bad(at("users", "on_delete"), "delete_user is for the user model: the player model has no call that deletes a user (its players are devices, which stay): "+
				"write remove_tags, or set onesignal.model: user")
		}
	default:
		bad(at("users", "on_delete"), "%q is not %s (default: the mapped tags go, the user stays) or %s (OneSignal deletes the user)", u.OnDelete, OnDeleteRemoveTags, OnDeleteDeleteUser)
	}
}

func (m *Mapping) validateSource(i int, s *SourceMapping, bad badFunc, at func(...any) []any) {
	key := fmt.Sprintf("mapping.sources[%d]", i)
	if err := checkTable(s.Table); err != nil {
		bad(at("sources", i, "table"), "%v", err)
	}
	switch u := s.User; {
	case u.ExternalID == "" && u.References == nil:
		bad(at("sources", i, "user"), "says neither how a row finds its user: set user.external_id to the column holding the user's external id, "+
			"or user.references to a foreign key to the users table, e.g. {column: user_id, table: %s, key: id}", m.usersTable())
	case u.ExternalID != "" && u.References != nil:
		bad(at("sources", i, "user"), "sets both external_id and references: keep one way for a row to find its user")
	case u.References != nil:
		m.checkReference(u.References, bad, at("sources", i, "user", "references"))
	}
	if len(s.Tags) == 0 && len(s.Computed) == 0 {
		bad(at("sources", i), "gives no tags: map columns in %s.tags or expressions in %s.computed, or remove the source", key, key)
	}
	for _, col := range sortedKeys(s.Tags) {
		if col == s.User.ExternalID {
			bad(at("sources", i, "tags", col), "%q is the column of the user's external id; it cannot also be a tag", col)
		}
	}
	checkConvert(s.Tags, s.Convert, bad, at("sources", i))
	checkComputedNames(s.Computed, bad, at("sources", i))
	switch s.Many {
	case "", ManyLatest, ManyCount, ManyAny:
	default:
		bad(at("sources", i, "many"), "%q is not %s (default: the row changed last gives the tag), %s (the number of the user's rows) or %s (true when any row gives true)",
			s.Many, ManyLatest, ManyCount, ManyAny)
	}
	c, _ := compile(s.Filter, s.Computed, nil, func(path []any, format string, a ...any) {
		bad(append(at("sources", i), path...), format, a...)
	})
	s.compiled = c
}

func (m *Mapping) validateDevices(d *DevicesMapping, bad badFunc, at func(...any) []any) {
	if err := checkTable(d.Table); err != nil {
		bad(at("devices", "table"), "%v", err)
	}
	if d.DeviceID == "" {
		bad(at("devices", "device_id"), " is empty: name the column that holds the player_id or subscription id")
	}
	ref := d.OwnerReference()
	switch {
	case d.ExternalID == "" && ref == nil:
		bad(at("devices", "external_id"), " is empty: name the column that holds the owner's external user id, or set mapping.devices.owner.references to a foreign key to the users table")
	case d.ExternalID != "" && ref != nil:
		bad(at("devices", "owner"), "is set with mapping.devices.external_id: keep one way for a device to find its owner")
	case ref != nil:
		m.checkReference(ref, bad, at("devices", "owner", "references"))
	}
	if d.DeviceID != "" && d.DeviceID == d.ExternalID {
		bad(at("devices", "external_id"), "%q is the device id column: name the column that holds the owner's external user id", d.ExternalID)
	}
	c, _ := compile(d.Filter, nil, nil, func(path []any, format string, a ...any) {
		bad(append(at("devices"), path...), format, a...)
	})
	d.compiled = c
}

func (m *Mapping) usersTable() string {
	if m.Users != nil && m.Users.Table != "" {
		return m.Users.Table
	}
	return "public.users"
}

// checkReference checks a foreign key to the users table.
func (m *Mapping) checkReference(r *Reference, bad badFunc, path []any) {
	if r.Column == "" {
		bad(append(path, "column"), " is empty: name the column that holds the users row's primary key")
	}
	switch {
	case m.Users == nil:
		bad(append(path, "table"), "refers to the users table, and mapping.users is not set: map the users table, or find the user by an external id column instead")
	case r.Table == "":
		bad(append(path, "table"), " is empty: write the users table, %s", m.Users.Table)
	case r.Table != m.Users.Table:
		bad(append(path, "table"), "%q is not the users table: a foreign key can refer only to mapping.users.table, %s", r.Table, m.Users.Table)
	}
	if r.Key == "" {
		bad(append(path, "key"), " is empty: name the users table's column that the foreign key refers to (its primary key, or another unique column, e.g. id)")
	}
}

func checkConvert(tags, convert map[string]string, bad badFunc, base []any) {
	for _, col := range sortedKeys(convert) {
		if _, ok := tags[col]; !ok {
			bad(append(slices.Clone(base), "convert"), "%q is not a tag column: add it to %s.tags", col, SettingKey(base))
		}
		if c := convert[col]; c != ConvertUnixSeconds && c != ConvertFlatten {
			bad(append(slices.Clone(base), "convert", col), "%q is not %s or %s", c, ConvertUnixSeconds, ConvertFlatten)
		}
	}
}

func checkComputedNames(computed map[string]string, bad badFunc, base []any) {
	for _, tag := range sortedKeys(computed) {
		if strings.TrimSpace(tag) == "" {
			bad(append(slices.Clone(base), "computed"), "a computed tag has no name: write name: 'expression'")
		}
	}
}

// DisplayName is the source's name in messages: Name, or else its table.
func (s *SourceMapping) DisplayName() string {
	if s.Name != "" {
		return s.Name
	}
	return s.Table
}

func (s *SourceMapping) tagName(col string) string {
	if t := s.Tags[col]; t != "" {
		return t
	}
	return col
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

// Expression is one of the mapping's compiled expressions, with the table
// whose rows it reads and the setting that holds it.
type Expression struct {
	Table   string
	Setting string // such as "mapping.users.computed.vip"
	Program *expr.Program
}

// Expressions returns every compiled expression of the mapping, in the
// order of the settings, for the checks against the tables' columns.
func (m *Mapping) Expressions() []Expression {
	var out []Expression
	add := func(table, at string, c *Compiled) {
		if c.Filter != nil {
			out = append(out, Expression{table, at + ".filter", c.Filter})
		}
		for _, tag := range slices.Sorted(maps.Keys(c.Computed)) {
			out = append(out, Expression{table, at + ".computed." + tag, c.Computed[tag]})
		}
		for _, prop := range slices.Sorted(maps.Keys(c.Properties)) {
			out = append(out, Expression{table, at + ".properties." + prop, c.Properties[prop]})
		}
	}
	if u := m.Users; u != nil {
		add(u.Table, "mapping.users", u.Compiled())
	}
	for i := range m.Sources {
		add(m.Sources[i].Table, fmt.Sprintf("mapping.sources[%d]", i), m.Sources[i].Compiled())
	}
	if d := m.Devices; d != nil {
		add(d.Table, "mapping.devices", d.Compiled())
	}
	return out
}
