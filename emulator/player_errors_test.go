package emulator_test

import (
	"net/http"
	"reflect"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
)

const legacyAuth = `{"errors":["Please include a case-sensitive header of Authorization: Basic \u003cYOUR-REST-API-KEY-HERE\u003e or Bearer token=\"\u003cYOUR-REST-API-KEY-HERE\u003e\" with a valid REST API key."],"reference":["https://documentation.onesignal.com/docs/accounts-and-keys#section-keys-ids"]}`

func TestPlayerErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		set     func(*emulator.Config)
		method  string
		path    string
		body    string
		headers []string
		status  int
		want    string
	}{
		{
			name: "an edit of an unknown player is a 400, as the Android SDK sees it", method: http.MethodPut, path: playerPath("nope"),
			body: player(`"tags":{"a":"1"}`), status: http.StatusBadRequest, want: `{"errors":["No user with this id found"]}`,
		},
		{
			name: "an edit of an unknown player is a 404 when configured as the docs say", method: http.MethodPut, path: playerPath("nope"),
			set:  func(c *emulator.Config) { c.UnknownPlayer404 = true },
			body: player(`"tags":{"a":"1"}`), status: http.StatusNotFound, want: `{"errors":["Device with player_id not found"]}`,
		},
		{
			name: "a view of an unknown player", method: http.MethodGet, path: playerPath("nope") + "?app_id=" + appID,
			status: http.StatusNotFound, want: `{"errors":["Device with player_id not found"]}`,
		},
		{
			name: "an edit without app_id", method: http.MethodPut, path: playerPath("dev-1"),
			body: `{"tags":{"a":"1"}}`, status: http.StatusBadRequest, want: badBody,
		},
		{
			name: "an edit for an app the emulator does not serve is the legacy 400, not the 403 of a wrong key", method: http.MethodPut, path: playerPath("dev-1"),
			body: `{"app_id":"` + otherApp + `","tags":{"a":"1"}}`, status: http.StatusBadRequest, want: badBody,
		},
		{
			name: "an edit with a wrong key is the 403 of api.onesignal.com", method: http.MethodPut, path: playerPath("dev-1"),
			body: player(`"tags":{"a":"1"}`), headers: []string{"Authorization", "Basic wrong-key"}, status: http.StatusForbidden, want: accessDenied,
		},
		{
			name: "an edit with a wrong key on the legacy host asks for the header, as onesignal.com/api/v1 does", method: http.MethodPut, path: "/api/v1" + playerPath("dev-1"),
			body: player(`"tags":{"a":"1"}`), headers: []string{"Authorization", "Basic wrong-key"}, status: http.StatusBadRequest, want: legacyAuth,
		},
		{
			name: "a list without a key on the legacy host asks for the header", method: http.MethodGet, path: "/api/v1/players?app_id=" + appID,
			headers: []string{"Authorization", ""}, status: http.StatusBadRequest, want: legacyAuth,
		},
		{
			name: "an edit without a content type", method: http.MethodPut, path: playerPath("dev-1"),
			body: player(""), headers: []string{"Content-Type", ""}, status: http.StatusBadRequest, want: badBody,
		},
		{
			name: "an edit with a boolean tag", method: http.MethodPut, path: playerPath("dev-1"),
			body: player(`"tags":{"vip":true}`), status: http.StatusBadRequest, want: `{"errors":["Tag \"vip\" must be a string or a number."],"success":false}`,
		},
		{
			name: "an edit with an object as a tag", method: http.MethodPut, path: playerPath("dev-1"),
			body: player(`"tags":{"vip":{"a":1}}`), status: http.StatusBadRequest, want: `{"errors":["Tag \"vip\" must be a string or a number."],"success":false}`,
		},
		{
			name: "an edit whose external id is a number", method: http.MethodPut, path: playerPath("dev-1"),
			body: player(`"external_user_id":42`), status: http.StatusBadRequest,
			want: `{"errors":["Invalid value for external_user_id: expected string, got JSON number."]}`,
		},
		{
			name: "an add without a device type", method: http.MethodPost, path: "/players",
			body: player(`"identifier":"x"`), status: http.StatusBadRequest,
			want: `{"errors":["device_type is required: a missing one is not a valid device_type."]}`,
		},
		{
			name: "an add with the unused device type 12", method: http.MethodPost, path: "/players",
			body: player(`"device_type":12,"identifier":"x"`), status: http.StatusBadRequest, want: `{"errors":["12 is not a valid device_type."]}`,
		},
		{
			name: "an add of an email device without an address", method: http.MethodPost, path: "/players",
			body: player(`"device_type":11`), status: http.StatusBadRequest,
			want: `{"errors":["identifier is required: the email address or phone number."]}`,
		},
		{
			name: "an add without app_id", method: http.MethodPost, path: "/players",
			body: `{"device_type":1}`, status: http.StatusBadRequest, want: badBody,
		},
		{
			name: "a list without app_id", method: http.MethodGet, path: "/players",
			status: http.StatusBadRequest, want: badBody,
		},
		{
			name: "a list for an app the emulator does not serve", method: http.MethodGet, path: "/players?app_id=" + otherApp,
			status: http.StatusBadRequest, want: badBody,
		},
		{
			name: "a list with a limit of 0", method: http.MethodGet, path: "/players?limit=0&app_id=" + appID,
			status: http.StatusBadRequest, want: `{"errors":["limit must be a whole number from 1 to 300."]}`,
		},
		{
			name: "a list with a negative offset", method: http.MethodGet, path: "/players?offset=-1&app_id=" + appID,
			status: http.StatusBadRequest, want: `{"errors":["offset must be a whole number, 0 or more."]}`,
		},
		{
			name: "tags by an external id nobody has", method: http.MethodPut, path: tagsPath("nobody"),
			body: `{"tags":{"a":"1"}}`, status: http.StatusNotFound, want: `{"errors":["No players found for given external_user_id"]}`,
		},
		{
			name: "tags by the external id of a user with no device", method: http.MethodPut, path: tagsPath("deviceless"),
			body: `{"tags":{"a":"1"}}`, status: http.StatusNotFound, want: `{"errors":["No players found for given external_user_id"]}`,
		},
		{
			name: "tags by an external id for an app the emulator does not serve", method: http.MethodPut, path: "/apps/" + otherApp + "/users/ada",
			body: `{"tags":{"a":"1"}}`, status: http.StatusBadRequest, want: badBody,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			set := tt.set
			if set == nil {
				set = func(*emulator.Config) {}
			}
			a := newAPIWith(t, set)
			a.emu.AddSubscription(emulator.Subscription{ID: "dev-1"})
			a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"deviceless"}}`).must(t, http.StatusCreated)
			before := a.emu.State()
			r := a.send(tt.method, tt.path, tt.body, tt.headers...).must(t, tt.status)
			if r.body != tt.want {
				t.Errorf("body = %s\nwant   %s", r.body, tt.want)
			}
			if after := a.emu.State(); !reflect.DeepEqual(after, before) {
				t.Errorf("a refused request changed the state:\n%+v\nwas %+v", after, before)
			}
		})
	}
}
