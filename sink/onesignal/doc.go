// Package onesignal is the REST client the sink applies operations through,
// in either of OneSignal's API generations: Client speaks the user model,
// PlayerClient the legacy player model of the v7 guide (devices and their
// external_user_id, identity verification hashes). Both go to
// https://api.onesignal.com with a current App API key in "Authorization:
// Key …"; the player model sends a legacy REST API key ("Authorization:
// Basic …") only when told to (PlayerConfig.LegacyKey, Client.Players),
// as OneSignal retires those keys in Q1 2026. Both know four operations:
// set a user's data tags (SetUser), give a device to a user, take it away
// again, and add an email or SMS record of a user.
//
// The user model's SetUser also writes the user's properties (language,
// timezone_id, country, lat, long) with the tags, and its custom aliases
// (in create user's identity, or in a request of their own: one write to
// the user per attempt, the rest deferred); DeleteUser deletes a user. The
// player model's properties are a device's (language, timezone in seconds
// from UTC, country): SetDevice and LinkDevice send them in PUT
// /players/{player_id}, as the edit by external user id takes only tags;
// it has no aliases and no user to delete.
//
// For reconciliation both read back what OneSignal holds: ViewUser and
// ViewDevice, one target at a time under a limiter of their own
// (Config.ViewLimiter, 1 request a second per app by default, OneSignal's
// view limit), and StartExport, the scalable read: a CSV of every user
// or device that Export.Records waits for and reads as it downloads, one
// ExportRecord at a time.
//
// Each call is one attempt: a short, fixed sequence of HTTP requests with no
// retries and no sleeping. Retrying is the caller's job, and every error says
// how to treat it:
//
//   - *APIError (OneSignal answered with an error status): Retryable() for
//     408, 429 and 5xx, with the server's Retry-After in RetryAfterDuration();
//     Fatal() for 401 and 403 (wrong or revoked key) and for answers that
//     show the app ID, the base URL or identity verification to be
//     configured wrong: nothing will succeed until someone fixes the
//     configuration; Refusal() says which credential was refused and how
//     to fix it. NoDevice() for the player model's "No players found" on
//     a tag edit by external user id. Anything else is permanent.
//   - *DeferredError: an attempt that did part of its work and must be
//     repeated after RetryAfterDuration() (a second write to the same
//     subscription would meet OneSignal's per-second limit): Retryable().
//   - *TransportError (no complete answer: connection refused or reset,
//     timeout, truncated body): always Retryable(). A cancelled context also
//     arrives this way; check ctx.Err() before deciding to dead-letter.
//   - any other error (an empty external ID, say) is permanent.
//
// All operations are idempotent, so the caller can repeat an attempt
// whose outcome it never learned. Error text never contains the API key nor
// the IDs of users and subscriptions, only the endpoint's path template.
//
// A Client is safe for concurrent use.
package onesignal
