package emulator_test

import (
	"net/http"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
)

const accessDenied = `{"errors":["Access denied.  Please include an 'Authorization: ...' header with a valid API key (https://documentation.onesignal.com/docs/en/keys-and-ids#api-keys)."]}`

func TestAuthentication(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		legacy bool // Config.AcceptLegacyKeys
		auth   string
		path   string
		status int
		want   string // the body of a refusal; default accessDenied
	}{
		{name: "accepts the Key scheme", auth: "Key " + apiKey, status: http.StatusNotFound},
		{name: "accepts the lowercase key scheme", auth: "key " + apiKey, status: http.StatusNotFound},
		{name: "refuses the legacy Basic scheme even with the right key", auth: "Basic " + apiKey, status: http.StatusForbidden},
		{
			name: "refuses the legacy Basic scheme on the legacy host with that host's answer", auth: "Basic " + apiKey,
			path: "/api/v1/players?app_id=" + appID, status: http.StatusBadRequest, want: legacyAuth,
		},
		{name: "accepts the legacy Basic scheme with the raw key when legacy keys are accepted", legacy: true, auth: "Basic " + apiKey, status: http.StatusNotFound},
		{
			name: "accepts the legacy Basic scheme on the legacy host when legacy keys are accepted", legacy: true, auth: "Basic " + apiKey,
			path: "/api/v1/players?app_id=" + appID, status: http.StatusOK,
		},
		{name: "refuses a wrong key in the legacy Basic scheme when legacy keys are accepted", legacy: true, auth: "Basic wrong-key", status: http.StatusForbidden},
		{name: "accepts the Key scheme when legacy keys are accepted", legacy: true, auth: "Key " + apiKey, status: http.StatusNotFound},
		{name: "refuses a missing header", auth: "", status: http.StatusForbidden},
		{name: "refuses a wrong key", auth: "Key wrong-key", status: http.StatusForbidden},
		{name: "refuses a key with nothing before it", auth: apiKey, status: http.StatusForbidden},
		{name: "refuses the Bearer scheme", auth: "Bearer " + apiKey, status: http.StatusForbidden},
		{name: "refuses the legacy scheme in the wrong case", legacy: true, auth: "basic " + apiKey, status: http.StatusForbidden},
		{name: "refuses a base64 user:password in the legacy scheme", legacy: true, auth: "Basic dGVzdC1rZXk6", status: http.StatusForbidden},
		{name: "refuses an extra space", auth: "Key  " + apiKey, status: http.StatusForbidden},
		{name: "refuses a prefix of the key", auth: "Key " + apiKey[:4], status: http.StatusForbidden},
		{
			name: "refuses the right key for another app", auth: "Key " + apiKey,
			path: "/apps/00000000-0000-0000-0000-000000000000/users/by/external_id/alice", status: http.StatusForbidden,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := newAPIWith(t, func(c *emulator.Config) { c.AcceptLegacyKeys = tt.legacy })
			path := tt.path
			if path == "" {
				path = userPath("external_id", "alice")
			}
			r := a.send(http.MethodGet, path, "", "Authorization", tt.auth).must(t, tt.status)
			want := tt.want
			if want == "" {
				want = accessDenied
			}
			if (tt.status == http.StatusForbidden || tt.want != "") && r.body != want {
				t.Errorf("body = %s, want %s", r.body, want)
			}
		})
	}
}

func TestEmulatorRoutesNeedNoKey(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.send(http.MethodPost, "/emulator/subscriptions", `{"id":"dev-1"}`, "Authorization", "").must(t, http.StatusCreated)
	a.send(http.MethodGet, "/emulator/state", "", "Authorization", "").must(t, http.StatusOK)
	a.send(http.MethodPost, "/emulator/reset", "", "Authorization", "").must(t, http.StatusNoContent)
}
