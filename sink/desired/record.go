package desired

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// Kind is what a record of the targets topic says.
type Kind string

const (
	// KindContribution is what a source row says of the target (written
	// by the row stage).
	KindContribution Kind = "contribution"
	// KindMember tells a user (player model) that a device names it as
	// owner, or no longer does (written by the device's target).
	KindMember Kind = "member"
	// KindReply gives a device (player model) its owner's desired tags,
	// in answer to its membership (written by the user's target).
	KindReply Kind = "tags"
	// KindLinked tells a user (player model) that OneSignal accepted the
	// link of one of its devices with its tags of a version (written by
	// the device's target).
	KindLinked Kind = "linked"
	// KindGrant tells a user that an email or SMS record is its to write,
	// as of the record's version Pos, or (Gone) no longer is; Again asks
	// for it to be written once more, although the user wrote it before
	// (written by the record's target).
	KindGrant Kind = "grant"
	// KindKept hands a user the values of a row's tags that the row's
	// changes never carried (unchanged TOAST), as the user the row fed
	// before knew them (written by that user's target).
	KindKept Kind = "kept"
	// KindHeld tells a record's target that OneSignal accepted (or may
	// have) the record with user Owner (written by the user's target).
	KindHeld Kind = "held"
	// KindRepair asks a user's or a device's target to forget what it
	// believes OneSignal holds of it and send its desired state again,
	// whole: OneSignal changed behind the sink's back (written by
	// `onesignal-cdc reconcile --repair`). It carries no state: what is
	// sent is the target's desired state when it is sent, the newest by
	// source position, so a repair never brings back an older value.
	KindRepair Kind = "repair"
)

// Record is one message of the targets topic. Which fields are set
// depends on Kind.
type Record struct {
	Target transform.Target
	Kind   Kind

	// KindContribution: Row, Pos, Gone, Was, Next, To, Created, Tags,
	// Unknown, Records, Owner, Source. KindKept: Row, Pos, Tags.
	Row      string
	Pos      Position // also KindMember: the device's owner version
	Gone     bool     // also KindMember: the device no longer names the user
	Was      map[string]string
	Next, To string
	Created  bool
	Tags     map[string]string // also KindReply: the owner's desired tags; KindLinked: those the link carried
	Unknown  []string
	Records  []transform.Record
	Owner    string // also KindReply: the user answering
	Source   Source

	Props, Aliases   map[string]string
	Many             string
	DeleteUser       bool
	Identity, Device string // also KindMember, KindLinked: Device

	For     Position // KindReply: the device owner version answered
	Version Position // KindReply: the tags' version; KindLinked: that the link carried

	// KindGrant: the record granted (with Pos, Gone), Again, and Seq
	// (Grant.Seq).
	Record transform.Record
	Again  bool
	Seq    int64
}

// ContributionRecord is the record of contribution c to target t.
func ContributionRecord(t transform.Target, c *Contribution) *Record {
	return &Record{
		Target: t, Kind: KindContribution, Row: c.Row, Pos: c.Pos, Gone: c.Gone, Was: c.Was, Next: c.Next, To: c.To, Created: c.Created,
		Tags: c.Tags, Unknown: c.Unknown, Records: c.Records, Owner: c.Owner, Source: c.Source,
		Props: c.Props, Aliases: c.Aliases, Many: c.Many, DeleteUser: c.DeleteUser, Identity: c.Identity, Device: c.Device,
	}
}

// Contribution returns the contribution a KindContribution record holds.
func (r *Record) Contribution() *Contribution {
	return &Contribution{
		Row: r.Row, Pos: r.Pos, Gone: r.Gone, Was: clone(r.Was), Next: r.Next, To: r.To, Created: r.Created,
		Tags: clone(r.Tags), Unknown: slices.Clone(r.Unknown), Records: slices.Clone(r.Records), Owner: r.Owner, Source: r.Source,
		Props: clone(r.Props), Aliases: clone(r.Aliases), Many: r.Many, DeleteUser: r.DeleteUser, Identity: r.Identity, Device: r.Device,
	}
}

// Key is the record's Kafka key: the target's key, NUL, then what makes
// the record one of its kind for the target. The targets topic is
// partitioned by the part before the NUL and compacted by the whole key.
func (r *Record) Key() []byte {
	k := r.Target.Key() + "\x00"
	switch r.Kind {
	case KindContribution:
		k += "c\x00" + r.Row
	case KindMember:
		k += "m\x00" + r.Device
	case KindReply:
		k += "r\x00" + r.Owner
	case KindLinked:
		k += "l\x00" + r.Device
	case KindGrant:
		k += "g\x00" + r.Record.Channel + "\x01" + r.Record.Identifier
	case KindHeld:
		k += "h\x00" + r.Owner
	case KindKept:
		k += "k\x00" + r.Row
	case KindRepair:
		k += "x"
	}
	return []byte(k)
}

// TargetOf returns the target part of a record's key.
func TargetOf(key []byte) string {
	if i := bytes.IndexByte(key, 0); i >= 0 {
		return string(key[:i])
	}
	return string(key)
}

// recordJSON is a record's value in the targets topic. Readable with any
// Kafka tool, and versioned: v is 1.
type recordJSON struct {
	V       int                `json:"v"`
	Kind    Kind               `json:"kind"`
	Row     string             `json:"row,omitempty"`
	Pos     *Position          `json:"pos,omitempty"`
	Gone    bool               `json:"gone,omitempty"`
	Was     map[string]string  `json:"was,omitempty"`
	Next    string             `json:"next,omitempty"`
	To      string             `json:"to,omitempty"`
	Created bool               `json:"created,omitempty"`
	Tags    map[string]string  `json:"tags,omitempty"`
	Unknown []string           `json:"unknown,omitempty"`
	Records []transform.Record `json:"records,omitempty"`
	Owner   string             `json:"owner,omitempty"`
	Source  *Source            `json:"src,omitempty"`
	Device  string             `json:"device,omitempty"`
	Props   map[string]string  `json:"props,omitempty"`
	Aliases map[string]string  `json:"aliases,omitempty"`
	Many    string             `json:"many,omitempty"`
	Delete  bool               `json:"delete_user,omitempty"`
	Ident   string             `json:"identity,omitempty"`
	For     *Position          `json:"for,omitempty"`
	Version *Position          `json:"version,omitempty"`
	Record  *transform.Record  `json:"record,omitempty"`
	Again   bool               `json:"again,omitempty"`
	Seq     int64              `json:"seq,omitempty"`
}

// recordVersion is the value format written; a reader refuses newer ones.
const recordVersion = 1

// Value encodes the record's value.
func (r *Record) Value() []byte {
	v := recordJSON{V: recordVersion, Kind: r.Kind, Row: r.Row, Gone: r.Gone, Was: r.Was, Next: r.Next, To: r.To, Created: r.Created,
		Tags: r.Tags, Unknown: r.Unknown, Records: r.Records, Owner: r.Owner, Device: r.Device,
		Props: r.Props, Aliases: r.Aliases, Many: r.Many, Delete: r.DeleteUser, Ident: r.Identity, Again: r.Again, Seq: r.Seq}
	if r.Kind == KindContribution {
		v.Source = &r.Source
	}
	if r.Record != (transform.Record{}) {
		v.Record = &r.Record
	}
	for _, p := range []struct {
		dst **Position
		pos Position
	}{{&v.Pos, r.Pos}, {&v.For, r.For}, {&v.Version, r.Version}} {
		if !p.pos.IsZero() {
			*p.dst = &p.pos
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("desired: encode a record: %v", err)) // strings and ints only: cannot fail
	}
	return b
}

// ErrNotARecord is wrapped by Decode's errors: the message is not a record
// of the targets topic as this version writes them.
var ErrNotARecord = errors.New("not a record of the sink's targets topic")

// Decode reads a record of the targets topic.
func Decode(key, value []byte) (*Record, error) {
	t, ok := transform.ParseTarget(TargetOf(key))
	if !ok {
		return nil, fmt.Errorf("%w: key %q names no user or device", ErrNotARecord, key)
	}
	var v recordJSON
	if err := json.Unmarshal(value, &v); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotARecord, err)
	}
	if v.V != recordVersion {
		return nil, fmt.Errorf("%w: format version %d, this sink reads %d: run the sink's newer version", ErrNotARecord, v.V, recordVersion)
	}
	r := &Record{Target: t, Kind: v.Kind, Row: v.Row, Gone: v.Gone, Was: v.Was, Next: v.Next, To: v.To, Created: v.Created, Tags: v.Tags, Unknown: v.Unknown,
		Records: v.Records, Owner: v.Owner, Device: v.Device,
		Props: v.Props, Aliases: v.Aliases, Many: v.Many, DeleteUser: v.Delete, Identity: v.Ident, Again: v.Again, Seq: v.Seq}
	if v.Record != nil {
		r.Record = *v.Record
	}
	// Empty is none, as the encoding writes it.
	if len(r.Tags) == 0 {
		r.Tags = nil
	}
	if len(r.Was) == 0 {
		r.Was = nil
	}
	if len(r.Props) == 0 {
		r.Props = nil
	}
	if len(r.Aliases) == 0 {
		r.Aliases = nil
	}
	if len(r.Unknown) == 0 {
		r.Unknown = nil
	}
	if len(r.Records) == 0 {
		r.Records = nil
	}
	if v.Pos != nil {
		r.Pos = *v.Pos
	}
	if v.For != nil {
		r.For = *v.For
	}
	if v.Version != nil {
		r.Version = *v.Version
	}
	if v.Source != nil {
		r.Source = *v.Source
	}
	switch r.Kind {
	case KindContribution:
		if r.Row == "" {
			return nil, fmt.Errorf("%w: a contribution without its row", ErrNotARecord)
		}
	case KindMember, KindLinked:
		if r.Device == "" || r.Target.Device {
			return nil, fmt.Errorf("%w: a %s record must name a device and be a user's", ErrNotARecord, r.Kind)
		}
	case KindReply:
		if !r.Target.Device {
			return nil, fmt.Errorf("%w: a tags reply must be a device's", ErrNotARecord)
		}
	case KindGrant:
		if _, ok := transform.ParseTarget(transform.RecordTarget(r.Record).Key()); !ok || r.Target.Device || r.Target.Row || r.Target.Record {
			return nil, fmt.Errorf("%w: a grant must be a user's and name an email or SMS record", ErrNotARecord)
		}
	case KindKept:
		if r.Row == "" || r.Target.Device || r.Target.Row || r.Target.Record {
			return nil, fmt.Errorf("%w: a kept record must be a user's, or a held row's, and name its row", ErrNotARecord)
		}
	case KindHeld:
		if !r.Target.Record || r.Owner == "" {
			return nil, fmt.Errorf("%w: a held record must be a record's and name its user", ErrNotARecord)
		}
	case KindRepair:
		if r.Target.Row || r.Target.Record || r.Target.Held {
			return nil, fmt.Errorf("%w: a repair must be a user's or a device's", ErrNotARecord)
		}
	default:
		return nil, fmt.Errorf("%w: kind %q", ErrNotARecord, r.Kind)
	}
	if want := r.Key(); !bytes.Equal(want, key) {
		return nil, fmt.Errorf("%w: key %q does not match its value (want %q)", ErrNotARecord, key, want)
	}
	return r, nil
}

// stateJSON is a State as the sink's local store keeps it.
type stateJSON struct {
	Contributions []*Record           `json:"c,omitempty"`
	Members       map[string]*Member  `json:"m,omitempty"`
	Replies       map[string]*Reply   `json:"r,omitempty"`
	Linked        map[string]Position `json:"l,omitempty"`
	Grants        map[string]*Grant   `json:"g,omitempty"`
	Kept          map[string]*Kept    `json:"k,omitempty"`
}

// EncodeState encodes s for the local store.
func EncodeState(s *State) []byte {
	v := stateJSON{Members: s.Members, Replies: s.Replies, Linked: s.Linked, Grants: s.Grants, Kept: s.Kept}
	rows := make([]string, 0, len(s.Contributions))
	for row := range s.Contributions {
		rows = append(rows, row)
	}
	slices.Sort(rows)
	for _, row := range rows {
		c := s.Contributions[row]
		v.Contributions = append(v.Contributions, ContributionRecord(transform.Target{}, c))
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("desired: encode a state: %v", err))
	}
	return b
}

// DecodeState reads a state EncodeState wrote.
func DecodeState(b []byte) (*State, error) {
	var v stateJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("desired: decode a stored state: %w", err)
	}
	s := &State{Members: v.Members, Replies: v.Replies, Linked: v.Linked, Grants: v.Grants, Kept: v.Kept}
	for _, r := range v.Contributions {
		if s.Contributions == nil {
			s.Contributions = make(map[string]*Contribution, len(v.Contributions))
		}
		s.Contributions[r.Row] = r.Contribution()
	}
	return s, nil
}

// Describe names a record for logs and dead letters.
func (r *Record) Describe() string {
	var b strings.Builder
	b.WriteString(string(r.Kind))
	b.WriteString(" for ")
	b.WriteString(r.Target.String())
	switch r.Kind {
	case KindContribution:
		fmt.Fprintf(&b, " from row %q at %d/%d", strings.ReplaceAll(r.Row, "\x00", " "), r.Pos.Commit, r.Pos.LSN)
		if r.Gone {
			b.WriteString(" (gone)")
		}
	case KindMember, KindLinked:
		fmt.Fprintf(&b, " of device %s", r.Device)
	case KindReply:
		fmt.Fprintf(&b, " from user %s", r.Owner)
	case KindGrant:
		fmt.Fprintf(&b, " of %s %s at %d/%d", r.Record.Channel, r.Record.Identifier, r.Pos.Commit, r.Pos.LSN)
		if r.Gone {
			b.WriteString(" (taken back)")
		}
		if r.Again {
			b.WriteString(" (again)")
		}
	case KindHeld:
		fmt.Fprintf(&b, " by user %s", r.Owner)
	case KindKept:
		fmt.Fprintf(&b, " of row %q at %d/%d", strings.ReplaceAll(r.Row, "\x00", " "), r.Pos.Commit, r.Pos.LSN)
	case KindRepair:
		b.WriteString(" (send the desired state again)")
	}
	return b.String()
}
