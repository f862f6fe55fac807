package transform

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/event"
)

var update = flag.Bool("update", false, "rewrite the golden .out.json files")

var testMapping = Mapping{
	Users: &UsersMapping{
		Table:      "public.users",
		ExternalID: "external_id",
		Tags:       map[string]string{"plan": "", "score": "level", "country": "geo", "seen": "last_seen", "prefs": ""},
		Convert:    map[string]string{"seen": ConvertUnixSeconds, "prefs": ConvertFlatten},
		Email:      "email",
		Phone:      "phone",
	},
	Devices: &DevicesMapping{Table: "public.devices", DeviceID: "player_id", ExternalID: "user_external_id"},
}

// crmTestMapping is the golden files' mapping for inputs named crm_*: a
// CRM's contacts with properties and an alias, orders that name their
// user by external id, subscriptions and devices that name their contact
// by foreign key.
var crmTestMapping = Mapping{
	Users: &UsersMapping{
		Table: "crm.Contacts", ExternalID: "External Id",
		Tags:       map[string]string{"Plan": "plan"},
		Properties: map[string]string{"language": "lang", "country": "Country Code"},
		Aliases:    map[string]string{"crm_id": "CRM Ref"},
		OnDelete:   OnDeleteDeleteUser,
	},
	Sources: []SourceMapping{
		{Table: "crm.orders", User: SourceUser{ExternalID: "customer"}, Tags: map[string]string{"total": "last_order_total"}},
		{Table: "crm.Subscriptions", User: SourceUser{References: &Reference{Column: "Contact", Table: "crm.Contacts", Key: "Contact ID"}},
			Tags: map[string]string{"Sub ID": "subscriptions"}, Many: ManyCount},
	},
	Devices: &DevicesMapping{Table: "crm.devices", DeviceID: "device_id",
		Owner: &DeviceOwner{References: &Reference{Column: "contact_id", Table: "crm.Contacts", Key: "Contact ID"}}},
}

// partJSON is a Part as the golden files show it.
type partJSON struct {
	Target     string            `json:"target"`
	Tags       map[string]string `json:"tags,omitempty"`
	Unknown    []string          `json:"unknown,omitempty"`
	Records    []Record          `json:"records,omitempty"`
	Owner      string            `json:"owner,omitempty"`
	Props      map[string]string `json:"properties,omitempty"`
	Aliases    map[string]string `json:"aliases,omitempty"`
	Many       string            `json:"many,omitempty"`
	DeleteUser bool              `json:"delete_user,omitempty"`
	Identity   string            `json:"identity,omitempty"`
	Device     string            `json:"device,omitempty"`
}

func partsJSON(p Projection) []partJSON {
	out := make([]partJSON, 0, len(p))
	for _, part := range p {
		out = append(out, partJSON{Target: part.Target.String(), Tags: part.Tags, Unknown: part.Unknown, Records: part.Records, Owner: part.Owner,
			Props: part.Props, Aliases: part.Aliases, Many: part.Many, DeleteUser: part.DeleteUser, Identity: part.Identity, Device: part.Device})
	}
	return out
}

// TestProjectGolden runs every testdata/*.in.json event through the test
// mapping, as the sink does for a row it has not seen, and compares what
// the event's old image says of OneSignal ("before") and the row's
// projection after the change ("after"), or the error, with *.out.json.
func TestProjectGolden(t *testing.T) {
	ins, _ := filepath.Glob("testdata/*.in.json")
	if len(ins) == 0 {
		t.Fatal("no golden inputs in testdata/")
	}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".in.json")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := event.Decode(data)
			if err != nil {
				t.Fatalf("decode %s: %v", in, err)
			}
			m := &testMapping
			if strings.HasPrefix(name, "crm_") {
				m = &crmTestMapping
			}
			var got any
			before, _ := m.Previous(ev)
			after, err := m.Project(ev, before)
			var problems Problems
			switch {
			case errors.As(err, &problems):
				got = map[string]any{"before": partsJSON(before), "after": partsJSON(after), "problems": problems.Error()}
			case err != nil:
				got = map[string]any{"error": err.Error(), "bad_row": errors.Is(err, ErrBadRow)}
			default:
				got = map[string]any{"before": partsJSON(before), "after": partsJSON(after)}
			}
			gotJSON, _ := json.MarshalIndent(got, "", "  ")
			gotJSON = append(gotJSON, '\n')
			outPath := strings.TrimSuffix(in, ".in.json") + ".out.json"
			if *update {
				if err := os.WriteFile(outPath, gotJSON, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(outPath)
			if err != nil {
				t.Fatalf("%v (run go test ./transform -update to create it)", err)
			}
			if string(want) != string(gotJSON) {
				t.Errorf("%s\n got %s\nwant %s", name, gotJSON, want)
			}
		})
	}
}

func TestMappingValidateReportsEveryProblemAtOnce(t *testing.T) {
	m := Mapping{
		Users:   &UsersMapping{Table: "users", Tags: map[string]string{"a": "x", "b": "x"}, Convert: map[string]string{"a": "hex", "c": "flatten"}, Email: "contact", Phone: "contact"},
		Devices: &DevicesMapping{Table: "public.devices"},
	}
	err := m.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`mapping.users.table: "users" is not "schema.table"`,
		"mapping.users.external_id is empty",
		`columns "a" and "b" both become tag "x"`,
		"mapping.devices.device_id is empty",
		"mapping.devices.external_id is empty",
		`mapping.users.convert: "c" is not a tag column`,
		`mapping.users.convert.a: "hex" is not unix_seconds or flatten`,
		`mapping.users: email and phone are both column "contact"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if err := testMapping.Validate(); err != nil {
		t.Errorf("the test mapping is invalid: %v", err)
	}
}

func TestNamesTagKnowsTheMappingsTagsAndNoOthers(t *testing.T) {
	m := testMapping
	m.Users = &UsersMapping{Table: "public.users", ExternalID: "external_id",
		Tags:     map[string]string{"plan": "", "score": "level", "prefs": ""},
		Convert:  map[string]string{"prefs": ConvertFlatten},
		Computed: map[string]string{"vip": "row.score > 10"}}
	m.Sources = []SourceMapping{{Table: "public.orders", User: SourceUser{ExternalID: "user_id"}, Tags: map[string]string{"total": "spent"}}}
	for tag, want := range map[string]bool{
		"plan": true, "level": true, "score": false, "prefs_lang": true, "prefs": true, "prefsx": false,
		"vip": true, "spent": true, "total": false, "sdk_version": false,
	} {
		if got := m.NamesTag(tag); got != want {
			t.Errorf("NamesTag(%q) = %v, want %v", tag, got, want)
		}
	}
}
