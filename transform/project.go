package transform

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// Target is what one OneSignal request writes: a user, by external id, or a
// device (a player in the legacy API, a subscription in the user model), by
// its id. OneSignal's limit of one write per second applies per target.
type Target struct {
	Device bool
	ID     string
}

// User is the target of the user with external id id.
func User(id string) Target { return Target{ID: id} }

// Device is the target of the device with id id.
func Device(id string) Target { return Target{Device: true, ID: id} }

// Key names the target in Kafka keys and stores: "user:<id>" or
// "device:<id>". An id holds no NUL (PostgreSQL text cannot), so a key
// can be followed by "\x00" and more.
func (t Target) Key() string {
	if t.Device {
		return "device:" + t.ID
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
	return Target{}, false
}

func (t Target) String() string {
	if t.Device {
		return "device " + t.ID
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

// Part is what one row says of one target: for a user, its mapped tags and
// records; for a device, its owner. Every field states the row's whole
// view, so a newer part replaces an older one of the same row whole.
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
}

// Projection is everything one row says of OneSignal: one part per target
// the row feeds, sorted by target key. A deleted row, or one that names no
// user or device, feeds nothing.
type Projection []Part

// Find returns the part of target t.
func (p Projection) Find(t Target) (Part, bool) {
	for _, part := range p {
		if part.Target == t {
			return part, true
		}
	}
	return Part{}, false
}

// Project returns what the row says of OneSignal after change ev. prev is
// what it said before, as the sink last recorded it (nil when the sink has
// not seen the row, or it fed nothing); values the change did not carry
// (unchanged TOAST) are taken from prev. A tag that prev gave a target and
// the row no longer gives it is deleted ("" in Tags), so a flattened key
// that disappears goes too.
//
// A TRUNCATE says nothing of any row: it gives no projection and no error.
func (m *Mapping) Project(ev *event.Envelope, prev Projection) (Projection, error) {
	if ev.Op == event.OpTruncate || ev.Op == event.OpDelete {
		return nil, nil
	}
	var out Projection
	var err error
	switch table := ev.Source.Schema + "." + ev.Source.Table; {
	case m.Users != nil && table == m.Users.Table:
		if err := m.Users.checkImage(ev.After); err != nil {
			return nil, err
		}
		out, err = m.Users.project(ev.After, prev)
	case m.Devices != nil && table == m.Devices.Table:
		if err := m.Devices.checkImage(ev.After); err != nil {
			return nil, err
		}
		out, err = m.Devices.project(ev.After, prev)
	default:
		return nil, fmt.Errorf("%w: table %q is not in the mapping: add it to mapping.users or mapping.devices, or stop publishing it", ErrBadRow, table)
	}
	if err != nil {
		return nil, err
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
	return out, nil
}

// Previous returns what the old image of a change (its "before" row) says
// of OneSignal, for a row the sink has not seen: under REPLICA IDENTITY
// FULL the whole row, otherwise its primary key, whose columns may name the
// target. ok is false when the image names no target. Values the image does
// not hold are unknown.
func (m *Mapping) Previous(ev *event.Envelope) (p Projection, ok bool) {
	if ev.Before == nil {
		return nil, false
	}
	switch table := ev.Source.Schema + "." + ev.Source.Table; {
	case m.Users != nil && table == m.Users.Table:
		p, _ = m.Users.project(ev.Before, nil)
	case m.Devices != nil && table == m.Devices.Table:
		p, _ = m.Devices.project(ev.Before, nil)
	}
	return p, len(p) > 0
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
	return table, ""
}

// project reads a users row. A column absent from the image (an old image
// holds only the primary key under REPLICA IDENTITY DEFAULT; a new one has
// every column, checkImage saw to it), or whose value was not sent, is
// left unknown; prev fills in what it knew of the row, also when the row
// named another user then: an unchanged value is the row's, whichever
// user the row feeds.
func (u *UsersMapping) project(row event.Row, prev Projection) (Projection, error) {
	id, known, err := textColumn(row, u.ExternalID)
	if err != nil {
		return nil, err
	}
	if !known {
		// The external id itself was not sent (TOAST): the row still
		// belongs to the user it did.
		for _, p := range prev {
			if !p.Target.Device {
				id, known = p.Target.ID, true
			}
		}
	}
	if !known || id == "" {
		return nil, nil // no user to address: the row feeds nothing
	}
	target := User(id)
	was, found := prev.Find(target)
	for _, p := range prev {
		if !found && !p.Target.Device { // the external id changed: a users row feeds one user
			was = p
		}
	}
	part := Part{Target: target, Tags: make(map[string]string, len(u.Tags))}
	for _, col := range sortedKeys(u.Tags) {
		v, ok := row.Get(col)
		if !ok || event.IsUnavailable(v) {
			u.keep(col, was, &part)
			continue
		}
		if err := u.convert(col, v, part.Tags); err != nil {
			return nil, fmt.Errorf("%w: %s.%s: %v", ErrBadRow, u.Table, col, err)
		}
	}
	for _, rec := range []struct{ col, channel string }{{u.Email, ChannelEmail}, {u.Phone, ChannelSMS}} {
		if rec.col == "" {
			continue
		}
		addr, known, err := textColumn(row, rec.col)
		if err != nil {
			return nil, err
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
	slices.Sort(part.Unknown)
	return Projection{part}, nil
}

// keep carries over what was said of column col's tag before, when the
// change did not carry its value; without it the tag is unknown. A
// flattened column's tags are those named "<tag>_…".
func (u *UsersMapping) keep(col string, was Part, part *Part) {
	name := u.tagName(col)
	if u.Convert[col] == ConvertFlatten {
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

// project reads a devices row. A row without an owner feeds nothing; a row
// without a device id is refused, since a device row must name its device.
func (d *DevicesMapping) project(row event.Row, prev Projection) (Projection, error) {
	dev, known, err := textColumn(row, d.DeviceID)
	if err != nil {
		return nil, err
	}
	if !known {
		for _, p := range prev {
			if p.Target.Device {
				dev, known = p.Target.ID, true
			}
		}
		if !known {
			return nil, nil
		}
	}
	if dev == "" {
		return nil, fmt.Errorf("%w: a %s row has no %q (it is NULL or empty): every device row needs its player_id or subscription id", ErrBadRow, d.Table, d.DeviceID)
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
	}
	return out
}
