package emulator_test

import (
	"net/http"
	"reflect"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
)

func float(f float64) *float64 { return &f }
func seconds(n int) *int       { return &n }

// userProps is the part of a User that create and update user set
// besides tags.
func userProps(u emulator.User) emulator.User {
	return emulator.User{Language: u.Language, TimezoneID: u.TimezoneID, Country: u.Country, Lat: u.Lat, Long: u.Long}
}

func TestCreateAndUpdateUserKeepTheUserModelsProperties(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"ada"},"properties":{"tags":{"plan":"pro"},`+
		`"language":"de","timezone_id":"Europe/Berlin","country":"DE","lat":52.52,"long":13.405,"amount_spent":3}}`).
		must(t, http.StatusCreated)
	ada, _ := a.emu.State().UserByExternalID("ada")
	want := emulator.User{Language: "de", TimezoneID: "Europe/Berlin", Country: "DE", Lat: float(52.52), Long: float(13.405)}
	if got := userProps(ada); !reflect.DeepEqual(got, want) {
		t.Errorf("after create: %+v, want %+v", got, want)
	}
	view := a.send(http.MethodGet, userPath("external_id", "ada"), "").must(t, http.StatusOK)
	wantView := map[string]any{"tags": map[string]any{"plan": "pro"}, "language": "de", "timezone_id": "Europe/Berlin",
		"country": "DE", "lat": 52.52, "long": 13.405}
	if got := view.json(t).(map[string]any)["properties"]; !reflect.DeepEqual(got, wantView) {
		t.Errorf("view user properties = %v, want %v", got, wantView)
	}

	// "" and null clear; what is not named stays.
	r := a.send(http.MethodPatch, userPath("external_id", "ada"), `{"properties":{"language":"fr","country":"","lat":null}}`).
		must(t, http.StatusAccepted)
	if got, want := r.json(t), map[string]any{"properties": map[string]any{"language": "fr", "country": nil, "lat": nil}}; !reflect.DeepEqual(got, want) {
		t.Errorf("update user answered %v, want %v", got, want)
	}
	ada, _ = a.emu.State().UserByExternalID("ada")
	want = emulator.User{Language: "fr", TimezoneID: "Europe/Berlin", Long: float(13.405)}
	if got := userProps(ada); !reflect.DeepEqual(got, want) {
		t.Errorf("after update: %+v, want %+v", got, want)
	}
	if ada.Tags["plan"] != "pro" {
		t.Errorf("tags = %v, want plan=pro kept", ada.Tags)
	}
}

func TestCreateUserThatFindsAUserAppliesNoProperties(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"ada"},"properties":{"language":"de"}}`).must(t, http.StatusCreated)
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"ada"},"properties":{"language":"fr","country":"FR"}}`).must(t, http.StatusOK)
	if ada, _ := a.emu.State().UserByExternalID("ada"); ada.Language != "de" || ada.Country != "" {
		t.Errorf("ada = %+v, want language de and no country: create user retrieves, it does not update", ada)
	}
}

// OneSignal documents no answer to values outside the standards its
// properties name; it most likely stores them, and so does the emulator.
func TestPropertyValuesOutsideTheirStandardsAreStored(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"ada"},"properties":{`+
		`"language":"klingon","timezone_id":"Mars/Olympus_Mons","country":"ZZZ","lat":123.5,"long":-500}}`).
		must(t, http.StatusCreated)
	ada, _ := a.emu.State().UserByExternalID("ada")
	want := emulator.User{Language: "klingon", TimezoneID: "Mars/Olympus_Mons", Country: "ZZZ", Lat: float(123.5), Long: float(-500)}
	if got := userProps(ada); !reflect.DeepEqual(got, want) {
		t.Errorf("stored %+v, want %+v", got, want)
	}
}

func TestPropertiesOfTheWrongJSONTypeAreRefused(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"ada"}}`).must(t, http.StatusCreated)
	dev := playerID(t, a.send(http.MethodPost, "/players", player(`"device_type":1,"identifier":"tok"`)).must(t, http.StatusOK))
	tests := []struct {
		name, method, path, body, want string
	}{
		{"a language that is a number", http.MethodPatch, userPath("external_id", "ada"), `{"properties":{"language":7}}`,
			`{"errors":["properties.language must be a string."]}`},
		{"a timezone_id that is a number", http.MethodPost, usersPath, `{"identity":{"external_id":"bob"},"properties":{"timezone_id":3600}}`,
			`{"errors":["properties.timezone_id must be a string."]}`},
		{"a lat that is a string", http.MethodPatch, userPath("external_id", "ada"), `{"properties":{"lat":"52.5"}}`,
			`{"errors":["properties.lat must be a number."]}`},
		{"a long that is a boolean", http.MethodPatch, userPath("external_id", "ada"), `{"properties":{"long":true}}`,
			`{"errors":["properties.long must be a number."]}`},
		{"a device timezone that is a string", http.MethodPut, playerPath(dev), player(`"timezone":"3600"`),
			`{"errors":["timezone must be a whole number of seconds from UTC."],"success":false}`},
		{"a device timezone with a fraction", http.MethodPut, playerPath(dev), player(`"timezone":3600.5`),
			`{"errors":["timezone must be a whole number of seconds from UTC."],"success":false}`},
		{"a device country that is an object", http.MethodPost, "/players", player(`"device_type":1,"identifier":"t2","country":{}`),
			`{"errors":["country must be a string."],"success":false}`},
	}
	for _, tt := range tests {
		r := a.send(tt.method, tt.path, tt.body).must(t, http.StatusBadRequest)
		if r.body != tt.want {
			t.Errorf("%s: body = %s, want %s", tt.name, r.body, tt.want)
		}
	}
	st := a.emu.State()
	if ada, _ := st.UserByExternalID("ada"); !reflect.DeepEqual(userProps(ada), emulator.User{}) || len(st.Users) != 2 {
		t.Errorf("a refused request changed something: %+v", st)
	}
}

func TestDevicesKeepTheirLanguageTimezoneAndCountry(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	one := playerID(t, a.send(http.MethodPost, "/players",
		player(`"device_type":1,"identifier":"tok-1","external_user_id":"ada","language":"de","timezone":3600,"country":"DE"`)).
		must(t, http.StatusOK))
	a.emu.AddSubscription(emulator.Subscription{ID: "dev-2"})
	a.send(http.MethodPut, playerPath("dev-2"), player(`"external_user_id":"ada","language":"pt","timezone":-10800`)).must(t, http.StatusOK)

	st := a.emu.State()
	p1, _ := st.Player(one)
	p2, _ := st.Player("dev-2")
	if p1.Language != "de" || p1.Timezone == nil || *p1.Timezone != 3600 || p1.Country != "DE" {
		t.Errorf("device 1 = %+v, want de, 3600, DE", p1)
	}
	if p2.Language != "pt" || p2.Timezone == nil || *p2.Timezone != -10800 || p2.Country != "" {
		t.Errorf("device 2 = %+v, want pt, -10800 and no country: each device has its own", p2)
	}
	if owner := ownerOf(t, st, one); owner.Language != "" {
		t.Errorf("the owner has language %q: the player model's fields stay on the device", owner.Language)
	}

	// A field left out stays; "" and null clear.
	a.send(http.MethodPut, playerPath(one), player(`"country":"AT","language":"","timezone":null`)).must(t, http.StatusOK)
	r := a.send(http.MethodGet, playerPath(one)+"?app_id="+appID, "").must(t, http.StatusOK)
	want := map[string]any{"id": one, "identifier": "tok-1", "device_type": 1.0, "tags": map[string]any{},
		"external_user_id": "ada", "invalid_identifier": false, "country": "AT"}
	if got := r.json(t); !reflect.DeepEqual(got, want) {
		t.Errorf("GET /players/{id} = %v, want %v", got, want)
	}
	a.send(http.MethodPut, playerPath(one), player(`"timezone":19800`)).must(t, http.StatusOK)
	if p, _ := a.emu.State().Player(one); !reflect.DeepEqual(p.Timezone, seconds(19800)) || p.Country != "AT" {
		t.Errorf("device 1 = %+v, want timezone 19800, country AT", p)
	}
}
