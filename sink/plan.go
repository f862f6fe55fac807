package sink

import (
	"crypto/sha256"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/sink/desired"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// callKind is what one request does.
type callKind int

const (
	callSetUser    callKind = iota + 1 // a user's tags (a chunk of them)
	callAddRecord                      // a user's email or SMS record
	callLink                           // a device to its owner
	callUnlink                         // a device away from its owner
	callAwait                          // no request: a device writes its membership and waits for its owner's tags
	callDeleteUser                     // a user deleted (on_delete: delete_user)
	callAnswer                         // no request: a player-model user answers its devices again, with new properties
)

func (k callKind) String() string {
	switch k {
	case callSetUser:
		return "set_tags"
	case callAddRecord:
		return "add_record"
	case callLink:
		return "link"
	case callUnlink:
		return "unlink"
	case callAwait:
		return "await_owner_tags"
	case callDeleteUser:
		return "delete_user"
	case callAnswer:
		return "answer_devices"
	}
	return fmt.Sprintf("call(%d)", int(k))
}

// request is one call that brings part of a target's OneSignal state to
// its desired state.
type request struct {
	kind   callKind
	target transform.Target
	tags   map[string]string
	create bool // callSetUser: the user is probably new
	// props and aliases are a user's properties and aliases (callSetUser,
	// the first chunk), or in the player model a device's properties
	// (callLink).
	props, aliases map[string]string
	record         transform.Record // callAddRecord
	owner          string           // callLink: the new owner; callUnlink: the one it had, if known
	// version is the desired state's version the request carries: a
	// user's tags, a device's owner.
	version desired.Position
	// part names the part of the desired state the request sets, and
	// digest its value, for the memory of what was applied.
	part   string
	digest [sha256.Size]byte
	force  uint64 // callSetUser: the forced sends it serves
	// carried are the tags a player-model link carries that are set.
	carried []string
	// before are records written before the request (a membership);
	// after, once OneSignal accepted it.
	before, after []kafka.Message
}

func (r *request) String() string { return r.kind.String() }

// maxTagsPerRequest is OneSignal's limit of tag changes in one request.
const maxTagsPerRequest = 100

// plan returns the next request that brings t closer to its desired state,
// nil when OneSignal holds it (as far as the memory in tk tells).
func (g *generation) plan(t *target, tk taken) (*request, error) {
	st, err := g.s.loadState(t.partition, t.key)
	if err != nil {
		return nil, err
	}
	switch {
	case t.key.Device:
		return g.planDevice(t, st, tk.memo), nil
	case t.key.Record || t.key.Row:
		return nil, nil // never scheduled: they write records, not requests
	}
	return g.planUser(t, st, tk)
}

func (g *generation) planUser(t *target, st *desired.State, tk taken) (*request, error) {
	m, force := tk.memo, tk.force
	s := g.s
	u := st.User()
	player := s.cfg.Model == ModelPlayer
	if u.Delete && !player {
		// on_delete: delete_user, and the users row is gone: the user
		// goes, with its tags, records and devices.
		d := digestOf("deleted")
		if m.applied[partUser] == d {
			return nil, nil
		}
		return &request{kind: callDeleteUser, target: t.key, version: u.Version, part: partUser, digest: d}, nil
	}
	if lim := s.cfg.TagLimit; lim > 0 {
		if n := countSet(u.Tags); n > lim {
			return nil, &tagLimitError{to: t.key, tags: setTags(u.Tags), limit: lim}
		}
	}
	var carry map[string]string
	if player {
		carry = u.Tags
	}
	chunks := chunkTags(u.Tags)
	created := u.Live && (u.Created || tk.created)
	if len(chunks) == 0 && !player && (created || len(u.Props) > 0 || len(u.Aliases) > 0) {
		chunks = []map[string]string{{}} // a user with no tag to set still exists, or has properties
	}
	setUser := func(i int) *request {
		c := chunks[i]
		part := fmt.Sprintf("tags/%d", i)
		var props, aliases map[string]string
		if i == 0 && !player {
			props, aliases = u.Props, u.Aliases // with the first chunk: one write to the user
		}
		d := digestOf("tags", c, props, aliases)
		if force == 0 && m.applied[part] == d {
			return nil
		}
		return &request{kind: callSetUser, target: t.key, tags: c, props: props, aliases: aliases, create: !player && created && i == 0,
			version: u.Version, part: part, digest: d, force: force}
	}
	granted := st.Granted()
	if !player && created && len(chunks) > 0 && len(granted) > 0 {
		// A new user is created with its tags first (one request), and
		// its records follow: a record first would cost a 404 and a
		// create, and then the tags an update.
		if r := setUser(0); r != nil {
			return r, nil
		}
	}
	// Records first otherwise: in the player model a record is a device
	// the tags then reach. Only the records whose targets gave them to
	// this user: a record has one writer of its owner, the newest row
	// that names its address, whichever partition its old user lags on.
	for _, rec := range granted {
		if !m.records[rec] {
			held := targetMessage(s.cfg.TargetsTopic, &desired.Record{Target: transform.RecordTarget(rec), Kind: desired.KindHeld, Owner: t.key.ID})
			return &request{kind: callAddRecord, target: t.key, record: rec, tags: carry, version: u.Version, after: []kafka.Message{held}}, nil
		}
	}
	if player && s.devices && !s.records && !anyLinked(st) {
		// No device of the user's in the devices table is linked yet, and
		// the mapping gives users no email or SMS record (which would be
		// devices of theirs, whose tags must follow, also once the address
		// is gone from the row): the tags wait in the state for the first
		// link, which carries them.
		// Written by external id now, they would reach no device (404),
		// and a change after a device's owner answered it is sent once
		// that link is accepted (targetRecord, KindLinked).
		return g.planAnswer(t, st, u, m), nil
	}
	for i := range chunks {
		if r := setUser(i); r != nil {
			return r, nil
		}
	}
	if player {
		return g.planAnswer(t, st, u, m), nil
	}
	return nil, nil
}

// partUser is the part of a user's state that says it was deleted.
const partUser = "user"

// planAnswer is, in the player model, the answer a user gives its devices
// again when its properties changed: properties go to each device with its
// link (PUT /players/{id}), there being no edit of them by external id. nil
// when the devices have them.
func (g *generation) planAnswer(t *target, st *desired.State, u desired.User, m memo) *request {
	if len(u.Props) == 0 {
		return nil
	}
	d := digestOf("props", u.Props)
	if m.applied["props"] == d {
		return nil
	}
	r := &request{kind: callAnswer, target: t.key, version: u.Version, part: "props", digest: d}
	for _, dev := range st.Devices() {
		r.before = append(r.before, targetMessage(g.s.cfg.TargetsTopic, &desired.Record{Target: transform.Device(dev), Kind: desired.KindReply,
			Owner: t.key.ID, For: st.Members[dev].Version, Version: u.Version, Tags: u.Tags, Props: u.Props}))
	}
	return r
}

func (g *generation) planDevice(t *target, st *desired.State, m memo) *request {
	s := g.s
	d := st.Device()
	previous := previousOwner(st, d.Owner)
	if s.cfg.Model != ModelPlayer {
		r := &request{kind: callLink, target: t.key, owner: d.Owner, version: d.Version, part: "owner", digest: digestTags("owner:"+d.Owner, nil)}
		if d.Owner == "" {
			r.kind, r.owner = callUnlink, previous
		}
		if m.applied["owner"] == r.digest {
			return nil
		}
		return r
	}
	// The player model: the device carries its owner's tags.
	var clear []string // tags it carried that the new owner does not set
	if rep := st.Replies[previous]; previous != "" && rep != nil {
		clear = slices.Collect(maps.Keys(rep.Tags))
	}
	clear = append(clear, m.carried...)
	if d.Owner == "" {
		tags := cleared(clear, nil)
		r := &request{kind: callUnlink, target: t.key, owner: previous, tags: tags, version: d.Version, part: "owner", digest: digestTags("owner:", tags)}
		if previous != "" {
			r.after = append(r.after, g.member(previous, t.key.ID, d.Version, true))
		}
		if m.applied["owner"] == r.digest {
			return nil
		}
		return r
	}
	rep := st.Replies[d.Owner]
	if rep == nil || rep.For != d.Version {
		r := &request{kind: callAwait, target: t.key, owner: d.Owner, version: d.Version}
		if m.memberFor != d.Version || m.memberOf != d.Owner {
			r.before = append(r.before, g.member(d.Owner, t.key.ID, d.Version, false))
			if previous != "" && previous != d.Owner {
				r.before = append(r.before, g.member(previous, t.key.ID, d.Version, true))
			}
		}
		return r
	}
	tags := cleared(clear, rep.Tags)
	r := &request{kind: callLink, target: t.key, owner: d.Owner, tags: tags, props: rep.Props, version: d.Version,
		part: "owner", digest: digestOf("owner:"+d.Owner, tags, rep.Props)}
	for tag, v := range tags {
		if v != "" {
			r.carried = append(r.carried, tag)
		}
	}
	slices.Sort(r.carried)
	r.after = append(r.after, targetMessage(s.cfg.TargetsTopic, &desired.Record{
		Target: transform.User(d.Owner), Kind: desired.KindLinked, Device: t.key.ID, Version: rep.Version, Tags: rep.Tags, Props: rep.Props}))
	if m.applied["owner"] == r.digest {
		return nil
	}
	return r
}

// member is device's membership record of user, as of the device's owner
// version v.
func (g *generation) member(user, device string, v desired.Position, gone bool) kafka.Message {
	return targetMessage(g.s.cfg.TargetsTopic, &desired.Record{Target: transform.User(user), Kind: desired.KindMember, Device: device, Pos: v, Gone: gone})
}

// previousOwner is the owner a device had before, if its state tells:
// the owner its newest gone contribution named; "" when that is owner
// itself or unknown.
func previousOwner(st *desired.State, owner string) string {
	var newest *desired.Contribution
	for _, c := range st.Contributions {
		if c.Gone && c.Owner != "" && (newest == nil || c.Pos.After(newest.Pos)) {
			newest = c
		}
	}
	if newest == nil || newest.Owner == owner {
		return ""
	}
	return newest.Owner
}

// cleared is tags plus "" for each name in clear that tags does not set.
func cleared(clear []string, tags map[string]string) map[string]string {
	out := maps.Clone(tags)
	if out == nil {
		out = make(map[string]string, len(clear))
	}
	for _, tag := range clear {
		if _, ok := out[tag]; !ok {
			out[tag] = ""
		}
	}
	return out
}

// chunkTags splits tags into requests of at most maxTagsPerRequest, in key
// order.
func chunkTags(tags map[string]string) []map[string]string {
	keys := slices.Sorted(maps.Keys(tags))
	var out []map[string]string
	for len(keys) > 0 {
		n := min(len(keys), maxTagsPerRequest)
		c := make(map[string]string, n)
		for _, k := range keys[:n] {
			c[k] = tags[k]
		}
		out = append(out, c)
		keys = keys[n:]
	}
	return out
}

// digestTags is a digest of what a request sets: a label and tags.
func digestTags(label string, tags map[string]string) [sha256.Size]byte {
	return digestOf(label, tags)
}

// digestOf is a digest of what a request sets: a label and maps (tags,
// properties, aliases), each told apart from the next.
func digestOf(label string, ms ...map[string]string) [sha256.Size]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%d:%s", len(label), label)
	for i, m := range ms {
		fmt.Fprintf(h, "|%d/%d|", i, len(m))
		for _, k := range slices.Sorted(maps.Keys(m)) {
			fmt.Fprintf(h, "%d:%s%d:%s", len(k), k, len(m[k]), m[k])
		}
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// countSet counts the tags that are set rather than deleted.
func countSet(tags map[string]string) int {
	n := 0
	for _, v := range tags {
		if v != "" {
			n++
		}
	}
	return n
}

// tagLimitError is a desired state with more tags than onesignal.max_tags:
// permanent, so its messages are dead-lettered.
type tagLimitError struct {
	to    transform.Target
	tags  []string // the tags set, sorted
	limit int
}

func (e *tagLimitError) Error() string {
	return fmt.Sprintf("the rows would give %s %d tags (%s), more than onesignal.max_tags %d: map fewer tag columns, filter the rows that give them, or raise the limit with your OneSignal plan",
		e.to, len(e.tags), strings.Join(e.tags, ", "), e.limit)
}

// setTags are the names of the tags that are set rather than deleted,
// sorted.
func setTags(tags map[string]string) []string {
	var out []string
	for k, v := range tags {
		if v != "" {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// anyLinked reports whether a device that names the user its owner has had
// a link to it accepted.
func anyLinked(st *desired.State) bool {
	for _, d := range st.Devices() {
		if _, ok := st.Linked[d]; ok {
			return true
		}
	}
	return false
}
