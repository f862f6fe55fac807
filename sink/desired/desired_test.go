package desired

import (
	"errors"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

var alice = transform.User("team/ops-7")

func contrib(row string, commit int64, tags map[string]string) *Record {
	return &Record{Target: alice, Kind: KindContribution, Row: row, Pos: Position{Commit: commit, LSN: commit}, Tags: tags}
}

func gone(row string, commit int64, tags ...string) *Record {
	r := contrib(row, commit, map[string]string{})
	r.Gone = true
	for _, t := range tags {
		r.Tags[t] = ""
	}
	return r
}

func fold(recs ...*Record) *State {
	s := &State{}
	for _, r := range recs {
		s.Apply(r)
	}
	return s
}

func TestAPrimaryKeyChangeKeepsTheTagsWhicheverOfItsDeleteAndCreateComesFirst(t *testing.T) {
	insert := contrib("users\x00{\"id\":1}", 10, map[string]string{"plan": "pro", "score": "7"})
	del := gone("users\x00{\"id\":1}", 20, "plan", "score")
	create := contrib("users\x00{\"id\":2}", 20, map[string]string{"plan": "pro", "score": "7"})
	want := map[string]string{"plan": "pro", "score": "7"}
	for name, order := range map[string][]*Record{
		"delete first": {insert, del, create},
		"create first": {insert, create, del},
	} {
		if got := fold(order...).User().Tags; !maps.Equal(got, want) {
			t.Errorf("%s: tags %v, want %v", name, got, want)
		}
	}
}

func TestADeletedUsersMappedTagsAreAllDeleted(t *testing.T) {
	s := fold(contrib("r1", 1, map[string]string{"plan": "pro"}), gone("r1", 2, "plan"))
	u := s.User()
	if !maps.Equal(u.Tags, map[string]string{"plan": ""}) || u.Live {
		t.Errorf("user %+v, want plan deleted and no live row", u)
	}
}

func TestAStaleContributionChangesNothingAndIsReportedStale(t *testing.T) {
	s := fold(contrib("r1", 5, map[string]string{"plan": "pro"}))
	if o := s.Apply(contrib("r1", 3, map[string]string{"plan": "free"})); o != Stale {
		t.Errorf("older contribution: %v, want Stale", o)
	}
	if o := s.Apply(contrib("r1", 5, map[string]string{"plan": "pro"})); o != Unchanged {
		t.Errorf("repeat: %v, want Unchanged", o)
	}
	if got := s.User().Tags["plan"]; got != "pro" {
		t.Errorf("plan %q, want pro", got)
	}
	cur, ok := s.Current(alice, contrib("r1", 3, nil))
	if !ok || cur.Pos != (Position{Commit: 5, LSN: 5}) || cur.Tags["plan"] != "pro" {
		t.Errorf("current record %+v, want the one at 5", cur)
	}
}

func TestATagThatLiveRowsNameOnlyAsUnknownIsLeftOut(t *testing.T) {
	live := contrib("r2", 9, map[string]string{"plan": "pro"})
	live.Unknown = []string{"bio"}
	s := fold(gone("r1", 4, "bio", "plan"), live)
	if got := s.User().Tags; !maps.Equal(got, map[string]string{"plan": "pro"}) {
		t.Errorf("tags %v, want bio left out", got)
	}
}

// The rows of a CRM users table keyed by a surrogate key: a key change
// leaves "bio", a TOAST value, unchanged, so the create of the new key
// does not carry it.
const (
	oldRow   = "db.public.users\x00{\"Contact ID\":1}"
	newRow   = "db.public.users\x00{\"Contact ID\":2}"
	newerRow = "db.public.users\x00{\"Contact ID\":3}"
)

func keyChange(from, to string, commit int64, was map[string]string, unknown ...string) (del, create *Record) {
	del = gone(from, commit, append(slices.Collect(maps.Keys(was)), unknown...)...)
	del.Was, del.Next = was, to
	create = contrib(to, commit, map[string]string{})
	for tag, v := range was {
		if !slices.Contains(unknown, tag) {
			create.Tags[tag] = v
		}
	}
	create.Unknown = unknown
	return del, create
}

func TestAKeyChangedRowKeepsItsUnchangedTOASTValueThroughItsLaterUpdates(t *testing.T) {
	insert := contrib(oldRow, 10, map[string]string{"bio": "long text", "plan": "pro"})
	del, create := keyChange(oldRow, newRow, 20, map[string]string{"bio": "long text", "plan": "pro"}, "bio")
	update := contrib(newRow, 30, map[string]string{"plan": "free"})
	update.Unknown = []string{"bio"}
	want := map[string]string{"bio": "long text", "plan": "free"}
	for name, order := range map[string][]*Record{
		"delete first": {insert, del, create, update},
		"create first": {insert, create, update, del},
	} {
		if got := fold(order...).User().Tags; !maps.Equal(got, want) {
			t.Errorf("%s: tags %v, want %v", name, got, want)
		}
	}
}

func TestAValueIsFollowedBackThroughSeveralKeyChanges(t *testing.T) {
	del1, create1 := keyChange(oldRow, newRow, 20, map[string]string{"bio": "long text"}, "bio")
	del2, create2 := keyChange(newRow, newerRow, 30, nil, "bio")
	if got := fold(contrib(oldRow, 10, map[string]string{"bio": "long text"}), del1, create1, del2, create2).User().Tags; got["bio"] != "long text" {
		t.Errorf("tags %v, want bio from the first key", got)
	}
}

func TestTheNewestKeyChangeIntoARowDecidesItsUnchangedValue(t *testing.T) {
	kept := &Record{Target: alice, Kind: KindKept, Row: newRow, Pos: Position{Commit: 20, LSN: 20}, Tags: map[string]string{"bio": "old"}}
	deleted := gone(newRow, 25, "bio")
	del, create := keyChange(oldRow, newRow, 30, map[string]string{"bio": "newer"}, "bio")
	if got := fold(kept, deleted, del, create).User().Tags["bio"]; got != "newer" {
		t.Errorf("bio %q, want the value the key change at 30 left", got)
	}
}

func TestAUserHandsTheValuesARowNeverCarriedToTheUserTheRowMovesTo(t *testing.T) {
	bob := transform.User("Müller 3")
	insert := contrib(oldRow, 10, map[string]string{"bio": "long text", "plan": "pro"})
	del, create := keyChange(oldRow, newRow, 20, map[string]string{"bio": "long text", "plan": "pro"}, "bio")
	// The external id changes: the row leaves alice for bob, bio still
	// not carried.
	leave := gone(newRow, 30, "bio", "plan")
	leave.Was, leave.To = map[string]string{"plan": "pro"}, bob.Key()
	arrive := &Record{Target: bob, Kind: KindContribution, Row: newRow, Pos: Position{Commit: 30, LSN: 30}, Tags: map[string]string{"plan": "pro"}, Unknown: []string{"bio"}}
	for name, order := range map[string][]*Record{
		"in order":                      {insert, del, create, leave},
		"the old key's delete the last": {insert, create, leave, del},
	} {
		s := &State{}
		var handed []*Record
		for _, r := range order {
			if s.Apply(r) == Changed {
				if h := s.Handover(r); h != nil {
					handed = append(handed, h)
				}
			}
		}
		if len(handed) != 1 {
			t.Fatalf("%s: handed over %v, want one record", name, describe(handed))
		}
		h := handed[0]
		if h.Target != bob || h.Kind != KindKept || h.Row != newRow || h.Tags["bio"] != "long text" {
			t.Errorf("%s: handed over %s %v", name, h.Describe(), h.Tags)
		}
		b := fold(arrive, h)
		if got := b.User().Tags; !maps.Equal(got, map[string]string{"bio": "long text", "plan": "pro"}) {
			t.Errorf("%s: bob's tags %v", name, got)
		}
		if got := fold(h, arrive).User().Tags; got["bio"] != "long text" {
			t.Errorf("%s: bob's tags %v when the hand-over comes first", name, got)
		}
	}
}

func TestTwoHandOversOfOneRowAtOnePositionGiveWhatEitherKnew(t *testing.T) {
	at := func(tags map[string]string) *Record {
		return &Record{Target: alice, Kind: KindKept, Row: newRow, Pos: Position{Commit: 7, LSN: 7}, Tags: tags}
	}
	s := fold(at(nil), at(map[string]string{"bio": "long"}), at(map[string]string{"bio": "other", "plan": "pro"}))
	if got := s.Kept[newRow].Tags; !maps.Equal(got, map[string]string{"bio": "long", "plan": "pro"}) {
		t.Errorf("kept %v, want what either knew, the first value of a tag staying", got)
	}
}

func TestARowThatCarriedEveryValueHandsNothingOver(t *testing.T) {
	leave := gone(newRow, 30, "plan")
	leave.Was, leave.To = map[string]string{"plan": "pro"}, "user:bob"
	s := fold(contrib(newRow, 10, map[string]string{"plan": "pro"}), leave)
	if h := s.Handover(leave); h != nil {
		t.Errorf("handed over %s", h.Describe())
	}
}

func TestARecordsGrantsOfOneVersionFollowTheOrderItsTargetDecidedThem(t *testing.T) {
	v := Position{Commit: 20, LSN: 20}
	// The record target took the grant back when the old key's delete
	// came first (offset 738), and gave it again on the new key's create
	// (offset 2600); read again after a rebalance, the take-back is
	// written once more, after the grant.
	takenBack := &Record{Target: alice, Kind: KindGrant, Record: address, Pos: v, Gone: true, Seq: 739}
	granted := &Record{Target: alice, Kind: KindGrant, Record: address, Pos: v, Seq: 2601}
	for name, order := range map[string][]*Record{
		"as decided":             {takenBack, granted},
		"the take-back repeated": {takenBack, granted, takenBack},
	} {
		if got := fold(order...).Granted(); !reflect.DeepEqual(got, []transform.Record{address}) {
			t.Errorf("%s: granted %v, want the record", name, got)
		}
	}
	// Grants of a sink that wrote no Seq: the later one wins, as before.
	old := func(gone bool) *Record {
		return &Record{Target: alice, Kind: KindGrant, Record: address, Pos: v, Gone: gone}
	}
	if got := fold(old(false), old(true)).Granted(); len(got) != 0 {
		t.Errorf("granted %v after a take-back that came last", got)
	}
}

func TestTheNewestLiveRowWinsATagTwoRowsGive(t *testing.T) {
	s := fold(contrib("r1", 9, map[string]string{"plan": "pro"}), contrib("r2", 4, map[string]string{"plan": "free", "score": "1"}))
	if got := s.User().Tags; !maps.Equal(got, map[string]string{"plan": "pro", "score": "1"}) {
		t.Errorf("tags %v", got)
	}
}

func TestBetweenRowsOfOneSnapshotChunkTheGreaterRowWins(t *testing.T) {
	a := &Record{Target: transform.Device("d1"), Kind: KindContribution, Row: "a", Pos: Position{Commit: 7, LSN: 7}, Owner: "u1"}
	b := &Record{Target: transform.Device("d1"), Kind: KindContribution, Row: "b", Pos: Position{Commit: 7, LSN: 7}, Owner: "u2"}
	for _, order := range [][]*Record{{a, b}, {b, a}} {
		if got := fold(order...).Device().Owner; got != "u2" {
			t.Errorf("owner %q, want u2 whatever the order", got)
		}
	}
}

func TestADeviceMovedByAKeyChangeEndsWithItsNewOwnerWhicheverHalfComesFirst(t *testing.T) {
	dev := transform.Device("player 9")
	link := &Record{Target: dev, Kind: KindContribution, Row: "[1,9]", Pos: Position{Commit: 1, LSN: 1}, Owner: "alice"}
	del := &Record{Target: dev, Kind: KindContribution, Row: "[1,9]", Pos: Position{Commit: 5, LSN: 5}, Gone: true}
	create := &Record{Target: dev, Kind: KindContribution, Row: "[2,9]", Pos: Position{Commit: 5, LSN: 5}, Owner: "bob"}
	for _, order := range [][]*Record{{link, del, create}, {link, create, del}, {create, link, del}} {
		got := fold(order...).Device()
		if got.Owner != "bob" || got.Version != (Position{Commit: 5, LSN: 5}) {
			t.Errorf("device %+v, want bob at 5/5", got)
		}
	}
	if got := fold(link, del).Device(); got.Owner != "" || got.Version != (Position{Commit: 5, LSN: 5}) {
		t.Errorf("after the delete alone: %+v, want no owner at 5/5", got)
	}
}

// TestTheDesiredStateIgnoresArrivalOrder folds random histories in random
// orders, with repeats, and wants one desired state per history.
func TestTheDesiredStateIgnoresArrivalOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tags := []string{"plan", "score", "geo"}
	for range 500 {
		var recs []*Record
		for row := range 1 + rng.IntN(4) {
			id := string(rune('a' + row))
			for range 1 + rng.IntN(4) {
				pos := int64(rng.IntN(20))
				if rng.IntN(4) == 0 {
					recs = append(recs, gone(id, pos, tags[:1+rng.IntN(3)]...))
					continue
				}
				m := map[string]string{}
				r := contrib(id, pos, m)
				for _, tag := range tags {
					switch rng.IntN(4) {
					case 0:
						m[tag] = ""
					case 1:
						r.Unknown = append(r.Unknown, tag)
					default:
						m[tag] = string(rune('0' + rng.IntN(3)))
					}
				}
				r.Owner = "o" + string(rune('0'+rng.IntN(3)))
				recs = append(recs, r)
			}
		}
		// Two records of one row at one position are one change: keep the first.
		seen := map[[2]any]bool{}
		recs = filter(recs, func(r *Record) bool {
			k := [2]any{r.Row, r.Pos}
			if seen[k] {
				return false
			}
			seen[k] = true
			return true
		})
		want := fold(recs...)
		for range 5 {
			shuffled := append([]*Record(nil), recs...)
			rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			shuffled = append(shuffled, shuffled[:rng.IntN(len(shuffled)+1)]...) // repeats
			got := fold(shuffled...)
			if !reflect.DeepEqual(got.User(), want.User()) || got.Device() != want.Device() {
				t.Fatalf("history %v:\n in order  %+v %+v\n shuffled %+v %+v", describe(recs), want.User(), want.Device(), got.User(), got.Device())
			}
		}
	}
}

func filter(rs []*Record, keep func(*Record) bool) []*Record {
	var out []*Record
	for _, r := range rs {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

func describe(rs []*Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Describe())
	}
	return out
}

func TestAMembershipIsKeptByTheDevicesOwnerVersion(t *testing.T) {
	s := &State{}
	m := func(v int64, g bool) *Record {
		return &Record{Target: alice, Kind: KindMember, Device: "d1", Pos: Position{Commit: v, LSN: v}, Gone: g}
	}
	if s.Apply(m(5, false)) != Changed || s.Apply(m(3, true)) != Stale || s.Apply(m(5, false)) != Unchanged {
		t.Fatal("membership outcomes wrong")
	}
	if got := s.Devices(); !reflect.DeepEqual(got, []string{"d1"}) {
		t.Errorf("devices %v", got)
	}
	s.Apply(m(6, true))
	if got := s.Devices(); len(got) != 0 {
		t.Errorf("devices after the device left: %v", got)
	}
}

func TestRecordsRoundTripThroughTheirKafkaForm(t *testing.T) {
	recs := []*Record{
		{Target: alice, Kind: KindContribution, Row: "db.public.users\x00{\"Contact ID\":7}", Pos: Position{Commit: 100, LSN: 90}, Created: true,
			Tags: map[string]string{"plan": "pro", "émoji 🎉": ""}, Unknown: []string{"bio"},
			Records: []transform.Record{{Channel: transform.ChannelEmail, Identifier: "a@example.com"}}, Source: Source{"t", 3, 42}},
		{Target: transform.Device("p/1 %?"), Kind: KindContribution, Row: "r", Pos: Position{Commit: 1, LSN: 1}, Owner: "alice", Source: Source{"t", 0, 0}},
		{Target: alice, Kind: KindMember, Device: "p1", Pos: Position{Commit: 3, LSN: 2}, Gone: true},
		{Target: transform.Device("p1"), Kind: KindReply, Owner: alice.ID, For: Position{Commit: 3, LSN: 2}, Version: Position{Commit: 9, LSN: 9}, Tags: map[string]string{"plan": "pro"}},
		{Target: alice, Kind: KindLinked, Device: "p1", Version: Position{Commit: 9, LSN: 9}},
		{Target: transform.RecordTarget(address), Kind: KindContribution, Row: "r", Pos: Position{Commit: 2, LSN: 1}, Gone: true, Owner: "bob", Source: Source{"t", 1, 7}},
		{Target: alice, Kind: KindGrant, Record: address, Pos: Position{Commit: 9, LSN: 9}, Again: true, Seq: 740},
		{Target: alice, Kind: KindGrant, Record: transform.Record{Channel: transform.ChannelSMS, Identifier: "+15551234567"}, Pos: Position{Commit: 9, LSN: 9}, Gone: true},
		{Target: transform.RecordTarget(address), Kind: KindHeld, Owner: alice.ID},
		{Target: alice, Kind: KindContribution, Row: "users\x00{\"id\":1}", Pos: Position{Commit: 5, LSN: 5}, Gone: true, Source: Source{"t", 1, 2},
			Tags: map[string]string{"bio": ""}, Was: map[string]string{"bio": "long"}, Next: "users\x00{\"id\":2}", To: "user:bob"},
		{Target: alice, Kind: KindKept, Row: "users\x00{\"id\":2}", Pos: Position{Commit: 5, LSN: 5}, Tags: map[string]string{"bio": "long"}},
		{Target: transform.User("team/ops 7%?Müller"), Kind: KindRepair},
		{Target: transform.Device("p/1 %?"), Kind: KindRepair},
	}
	for _, r := range recs {
		got, err := Decode(r.Key(), r.Value())
		if err != nil {
			t.Fatalf("%s: %v", r.Describe(), err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("round trip of %s:\n got  %+v\n want %+v", r.Describe(), got, r)
		}
	}
}

func TestDecodeRefusesWhatIsNotARecord(t *testing.T) {
	good := contrib("r1", 1, map[string]string{"plan": "pro"})
	for name, kv := range map[string][2]string{
		"a key that names no target": {"nobody\x00c\x00r1", string(good.Value())},
		"not JSON":                   {string(good.Key()), "{"},
		"a newer format":             {string(good.Key()), `{"v":2,"kind":"contribution","row":"r1"}`},
		"an unknown kind":            {string(good.Key()), `{"v":1,"kind":"gossip"}`},
		"a key that is not its own":  {"user:bob\x00c\x00r2", string(good.Value())},
		"a member of a device":       {"device:d\x00m\x00x", `{"v":1,"kind":"member","device":"x"}`},
		"a grant of no record":       {"user:bob\x00g\x00\x01", `{"v":1,"kind":"grant"}`},
		"a grant of a fax":           {"user:bob\x00g\x00fax\x01123", `{"v":1,"kind":"grant","record":{"channel":"fax","id":"123"}}`},
		"a grant to a record":        {"record:email\x01a@b\x00g\x00email\x01a@b", `{"v":1,"kind":"grant","record":{"channel":"email","id":"a@b"}}`},
		"a held record of a user":    {"user:bob\x00h\x00bob", `{"v":1,"kind":"held","owner":"bob"}`},
		"a record of no channel":     {"record:a@b\x00h\x00bob", `{"v":1,"kind":"held","owner":"bob"}`},
		"a kept record of a device":  {"device:d\x00k\x00r1", `{"v":1,"kind":"kept","row":"r1"}`},
		"a kept record of no row":    {"user:bob\x00k\x00", `{"v":1,"kind":"kept"}`},
		"a repair of a record":       {"record:email\x01a@b\x00x", `{"v":1,"kind":"repair"}`},
	} {
		if _, err := Decode([]byte(kv[0]), []byte(kv[1])); !errors.Is(err, ErrNotARecord) {
			t.Errorf("%s: error %v, want ErrNotARecord", name, err)
		}
	}
}

func TestAStateRoundTripsThroughTheLocalStore(t *testing.T) {
	s := fold(contrib("r1", 1, map[string]string{"plan": "pro"}), gone("r2", 2, "geo"),
		&Record{Target: alice, Kind: KindMember, Device: "d1", Pos: Position{Commit: 4, LSN: 4}},
		&Record{Target: alice, Kind: KindLinked, Device: "d1", Version: Position{Commit: 2, LSN: 2}})
	got, err := DecodeState(EncodeState(s))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Errorf("state round trip:\n got  %+v\n want %+v", got, s)
	}
}

func TestADevicesVersionGrowsWhenItGoesBackToAnEarlierOwner(t *testing.T) {
	dev := transform.Device("d1")
	a := &Record{Target: dev, Kind: KindContribution, Row: "a", Pos: Position{Commit: 1, LSN: 1}, Owner: "alice"}
	b := &Record{Target: dev, Kind: KindContribution, Row: "b", Pos: Position{Commit: 5, LSN: 5}, Owner: "bob"}
	bGone := &Record{Target: dev, Kind: KindContribution, Row: "b", Pos: Position{Commit: 8, LSN: 8}, Gone: true}
	got := fold(a, b, bGone).Device()
	if got.Owner != "alice" || got.Version != (Position{Commit: 8, LSN: 8}) {
		t.Errorf("device %+v, want alice at 8/8", got)
	}
}

func TestAPartForwardedThroughAReferencedRowIsNewerEachTimeEitherRowChanges(t *testing.T) {
	part1, part2 := Position{Commit: 100, LSN: 100}, Position{Commit: 200, LSN: 200}
	row := Position{Commit: 300, LSN: 300}
	first, late := part1.Through(row), part2.Through(row)
	if !late.After(first) {
		t.Errorf("the part's later change forwarded at %v is not after its earlier one at %v", late, first)
	}
	if moved := part2.Through(Position{Commit: 400, LSN: 400}); !moved.After(late) {
		t.Errorf("a forward after the referenced row changed again, %v, is not after %v", moved, late)
	}
	if got := (Position{Commit: 500, LSN: 500}).Through(row); got.Commit != 500 {
		t.Errorf("a part newer than its referenced row is forwarded at %v, want its own position first", got)
	}
}

func TestASourceOfManyRowsCountsItsLiveRowsAndAnySaysWhetherOneIsTrue(t *testing.T) {
	many := func(r *Record, how string) *Record { r.Many = how; return r }
	s := fold(
		many(contrib("sub-1", 10, map[string]string{"subs": "a"}), transform.ManyCount),
		many(contrib("sub-2", 11, map[string]string{"subs": "b"}), transform.ManyCount),
		many(contrib("sub-3", 12, map[string]string{"subs": "c"}), transform.ManyCount),
		many(gone("sub-2", 20, "subs"), transform.ManyCount),
		many(contrib("vip-1", 13, map[string]string{"vip": "false"}), transform.ManyAny),
		many(contrib("vip-2", 14, map[string]string{"vip": "true"}), transform.ManyAny),
	)
	if got := s.User().Tags["subs"]; got != "2" {
		t.Errorf("subs = %q, want 2", got)
	}
	if got := s.User().Tags["vip"]; got != "true" {
		t.Errorf("vip = %q, want true", got)
	}
}

func TestAnAliasNoLiveRowGivesGoesAndOneALiveRowGivesStays(t *testing.T) {
	withAlias := func(r *Record, label, id string) *Record {
		r.Aliases = map[string]string{label: id}
		return r
	}
	// The row named alice, then another user: alice lets go of crm_id.
	moved := fold(withAlias(contrib("users\x00{\"id\":1}", 10, nil), "crm_id", "1"), withAlias(gone("users\x00{\"id\":1}", 20), "crm_id", "1"))
	if got, want := moved.User().Aliases, map[string]string{"crm_id": ""}; !reflect.DeepEqual(got, want) {
		t.Errorf("aliases after the row moved away = %v, want %v", got, want)
	}
	// A primary-key change: the new row gives it again, at one position.
	kept := fold(withAlias(gone("users\x00{\"id\":1}", 20), "crm_id", "1"), withAlias(contrib("users\x00{\"id\":2}", 20, nil), "crm_id", "2"))
	if got, want := kept.User().Aliases, map[string]string{"crm_id": "2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("aliases after a key change = %v, want %v", got, want)
	}
}

var address = transform.Record{Channel: transform.ChannelEmail, Identifier: "a@example.com"}

// TestARecordBelongsToTheRowsNewestUserWhateverOrderItsPartsCome: an
// UPDATE of the external id (A becomes B) of a row naming an address
// reaches the record's target from two users, B's part and A's gone one,
// at one position; A's part of the row's insert may come last, from a
// partition that lags. Every order gives B, and the row's delete, from B,
// leaves the record no owner.
func TestARecordBelongsToTheRowsNewestUserWhateverOrderItsPartsCome(t *testing.T) {
	rt := transform.RecordTarget(address)
	part := func(owner string, commit int64, gone bool) *Record {
		return &Record{Target: rt, Kind: KindContribution, Row: "r", Pos: Position{Commit: commit, LSN: commit}, Owner: owner, Gone: gone}
	}
	insert, moved, left := part("A", 1, false), part("B", 2, false), part("A", 2, true)
	for _, order := range [][]*Record{
		{insert, moved, left}, {insert, left, moved}, {moved, insert, left}, {moved, left, insert}, {left, insert, moved}, {left, moved, insert},
	} {
		if got := fold(order...).RecordOwner(); got.Owner != "B" || got.Version != (Position{Commit: 2, LSN: 2}) {
			t.Errorf("record %+v, want B at 2/2", got)
		}
	}
	if got := fold(insert, moved, left, part("B", 3, true)).RecordOwner(); got.Owner != "" {
		t.Errorf("after the row's delete: owner %q, want none", got.Owner)
	}
	// Two rows naming one address: the newer row's user.
	other := &Record{Target: rt, Kind: KindContribution, Row: "s", Pos: Position{Commit: 5, LSN: 5}, Owner: "C"}
	if got := fold(other, insert, moved, left).RecordOwner(); got.Owner != "C" {
		t.Errorf("owner %q, want C, whose row changed last", got.Owner)
	}
}

func TestAUserWritesTheRecordsGrantedToItUntilTheyAreTakenBack(t *testing.T) {
	grant := func(commit int64, gone bool) *Record {
		return &Record{Target: alice, Kind: KindGrant, Record: address, Pos: Position{Commit: commit, LSN: commit}, Gone: gone}
	}
	sms := &Record{Target: alice, Kind: KindGrant, Record: transform.Record{Channel: transform.ChannelSMS, Identifier: "+15551234567"}, Pos: Position{Commit: 1, LSN: 1}}
	s := fold(grant(1, false), sms)
	if got := s.Granted(); !reflect.DeepEqual(got, []transform.Record{address, sms.Record}) {
		t.Errorf("granted %v", got)
	}
	if s.Apply(grant(3, true)) != Changed || s.Apply(grant(2, false)) != Stale {
		t.Error("a grant older than the taking back is not stale")
	}
	if got := s.Granted(); !reflect.DeepEqual(got, []transform.Record{sms.Record}) {
		t.Errorf("granted after the taking back: %v", got)
	}
	// At one version, the record's target wrote the later one last.
	if s.Apply(grant(3, false)) != Changed || len(s.Granted()) != 2 {
		t.Errorf("a grant again at the version it was taken back: granted %v", s.Granted())
	}
	again := grant(3, false)
	again.Again = true
	if s.Apply(again) != Unchanged {
		t.Error("a grant written again changes the state")
	}
	back, err := DecodeState(EncodeState(s))
	if err != nil || !reflect.DeepEqual(back.Granted(), s.Granted()) {
		t.Errorf("the grants do not survive the local store: %v, %v", back, err)
	}
}

func TestARepairChangesNoDesiredState(t *testing.T) {
	s := fold(contrib("r1", 1, map[string]string{"plan": "pro"}))
	want := s.User()
	if got := s.Apply(&Record{Target: alice, Kind: KindRepair}); got != Unchanged {
		t.Errorf("Apply(repair) = %v, want Unchanged", got)
	}
	if got := s.User(); !reflect.DeepEqual(got, want) {
		t.Errorf("after a repair the user is %+v, want %+v", got, want)
	}
}
