package transform

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// Target is what one OneSignal request writes: a user, by external id, or a
// device (a player in the legacy API, a subscription in the user model), by
// its id. OneSignal's limit of one write per second applies per target.
type Target struct {
	Device bool
	// Row says the target is a referenced row, a users row that other
	// tables' rows name by foreign key: ID is "<table>\x00<key>", and the
	// sink resolves it to the row's user.
	Row bool
	// Held says the part feeds no one: it holds what a row that names no
	// target (no external id yet, or left out by its filter) gives, so
	// that a later change which leaves a TOAST value unchanged, and makes
	// the row feed a target, still has the value. ID names the part of
	// the mapping that read it ("users", "sources[0]").
	Held bool
	// Record says the target is an email or SMS record, by channel and
	// address (ID is "<channel>\x01<address>"): the sink's one writer of
	// the record's owner, which the rows naming the address decide.
	Record bool
	ID     string
}

// User is the target of the user with external id id.
func User(id string) Target { return Target{ID: id} }

// Device is the target of the device with id id.
func Device(id string) Target { return Target{Device: true, ID: id} }

// held is the target of what role ("users", "sources[0]") read of a row
// that feeds no one.
func held(role string) Target { return Target{Held: true, ID: role} }

// HeldRow is the target, in the sink's targets topic, of what is known of
// a row while it feeds no one (its id as the sink's row stage names rows:
// its event topic, NUL, its Kafka key): values of its tags that its
// changes no longer carry (unchanged TOAST), which wait there for the user
// the row names next.
func HeldRow(row string) Target {
	return Target{Held: true, ID: "row\x01" + strings.Replace(row, "\x00", "\x01", 1)}
}

// The roles a held part names.
const heldUsers = "users"

func heldSource(i int) string { return fmt.Sprintf("sources[%d]", i) }

// RecordTarget is the target of email or SMS record r.
func RecordTarget(r Record) Target {
	return Target{Record: true, ID: r.Channel + "\x01" + r.Identifier}
}

// Rec returns the record a record target names.
func (t Target) Rec() (Record, bool) {
	if !t.Record {
		return Record{}, false
	}
	channel, id, ok := strings.Cut(t.ID, "\x01")
	return Record{Channel: channel, Identifier: id}, ok
}

// Key names the target in Kafka keys and stores: "user:<id>",
// "device:<id>", "row:<table>\x01<key>", "record:<channel>\x01<address>"
// or, for a held part, "held:<role>". An id holds no NUL (PostgreSQL text
// cannot, nor a table name or a key's JSON), so a key can be followed by
// "\x00" and more.
func (t Target) Key() string {
	switch {
	case t.Device:
		return "device:" + t.ID
	case t.Row:
		return "row:" + t.ID
	case t.Held:
		return "held:" + t.ID
	case t.Record:
		return "record:" + t.ID
	}
	return "user:" + t.ID
}

// ParseTarget is the inverse of Key.
func ParseTarget(key string) (Target, bool) {
	if id, ok := strings.CutPrefix(key, "user:"); ok {
		return User(id), true
	}
	if id, ok := strings.CutPrefix(key, "device:"); ok {
		return Device(id), true
	}
	if id, ok := strings.CutPrefix(key, "row:"); ok && strings.Contains(id, "\x01") {
		return Target{Row: true, ID: id}, true
	}
	if role, ok := strings.CutPrefix(key, "held:"); ok {
		return held(role), true
	}
	if id, ok := strings.CutPrefix(key, "record:"); ok {
		if channel, addr, ok := strings.Cut(id, "\x01"); ok && (channel == ChannelEmail || channel == ChannelSMS) && addr != "" {
			return Target{Record: true, ID: id}, true
		}
	}
	return Target{}, false
}

func (t Target) String() string {
	switch {
	case t.Device:
		return "device " + t.ID
	case t.Row:
		parts := strings.SplitN(t.ID, "\x01", 3)
		if len(parts) == 3 {
			return fmt.Sprintf("row of %s where %q = %s", parts[0], parts[1], parts[2])
		}
		return "row " + t.ID
	case t.Held:
		return "what the row gives " + t.ID + " while it feeds no one"
	case t.Record:
		if r, ok := t.Rec(); ok {
			return r.Channel + " record " + r.Identifier
		}
		return "record " + t.ID
	}
	return "user " + t.ID
}

// Record is an email address or phone number to give a user, as an email
// or SMS record (a device of type 11 or 14 in the player model, a
// subscription in the user model).
type Record struct {
	Channel    string `json:"channel"` // ChannelEmail or ChannelSMS
	Identifier string `json:"id"`      // the address or the phone number
}

// The channels of records.
const (
	ChannelEmail = "email"
	ChannelSMS   = "sms"
)

// Part is what one row says of one target: for a user, its mapped tags,
// records, properties and aliases; for a device, its owner; for a
// referenced row (a users row other rows name by foreign key), the
// external id it gives, or the part of a row that references it. Every
// field states the row's whole view, so a newer part replaces an older one
// of the same row whole.
type Part struct {
	Target Target
	// Tags are a user's mapped tags, tag → value; "" deletes the tag.
	Tags map[string]string
	// Unknown are tags whose value the change did not carry (an unchanged
	// TOAST value of a row the sink had not seen): the row says nothing of
	// them. Sorted.
	Unknown []string
	// Records are a user's email and SMS records, in column order.
	Records []Record
	// Owner is a device's owner, by external id; never "".
	Owner string
	// Props and Aliases are a user's properties and aliases.
	Props, Aliases map[string]string
	// Many is how the source's several rows of one user give its tags
	// (SourceMapping.Many); "" for the users table.
	Many string
	// DeleteUser: the users row's on_delete is delete_user.
	DeleteUser bool
	// Identity is, on a referenced row's target, the external id the users
	// row gives; Device is, on one, the device of a referencing devices
	// row, which the sink links to the referenced row's user.
	Identity, Device string
}

// Projection is everything one row says of OneSignal: one part per target
// the row feeds, sorted by target key. A deleted row, one the filter
// leaves out, or one that names no user or device, feeds nothing; the
// latter two keep what they give in held parts (Target.Held), which the
// sink's row index stores and nothing forwards (Fed leaves them out).
type Projection []Part

// Fed is p without its held parts: the parts that reach a target.
func (p Projection) Fed() Projection {
	var out Projection
	for i, part := range p {
		switch {
		case part.Target.Held && out == nil:
			out = append(make(Projection, 0, len(p)-1), p[:i]...)
		case part.Target.Held:
		case out != nil:
			out = append(out, part)
		}
	}
	if out == nil {
		return p // no held part
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// feeds reports whether p has a part that reaches a target: whether the
// row passed its filters, for a filter that cannot tell now.
func (p Projection) feeds() bool {
	for _, part := range p {
		if !part.Target.Held {
			return true
		}
	}
	return false
}

// Find returns the part of target t.
func (p Projection) Find(t Target) (Part, bool) {
	for _, part := range p {
		if part.Target == t {
			return part, true
		}
	}
	return Part{}, false
}

// Problems are values a row gives that OneSignal would refuse (a language
// that is not ISO 639-1, …): Project leaves them out and returns the
// projection with them, the rest of the row's parts intact.
type Problems []error

func (p Problems) Error() string {
	msgs := make([]string, len(p))
	for i, e := range p {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

func (p Problems) Unwrap() []error { return p }

// Project returns what the row says of OneSignal after change ev. prev is
// what it said before, as the sink last recorded it (nil when the sink has
// not seen the row, or it fed nothing); values the change did not carry
// (unchanged TOAST) are taken from prev. A tag that prev gave a target and
// the row no longer gives it is deleted ("" in Tags), so a flattened key
// that disappears goes too. now is the change's time (its commit), which
// expressions see as now.
//
// A TRUNCATE says nothing of any row: it gives no projection and no error.
// A *Problems error comes with a projection to use: the values it names
// are left out.
func (m *Mapping) Project(ev *event.Envelope, prev Projection) (Projection, error) {
	if ev.Op == event.OpTruncate || ev.Op == event.OpDelete {
		return nil, nil
	}
	table := ev.Source.Schema + "." + ev.Source.Table
	now := time.UnixMilli(ev.Source.TsMs).UTC()
	var out Projection
	var problems Problems
	mapped := false
	if u := m.Users; u != nil && table == u.Table {
		mapped = true
		if err := u.checkImage(ev.After); err != nil {
			return nil, err
		}
		parts, probs, err := m.usersParts(ev.After, prev, now)
		if err != nil {
			return nil, err
		}
		out, problems = append(out, parts...), append(problems, probs...)
	}
	for i := range m.Sources {
		src := &m.Sources[i]
		if src.Table != table {
			continue
		}
		mapped = true
		parts, err := m.sourceParts(i, ev.After, prev, now)
		if err != nil {
			return nil, err
		}
		out = append(out, parts...)
	}
	if d := m.Devices; d != nil && table == d.Table {
		mapped = true
		if err := d.checkImage(ev.After); err != nil {
			return nil, err
		}
		parts, err := m.deviceParts(ev.After, prev, now)
		if err != nil {
			return nil, err
		}
		out = append(out, parts...)
	}
	if !mapped {
		return nil, fmt.Errorf("%w: table %q is not in the mapping: add it to mapping.users, mapping.sources or mapping.devices, or stop publishing it", ErrBadRow, table)
	}
	for i := range out {
		if was, ok := prev.Find(out[i].Target); ok {
			for tag := range was.Tags {
				if _, ok := out[i].Tags[tag]; !ok && !slices.Contains(out[i].Unknown, tag) {
					out[i].Tags[tag] = ""
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b Part) int { return strings.Compare(a.Target.Key(), b.Target.Key()) })
	if len(problems) > 0 {
		return out, problems
	}
	return out, nil
}

// passes reports whether row passes the filter at key ("" when none is
// set); a filter that reads a value the change did not carry keeps the
// row's previous verdict: was, whether it fed anything before.
func (m *Mapping) passes(key, filter string, row event.Row, now time.Time, was bool) (bool, error) {
	if filter == "" {
		return true, nil
	}
	ok, err := m.evaluator().Filter(key, row, now)
	if errors.Is(err, ErrUnknown) {
		return was, nil
	}
	if err != nil {
		return false, fmt.Errorf("%w: %s: %v", ErrBadRow, key, err)
	}
	return ok, nil
}

// Previous returns what the old image of a change (its "before" row) says
// of OneSignal, for a row the sink has not seen: under REPLICA IDENTITY
// FULL the whole row, otherwise its primary key, whose columns may name the
// target. ok is false when the image names no target. Values the image does
// not hold are unknown; filters and expressions are not applied.
func (m *Mapping) Previous(ev *event.Envelope) (p Projection, ok bool) {
	if ev.Before == nil {
		return nil, false
	}
	table := ev.Source.Schema + "." + ev.Source.Table
	if u := m.Users; u != nil && table == u.Table {
		if id, known, _ := textColumn(ev.Before, u.ExternalID); known && id != "" {
			part := Part{Target: User(id), Tags: map[string]string{}, DeleteUser: u.OnDelete == OnDeleteDeleteUser}
			_ = u.tagger().give(ev.Before, Part{}, &part, unknowing{}, time.Time{})
			for _, rec := range []struct{ col, channel string }{{u.Email, ChannelEmail}, {u.Phone, ChannelSMS}} {
				if addr, known, _ := textColumn(ev.Before, rec.col); rec.col != "" && known && addr != "" {
					part.Records = append(part.Records, Record{Channel: rec.channel, Identifier: addr})
				}
			}
			slices.Sort(part.Unknown)
			p = append(p, part)
			for _, key := range m.referencedKeys() {
				if v, ok := ev.Before.Get(key); ok && !event.IsUnavailable(v) && !isNull(v) {
					p = append(p, Part{Target: RowOf(u.Table, key, v), Identity: id})
				}
			}
		}
	}
	for i := range m.Sources {
		if src := &m.Sources[i]; src.Table == table {
			if t, ok := src.userTarget(ev.Before); ok {
				part := Part{Target: t, Tags: map[string]string{}, Many: src.Many}
				_ = src.tagger(i).give(ev.Before, Part{}, &part, unknowing{}, time.Time{})
				slices.Sort(part.Unknown)
				p = append(p, part)
			}
		}
	}
	if d := m.Devices; d != nil && table == d.Table {
		if dev, known, _ := textColumn(ev.Before, d.DeviceID); known && dev != "" {
			if d.Owner != nil && d.Owner.References != nil {
				ref := d.Owner.References
				if v, ok := ev.Before.Get(ref.Column); ok && !event.IsUnavailable(v) && !isNull(v) {
					p = append(p, Part{Target: RowOf(ref.Table, ref.Key, v), Device: dev})
				}
			} else if owner, known, _ := textColumn(ev.Before, d.ExternalID); known && owner != "" {
				p = append(p, Part{Target: Device(dev), Owner: owner})
			}
		}
	}
	return p, len(p) > 0
}

// unknowing evaluates nothing: every expression's value is unknown, as in
// an old image, where the sink cannot tell what a computed tag was.
type unknowing struct{}

func (unknowing) Filter(string, event.Row, time.Time) (bool, error) { return true, nil }
func (unknowing) Value(string, event.Row, time.Time) (json.RawMessage, error) {
	return nil, ErrUnknown
}

// Identifies reports why a delete of a row the sink has not seen cannot be
// applied: the column that would name its target, for the error message.
func (m *Mapping) Identifies(ev *event.Envelope) (table, column string) {
	table = ev.Source.Schema + "." + ev.Source.Table
	switch {
	case m.Users != nil && table == m.Users.Table:
		return table, m.Users.ExternalID
	case m.Devices != nil && table == m.Devices.Table:
		return table, m.Devices.DeviceID
	}
	for i := range m.Sources {
		if s := &m.Sources[i]; s.Table == table {
			if s.User.References != nil {
				return table, s.User.References.Column
			}
			return table, s.User.ExternalID
		}
	}
	return table, ""
}

// referencedKeys are the users table's columns that sources and the
// devices name it by, sorted, without repeats.
func (m *Mapping) referencedKeys() []string {
	var keys []string
	add := func(r *Reference) {
		if r != nil && m.Users != nil && r.Table == m.Users.Table && !slices.Contains(keys, r.Key) {
			keys = append(keys, r.Key)
		}
	}
	for i := range m.Sources {
		add(m.Sources[i].User.References)
	}
	if m.Devices != nil && m.Devices.Owner != nil {
		add(m.Devices.Owner.References)
	}
	slices.Sort(keys)
	return keys
}

// RowOf is the target of the row of table whose column key holds value (a
// JSON value as the connector writes it), which other rows reference.
func RowOf(table, key string, value json.RawMessage) Target {
	return Target{Row: true, ID: table + "\x01" + key + "\x01" + string(bytes.TrimSpace(value))}
}

func isNull(v json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(v), []byte("null")) }

// usersParts reads a users row: its user's part, and the part of its own
// target for each column other rows reference it by. A column absent from
// the image (an old image holds only the primary key under REPLICA
// IDENTITY DEFAULT; a new one has every column, checkImage saw to it), or
// whose value was not sent, is left unknown; prev fills in what it knew of
// the row, also when the row named another user then: an unchanged value
// is the row's, whichever user the row feeds.
func (m *Mapping) usersParts(row event.Row, prev Projection, now time.Time) (Projection, Problems, error) {
	u := m.Users
	id, known, err := textColumn(row, u.ExternalID)
	if err != nil {
		return nil, nil, err
	}
	var was Part
	for _, p := range prev {
		if !p.Target.Device && !p.Target.Row && (!p.Target.Held || p.Target.ID == heldUsers) {
			was = p // a users row feeds one user, or holds what it gives
		}
	}
	if !known && !was.Target.Held {
		// The external id itself was not sent (TOAST): the row still
		// belongs to the user it did.
		id, known = was.Target.ID, was.Target.ID != ""
	}
	target := User(id)
	if !known || id == "" {
		target = held(heldUsers) // no user to address: the row feeds no one
	} else {
		ok, err := m.passes("mapping.users.filter", u.Filter, row, now, prev.feeds())
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			target = held(heldUsers) // filtered out: for OneSignal, deleted
		}
	}
	part := Part{Target: target, Tags: make(map[string]string, len(u.Tags)), DeleteUser: u.OnDelete == OnDeleteDeleteUser}
	if target.Held {
		// What the row gives is kept, not sent: a value the row cannot
		// give (a computed tag that fails) is not an error until it feeds
		// someone.
		return m.holdUser(row, was, part, now), nil, nil
	}
	if err := u.tagger().give(row, was, &part, m.evaluator(), now); err != nil {
		return nil, nil, err
	}
	for _, rec := range []struct{ col, channel string }{{u.Email, ChannelEmail}, {u.Phone, ChannelSMS}} {
		if rec.col == "" {
			continue
		}
		addr, known, err := textColumn(row, rec.col)
		if err != nil {
			return nil, nil, err
		}
		if !known {
			for _, r := range was.Records {
				if r.Channel == rec.channel {
					part.Records = append(part.Records, r)
				}
			}
			continue
		}
		if addr != "" {
			part.Records = append(part.Records, Record{Channel: rec.channel, Identifier: addr})
		}
	}
	problems, err := m.properties(row, was, &part, now)
	if err != nil {
		return nil, nil, err
	}
	slices.Sort(part.Unknown)
	out := Projection{part}
	for _, key := range m.referencedKeys() {
		v, ok := row.Get(key)
		if !ok || event.IsUnavailable(v) || isNull(v) {
			continue
		}
		out = append(out, Part{Target: RowOf(u.Table, key, v), Identity: id})
	}
	return out, problems, nil
}

// holdUser is the held part of a users row that feeds no one: its tags,
// records, properties and aliases, as far as the row gives them; nil when
// it gives none, or an expression fails on it.
func (m *Mapping) holdUser(row event.Row, was Part, part Part, now time.Time) Projection {
	u := m.Users
	part.DeleteUser = false
	if err := u.tagger().give(row, was, &part, m.evaluator(), now); err != nil {
		return nil
	}
	for _, rec := range []struct{ col, channel string }{{u.Email, ChannelEmail}, {u.Phone, ChannelSMS}} {
		if rec.col == "" {
			continue
		}
		addr, known, err := textColumn(row, rec.col)
		switch {
		case err != nil:
		case !known:
			for _, r := range was.Records {
				if r.Channel == rec.channel {
					part.Records = append(part.Records, r)
				}
			}
		case addr != "":
			part.Records = append(part.Records, Record{Channel: rec.channel, Identifier: addr})
		}
	}
	if _, err := m.properties(row, was, &part, now); err != nil {
		return nil
	}
	slices.Sort(part.Unknown)
	if len(part.Tags) == 0 && len(part.Unknown) == 0 && len(part.Records) == 0 && len(part.Props) == 0 && len(part.Aliases) == 0 {
		return nil
	}
	return Projection{part}
}

// properties puts the user's properties and aliases the row gives into
// part; a value OneSignal would refuse is left out, and named in the
// problems returned.
func (m *Mapping) properties(row event.Row, was Part, part *Part, now time.Time) (Problems, error) {
	u := m.Users
	var problems Problems
	for _, name := range sortedKeys(u.Properties) {
		src := u.Properties[name]
		key := "mapping.users.properties." + name
		var v json.RawMessage
		if expr, ok := strings.CutPrefix(src, "="); ok && expr != "" {
			val, err := evaluate(m.evaluator(), key, row, now)
			if errors.Is(err, ErrUnknown) {
				if old, ok := was.Props[name]; ok {
					part.Props = put(part.Props, name, old)
				}
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrBadRow, key, err)
			}
			v = val
		} else {
			val, ok := row.Get(src)
			if !ok || event.IsUnavailable(val) {
				if old, ok := was.Props[name]; ok {
					part.Props = put(part.Props, name, old)
				}
				continue
			}
			v = val
		}
		s, err := tagValue(v)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: %v", key, err))
			continue
		}
		if s == "" {
			continue // NULL: the property is left as it is
		}
		if err := checkProperty(name, s); err != nil {
			problems = append(problems, fmt.Errorf("%s: %q %v", key, s, err))
			continue
		}
		part.Props = put(part.Props, name, s)
	}
	for _, label := range sortedKeys(u.Aliases) {
		key := "mapping.users.aliases." + label
		v, known, err := textColumn(row, u.Aliases[label])
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: %v", key, err))
			continue
		}
		if !known {
			if old, ok := was.Aliases[label]; ok {
				part.Aliases = put(part.Aliases, label, old)
			}
			continue
		}
		if v == "" {
			continue
		}
		if err := checkAlias(v); err != nil {
			problems = append(problems, fmt.Errorf("%s: %q %v", key, v, err))
			continue
		}
		part.Aliases = put(part.Aliases, label, v)
	}
	return problems, nil
}

func put(m map[string]string, k, v string) map[string]string {
	if m == nil {
		m = make(map[string]string)
	}
	m[k] = v
	return m
}

// userTarget is the target a source row feeds: its user by external id,
// or the users row it references; ok is false when the row names none.
func (s *SourceMapping) userTarget(row event.Row) (Target, bool) {
	if r := s.User.References; r != nil {
		v, ok := row.Get(r.Column)
		if !ok || event.IsUnavailable(v) || isNull(v) {
			return Target{}, false
		}
		return RowOf(r.Table, r.Key, v), true
	}
	id, known, _ := textColumn(row, s.User.ExternalID)
	if !known || id == "" {
		return Target{}, false
	}
	return User(id), true
}

// sourceParts reads a row of source i: the part of its user (or of the
// users row it references).
func (m *Mapping) sourceParts(i int, row event.Row, prev Projection, now time.Time) (Projection, error) {
	src := &m.Sources[i]
	col := src.User.ExternalID
	if src.User.References != nil {
		col = src.User.References.Column
	}
	if err := needColumn(src.Table, row, col, fmt.Sprintf("mapping.sources[%d].user", i)); err != nil {
		return nil, err
	}
	for c := range src.Tags {
		if err := needColumn(src.Table, row, c, fmt.Sprintf("mapping.sources[%d].tags", i)); err != nil {
			return nil, err
		}
	}
	// What the row gave before: its part of a target, or what it held.
	var fed []Part
	for _, p := range prev {
		if !p.Target.Held {
			fed = append(fed, p)
		}
	}
	wasHeld, _ := prev.Find(held(heldSource(i)))
	target, ok := src.userTarget(row)
	if !ok {
		// The column was not sent (TOAST) or names no one.
		target = held(heldSource(i))
		if v, present := row.Get(col); present && event.IsUnavailable(v) && len(fed) > 0 {
			target = fed[0].Target
		}
	}
	if !target.Held {
		pass, err := m.passes(fmt.Sprintf("mapping.sources[%d].filter", i), src.Filter, row, now, prev.feeds())
		if err != nil {
			return nil, err
		}
		if !pass {
			target = held(heldSource(i)) // filtered out: its tags go
		}
	}
	was, _ := prev.Find(target)
	switch {
	case was.Target.ID != "":
	case wasHeld.Target.Held:
		was = wasHeld // the row fed no one before: what it held is its own
	case len(fed) > 0:
		was = fed[0] // the row names another user now: its unchanged values are its own
	}
	part := Part{Target: target, Tags: map[string]string{}, Many: src.Many}
	if err := src.tagger(i).give(row, was, &part, m.evaluator(), now); err != nil {
		if target.Held {
			return nil, nil // not an error until the row feeds someone
		}
		return nil, err
	}
	if target.Held {
		part.Many = ""
		if len(part.Tags) == 0 && len(part.Unknown) == 0 {
			return nil, nil
		}
	}
	slices.Sort(part.Unknown)
	return Projection{part}, nil
}

// deviceParts reads a devices row. A row without an owner feeds nothing; a
// row without a device id is refused, since a device row must name its
// device.
func (m *Mapping) deviceParts(row event.Row, prev Projection, now time.Time) (Projection, error) {
	d := m.Devices
	dev, known, err := textColumn(row, d.DeviceID)
	if err != nil {
		return nil, err
	}
	if !known {
		for _, p := range prev {
			if p.Target.Device {
				dev, known = p.Target.ID, true
			} else if p.Device != "" {
				dev, known = p.Device, true
			}
		}
		if !known {
			return nil, nil
		}
	}
	if dev == "" {
		return nil, fmt.Errorf("%w: a %s row has no %q (it is NULL or empty): every device row needs its player_id or subscription id", ErrBadRow, d.Table, d.DeviceID)
	}
	pass, err := m.passes("mapping.devices.filter", d.Filter, row, now, prev.feeds())
	if err != nil || !pass {
		return nil, err // filtered out: its device is unlinked
	}
	if d.Owner != nil && d.Owner.References != nil {
		ref := d.Owner.References
		v, ok := row.Get(ref.Column)
		if !ok {
			return nil, needColumn(d.Table, row, ref.Column, "mapping.devices.owner.references.column")
		}
		if event.IsUnavailable(v) {
			for _, p := range prev {
				if p.Device == dev {
					return Projection{p}, nil
				}
			}
			return nil, nil
		}
		if isNull(v) {
			return nil, nil // logged out
		}
		return Projection{{Target: RowOf(ref.Table, ref.Key, v), Device: dev}}, nil
	}
	owner, known, err := textColumn(row, d.ExternalID)
	if err != nil {
		return nil, err
	}
	if !known {
		was, ok := prev.Find(Device(dev))
		if !ok {
			return nil, nil
		}
		owner = was.Owner
	}
	if owner == "" {
		return nil, nil // logged out: the row links the device to no one
	}
	return Projection{{Target: Device(dev), Owner: owner}}, nil
}

// Clone returns a deep copy of p.
func (p Projection) Clone() Projection {
	if p == nil {
		return nil
	}
	out := make(Projection, len(p))
	for i, part := range p {
		out[i] = part
		out[i].Tags = maps.Clone(part.Tags)
		out[i].Unknown = slices.Clone(part.Unknown)
		out[i].Records = slices.Clone(part.Records)
		out[i].Props = maps.Clone(part.Props)
		out[i].Aliases = maps.Clone(part.Aliases)
	}
	return out
}
