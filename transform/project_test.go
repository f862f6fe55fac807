package transform

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// crm is a mapping of a CRM-shaped schema: a surrogate primary key, the
// external id in a column of its own, quoted mixed-case names, and devices
// keyed by (owner, device).
var crm = Mapping{
	Users: &UsersMapping{
		Table: "crm.Contacts", ExternalID: "External Id",
		Tags:    map[string]string{"Plan": "plan", "Bio": "bio", "Prefs": "prefs"},
		Convert: map[string]string{"Prefs": ConvertFlatten},
		Email:   "E-mail",
	},
	Devices: &DevicesMapping{Table: "crm.devices", DeviceID: "device_id", ExternalID: "ext_id"},
}

func image(kv ...any) event.Row {
	var r event.Row
	for i := 0; i < len(kv); i += 2 {
		v, _ := json.Marshal(kv[i+1])
		if s, ok := kv[i+1].(string); ok && s == event.Unavailable {
			v = event.UnavailableValue()
		}
		r = append(r, event.Field{Name: kv[i].(string), Value: v})
	}
	return r
}

func changeOf(table string, op event.Op, before, after event.Row) *event.Envelope {
	return &event.Envelope{Op: op, Before: before, After: after, Source: event.Source{Schema: "crm", Table: table, LSN: 10, CommitLSN: 12}}
}

func TestProjectOnACRMSchema(t *testing.T) {
	alice := User("team/ops-7")
	prev := Projection{{Target: alice, Tags: map[string]string{"plan": "pro", "bio": "long text", "prefs_lang": "de", "prefs_tz": "CET"},
		Records: []Record{{ChannelEmail, "a@example.com"}}}}
	for _, tc := range []struct {
		name string
		ev   *event.Envelope
		prev Projection
		want Projection
	}{
		{
			name: "an insert gives the user its tags and record",
			ev:   changeOf("Contacts", event.OpCreate, nil, image("Contact ID", 7, "External Id", "team/ops-7", "Plan", "pro", "Bio", nil, "Prefs", map[string]string{"lang": "de"}, "E-mail", "a@example.com")),
			want: Projection{{Target: alice, Tags: map[string]string{"plan": "pro", "bio": "", "prefs_lang": "de"}, Records: []Record{{ChannelEmail, "a@example.com"}}}},
		},
		{
			name: "an unchanged TOAST value keeps what the row said before",
			ev:   changeOf("Contacts", event.OpUpdate, nil, image("Contact ID", 7, "External Id", "team/ops-7", "Plan", "free", "Bio", event.Unavailable, "Prefs", event.Unavailable, "E-mail", event.Unavailable)),
			prev: prev,
			want: Projection{{Target: alice, Tags: map[string]string{"plan": "free", "bio": "long text", "prefs_lang": "de", "prefs_tz": "CET"}, Records: []Record{{ChannelEmail, "a@example.com"}}}},
		},
		{
			name: "an unchanged TOAST value of a row never seen is unknown",
			ev:   changeOf("Contacts", event.OpUpdate, nil, image("Contact ID", 7, "External Id", "team/ops-7", "Plan", "free", "Bio", event.Unavailable, "Prefs", nil, "E-mail", nil)),
			want: Projection{{Target: alice, Tags: map[string]string{"plan": "free"}, Unknown: []string{"bio"}}},
		},
		{
			name: "a flattened key that disappears is deleted",
			ev:   changeOf("Contacts", event.OpUpdate, nil, image("Contact ID", 7, "External Id", "team/ops-7", "Plan", "pro", "Bio", "long text", "Prefs", map[string]string{"lang": "fr"}, "E-mail", "a@example.com")),
			prev: prev,
			want: Projection{{Target: alice, Tags: map[string]string{"plan": "pro", "bio": "long text", "prefs_lang": "fr", "prefs_tz": ""}, Records: []Record{{ChannelEmail, "a@example.com"}}}},
		},
		{
			name: "a new external id gives the part to the new user",
			ev:   changeOf("Contacts", event.OpUpdate, nil, image("Contact ID", 7, "External Id", "Müller 3", "Plan", "pro", "Bio", "x", "Prefs", nil, "E-mail", nil)),
			prev: prev,
			want: Projection{{Target: User("Müller 3"), Tags: map[string]string{"plan": "pro", "bio": "x"}}},
		},
		{
			name: "a new external id takes the row's unchanged TOAST values to the new user",
			ev:   changeOf("Contacts", event.OpUpdate, nil, image("Contact ID", 7, "External Id", "Müller 3", "Plan", "pro", "Bio", event.Unavailable, "Prefs", event.Unavailable, "E-mail", event.Unavailable)),
			prev: prev,
			want: Projection{{Target: User("Müller 3"), Tags: map[string]string{"plan": "pro", "bio": "long text", "prefs_lang": "de", "prefs_tz": "CET"},
				Records: []Record{{ChannelEmail, "a@example.com"}}}},
		},
		{
			name: "a NULL external id feeds no one",
			ev:   changeOf("Contacts", event.OpUpdate, nil, image("Contact ID", 7, "External Id", nil, "Plan", "pro", "Bio", "x", "Prefs", nil, "E-mail", nil)),
			prev: prev,
		},
		{
			name: "a delete feeds no one",
			ev:   changeOf("Contacts", event.OpDelete, image("Contact ID", 7), nil),
			prev: prev,
		},
		{
			name: "a device row links its device to its owner",
			ev:   changeOf("devices", event.OpSnapshot, nil, image("contact_id", 7, "device_id", "p/1 %?", "ext_id", "team/ops-7")),
			want: Projection{{Target: Device("p/1 %?"), Owner: "team/ops-7"}},
		},
		{
			name: "a device row without an owner links nothing",
			ev:   changeOf("devices", event.OpUpdate, nil, image("contact_id", 7, "device_id", "p1", "ext_id", nil)),
			prev: Projection{{Target: Device("p1"), Owner: "x"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := crm.Project(tc.ev, tc.prev)
			if err != nil {
				t.Fatal(err)
			}
			if got := got.Fed(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("projection\n got  %+v\n want %+v", got, tc.want)
			}
		})
	}
}

// A row that feeds no one, for want of an external id or because its
// filter leaves it out, holds what it gives: the change that makes it
// feed a user, and leaves a TOAST value unchanged, still gives the value.
func TestARowThatFeedsNoOneHoldsItsValuesForTheChangeThatMakesItFeedSomeone(t *testing.T) {
	filtered := crm
	users := *crm.Users
	users.Filter = "row.Plan != 'internal'"
	filtered.Users = &users
	if err := filtered.Validate(); err != nil {
		t.Fatal(err)
	}
	bio := "a bio stored out of line"
	for _, tc := range []struct {
		name          string
		first, second event.Row
	}{
		{
			name:   "an external id given later",
			first:  image("Contact ID", 7, "External Id", nil, "Plan", "pro", "Bio", bio, "Prefs", nil, "E-mail", "a@example.com"),
			second: image("Contact ID", 7, "External Id", "B", "Plan", "pro", "Bio", event.Unavailable, "Prefs", nil, "E-mail", event.Unavailable),
		},
		{
			name:   "a filter that starts matching",
			first:  image("Contact ID", 7, "External Id", "B", "Plan", "internal", "Bio", bio, "Prefs", nil, "E-mail", "a@example.com"),
			second: image("Contact ID", 7, "External Id", "B", "Plan", "pro", "Bio", event.Unavailable, "Prefs", nil, "E-mail", event.Unavailable),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first, err := filtered.Project(changeOf("Contacts", event.OpSnapshot, nil, tc.first), nil)
			if err != nil {
				t.Fatal(err)
			}
			if fed := first.Fed(); len(fed) != 0 {
				t.Fatalf("the first image feeds %+v, want no one", fed)
			}
			second, err := filtered.Project(changeOf("Contacts", event.OpUpdate, nil, tc.second), first)
			if err != nil {
				t.Fatal(err)
			}
			want := Projection{{Target: User("B"), Tags: map[string]string{"plan": "pro", "bio": bio}, Records: []Record{{ChannelEmail, "a@example.com"}}}}
			if !reflect.DeepEqual(second, want) {
				t.Errorf("projection\n got  %+v\n want %+v", second, want)
			}
		})
	}
}

func TestAHeldPartNamesItsTargetInKeysAndWords(t *testing.T) {
	h := held(heldSource(2))
	if back, ok := ParseTarget(h.Key()); !ok || back != h {
		t.Errorf("ParseTarget(%q) = %v, %v; want %v", h.Key(), back, ok, h)
	}
	if (Projection{{Target: h}, {Target: User("a")}}).Fed()[0].Target != User("a") {
		t.Error("Fed keeps a held part")
	}
}

func TestProjectRefusesANewImageWithoutAMappedColumn(t *testing.T) {
	_, err := crm.Project(changeOf("Contacts", event.OpCreate, nil, image("Contact ID", 7, "External Id", "a", "Plan", "pro", "Bio", nil, "Prefs", nil)), nil)
	if !errors.Is(err, ErrBadRow) || !strings.Contains(err.Error(), `"E-mail"`) {
		t.Errorf("error %v, want ErrBadRow naming the E-mail column", err)
	}
}

func TestProjectRefusesADeviceRowWithoutADeviceID(t *testing.T) {
	_, err := crm.Project(changeOf("devices", event.OpCreate, nil, image("contact_id", 7, "device_id", "", "ext_id", "a")), nil)
	if !errors.Is(err, ErrBadRow) {
		t.Errorf("error %v, want ErrBadRow", err)
	}
}

func TestPreviousFindsTheTargetsAFullOldImageNames(t *testing.T) {
	full := changeOf("devices", event.OpDelete, image("contact_id", 7, "device_id", "p1", "ext_id", "alice"), nil)
	if got, ok := crm.Previous(full); !ok || !reflect.DeepEqual(got, Projection{{Target: Device("p1"), Owner: "alice"}}) {
		t.Errorf("full image: %+v %v", got, ok)
	}
	keyOnly := changeOf("Contacts", event.OpDelete, image("Contact ID", 7), nil)
	if got, ok := crm.Previous(keyOnly); ok {
		t.Errorf("key-only image names %+v; want nothing", got)
	}
}

func TestATargetKeyParsesBack(t *testing.T) {
	email := Record{Channel: ChannelEmail, Identifier: "a@example.com"}
	for _, tg := range []Target{User("a/b c%?"), Device("🎉"), User(""), RecordTarget(email), RecordTarget(Record{Channel: ChannelSMS, Identifier: "+15551234567"})} {
		if got, ok := ParseTarget(tg.Key()); !ok || got != tg {
			t.Errorf("%v → %q → %v %v", tg, tg.Key(), got, ok)
		}
	}
	if r, ok := RecordTarget(email).Rec(); !ok || r != email {
		t.Errorf("a record's target names %v %v, want %v", r, ok, email)
	}
	for _, key := range []string{"group:x", "record:a@example.com", "record:fax\x01123", "record:email\x01"} {
		if _, ok := ParseTarget(key); ok {
			t.Errorf("%q parsed", key)
		}
	}
}
