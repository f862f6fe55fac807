// Package desired is the sink's model of what OneSignal should hold: per
// target (a user, a device), the contributions of every source row that
// feeds it, each with the source position of the change that made it, and
// from them the target's desired state.
//
// Its guarantee is the one the sink's convergence rests on: the state a
// target ends in is a function of the newest contribution of each row
// alone. Applying a set of records in any order, with repeats, gives the
// same desired state (see TestTheDesiredStateIgnoresArrivalOrder). It is
// pure: no I/O, no clock.
//
// The records are those of the sink's targets topic, keyed by target, so
// one process holds all of a target's records (docs/architecture.md).
package desired

import (
	"cmp"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// Position orders the source's changes: by the commit of their
// transaction, then by their own WAL record.
//
// A part forwarded through a referenced row (a subscriptions row's tags,
// which reach their user through the users row they name) is positioned
// at the newer of its own change and the referenced row's, and then by its
// own: ThenCommit and ThenLSN. Both halves only grow as either row
// changes, so a later forward of one part is always newer than an earlier
// one, even when the referenced row's change is the newer of the two in
// both.
type Position struct {
	Commit     int64 `json:"c"`
	LSN        int64 `json:"l"`
	ThenCommit int64 `json:"tc,omitempty"`
	ThenLSN    int64 `json:"tl,omitempty"`
}

// After reports whether p is later than q.
func (p Position) After(q Position) bool { return p.Compare(q) > 0 }

// Compare orders positions: -1, 0 or +1.
func (p Position) Compare(q Position) int {
	return cmp.Or(cmp.Compare(p.Commit, q.Commit), cmp.Compare(p.LSN, q.LSN),
		cmp.Compare(p.ThenCommit, q.ThenCommit), cmp.Compare(p.ThenLSN, q.ThenLSN))
}

// Through is the position of a part at p forwarded through a referenced
// row at version row.
func (p Position) Through(row Position) Position {
	out := p
	if row.After(p) {
		out = row
	}
	out.ThenCommit, out.ThenLSN = p.Commit, p.LSN
	return out
}

// IsZero reports whether p is no position at all.
func (p Position) IsZero() bool { return p == Position{} }

// Source is where a contribution's change was read: the event's topic,
// partition and offset, for dead letters and for explaining a target.
type Source struct {
	Topic     string `json:"t"`
	Partition int    `json:"p"`
	Offset    int64  `json:"o"`
}

// Contribution is what one source row says of one target, as of the change
// at Pos.
type Contribution struct {
	Row string   // the source row: its event topic, "\x00", its Kafka key
	Pos Position // of the change that made it
	// Gone says the row no longer feeds the target (deleted, or it names
	// another user or device now). Its Tags then name every tag it fed,
	// each "", so they are deleted unless another row gives them.
	Gone bool
	// Was is, for a gone contribution, the tags the row gave the target
	// before, with their values: the other half of a primary-key change
	// (the create of Next) takes from it a value it did not carry
	// (unchanged TOAST).
	Was map[string]string
	// Next is, on the delete half of a primary-key change, the row of the
	// new key. To is, on a gone contribution of a user, the user the row
	// (or Next) feeds now: the values of the row's tags that the row's
	// changes never carried go there (see Kept).
	Next, To string
	// Created says the change was an insert or a snapshot row: the user
	// is probably new to OneSignal.
	Created bool
	Tags    map[string]string
	Unknown []string
	Records []transform.Record
	Owner   string
	Source  Source
	// Props and Aliases are a user's properties (language, country, …) and
	// aliases the row gives; a gone contribution's Aliases are those it
	// gave, which the user loses unless another row gives them.
	Props, Aliases map[string]string
	// Many is how the user's several rows of the contribution's source give
	// its tags: "" or "latest", "count", "any".
	Many string
	// DeleteUser says the row is of a table whose on_delete is
	// delete_user: while none of its rows names the user, the user goes.
	DeleteUser bool
	// On a referenced row's target: Identity is the row's own external id
	// (the users row's contribution; a gone one names the id it gave);
	// Device names the device of a referencing devices row's part, which
	// goes to that device with the referenced row's user as its owner.
	Identity, Device string
}

// newer reports whether c is to win over d, another contribution of the
// same row, or of another row to the same target: the later position, and
// between equal positions (the rows of one snapshot chunk) the greater row,
// so that the choice never depends on arrival order.
func (c *Contribution) newer(d *Contribution) bool {
	if n := c.Pos.Compare(d.Pos); n != 0 {
		return n > 0
	}
	return c.Row > d.Row
}

// Member is, on a user in the player model, a device that names the user
// its owner, as of the device's owner Version; Gone when it no longer does.
type Member struct {
	Version Position
	Gone    bool
}

// Reply is, on a device in the player model, an owner's answer to the
// device's membership: the owner's desired tags as of Version, for the
// device's owner version For. It answers the device when both its owner
// and For are the device's.
type Reply struct {
	Owner   string
	For     Position
	Version Position
	Tags    map[string]string
	// Props are the owner's properties (language, timezone, country),
	// which the device's link carries.
	Props map[string]string `json:"props,omitempty"`
}

// State is everything held of one target. The zero value is an empty
// state.
type State struct {
	Contributions map[string]*Contribution `json:"contributions,omitempty"` // by row
	Members       map[string]*Member       `json:"members,omitempty"`       // by device id
	// Replies are a device's owners' answers, by owner: one owner may
	// answer again at a version another already answered (a device moved
	// twice at one position, by the two halves of a key change).
	Replies map[string]*Reply `json:"replies,omitempty"`
	// Linked is, per device, the tags version the device's last accepted
	// link carried.
	Linked map[string]Position `json:"linked,omitempty"`
	// Grants are, on a user, the email and SMS records that their
	// targets gave it to write, or took back, by the record target's ID.
	Grants map[string]*Grant `json:"grants,omitempty"`
	// Kept are, on a user, by row, the values of tags that the row's
	// changes never carried (unchanged TOAST after its primary key
	// changed), handed over by the user the row fed before.
	Kept map[string]*Kept `json:"kept,omitempty"`
}

// Kept is what a user knew of a row's tags when the row left it for
// another user: the values as of Pos.
type Kept struct {
	Pos  Position          `json:"p"`
	Tags map[string]string `json:"t"`
}

// Grant is, on a user, what an email or SMS record's target said of the
// record: the user's to write as of the record's Version, or, Gone, no
// longer.
type Grant struct {
	Record  transform.Record `json:"r"`
	Version Position         `json:"v"`
	Gone    bool             `json:"g,omitempty"`
	// Seq orders the record target's grants of one Version: the offset
	// (plus one) of the record it answered in the record target's
	// partition, so that a grant written again when that partition is
	// read again after a rebalance loses to the later ones. 0: written by
	// a sink that did not say (arrival order decides).
	Seq int64 `json:"s,omitempty"`
}

// Outcome says what a record did to the state.
type Outcome int

const (
	// Unchanged: the state already held the record (a repeat).
	Unchanged Outcome = iota
	// Changed: the record is newer than what the state held, and is in it
	// now.
	Changed
	// Stale: the state holds something newer of the record's key; the
	// record is ignored. The targets topic's newest record of that key is
	// then older than the state: writing the state's record again heals
	// it (see Current).
	Stale
)

// Apply folds rec into the state of rec.Target.
func (s *State) Apply(rec *Record) Outcome {
	switch rec.Kind {
	case KindContribution:
		c := rec.Contribution()
		old := s.Contributions[c.Row]
		switch {
		case old == nil || c.newer(old) || (rec.Target.Record && old.Pos == c.Pos && old.Gone && !c.Gone):
			// On a record's target, one row's change can come from two
			// users, the one the row leaves (gone) and the one it names
			// now: at one position, the live one is the row's.
			if s.Contributions == nil {
				s.Contributions = make(map[string]*Contribution)
			}
			s.Contributions[c.Row] = c
			return Changed
		case old.Pos == c.Pos:
			return Unchanged
		}
		return Stale
	case KindMember:
		// At one version the device still names the user when any record
		// says so: a primary-key change of a devices row that keeps its
		// owner is a delete and a create at one position, and the delete,
		// applied first, said for a moment that the device had left.
		old := s.Members[rec.Device]
		switch {
		case old == nil || rec.Pos.After(old.Version) || (rec.Pos == old.Version && !rec.Gone && old.Gone):
			if s.Members == nil {
				s.Members = make(map[string]*Member)
			}
			s.Members[rec.Device] = &Member{Version: rec.Pos, Gone: rec.Gone}
			return Changed
		case rec.Pos == old.Version:
			return Unchanged
		}
		return Stale
	case KindReply:
		old := s.Replies[rec.Owner]
		switch {
		case old == nil || rec.For.After(old.For) || (rec.For == old.For && rec.Version.After(old.Version)):
			if s.Replies == nil {
				s.Replies = make(map[string]*Reply)
			}
			s.Replies[rec.Owner] = &Reply{Owner: rec.Owner, For: rec.For, Version: rec.Version, Tags: rec.Tags, Props: rec.Props}
			return Changed
		case rec.For == old.For && rec.Version == old.Version:
			return Unchanged
		}
		return Stale
	case KindGrant:
		id := transform.RecordTarget(rec.Record).ID
		old := s.Grants[id]
		switch {
		// The record's target is its grants' one writer: at one version
		// (an owner replaced by an older row's, the record's newest change
		// being a gone row's) the later grant is the newer, by Seq, the
		// order the record target decided them in; without Seq, by
		// arrival.
		case old == nil || rec.Pos.After(old.Version) ||
			(rec.Pos == old.Version && (rec.Seq > old.Seq || rec.Seq == 0 && old.Seq == 0 && rec.Gone != old.Gone)):
			if s.Grants == nil {
				s.Grants = make(map[string]*Grant)
			}
			s.Grants[id] = &Grant{Record: rec.Record, Version: rec.Pos, Gone: rec.Gone, Seq: rec.Seq}
			return Changed
		case rec.Pos == old.Version && rec.Seq == old.Seq:
			return Unchanged
		}
		return Stale
	case KindKept:
		old := s.Kept[rec.Row]
		switch {
		case old == nil || rec.Pos.After(old.Pos):
			if s.Kept == nil {
				s.Kept = make(map[string]*Kept)
			}
			s.Kept[rec.Row] = &Kept{Pos: rec.Pos, Tags: clone(rec.Tags)}
			return Changed
		case rec.Pos == old.Pos:
			// Two users may hand the same row over at one position (a
			// later one knew more): what either knew holds.
			grew := false
			for tag, v := range rec.Tags {
				if old.Tags == nil {
					old.Tags = map[string]string{}
				}
				if _, ok := old.Tags[tag]; !ok {
					old.Tags[tag], grew = v, true
				}
			}
			if grew {
				return Changed
			}
			return Unchanged
		}
		return Stale
	case KindLinked:
		old, ok := s.Linked[rec.Device]
		switch {
		case !ok || rec.Version.After(old):
			if s.Linked == nil {
				s.Linked = make(map[string]Position)
			}
			s.Linked[rec.Device] = rec.Version
			return Changed
		case rec.Version == old:
			return Unchanged
		}
		return Stale
	}
	return Unchanged
}

// Current returns the state's record of the same key as rec, which Apply
// found stale, so it can be written again.
func (s *State) Current(target transform.Target, rec *Record) (*Record, bool) {
	switch rec.Kind {
	case KindContribution:
		if c := s.Contributions[rec.Row]; c != nil {
			return ContributionRecord(target, c), true
		}
	case KindMember:
		if m := s.Members[rec.Device]; m != nil {
			return &Record{Target: target, Kind: KindMember, Device: rec.Device, Pos: m.Version, Gone: m.Gone}, true
		}
	case KindReply:
		if r := s.Replies[rec.Owner]; r != nil {
			return &Record{Target: target, Kind: KindReply, Owner: r.Owner, For: r.For, Version: r.Version, Tags: r.Tags, Props: r.Props}, true
		}
	case KindLinked:
		if v, ok := s.Linked[rec.Device]; ok {
			return &Record{Target: target, Kind: KindLinked, Device: rec.Device, Version: v}, true
		}
	case KindKept:
		if k := s.Kept[rec.Row]; k != nil {
			return &Record{Target: target, Kind: KindKept, Row: rec.Row, Pos: k.Pos, Tags: k.Tags}, true
		}
	case KindGrant:
		if g := s.Grants[transform.RecordTarget(rec.Record).ID]; g != nil {
			return &Record{Target: target, Kind: KindGrant, Record: g.Record, Pos: g.Version, Gone: g.Gone, Seq: g.Seq}, true
		}
	}
	return nil, false
}

// User is a user's desired state.
type User struct {
	// Tags are the tags to set: each tag any contribution names, with the
	// value of the newest live contribution that knows it, "" (delete)
	// when no live one does; a tag that live contributions name only as
	// unknown is left out, to stay as it is.
	Tags map[string]string
	// Records are the live contributions' email and SMS records, newest
	// contribution first: what the user's rows name. Which of them the
	// sink writes to the user is the records' own targets' to say
	// (Granted).
	Records []transform.Record
	// Version is the newest position among the contributions: a later
	// Version is a newer desired state.
	Version Position
	// Live says some row feeds the user now.
	Live bool
	// Created says the newest live contribution came from an insert or a
	// snapshot row.
	Created bool
	// Props and Aliases are the user's properties and aliases, each from the
	// newest live contribution that gives it.
	Props, Aliases map[string]string
	// Delete says the user is to be deleted: its users row, whose
	// on_delete is delete_user, is gone (deleted, filtered out, or naming
	// another user now), and no live row of that table names it.
	Delete bool
}

// User returns the desired state of a user target.
func (s *State) User() User {
	var u User
	live := s.sorted(false)
	gone := s.sorted(true)
	u.Tags = make(map[string]string)
	unknown := map[string]bool{}
	counted := map[string]string{} // tag → its source's many, for count and any
	for _, c := range live {       // newest first: the first to know a tag wins
		for tag, v := range c.Tags {
			if c.Many == transform.ManyCount || c.Many == transform.ManyAny {
				counted[tag] = c.Many
				continue
			}
			if _, set := u.Tags[tag]; !set {
				u.Tags[tag] = v
			}
		}
		for _, tag := range c.Unknown {
			unknown[tag] = true
		}
		for _, r := range c.Records {
			if !slices.Contains(u.Records, r) {
				u.Records = append(u.Records, r)
			}
		}
		u.Props = firstOf(u.Props, c.Props)
		u.Aliases = firstOf(u.Aliases, c.Aliases)
	}
	for _, c := range gone {
		if c.Many == transform.ManyCount || c.Many == transform.ManyAny {
			for tag := range c.Tags {
				counted[tag] = c.Many
			}
		}
		// An alias a row gave and no live row gives goes ("" deletes it):
		// after an external-id change the old user must let it go, or
		// OneSignal refuses it to the new one.
		for label := range c.Aliases {
			if _, set := u.Aliases[label]; !set {
				if u.Aliases == nil {
					u.Aliases = map[string]string{}
				}
				u.Aliases[label] = ""
			}
		}
	}
	for tag, many := range counted {
		u.Tags[tag] = aggregate(tag, many, live)
	}
	// A tag that live rows name only as unknown keeps the value the row had
	// before its primary key changed, or that the user it fed before knew.
	for tag := range unknown {
		if _, set := u.Tags[tag]; set {
			continue
		}
		for _, c := range live {
			if !slices.Contains(c.Unknown, tag) {
				continue
			}
			if v, ok := s.carried(gone, c.Row, c.Pos, tag, 0); ok {
				u.Tags[tag] = v
			}
			break // the newest live row that names the tag decides
		}
	}
	for _, c := range gone {
		for tag := range c.Tags {
			if _, set := u.Tags[tag]; !set && !unknown[tag] {
				u.Tags[tag] = ""
			}
		}
	}
	if len(live) > 0 {
		u.Live, u.Created = true, live[0].Created
	}
	// The user goes with its users row (on_delete: delete_user), whatever
	// other tables still say of it: a gone row asks for it, and no live
	// one of that table is there.
	deleter, liveDeleter := false, false
	for _, c := range s.Contributions {
		deleter = deleter || c.DeleteUser
		liveDeleter = liveDeleter || (c.DeleteUser && !c.Gone)
	}
	u.Delete = deleter && !liveDeleter
	for _, c := range s.Contributions {
		if c.Pos.After(u.Version) {
			u.Version = c.Pos
		}
	}
	return u
}

// maxCarried bounds how many primary-key changes back carried looks.
const maxCarried = 16

// carried is the value tag had in row as of pos when the row's changes
// since it appeared never carried it (an unchanged TOAST value, after the
// row's primary key changed or it came from another user): what the
// user was handed over of the row (Kept), or what the delete half of the
// key change that made the row gave (a gone contribution whose Next is
// row), followed back through earlier key changes. Of those, the newest
// not after pos decides. gone are the state's gone contributions, newest
// first.
func (s *State) carried(gone []*Contribution, row string, pos Position, tag string, depth int) (string, bool) {
	var best Position
	value, found := "", false
	if k := s.Kept[row]; k != nil && !k.Pos.After(pos) {
		if v, ok := k.Tags[tag]; ok {
			best, value, found = k.Pos, v, true
		}
	}
	for _, g := range gone {
		// Records of a sink that wrote no Next: the two halves of a key
		// change share their position.
		if g.Row == row || !(g.Next == row && !g.Pos.After(pos) || g.Next == "" && g.Pos == pos) {
			continue
		}
		if found && !g.Pos.After(best) {
			break // newest first: no later one is newer
		}
		if v, ok := g.Was[tag]; ok {
			return v, true
		}
		if _, fed := g.Tags[tag]; fed && depth < maxCarried {
			if v, ok := s.carried(gone, g.Row, g.Pos, tag, depth+1); ok {
				return v, true
			}
		}
	}
	return value, found
}

// Handover returns the record that hands what the user knew of a row's
// tags over to the user the row feeds now, once rec (applied to s) made
// it known: rec is a gone contribution that names its new user (To), or
// a record that taught s a value of a row that left it before (the
// delete half of the key change that made the row, or a hand-over from
// the user the row fed before). The values are those the row's last
// live contribution here gave, and those it did not carry that s can
// tell. Nil when there is nothing to hand over.
func (s *State) Handover(rec *Record) *Record {
	var row string
	switch {
	case rec.Kind == KindContribution && rec.Gone && rec.To != "":
		row = rec.Row
	case rec.Kind == KindContribution && rec.Gone && rec.Next != "":
		row = rec.Next
	case rec.Kind == KindKept:
		row = rec.Row
	default:
		return nil
	}
	c := s.Contributions[row]
	if c == nil || !c.Gone || c.To == "" {
		return nil
	}
	to, ok := transform.ParseTarget(c.To)
	if !ok || to.Device || to.Row || to.Record {
		return nil // a user's, or a row's that feeds no one (transform.HeldRow)
	}
	gone := s.sorted(true)
	tags := maps.Clone(c.Was)
	for tag := range c.Tags {
		if _, known := tags[tag]; known {
			continue
		}
		// Not in Was: a tag the row's contribution named unknown.
		if v, ok := s.carried(gone, row, c.Pos, tag, 0); ok {
			if tags == nil {
				tags = map[string]string{}
			}
			tags[tag] = v
		}
	}
	if len(tags) == 0 || c.Next == "" && len(tags) == len(c.Was) {
		// Nothing, or (the same row, which carries Was itself) nothing
		// the row's changes did not carry.
		return nil
	}
	next := row
	if c.Next != "" {
		next = c.Next
	}
	return &Record{Target: to, Kind: KindKept, Row: next, Pos: c.Pos, Tags: tags}
}

// aggregate is tag's value over the live contributions that give it, for
// a source whose several rows of one user count (the number of rows that
// give it a value) or any ("true" when one gives "true"); "" (no tag) when
// no live row gives it.
func aggregate(tag, many string, live []*Contribution) string {
	n, anyTrue := 0, false
	for _, c := range live {
		v, ok := c.Tags[tag]
		if !ok || v == "" {
			continue
		}
		n++
		anyTrue = anyTrue || v == "true"
	}
	switch {
	case n == 0:
		return "" // no row gives it: no tag, as for a user that never had one
	case many == transform.ManyCount:
		return strconv.Itoa(n)
	}
	return strconv.FormatBool(anyTrue)
}

// firstOf adds to into the keys of from it does not have yet.
func firstOf(into, from map[string]string) map[string]string {
	for k, v := range from {
		if into == nil {
			into = make(map[string]string, len(from))
		}
		if _, set := into[k]; !set {
			into[k] = v
		}
	}
	return into
}

// Row is the desired state of a referenced row's target: the external id
// the row gives its user, and the parts of the rows that reference it.
type Row struct {
	// Identity is the external id of the referenced row, from its newest
	// live contribution; "" while the row is not there.
	Identity string
	// Version is the newest position of the row's own contributions.
	Version Position
	// Referencing are the referencing rows' contributions, live and gone.
	Referencing []*Contribution
}

// Row returns the desired state of a referenced row's target.
func (s *State) Row() Row {
	var r Row
	var own []*Contribution
	for _, c := range s.Contributions {
		if c.Identity != "" { // the row's own: a gone one names the id it gave
			own = append(own, c)
			continue
		}
		r.Referencing = append(r.Referencing, c)
	}
	slices.SortFunc(r.Referencing, func(a, b *Contribution) int { return strings.Compare(a.Row, b.Row) })
	for _, c := range own {
		if c.Pos.After(r.Version) {
			r.Version = c.Pos
		}
	}
	var newest *Contribution
	for _, c := range own {
		if newest == nil || c.newer(newest) {
			newest = c
		}
	}
	if newest != nil && !newest.Gone {
		r.Identity = newest.Identity
	}
	return r
}

// Granted returns the email and SMS records whose targets gave them to
// the user to write, sorted.
func (s *State) Granted() []transform.Record {
	var out []transform.Record
	for _, g := range s.Grants {
		if !g.Gone {
			out = append(out, g.Record)
		}
	}
	slices.SortFunc(out, func(a, b transform.Record) int {
		return cmp.Or(strings.Compare(a.Channel, b.Channel), strings.Compare(a.Identifier, b.Identifier))
	})
	return out
}

// RecordOwner is an email or SMS record's desired state: the user to hold
// it, "" for none known (the rows that named the address are gone, or
// name another now).
type RecordOwner struct {
	Owner string
	// Version is the newest position among the contributions.
	Version Position
}

// RecordOwner returns the desired state of a record's target: the owner
// that the newest live contribution names, as a device's.
func (s *State) RecordOwner() RecordOwner {
	d := s.Device()
	return RecordOwner{Owner: d.Owner, Version: d.Version}
}

// Device is a device's desired state: its owner, "" for none.
type Device struct {
	Owner string
	// Version is the newest position among the contributions, so it grows
	// with every change, also one that gives the device back to an owner
	// it had before.
	Version Position
}

// Device returns the desired state of a device target: the owner that the
// newest live contribution names.
func (s *State) Device() Device {
	var d Device
	if live := s.sorted(false); len(live) > 0 {
		d.Owner = live[0].Owner
	}
	for _, c := range s.Contributions {
		if c.Pos.After(d.Version) {
			d.Version = c.Pos
		}
	}
	return d
}

// Devices returns the devices that name the user their owner, sorted.
func (s *State) Devices() []string {
	var ds []string
	for d, m := range s.Members {
		if !m.Gone {
			ds = append(ds, d)
		}
	}
	slices.Sort(ds)
	return ds
}

// sorted returns the live (or gone) contributions, newest first.
func (s *State) sorted(gone bool) []*Contribution {
	var cs []*Contribution
	for _, c := range s.Contributions {
		if c.Gone == gone {
			cs = append(cs, c)
		}
	}
	slices.SortFunc(cs, func(a, b *Contribution) int {
		switch {
		case a.newer(b):
			return -1
		case b.newer(a):
			return 1
		}
		return 0
	})
	return cs
}

// Empty reports whether the state holds nothing.
func (s *State) Empty() bool {
	return len(s.Contributions) == 0 && len(s.Members) == 0 && len(s.Replies) == 0 && len(s.Linked) == 0 && len(s.Grants) == 0 && len(s.Kept) == 0
}

// clone returns a copy of the tag map, so a state's maps are never shared
// with a record that is encoded later.
func clone(m map[string]string) map[string]string { return maps.Clone(m) }
