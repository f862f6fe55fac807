// Package onesignal is the REST client the sink applies operations through.
// It speaks OneSignal's user model (https://api.onesignal.com, App API key in
// "Authorization: Key …") and knows three operations: set a user's data tags,
// give a device subscription to a user, and take it away again.
//
// Each call is one attempt: a short, fixed sequence of HTTP requests with no
// retries and no sleeping. Retrying is the caller's job, and every error says
// how to treat it:
//
//   - *APIError (OneSignal answered with an error status): Retryable() for
//     408, 429 and 5xx, with the server's Retry-After in RetryAfterDuration();
//     Fatal() for 401 and 403 (wrong or revoked key) and for answers that
//     show the app ID or base URL to be wrong: nothing will succeed until
//     someone fixes the configuration. Anything else is permanent.
//   - *TransportError (no complete answer: connection refused or reset,
//     timeout, truncated body): always Retryable(). A cancelled context also
//     arrives this way; check ctx.Err() before deciding to dead-letter.
//   - any other error (an empty external ID, say) is permanent.
//
// All three operations are idempotent, so the caller can repeat an attempt
// whose outcome it never learned. Error text never contains the API key nor
// the IDs of users and subscriptions, only the endpoint's path template.
//
// A Client is safe for concurrent use.
package onesignal
