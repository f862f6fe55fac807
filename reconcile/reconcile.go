// Package reconcile compares what OneSignal should hold with what it
// holds and says where they differ: the drift report of issue 16. It is
// pure (no I/O, no clock): the caller brings both sides.
//
// What OneSignal should hold comes from the sink's own model, the
// desired.User and desired.Device that desired.State computes from the
// rows' contributions through the mapping, so the rules are never written
// twice. What it holds comes from an export or from views, reduced to
// User and Device.
//
// Its guarantee: only mapped tags are compared. A tag the mapping does
// not name belongs to the SDKs or the dashboard; it is counted in
// Report.Ignored and never reported as drift.
package reconcile

import (
	"cmp"
	"slices"

	"github.com/onesignal-cdc/onesignal-cdc/sink/desired"
)

// Kind is a kind of drift.
type Kind string

const (
	// MissingUser: a row feeds the user, OneSignal has no such user.
	MissingUser Kind = "missing_user"
	// UndeletedUser: the user is to be deleted (on_delete: delete_user),
	// OneSignal still has it.
	UndeletedUser Kind = "undeleted_user"
	// MissingTag: a mapped tag has a value, OneSignal has none.
	MissingTag Kind = "missing_tag"
	// WrongTag: OneSignal has another value for a mapped tag.
	WrongTag Kind = "wrong_tag"
	// StaleTag: no live row gives the mapped tag any more (it is to be
	// deleted), OneSignal still has it.
	StaleTag Kind = "stale_tag"
	// ExtraTag: OneSignal has a mapped tag that no row of the user ever
	// gave.
	ExtraTag Kind = "extra_tag"
	// MissingDevice: a row names the device, OneSignal has no such
	// device.
	MissingDevice Kind = "missing_device"
	// WrongOwner: the device is on another user than its row names, or
	// on one when it should be on none.
	WrongOwner Kind = "wrong_owner"
)

// Kinds are every kind of drift, in the order reports list them.
var Kinds = []Kind{MissingUser, UndeletedUser, MissingTag, WrongTag, StaleTag, ExtraTag, MissingDevice, WrongOwner}

// User is what OneSignal holds of a user.
type User struct {
	Tags map[string]string
}

// Device is what OneSignal holds of a device. Tags are the device's own
// in the player model; nil in the user model, where tags live on users.
type Device struct {
	ExternalID string // "" when linked to no user
	Tags       map[string]string
}

// Want is what OneSignal should hold: the desired state of each target
// the sweep covers, by external id and by device id.
type Want struct {
	Users   map[string]desired.User
	Devices map[string]desired.Device
}

// Have is what OneSignal holds, by external id and by device id.
type Have struct {
	Users   map[string]User
	Devices map[string]Device
	// PlayerModel says tags live on the devices (the player model's
	// export): users are only the devices' external ids, so tags are
	// compared on each device against its owner's desired tags, and a
	// user no device carries is no drift (its tags have nowhere to be).
	PlayerModel bool
}

// Drift is one difference. Want and Have are the values ("" for none).
type Drift struct {
	Kind       Kind
	ExternalID string
	DeviceID   string
	Tag        string
	Want, Have string
}

// Report is the outcome of Compare.
type Report struct {
	// Drift lists every difference, sorted by external id, device, kind
	// and tag.
	Drift []Drift
	// Counts counts Drift by kind.
	Counts map[Kind]int
	// Ignored counts, by tag, the users and devices compared that carry a
	// tag the mapping does not name.
	Ignored map[string]int
	// Users and Devices are how many targets of Want were compared.
	Users, Devices int
}

// Compare reports where have differs from want. mapped says whether the
// mapping names a tag. Only the targets in want are compared: a sweep
// over part of the rows (a table, a filter, a limit) says nothing of the
// users and devices it did not cover.
//
// A tag a user's desired state leaves out (its rows name it only as an
// unknown TOAST value, kept as it is) is compared like one no row gave:
// held, it is reported as ExtraTag.
func Compare(want Want, have Have, mapped func(tag string) bool) Report {
	r := Report{Counts: map[Kind]int{}, Ignored: map[string]int{}}
	add := func(d Drift) {
		r.Drift = append(r.Drift, d)
		r.Counts[d.Kind]++
	}
	for ext, u := range want.Users {
		r.Users++
		if have.PlayerModel {
			continue // compared on the devices
		}
		held, ok := have.Users[ext]
		switch {
		case u.Delete && ok:
			add(Drift{Kind: UndeletedUser, ExternalID: ext})
			continue
		case u.Delete || !u.Live && !ok:
			continue
		case !ok:
			add(Drift{Kind: MissingUser, ExternalID: ext})
			continue
		}
		compareTags(u.Tags, held.Tags, mapped, r.Ignored, func(d Drift) { d.ExternalID = ext; add(d) })
	}
	for id, d := range want.Devices {
		r.Devices++
		held, ok := have.Devices[id]
		if !ok {
			if d.Owner != "" {
				add(Drift{Kind: MissingDevice, DeviceID: id, ExternalID: d.Owner})
			}
			continue
		}
		if held.ExternalID != d.Owner {
			add(Drift{Kind: WrongOwner, DeviceID: id, ExternalID: d.Owner, Want: d.Owner, Have: held.ExternalID})
		}
		if !have.PlayerModel {
			continue
		}
		// Player model: the device carries its owner's mapped tags, an
		// unlinked one none.
		owner := want.Users[d.Owner]
		tags := owner.Tags
		if d.Owner == "" || owner.Delete {
			tags = map[string]string{}
		}
		compareTags(tags, held.Tags, mapped, r.Ignored, func(x Drift) { x.DeviceID, x.ExternalID = id, d.Owner; add(x) })
	}
	slices.SortFunc(r.Drift, func(a, b Drift) int {
		return cmp.Or(cmp.Compare(a.ExternalID, b.ExternalID), cmp.Compare(a.DeviceID, b.DeviceID),
			cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Tag, b.Tag))
	})
	return r
}

// compareTags compares desired tags (a value, or "" to delete) with held
// ones, mapped tags only; it counts the unmapped ones held.
func compareTags(want, held map[string]string, mapped func(string) bool, ignored map[string]int, add func(Drift)) {
	for tag, v := range want {
		if !mapped(tag) {
			continue // not the mapping's: never the sink's to set
		}
		h := held[tag]
		switch {
		case v == h:
		case v == "":
			add(Drift{Kind: StaleTag, Tag: tag, Have: h})
		case h == "":
			add(Drift{Kind: MissingTag, Tag: tag, Want: v})
		default:
			add(Drift{Kind: WrongTag, Tag: tag, Want: v, Have: h})
		}
	}
	for tag, h := range held {
		if !mapped(tag) {
			ignored[tag]++
			continue
		}
		if _, named := want[tag]; !named && h != "" {
			add(Drift{Kind: ExtraTag, Tag: tag, Have: h})
		}
	}
}
