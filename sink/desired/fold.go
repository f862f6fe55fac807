package desired

import (
	"slices"
	"strings"

	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// Projected is a row at rest: its id (its event topic, NUL, its Kafka
// key, as the row stage names rows) and the projection of its last
// change.
type Projected struct {
	Row   string
	Parts transform.Projection
}

// Final is every user's and device's desired state, by external id and by
// device id.
type Final struct {
	Users   map[string]User
	Devices map[string]Device
}

// Fold is the desired state the target stage ends with once it applied
// rows, each row's projection as one contribution per target (all at one
// position, as the rows of one snapshot): a part that a row gives a
// referenced row (a users row that other rows name by foreign key) goes
// on, as the target stage forwards it, to the user that the referenced
// row names, or to the device of a devices row's part with that user as
// its owner; parts of a referenced row that names no one reach no one. It
// is what `onesignal-cdc mapping diff` compares, and depends on the rows
// alone, not on their order.
func Fold(rows []Projected) Final {
	states := map[transform.Target]*State{}
	give := func(t transform.Target, c *Contribution) {
		st := states[t]
		if st == nil {
			st = &State{}
			states[t] = st
		}
		st.Apply(ContributionRecord(t, c))
	}
	for _, r := range rows {
		for _, p := range r.Parts.Fed() {
			give(p.Target, &Contribution{Row: r.Row, Created: true, Tags: p.Tags, Unknown: p.Unknown, Records: p.Records,
				Owner: p.Owner, Props: p.Props, Aliases: p.Aliases, Many: p.Many, DeleteUser: p.DeleteUser,
				Identity: p.Identity, Device: p.Device})
		}
	}
	var referenced []transform.Target
	for t := range states {
		if t.Row {
			referenced = append(referenced, t)
		}
	}
	slices.SortFunc(referenced, func(a, b transform.Target) int { return strings.Compare(a.Key(), b.Key()) })
	for _, t := range referenced {
		row := states[t].Row()
		if row.Identity == "" {
			continue
		}
		for _, c := range row.Referencing {
			f := *c
			f.Identity, f.Device, f.Owner = "", "", ""
			f.Pos = c.Pos.Through(row.Version)
			if c.Device != "" {
				f.Owner = row.Identity
				give(transform.Device(c.Device), &f)
				continue
			}
			give(transform.User(row.Identity), &f)
		}
	}
	out := Final{Users: map[string]User{}, Devices: map[string]Device{}}
	for t, st := range states {
		switch {
		case t.Row:
		case t.Device:
			out.Devices[t.ID] = st.Device()
		default:
			out.Users[t.ID] = st.User()
		}
	}
	return out
}
