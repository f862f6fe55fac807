package onesignal_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
)

// newPlayers returns a player-model client talking over real HTTP to a
// fresh emulator with cfg (AppID and APIKey filled in).
func newPlayers(t *testing.T, cfg emulator.Config, verify bool) (*emulator.Emulator, *onesignal.PlayerClient) {
	t.Helper()
	cfg.AppID, cfg.APIKey = appID, apiKey
	emu, url := emulator.NewTestServer(t, cfg)
	c, err := onesignal.NewPlayers(onesignal.PlayerConfig{Config: onesignal.Config{BaseURL: url, AppID: appID, APIKey: apiKey}, IdentityVerification: verify})
	if err != nil {
		t.Fatal(err)
	}
	return emu, c
}

func player(t *testing.T, emu *emulator.Emulator, id string) emulator.Player {
	t.Helper()
	p, ok := emu.State().Player(id)
	if !ok {
		t.Fatalf("no device %s", id)
	}
	return p
}

func externalID(p emulator.Player) string {
	if p.ExternalUserID == nil {
		return ""
	}
	return *p.ExternalUserID
}

func TestPlayersLinkTagAndUnlinkADevice(t *testing.T) {
	t.Parallel()
	emu, c := newPlayers(t, emulator.Config{}, false)
	emu.AddSubscription(emulator.Subscription{ID: "dev-1"})
	ctx := t.Context()

	if err := c.LinkSubscription(ctx, "dev-1", "team/alice", tags("plan", "pro")); err != nil {
		t.Fatal(err)
	}
	if err := c.SetTags(ctx, "team/alice", tags("level", "3", "plan", ""), false); err != nil {
		t.Fatalf("edit tags by an external id with a slash: %v", err)
	}
	p := player(t, emu, "dev-1")
	if externalID(p) != "team/alice" || fmt.Sprint(p.Tags) != "map[level:3]" {
		t.Errorf("dev-1 = %q %v, want team/alice with level 3 (the link's plan deleted since)", externalID(p), p.Tags)
	}
	if err := c.UnlinkSubscription(ctx, "dev-1", "team/alice", nil); err != nil {
		t.Fatal(err)
	}
	if p := player(t, emu, "dev-1"); externalID(p) != "" {
		t.Errorf("dev-1 still carries %q after the unlink", externalID(p))
	}
}

// OneSignal's docs answer tags for an external id no device carries with
// 404 "No players found", its API spec with 200 {"success":true}: the
// client says NoDevice() to the first, and cannot tell the second from
// tags applied.
func TestPlayersTagsForAnExternalIDNoDeviceCarries(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		ok   bool
	}{{"answered 404 say NoDevice", false}, {"answered 200 succeed, though nothing was done", true}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			emu, c := newPlayers(t, emulator.Config{NoPlayersAnswersOK: tt.ok}, false)
			emu.AddUser("deviceless", nil)
			for _, ext := range []string{"nobody", "deviceless"} {
				err := c.SetTags(t.Context(), ext, tags("plan", "pro"), false)
				if tt.ok {
					if err != nil {
						t.Errorf("%s: %v, want the 200 taken as success", ext, err)
					}
					continue
				}
				apiErr := requireAPIError(t, err, http.StatusNotFound)
				if !apiErr.NoDevice() || apiErr.Retryable() || apiErr.Fatal() {
					t.Errorf("%s: NoDevice() = %v, Retryable() = %v, Fatal() = %v; want true, false, false", ext, apiErr.NoDevice(), apiErr.Retryable(), apiErr.Fatal())
				}
			}
			if u, _ := emu.State().UserByExternalID("deviceless"); len(u.Tags) != 0 {
				t.Errorf("deviceless holds tags %v, want none", u.Tags)
			}
		})
	}
}

// A player-model client sends the key as an App API key, which the
// emulator takes; the legacy way ("Basic") only when told to, which the
// emulator refuses as OneSignal does since it retired legacy keys, and
// the refusal names the option and the fix.
func TestPlayersSendBasicOnlyWithTheLegacyKeyOptionAndARefusalNamesIt(t *testing.T) {
	t.Parallel()
	const fix = "onesignal.legacy_api_key is true: the key may be a legacy REST API key, which OneSignal no longer takes (retired in Q1 2026): create an App API key"
	tests := []struct {
		name   string
		legacy bool // PlayerConfig.LegacyKey
		accept bool // the emulator's AcceptLegacyKeys
		prefix string
		status int // 0: accepted
	}{
		{name: "an App API key", status: 0},
		{name: "an App API key where legacy keys are accepted too", accept: true, status: 0},
		{name: "a legacy key where legacy keys are accepted", legacy: true, accept: true, status: 0},
		{name: "a legacy key", legacy: true, status: http.StatusForbidden},
		{name: "a legacy key on the legacy host", legacy: true, prefix: "/api/v1", status: http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			emu, url := emulator.NewTestServer(t, emulator.Config{AppID: appID, APIKey: apiKey, AcceptLegacyKeys: tt.accept})
			emu.AddSubscription(emulator.Subscription{ID: "dev-1"})
			cfg := onesignal.Config{BaseURL: url + tt.prefix, AppID: appID, APIKey: apiKey}
			direct, err := onesignal.NewPlayers(onesignal.PlayerConfig{Config: cfg, LegacyKey: tt.legacy})
			if err != nil {
				t.Fatal(err)
			}
			for how, c := range map[string]*onesignal.PlayerClient{"NewPlayers": direct, "Client.Players": newClient(t, url+tt.prefix, apiKey).Players(false, tt.legacy)} {
				err := c.LinkSubscription(t.Context(), "dev-1", "alice", tags("plan", "pro"))
				if tt.status == 0 {
					if err != nil {
						t.Errorf("%s: %v", how, err)
					}
					continue
				}
				apiErr := requireAPIError(t, err, tt.status)
				if !apiErr.Fatal() {
					t.Errorf("%s: %v is not fatal", how, err)
				}
				if got := apiErr.Refusal(); !strings.Contains(got, fix) {
					t.Errorf("%s: Refusal() = %q\nwant it to say %q", how, got, fix)
				}
				if !strings.Contains(err.Error(), "onesignal.legacy_api_key is true") {
					t.Errorf("%s: error = %v, want it to name onesignal.legacy_api_key", how, err)
				}
				err = c.CheckCredentials(t.Context())
				if apiErr, ok := errors.AsType[*onesignal.APIError](err); !ok || !strings.Contains(apiErr.Refusal(), fix) {
					t.Errorf("%s: CheckCredentials = %v, want the refusal naming the option", how, err)
				}
			}
		})
	}
}

// Without the option, a refused key is not blamed on it.
func TestPlayersRefusedAppAPIKeyDoesNotNameTheLegacyOption(t *testing.T) {
	t.Parallel()
	_, url := emulator.NewTestServer(t, emulator.Config{AppID: appID, APIKey: "another", AcceptLegacyKeys: true})
	c, err := onesignal.NewPlayers(onesignal.PlayerConfig{Config: onesignal.Config{BaseURL: url, AppID: appID, APIKey: apiKey}})
	if err != nil {
		t.Fatal(err)
	}
	apiErr := requireAPIError(t, c.CheckCredentials(t.Context()), http.StatusForbidden)
	if strings.Contains(apiErr.Refusal(), "legacy") || strings.Contains(apiErr.Error(), "legacy") {
		t.Errorf("Refusal() = %q, Error() = %q; want neither to mention legacy keys", apiErr.Refusal(), apiErr.Error())
	}
}

func TestPlayersAddEmailAndSMSRecordsOfAUser(t *testing.T) {
	t.Parallel()
	emu, c := newPlayers(t, emulator.Config{}, false)
	ctx := t.Context()
	if err := c.AddRecord(ctx, "alice", onesignal.ChannelEmail, "alice@example.com", tags("plan", "pro")); err != nil {
		t.Fatal(err)
	}
	if err := c.AddRecord(ctx, "alice", onesignal.ChannelSMS, "+15551230000", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.AddRecord(ctx, "alice", onesignal.ChannelEmail, "alice@example.com", nil); err != nil {
		t.Fatalf("adding the same address again: %v", err)
	}
	st := emu.State()
	alice, ok := st.UserByExternalID("alice")
	if !ok || len(alice.Subscriptions) != 2 || alice.Tags["plan"] != "pro" {
		t.Fatalf("alice = %+v, want two records and plan pro", alice)
	}
	got := map[int]string{}
	for _, id := range alice.Subscriptions {
		p := player(t, emu, id)
		got[p.DeviceType] = p.Identifier
	}
	if got[11] != "alice@example.com" || got[14] != "+15551230000" {
		t.Errorf("records by device_type = %v, want 11: the address, 14: the phone", got)
	}
}

func TestPlayersSendIdentityVerificationHashes(t *testing.T) {
	t.Parallel()
	emu, c := newPlayers(t, emulator.Config{IdentityVerification: true}, true)
	emu.AddSubscription(emulator.Subscription{ID: "dev-1"})
	ctx := t.Context()
	if err := c.LinkSubscription(ctx, "dev-1", "alice", nil); err != nil {
		t.Fatalf("link with the hash: %v", err)
	}
	if err := c.AddRecord(ctx, "alice", onesignal.ChannelEmail, "alice@example.com", nil); err != nil {
		t.Fatalf("email record with both hashes: %v", err)
	}
	if err := c.UnlinkSubscription(ctx, "dev-1", "alice", nil); err != nil {
		t.Fatalf("unlink with the hash of the old id: %v", err)
	}
	if p := player(t, emu, "dev-1"); externalID(p) != "" {
		t.Errorf("dev-1 carries %q, want none", externalID(p))
	}

	if err := c.LinkSubscription(ctx, "dev-1", "bob", nil); err != nil {
		t.Fatal(err)
	}
	err := c.UnlinkSubscription(ctx, "dev-1", "", nil)
	if err == nil || !strings.Contains(err.Error(), "REPLICA IDENTITY FULL") {
		t.Errorf("unlink without the old id = %v, want the fix named", err)
	}
	apiErr := requireAPIError(t, c.UnlinkSubscription(ctx, "dev-1", "someone-else", nil), http.StatusBadRequest)
	if apiErr.Fatal() || apiErr.Retryable() {
		t.Errorf("a hash of the wrong old id: Fatal() = %v, Retryable() = %v, want a permanent error", apiErr.Fatal(), apiErr.Retryable())
	}
}

func TestPlayersWithoutHashesForAnAppThatVerifiesStop(t *testing.T) {
	t.Parallel()
	emu, c := newPlayers(t, emulator.Config{IdentityVerification: true}, false)
	emu.AddSubscription(emulator.Subscription{ID: "dev-1"})
	apiErr := requireAPIError(t, c.LinkSubscription(t.Context(), "dev-1", "alice", nil), http.StatusBadRequest)
	if !apiErr.Fatal() || !strings.Contains(apiErr.Error(), "onesignal.identity_verification: true") {
		t.Errorf("error = %v (Fatal %v), want a fatal error naming onesignal.identity_verification", apiErr, apiErr.Fatal())
	}
}

func TestPlayersTagCapErrorIsPermanent(t *testing.T) {
	t.Parallel()
	emu, c := newPlayers(t, emulator.Config{TagLimit: 2}, false)
	emu.AddSubscription(emulator.Subscription{ID: "dev-1"})
	if err := c.LinkSubscription(t.Context(), "dev-1", "alice", nil); err != nil {
		t.Fatal(err)
	}
	apiErr := requireAPIError(t, c.SetTags(t.Context(), "alice", tags("a", "1", "b", "2", "c", "3"), false), http.StatusBadRequest)
	if apiErr.Retryable() || apiErr.Fatal() || apiErr.NoDevice() || !strings.Contains(apiErr.Error(), "maximum of 2 tags") {
		t.Errorf("error = %v, want a permanent 400 naming the cap", apiErr)
	}
}

func TestPlayersCheckCredentials(t *testing.T) {
	t.Parallel()
	_, c := newPlayers(t, emulator.Config{}, false)
	if err := c.CheckCredentials(t.Context()); err != nil {
		t.Errorf("right key: %v", err)
	}
	_, url := emulator.NewTestServer(t, emulator.Config{AppID: appID, APIKey: "another"})
	wrong, err := onesignal.NewPlayers(onesignal.PlayerConfig{Config: onesignal.Config{BaseURL: url, AppID: appID, APIKey: apiKey}})
	if err != nil {
		t.Fatal(err)
	}
	err = wrong.CheckCredentials(t.Context())
	if apiErr, ok := errors.AsType[*onesignal.APIError](err); !ok || !apiErr.Fatal() {
		t.Errorf("wrong key: %v, want a fatal APIError", err)
	}
}

func TestUserModelAddsEmailAndSMSSubscriptions(t *testing.T) {
	t.Parallel()
	emu, c := newEmulated(t)
	ctx := t.Context()
	if err := c.AddRecord(ctx, "alice", onesignal.ChannelEmail, "alice@example.com", nil); err != nil {
		t.Fatalf("for a missing user: %v", err)
	}
	if err := c.AddRecord(ctx, "alice", onesignal.ChannelSMS, "+15551230000", nil); err != nil {
		t.Fatalf("for an existing user: %v", err)
	}
	if err := c.AddRecord(ctx, "bob", onesignal.ChannelEmail, "alice@example.com", nil); err != nil {
		t.Fatalf("moving the address to bob: %v", err)
	}
	st := emu.State()
	alice, _ := st.UserByExternalID("alice")
	bob, _ := st.UserByExternalID("bob")
	if len(alice.Subscriptions) != 1 || len(bob.Subscriptions) != 1 {
		t.Fatalf("alice has %v, bob %v; want the SMS with alice and the email moved to bob", alice.Subscriptions, bob.Subscriptions)
	}
	for _, sub := range st.Subscriptions {
		want := map[string]string{"Email": bob.OneSignalID, "SMS": alice.OneSignalID}[sub.Type]
		if sub.OneSignalID != want {
			t.Errorf("%s %s belongs to %s, want %s", sub.Type, sub.Token, sub.OneSignalID, want)
		}
	}
}

func TestPlayersSetDeviceWritesLanguageTimezoneAndCountry(t *testing.T) {
	t.Parallel()
	emu, c := newPlayers(t, emulator.Config{}, false)
	const dev = "dev/ü?%41"
	emu.AddSubscription(emulator.Subscription{ID: dev})
	ctx := t.Context()
	if err := c.SetDevice(ctx, dev, onesignal.DeviceWrite{Properties: map[string]string{"language": "de", "timezone": "-18000", "country": "DE"}}); err != nil {
		t.Fatal(err)
	}
	p := player(t, emu, dev)
	if p.Language != "de" || p.Timezone == nil || *p.Timezone != -18000 || p.Country != "DE" {
		t.Errorf("device = %+v, want de, -18000, DE", p)
	}
	// "" clears, a property not named stays, tags go in the same request.
	if err := c.SetDevice(ctx, dev, onesignal.DeviceWrite{Tags: tags("plan", "pro"), Properties: map[string]string{"language": "", "timezone": ""}}); err != nil {
		t.Fatal(err)
	}
	p = player(t, emu, dev)
	if p.Language != "" || p.Timezone != nil || p.Country != "DE" || p.Tags["plan"] != "pro" {
		t.Errorf("device = %+v, want only country DE and tag plan=pro", p)
	}
	if err := c.SetDevice(ctx, dev, onesignal.DeviceWrite{}); err != nil {
		t.Errorf("an empty write: %v", err)
	}
	if n := emu.Stats().Requests["PUT /players/{player_id}"][200]; n != 2 {
		t.Errorf("PUT /players requests = %d, want 2: nothing is sent for an empty write", n)
	}
	if err := c.SetDevice(ctx, "nope", onesignal.DeviceWrite{Properties: map[string]string{"country": "FR"}}); err == nil {
		t.Error("a device OneSignal does not know was written")
	}
}

func TestPlayersLinkDeviceCarriesTagsAndPropertiesInOneRequest(t *testing.T) {
	t.Parallel()
	emu, c := newPlayers(t, emulator.Config{}, false)
	emu.AddSubscription(emulator.Subscription{ID: "dev-1"})
	err := c.LinkDevice(t.Context(), "dev-1", "team/ä?%", onesignal.DeviceWrite{
		Tags: tags("plan", "pro"), Properties: map[string]string{"timezone": "3600", "country": "AT"},
	})
	if err != nil {
		t.Fatal(err)
	}
	p := player(t, emu, "dev-1")
	if externalID(p) != "team/ä?%" || p.Tags["plan"] != "pro" || p.Timezone == nil || *p.Timezone != 3600 || p.Country != "AT" {
		t.Errorf("device = %+v", p)
	}
	if n := emu.Stats().Requests["PUT /players/{player_id}"][200]; n != 1 {
		t.Errorf("PUT /players requests = %d, want 1", n)
	}
}

func TestPlayersRefuseWhatThePlayerModelCannotTake(t *testing.T) {
	t.Parallel()
	emu, c := newPlayers(t, emulator.Config{}, false)
	emu.AddSubscription(emulator.Subscription{ID: "dev-1"})
	ctx := t.Context()
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"properties by external id", c.SetUser(ctx, "ada", onesignal.UserWrite{Tags: tags("a", "1"), Properties: map[string]string{"language": "de"}}),
			"its language, timezone and country go to each device"},
		{"aliases", c.SetUser(ctx, "ada", onesignal.UserWrite{Aliases: map[string]string{"crm": "1"}}), "the player model has no aliases"},
		{"a timezone with a fraction", c.SetDevice(ctx, "dev-1", onesignal.DeviceWrite{Properties: map[string]string{"timezone": "1.5"}}),
			"property timezone is not a whole number of seconds from UTC"},
		{"the user model's timezone_id", c.LinkDevice(ctx, "dev-1", "ada", onesignal.DeviceWrite{Properties: map[string]string{"timezone_id": "Europe/Oslo"}}),
			`property "timezone_id" is not one PUT /players/{player_id} takes: use language, timezone, country`},
		{"lat", c.SetDevice(ctx, "dev-1", onesignal.DeviceWrite{Properties: map[string]string{"lat": "1"}}), `property "lat" is not one`},
		{"an empty player id", c.SetDevice(ctx, "", onesignal.DeviceWrite{Tags: tags("a", "1")}), "the player ID is empty"},
	}
	for _, tt := range tests {
		if tt.err == nil || !strings.Contains(tt.err.Error(), tt.want) {
			t.Errorf("%s: error = %v, want it to say %q", tt.name, tt.err, tt.want)
		}
	}
	if st := emu.Stats(); len(st.Requests) != 0 {
		t.Errorf("requests = %v, want none", st.Requests)
	}
}

func TestPlayersSetUserSendsTagsByExternalID(t *testing.T) {
	t.Parallel()
	emu, c := newPlayers(t, emulator.Config{}, false)
	emu.AddSubscription(emulator.Subscription{ID: "dev-1"})
	if err := c.LinkSubscription(t.Context(), "dev-1", "team/ä?%", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.SetUser(t.Context(), "team/ä?%", onesignal.UserWrite{Tags: tags("plan", "pro"), Create: true}); err != nil {
		t.Fatal(err)
	}
	if p := player(t, emu, "dev-1"); p.Tags["plan"] != "pro" {
		t.Errorf("tags = %v, want plan=pro", p.Tags)
	}
}
