package emulator

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// The properties besides tags that the emulator keeps: the user model's
// on the user, the player model's on the device. Their values are checked
// for their JSON type only: OneSignal documents no answer to a language
// code it does not know, a timezone_id that is not IANA's, a country that
// is not ISO 3166-1 alpha-2 or a lat or long out of range, and most likely
// stores what it is given, so the emulator does too.

// propChanges is what a write does to the properties it names: a nil
// value clears one (null, or "" for a string property); anything else
// sets it, a string to a string, a number to a float64 (user model) or an
// int (the player model's timezone).
type propChanges map[string]any

// propField is a property as a request carries it.
type propField struct {
	name string
	raw  json.RawMessage // nil: not in the request
	kind propKind
}

type propKind int

const (
	propString  propKind = iota // a string; "" and null clear it
	propNumber                  // any JSON number; null clears it
	propSeconds                 // a whole number (seconds from UTC); null clears it
)

// readProps checks the fields and returns what they change, or the
// message of a 400 that names the first one of the wrong type. prefix is
// how the message names the field's place ("properties." or "").
func readProps(prefix string, fields ...propField) (propChanges, string) {
	changes := propChanges{}
	for _, f := range fields {
		raw := bytes.TrimSpace(f.raw)
		if raw == nil {
			continue
		}
		if string(raw) == "null" {
			changes[f.name] = nil
			continue
		}
		switch f.kind {
		case propString:
			var s string
			if json.Unmarshal(raw, &s) != nil {
				return nil, prefix + f.name + " must be a string."
			}
			if s == "" {
				changes[f.name] = nil
			} else {
				changes[f.name] = s
			}
		case propNumber:
			var n float64
			if raw[0] == '"' || json.Unmarshal(raw, &n) != nil {
				return nil, prefix + f.name + " must be a number."
			}
			changes[f.name] = n
		case propSeconds:
			n, err := strconv.Atoi(string(raw))
			if err != nil {
				return nil, prefix + f.name + " must be a whole number of seconds from UTC."
			}
			changes[f.name] = n
		}
	}
	return changes, ""
}

// userPropChanges reads the user model's properties of a create or
// update user.
func userPropChanges(p *propertiesRequest) (propChanges, string) {
	if p == nil {
		return propChanges{}, ""
	}
	return readProps("properties.",
		propField{"language", p.Language, propString},
		propField{"timezone_id", p.TimezoneID, propString},
		propField{"country", p.Country, propString},
		propField{"lat", p.Lat, propNumber},
		propField{"long", p.Long, propNumber},
	)
}

// devicePropChanges reads the player model's fields of PUT and POST
// /players that the emulator keeps besides identifier, external_user_id
// and tags.
func devicePropChanges(req playerRequest) (propChanges, string) {
	return readProps("",
		propField{"language", req.Language, propString},
		propField{"timezone", req.Timezone, propSeconds},
		propField{"country", req.Country, propString},
	)
}

// setProps applies changes to u's properties.
func (u *user) setProps(changes propChanges) {
	p := &u.props
	for name, v := range changes {
		s, _ := v.(string)
		var n *float64
		if f, ok := v.(float64); ok {
			n = &f
		}
		switch name {
		case "language":
			p.language = s
		case "timezone_id":
			p.timezoneID = s
		case "country":
			p.country = s
		case "lat":
			p.lat = n
		case "long":
			p.long = n
		}
	}
}

// setDevice applies changes to sub's player-model fields.
func (sub *subscription) setDevice(changes propChanges) {
	d := &sub.device
	for name, v := range changes {
		s, _ := v.(string)
		switch name {
		case "language":
			d.language = s
		case "country":
			d.country = s
		case "timezone":
			if n, ok := v.(int); ok {
				d.timezone = &n
			} else {
				d.timezone = nil
			}
		}
	}
}

// echo renders changes as the properties an update user's answer echoes:
// what was sent, a clear as null.
func (c propChanges) echo(into map[string]any) {
	for name, v := range c {
		into[name] = v
	}
}
