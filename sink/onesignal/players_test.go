package onesignal_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal/onesignaltest"
)

// newPlayers returns a player-model client talking over real HTTP to a
// fresh emulator with cfg (AppID and APIKey filled in).
func newPlayers(t *testing.T, cfg onesignaltest.Config, verify bool) (*onesignaltest.Emulator, *onesignal.PlayerClient) {
	t.Helper()
	cfg.AppID, cfg.APIKey = appID, apiKey
	emu, url := onesignaltest.NewTestServer(t, cfg)
	c, err := onesignal.NewPlayers(onesignal.PlayerConfig{Config: onesignal.Config{BaseURL: url, AppID: appID, APIKey: apiKey}, IdentityVerification: verify})
	if err != nil {
		t.Fatal(err)
	}
	return emu, c
}

func player(t *testing.T, emu *onesignaltest.Emulator, id string) onesignaltest.Player {
	t.Helper()
	p, ok := emu.State().Player(id)
	if !ok {
		t.Fatalf("no device %s", id)
	}
	return p
}

func externalID(p onesignaltest.Player) string {
	if p.ExternalUserID == nil {
		return ""
	}
	return *p.ExternalUserID
}

func TestPlayersLinkTagAndUnlinkADevice(t *testing.T) {
	t.Parallel()
	emu, c := newPlayers(t, onesignaltest.Config{}, false)
	emu.AddSubscription(onesignaltest.Subscription{ID: "dev-1"})
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

func TestPlayersTagsForAUserWithoutADeviceSayNoDevice(t *testing.T) {
	t.Parallel()
	_, c := newPlayers(t, onesignaltest.Config{}, false)
	err := c.SetTags(t.Context(), "nobody", tags("plan", "pro"), false)
	apiErr := requireAPIError(t, err, http.StatusNotFound)
	if !apiErr.NoDevice() || apiErr.Retryable() || apiErr.Fatal() {
		t.Errorf("NoDevice() = %v, Retryable() = %v, Fatal() = %v; want true, false, false", apiErr.NoDevice(), apiErr.Retryable(), apiErr.Fatal())
	}
}

func TestPlayersAddEmailAndSMSRecordsOfAUser(t *testing.T) {
	t.Parallel()
	emu, c := newPlayers(t, onesignaltest.Config{}, false)
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
	emu, c := newPlayers(t, onesignaltest.Config{IdentityVerification: true}, true)
	emu.AddSubscription(onesignaltest.Subscription{ID: "dev-1"})
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
	emu, c := newPlayers(t, onesignaltest.Config{IdentityVerification: true}, false)
	emu.AddSubscription(onesignaltest.Subscription{ID: "dev-1"})
	apiErr := requireAPIError(t, c.LinkSubscription(t.Context(), "dev-1", "alice", nil), http.StatusBadRequest)
	if !apiErr.Fatal() || !strings.Contains(apiErr.Error(), "onesignal.identity_verification: true") {
		t.Errorf("error = %v (Fatal %v), want a fatal error naming onesignal.identity_verification", apiErr, apiErr.Fatal())
	}
}

func TestPlayersTagCapErrorIsPermanent(t *testing.T) {
	t.Parallel()
	emu, c := newPlayers(t, onesignaltest.Config{TagLimit: 2}, false)
	emu.AddSubscription(onesignaltest.Subscription{ID: "dev-1"})
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
	_, c := newPlayers(t, onesignaltest.Config{}, false)
	if err := c.CheckCredentials(t.Context()); err != nil {
		t.Errorf("right key: %v", err)
	}
	_, url := onesignaltest.NewTestServer(t, onesignaltest.Config{AppID: appID, APIKey: "another"})
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
