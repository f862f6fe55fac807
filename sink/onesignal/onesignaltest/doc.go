// Package onesignaltest is an in-memory OneSignal app behind real HTTP. The
// client's tests, the quickstart and users' CI jobs point the daemon at it
// instead of at api.onesignal.com, then look at what arrived.
//
// It emulates the part of the user-model API the daemon uses, with the
// status codes, bodies and rules that OneSignal documents and its SDKs rely
// on: create user as an upsert with retrieval, view and update a user by any
// alias, and transfer a subscription, deleting the previous owner when it is
// left with neither subscriptions nor aliases. Every request is
// applied whole, under one lock, so the state is never half-updated, and
// State returns a copy that later requests cannot change.
//
// Requests must carry the key as "Authorization: Key <key>" (also
// "key <key>") or in the legacy style "Basic <key>". Its own routes,
// GET /emulator/state, POST /emulator/subscriptions and POST /emulator/reset,
// need no key.
//
// Where the reference could not confirm what OneSignal does, the emulator
// behaves as follows:
//
//   - A path app_id other than the configured one gets the same 403 as a
//     wrong key: an App API key belongs to one app.
//   - A write without "Content-Type: application/json", or whose body is not
//     JSON, gets 400 {"errors":["app_id not found. You may be missing a
//     Content-Type: application/json header."]}, the legacy API's answer.
//   - A 404 for a user or subscription has the generic error shape with a
//     title saying which is missing: {"errors":[{"title":"User not found"}]}
//     or {"errors":[{"title":"Subscription not found"}]}. (OneSignal's has
//     been seen as {}.) An unknown route gets {"errors":["Not Found"]}.
//   - Create user whose identity matches an existing user answers 200 with
//     that user, applying nothing from the request; aliases matching two
//     different users answer 409 with meta.conflicting_aliases (the emulator
//     sets no error code: OneSignal's codes are not documented).
//   - Create user takes subscriptions by "id" (an existing one is moved in;
//     an unknown id is the same 404 as for the transfer) as well as by "type"
//     and "token" (an existing one is moved in, else it is created). Moving
//     subscriptions in still answers 201, not 202.
//   - Tag values are strings. "" and null delete a tag, and are not stored
//     by create user. A number, boolean, array or object is refused with 400.
//   - Update user answers 202 echoing the properties sent. Properties other
//     than tags are accepted and dropped.
//
// Not emulated (yet): the legacy player API, rate limits, tag and
// subscription caps, identity verification, and deliberate faults.
package onesignaltest
