package onesignaltest_test

import (
	"net/http"
	"testing"
)

const accessDenied = `{"errors":["Access denied.  Please include an 'Authorization: ...' header with a valid API key (https://documentation.onesignal.com/docs/en/keys-and-ids#api-keys)."]}`

func TestAuthentication(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		auth   string
		path   string
		status int
	}{
		{name: "accepts the Key scheme", auth: "Key " + apiKey, status: http.StatusNotFound},
		{name: "accepts the lowercase key scheme", auth: "key " + apiKey, status: http.StatusNotFound},
		{name: "accepts the legacy Basic scheme with the raw key", auth: "Basic " + apiKey, status: http.StatusNotFound},
		{name: "refuses a missing header", auth: "", status: http.StatusForbidden},
		{name: "refuses a wrong key", auth: "Key wrong-key", status: http.StatusForbidden},
		{name: "refuses a key with nothing before it", auth: apiKey, status: http.StatusForbidden},
		{name: "refuses the Bearer scheme", auth: "Bearer " + apiKey, status: http.StatusForbidden},
		{name: "refuses the legacy scheme in the wrong case", auth: "basic " + apiKey, status: http.StatusForbidden},
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
			a := newAPI(t)
			path := tt.path
			if path == "" {
				path = userPath("external_id", "alice")
			}
			r := a.send(http.MethodGet, path, "", "Authorization", tt.auth).must(t, tt.status)
			if tt.status == http.StatusForbidden && r.body != accessDenied {
				t.Errorf("body = %s, want %s", r.body, accessDenied)
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
