package onesignal_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
)

func TestCheckCredentialsAcceptsTheRightKeyAndNamesAWrongOne(t *testing.T) {
	t.Parallel()
	_, url := emulator.NewTestServer(t, emulator.Config{AppID: "app-1", APIKey: "right"})
	for _, tc := range []struct {
		key   string
		fatal bool
	}{{"right", false}, {"wrong", true}} {
		c, err := onesignal.New(onesignal.Config{BaseURL: url, AppID: "app-1", APIKey: onesignal.Secret(tc.key)})
		if err != nil {
			t.Fatal(err)
		}
		err = c.CheckCredentials(context.Background())
		if tc.fatal {
			apiErr, ok := err.(*onesignal.APIError)
			if !ok || !apiErr.Fatal() {
				t.Errorf("key %q: err = %v, want a fatal API error", tc.key, err)
			}
		} else if err != nil {
			t.Errorf("key %q: %v", tc.key, err)
		}
	}
}

// A wrong key and an unknown app: the player model tells them apart, the
// user model answers both with the same 403, and Refusal says so, naming
// the app either way.
func TestRefusalSaysWhetherTheKeyOrTheAppWasRefused(t *testing.T) {
	t.Parallel()
	const otherApp = "11111111-2222-4333-8444-555555555555"
	_, url := emulator.NewTestServer(t, emulator.Config{AppID: appID, APIKey: "right"})
	keyRefused := "OneSignal refused the API key for app %s: set onesignal.api_key to that app's REST API key"
	eitherRefused := "OneSignal refused the API key for app %s, or has no such app (it answers both alike): set onesignal.app_id to your app's ID and onesignal.api_key to an App API key of that same app"
	noApp := "OneSignal has no app %s (it answered \"app_id not found\"): set onesignal.app_id"
	tests := []struct {
		name, base, app, key string
		player               bool
		want                 string
	}{
		{"user model, a wrong key", url, appID, "wrong", false, fmt.Sprintf(eitherRefused, appID)},
		{"user model, an app the key is not of", url, otherApp, "right", false, fmt.Sprintf(eitherRefused, otherApp)},
		{"player model, a wrong key", url, appID, "wrong", true, fmt.Sprintf(keyRefused, appID)},
		{"player model, a wrong key on the legacy host", url + "/api/v1", appID, "wrong", true, fmt.Sprintf(keyRefused, appID)},
		{"player model, an unknown app", url, otherApp, "right", true, fmt.Sprintf(noApp, otherApp)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := onesignal.Config{BaseURL: tt.base, AppID: tt.app, APIKey: onesignal.Secret(tt.key)}
			var err error
			if tt.player {
				c, cerr := onesignal.NewPlayers(onesignal.PlayerConfig{Config: cfg})
				if cerr != nil {
					t.Fatal(cerr)
				}
				err = c.CheckCredentials(t.Context())
			} else {
				c, cerr := onesignal.New(cfg)
				if cerr != nil {
					t.Fatal(cerr)
				}
				err = c.CheckCredentials(t.Context())
			}
			apiErr, ok := errors.AsType[*onesignal.APIError](err)
			if !ok || !apiErr.Fatal() {
				t.Fatalf("err = %v, want a fatal API error", err)
			}
			if got := apiErr.Refusal(); !strings.HasPrefix(got, tt.want) {
				t.Errorf("Refusal() = %q\nwant it to begin %q", got, tt.want)
			}
			// The player model's client made from a user-model one says the same.
			if tt.player {
				c, _ := onesignal.New(cfg)
				err := c.Players(false, false).CheckCredentials(t.Context())
				if apiErr, ok := errors.AsType[*onesignal.APIError](err); !ok || !strings.HasPrefix(apiErr.Refusal(), tt.want) {
					t.Errorf("through Client.Players: err = %v", err)
				}
			}
		})
	}
}

func TestRefusalIsEmptyForAnswersThatRefuseNoCredential(t *testing.T) {
	t.Parallel()
	emu, url := emulator.NewTestServer(t, emulator.Config{AppID: appID, APIKey: apiKey})
	if err := emu.SetFaults(emulator.Faults{Status: map[int]float64{500: 1}}); err != nil {
		t.Fatal(err)
	}
	c, err := onesignal.New(onesignal.Config{BaseURL: url, AppID: appID, APIKey: apiKey})
	if err != nil {
		t.Fatal(err)
	}
	err = c.SetTags(t.Context(), "alice", map[string]string{"plan": "pro"}, false)
	apiErr, ok := errors.AsType[*onesignal.APIError](err)
	if !ok || apiErr.StatusCode != 500 || apiErr.Refusal() != "" {
		t.Errorf("err = %v, want a 500 with no refusal", err)
	}
}
