package transform

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// row builds a row image from column, JSON value pairs.
func row(kv ...string) event.Row {
	r := make(event.Row, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		r = append(r, event.Field{Name: kv[i], Value: json.RawMessage(kv[i+1])})
	}
	return r
}

func change(table string, op event.Op, before, after event.Row) *event.Envelope {
	schema, name, _ := strings.Cut(table, ".")
	return &event.Envelope{Before: before, After: after, Op: op, Source: event.Source{Schema: schema, Table: name}}
}

// A column the mapping names but the new row image lacks is a misspelt
// name (or a column dropped since): the change is a bad row, named with
// the setting, the closest column and the table's columns, never applied
// without it.
func TestAMappedColumnTheRowLacksIsABadRowNamingTheSetting(t *testing.T) {
	t.Parallel()
	users := row("id", "1", "external_id", `"ada"`, "plan", `"pro"`, "score", "42", "email", `"ada@example.com"`)
	devices := row("player_id", `"p-1"`, "user_external_id", `"ada"`, "platform", `"ios"`)
	tests := []struct {
		name    string
		mapping Mapping
		ev      *event.Envelope
		want    []string
	}{
		{
			name:    "a misspelt external id column",
			mapping: Mapping{Users: &UsersMapping{Table: "public.users", ExternalID: "externalid", Tags: map[string]string{"plan": ""}}},
			ev:      change("public.users", event.OpCreate, nil, users),
			want: []string{`the public.users row has no column "externalid", which mapping.users.external_id names.`, `Did you mean "external_id"?`,
				"Its columns: id, external_id, plan, score, email.", "Correct mapping.users.external_id"},
		},
		{
			name:    "a misspelt tag column in an update",
			mapping: Mapping{Users: &UsersMapping{Table: "public.users", ExternalID: "external_id", Tags: map[string]string{"plan": "", "scor": "level"}}},
			ev:      change("public.users", event.OpUpdate, row("id", "1"), users),
			want:    []string{`has no column "scor", which mapping.users.tags names.`, `Did you mean "score"?`},
		},
		{
			name:    "a tag column of another table, in a snapshot read",
			mapping: Mapping{Users: &UsersMapping{Table: "public.users", ExternalID: "external_id", Tags: map[string]string{"country": ""}}},
			ev:      change("public.users", event.OpSnapshot, nil, users),
			want:    []string{`has no column "country", which mapping.users.tags names. Its columns:`},
		},
		{
			name:    "a misspelt email column",
			mapping: Mapping{Users: &UsersMapping{Table: "public.users", ExternalID: "external_id", Email: "e_mail"}},
			ev:      change("public.users", event.OpCreate, nil, users),
			want:    []string{`has no column "e_mail", which mapping.users.email names.`, `Did you mean "email"?`},
		},
		{
			name:    "a phone column the table lacks",
			mapping: Mapping{Users: &UsersMapping{Table: "public.users", ExternalID: "external_id", Phone: "phone"}},
			ev:      change("public.users", event.OpCreate, nil, users),
			want:    []string{`has no column "phone", which mapping.users.phone names.`},
		},
		{
			name:    "a wrong device id column",
			mapping: Mapping{Devices: &DevicesMapping{Table: "public.devices", DeviceID: "device_id", ExternalID: "user_external_id"}},
			ev:      change("public.devices", event.OpCreate, nil, devices),
			want:    []string{`the public.devices row has no column "device_id", which mapping.devices.device_id names.`, "Its columns: player_id, user_external_id, platform."},
		},
		{
			name:    "a wrong owner column of the devices",
			mapping: Mapping{Devices: &DevicesMapping{Table: "public.devices", DeviceID: "player_id", ExternalID: "external_user_id"}},
			ev:      change("public.devices", event.OpUpdate, nil, devices),
			want:    []string{`has no column "external_user_id", which mapping.devices.external_id names.`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := tt.mapping.Project(tt.ev, nil)
			if !errors.Is(err, ErrBadRow) {
				t.Fatalf("projection %+v, err %v; want a bad row", p, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// What is not a missing column: an unchanged TOAST value (present, as a
// placeholder), an old image that holds only the key (REPLICA IDENTITY
// DEFAULT), and a delete, which has no new image.
func TestOnlyTheNewImageMustHoldEveryMappedColumn(t *testing.T) {
	t.Parallel()
	m := Mapping{
		Users:   &UsersMapping{Table: "public.users", ExternalID: "external_id", Tags: map[string]string{"plan": "", "bio": ""}, Email: "email"},
		Devices: &DevicesMapping{Table: "public.devices", DeviceID: "player_id", ExternalID: "user_external_id"},
	}
	unavailable := string(event.UnavailableValue())
	tests := []struct {
		name string
		ev   *event.Envelope
		want Projection
	}{
		{"an update with an unchanged TOAST tag, which is unknown, and only the key in its old image",
			change("public.users", event.OpUpdate, row("external_id", `"ada"`), row("external_id", `"ada"`, "plan", `"pro"`, "bio", unavailable, "email", "null")),
			Projection{{Target: User("ada"), Tags: map[string]string{"plan": "pro"}, Unknown: []string{"bio"}}}},
		{"a delete whose old image holds only the key",
			change("public.users", event.OpDelete, row("external_id", `"ada"`), nil),
			nil},
		{"a device update with an unchanged TOAST owner, of a row never seen, and only the key in its old image",
			change("public.devices", event.OpUpdate, row("player_id", `"p-1"`), row("player_id", `"p-1"`, "user_external_id", unavailable)),
			nil},
		{"a device delete whose old image holds only the key",
			change("public.devices", event.OpDelete, row("player_id", `"p-1"`), nil),
			nil},
	}
	for _, tt := range tests {
		p, err := m.Project(tt.ev, nil)
		if err != nil || !reflect.DeepEqual(p, tt.want) {
			t.Errorf("%s: projection %+v, err %v; want %+v", tt.name, p, err, tt.want)
		}
	}
}

func TestColumnsListsWhatEachTableMustHold(t *testing.T) {
	t.Parallel()
	got := testMapping.Columns()
	want := map[string]map[string]string{
		"public.users": {
			"external_id": "mapping.users.external_id", "plan": "mapping.users.tags", "score": "mapping.users.tags", "country": "mapping.users.tags",
			"seen": "mapping.users.tags", "prefs": "mapping.users.tags", "email": "mapping.users.email", "phone": "mapping.users.phone",
		},
		"public.devices": {"player_id": "mapping.devices.device_id", "user_external_id": "mapping.devices.external_id"},
	}
	for table, cols := range want {
		for col, key := range cols {
			if got[table][col] != key {
				t.Errorf("%s.%s: %q, want %q", table, col, got[table][col], key)
			}
		}
		if len(got[table]) != len(cols) {
			t.Errorf("%s: %v, want %v", table, got[table], cols)
		}
	}
}
