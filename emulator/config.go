package emulator

import (
	"errors"
	"fmt"
	"time"
)

// Config says which app the emulator plays, which key opens it, and how
// strict and how unreliable it is. The zero value of every field but AppID
// and APIKey keeps the emulator lenient and reliable, as tests expect.
type Config struct {
	AppID  string // required: the only app ID the API routes accept
	APIKey string // required: requests carry "Authorization: Key <APIKey>" (or, with AcceptLegacyKeys, "Basic <APIKey>")

	// AcceptLegacyKeys lets requests carry the key the way legacy REST API
	// keys went, "Authorization: Basic <APIKey>", as OneSignal did before
	// it retired legacy keys (Q1 2026). Default false: Basic is refused
	// like a wrong key, with api.onesignal.com's 403 "Access denied".
	AcceptLegacyKeys bool

	// TagLimit caps the data tags one user may hold, as OneSignal's plans
	// do; a write that would leave more is refused with 400. Default 0: no
	// cap.
	TagLimit int

	// UnknownPlayer404 makes PUT /players/{id} of an unknown id answer 404
	// "Device with player_id not found", as the docs say. Default false:
	// 400 "No user with this id found", what the Android SDK handles.
	UnknownPlayer404 bool

	// NoPlayersAnswersOK makes edit tags by external user id (PUT
	// /apps/{app_id}/users/{external_user_id}) of an id no device carries
	// answer 200 {"success":true}, as the API spec and the old SDKs' mocks
	// have it, with nothing done: the tags are not kept anywhere. Default
	// false: 404 "No players found for given external_user_id", as the
	// docs say.
	NoPlayersAnswersOK bool

	// IdentityVerification makes the player model check identity
	// verification hashes (HMAC-SHA256 keyed with APIKey, hex): of the
	// external_user_id a write sets, or clears, and of the identifier of an
	// email or SMS record. Default false: hashes are accepted and dropped.
	IdentityVerification bool

	// DeleteDelay is how long after a delete user (DELETE
	// /apps/{app_id}/users/by/{alias_label}/{alias_id}) the user goes:
	// OneSignal accepts the request at once and deletes "shortly after".
	// Until then the user is there as before, and what is written to it is
	// lost with it. The time is the Clock's. Default 0: at once.
	DeleteDelay time.Duration

	// RateLimits enforces OneSignal's write limits, and its view limit.
	// Default: off.
	RateLimits RateLimits

	// ExportDelay is how long after an export is requested (POST
	// /players/csv_export, POST /apps/{app_id}/users/csv_export) its file
	// is ready; until then its URL answers 404, and another export is
	// refused. The time is the Clock's. Default 0: OneSignal's documented
	// pace, about 2,000 records a second (at least a millisecond).
	ExportDelay time.Duration

	// Faults are injected from the start; SetFaults changes them later.
	// Default: none.
	Faults Faults

	// Clock tells the time to the rate limits. Default nil: time.Now.
	Clock func() time.Time
}

// RateLimits are OneSignal's limits on writes (create, update or delete a
// user, a subscription or a device), counted when a request arrives.
type RateLimits struct {
	Enabled bool
	// AppPerSecond is the app's write budget. Default 0: 1,000, OneSignal's.
	AppPerSecond int
	// TargetPerSecond is the budget of one user or one subscription (a
	// device). Default 0: 1, OneSignal's.
	TargetPerSecond int
	// ViewPerSecond is the app's budget of views (view user and its
	// identity, view device, view devices). Default 0: 1, OneSignal's.
	ViewPerSecond int
}

// OneSignal's documented write limits.
const (
	defaultAppPerSecond    = 1000
	defaultTargetPerSecond = 1
	defaultViewPerSecond   = 1
)

// Validate reports everything wrong with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.AppID == "" {
		errs = append(errs, errors.New("emulator: AppID is empty: set it to the app ID the client is configured with"))
	}
	if c.APIKey == "" {
		errs = append(errs, errors.New("emulator: APIKey is empty: set it to the key the client sends"))
	}
	if c.TagLimit < 0 {
		errs = append(errs, fmt.Errorf("emulator: TagLimit is %d: use 0 for no cap", c.TagLimit))
	}
	if c.DeleteDelay < 0 {
		errs = append(errs, fmt.Errorf("emulator: DeleteDelay is %s: use 0 to delete users at once", c.DeleteDelay))
	}
	if c.ExportDelay < 0 {
		errs = append(errs, fmt.Errorf("emulator: ExportDelay is %s: use 0 for OneSignal's pace", c.ExportDelay))
	}
	if c.RateLimits.AppPerSecond < 0 || c.RateLimits.TargetPerSecond < 0 || c.RateLimits.ViewPerSecond < 0 {
		errs = append(errs, errors.New("emulator: a negative rate limit: use 0 for OneSignal's"))
	}
	if err := c.Faults.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
