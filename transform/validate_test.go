package transform

import (
	"errors"
	"strings"
	"testing"
)

func TestEveryMappingErrorNamesItsSetting(t *testing.T) {
	m := Mapping{
		Users: &UsersMapping{Table: "public.users", ExternalID: "id", Filter: "row.a IS NULL", Computed: map[string]string{"x": "now"}},
		Sources: []SourceMapping{{Table: "public.s", User: SourceUser{References: &Reference{Column: "uid", Table: "public.other"}},
			Tags: map[string]string{"a": ""}, Many: "most"}},
		Devices: &DevicesMapping{Table: "public.d", DeviceID: "did", Owner: &DeviceOwner{}},
	}
	err := m.ValidateFor(Limits{Model: "user"})
	if err == nil {
		t.Fatal("no error")
	}
	want := map[string]bool{
		"mapping.users.filter": true, "mapping.users.computed.x": true, "mapping.sources[0].user.references.table": true,
		"mapping.sources[0].many": true, "mapping.devices.external_id": true,
	}
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var se *SettingError
		if !errors.As(e, &se) {
			t.Errorf("%v is no SettingError", e)
			continue
		}
		key := SettingKey(se.Path)
		if !strings.HasPrefix(e.Error(), key) {
			t.Errorf("%q does not start with its setting %s", e, key)
		}
		delete(want, key)
	}
	for key := range want {
		t.Errorf("no error for %s:\n%v", key, err)
	}
}

func TestAMappingNeverValidatedStillHasItsPrograms(t *testing.T) {
	u := &UsersMapping{Table: "public.users", ExternalID: "id", Filter: `row.plan != "internal"`, Computed: map[string]string{"vip": "row.score > 10", "bad": "row."}}
	c := u.Compiled()
	if c.Filter == nil || c.Computed["vip"] == nil || c.Computed["bad"] != nil {
		t.Errorf("compiled %+v", c)
	}
}

func TestTablesNamesEachTableOnce(t *testing.T) {
	m := Mapping{
		Users:   &UsersMapping{Table: "public.users"},
		Sources: []SourceMapping{{Table: "public.subs"}, {Table: "public.subs"}, {Table: "public.orders"}},
		Devices: &DevicesMapping{Table: "public.devices"},
	}
	if got := strings.Join(m.Tables(), " "); got != "public.users public.subs public.orders public.devices" {
		t.Errorf("tables %s", got)
	}
}
