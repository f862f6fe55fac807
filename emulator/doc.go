// Package emulator is an in-memory OneSignal app behind real HTTP. The
// client's tests, the quickstart, the benchmarks and users' CI jobs point
// the daemon at it instead of at api.onesignal.com, then look at what
// arrived. docs/emulator.md describes it for its users; this comment holds
// its rules in full. The `emulator` subcommand of onesignal-cdc serves it.
//
// It emulates the part of the user-model API the daemon uses, with the
// status codes, bodies and rules that OneSignal documents and its SDKs rely
// on: create user as an upsert with retrieval, view and update a user by any
// alias (tags and the properties language, timezone_id, country, lat and
// long), view, add, change and delete a user's aliases, delete a user, add a
// subscription (email, SMS) to a user, and transfer a subscription,
// deleting the previous owner when it is left with neither subscriptions
// nor aliases. Every request is
// applied whole, under one lock, so the state is never half-updated, and
// State returns a copy that later requests cannot change.
//
// Beside it, on the same store, it serves the legacy player model, at the
// root and under /api/v1: add, edit, view and list devices (POST /players,
// PUT and GET /players/{id}, GET /players), and edit tags by external user
// id (PUT /apps/{app_id}/users/{external_user_id}). A player is a
// subscription: its identifier is the token, its device_type stands for the
// subscription type (Email is 11, SMS 14), and its external_user_id and tags
// are those of the user that owns it; its language, timezone and country
// are its own. State.Player shows a subscription the way GET /players/{id}
// does.
//
// Requests must carry the key as a current App API key, "Authorization:
// Key <key>" (also "key <key>"), on every route of either model. A wrong
// or missing key gets 403 {"errors":["Access denied.  Please include an
// 'Authorization: ...' header with a valid API key (…)."]}, as
// api.onesignal.com answers; under /api/v1, the legacy host, it gets that
// host's 400 {"errors":["Please include a case-sensitive header of
// Authorization: Basic <YOUR-REST-API-KEY-HERE> or Bearer
// token="<YOUR-REST-API-KEY-HERE>" with a valid REST API
// key."],"reference":[…]}.
//
// The legacy style, "Basic <key>" (the raw key after "Basic ", no
// base64), gets the same answers, even with the right key, unless
// Config.AcceptLegacyKeys lets it in. OneSignal retires legacy REST API
// keys and the onesignal.com/api/v1 address in Q1 2026, and does not say
// what a legacy key is answered afterwards; the emulator gives what
// OneSignal documents for a key it does not take. On api.onesignal.com
// that is the 403 "Access denied", its answer to a key that is not (or
// no longer) valid, and a status OneSignal tells clients not to retry: a
// sink that sends a retired key should stop and say so, not retry. On
// the legacy host, it is that host's own refusal above.
//
// Its own routes need no key: GET / (a page of the users, devices and
// counts, for a person), GET /emulator/state, POST
// /emulator/subscriptions, POST /emulator/reset, GET and POST
// /emulator/faults, GET and POST /emulator/answers, and GET
// /emulator/stats.
//
// What the emulator can be made to do (see Config): accept legacy keys
// (AcceptLegacyKeys); answer 200 to tags for an external id no device
// carries (NoPlayersAnswersOK); cap the tags a user may hold (TagLimit);
// enforce OneSignal's write rate limits (RateLimits, on an injectable
// Clock); and inject faults (Faults, also settable with SetFaults and
// POST /emulator/faults): error statuses, latency, connection resets, and
// writes applied whose answer is dropped. Answers (SetAnswers, POST
// /emulator/answers) give the requests they name, by method and path, an
// answer of the test's own instead of OneSignal's: an HTML error page, a
// redirect, a body cut short, an undocumented status, a success that says
// it failed; applied or not. Stats and GET /emulator/stats count requests
// by route and status, the faults injected, the answers given and the
// 429s sent.
//
// Where the reference could not confirm what OneSignal does, the emulator
// behaves as follows. In the user model:
//
//   - A path app_id other than the configured one gets the same 403 as a
//     wrong key: an App API key belongs to one app. A client cannot tell
//     the two mistakes apart, as with OneSignal.
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
//   - Update user answers 202 echoing the properties sent (a property
//     cleared as null).
//   - Of the properties besides tags, language, timezone_id, country (JSON
//     strings) and lat, long (JSON numbers) are kept on the user and shown
//     by view user and State; "" (for a string) and null clear one, one not
//     named stays. Another JSON type is refused with 400 "properties.<name>
//     must be a string." (or "a number."). Their values are not checked:
//     OneSignal documents no answer to a language that is not ISO 639-1, a
//     timezone_id that is not IANA's, a country that is not ISO 3166-1
//     alpha-2 or a lat or long out of range, and most likely stores what it
//     gets; the emulator stores it. (The sink checks them itself.) The other
//     properties (first_active, amount_spent, …) are accepted and dropped.
//   - Aliases: create user takes any number of them in identity, and PATCH
//     …/users/by/{alias_label}/{alias_id}/identity with {"identity": {…}}
//     adds aliases, or changes the id of a label the user has, answering
//     200 {"identity": {every alias}}; an alias another user has is 409
//     with meta.conflicting_aliases, external_id included, and nothing is
//     applied. onesignal_id cannot be set (400). GET …/identity shows the
//     aliases. DELETE …/identity/{alias_label_to_delete} removes one at
//     once and answers 200 with the aliases left; a label the user does not
//     have answers the same (OneSignal's answer is not documented);
//     onesignal_id cannot be deleted (400 "onesignal_id cannot be
//     deleted."); a user left with onesignal_id only stays, with its
//     subscriptions. Both are writes to the user.
//   - Alias limits: at most 20 custom aliases (those besides onesignal_id and
//     external_id) per user, the docs' number (OneSignal's agent plugin says
//     10), and at most 128 characters (runes) in a custom alias's label and
//     in its id; over either, 400 {"errors":["…"]} saying which, and
//     nothing is applied. A user over 20 may still change and drop aliases.
//     external_id's length is not checked (no limit is documented).
//   - Delete user (DELETE /apps/{app_id}/users/by/{alias_label}/{alias_id})
//     answers 200 {} (the spec shows no body) and takes the user's aliases,
//     properties and every subscription it owns with it, as the docs say:
//     its devices and email and SMS records are gone (GET /players/{id} is
//     404), and a (type, token) of one is free for a new subscription.
//     OneSignal deletes asynchronously, "shortly after"; the emulator does
//     at once, unless Config.DeleteDelay holds the user back that long (on
//     the Clock): until then it is found, written to and returned by a
//     create user that matches it (200), and what is written is lost with
//     it; State marks it Deleting. Deleting again answers 200; an unknown
//     user 404. It is a write to the user.
//
// In the player model:
//
//   - The app_id is required in the body of POST and PUT /players, and in
//     the query of GET /players[/{id}]; without it, and with an app the
//     emulator does not serve (there and in the path of edit tags by
//     external user id), the answer is the legacy API's 400 "app_id not
//     found" above. The key is required too: keyless writes, as the old
//     SDKs made, are refused.
//   - PUT /players/{id} of an unknown id answers 400 {"errors":["No user
//     with this id found"]}, what the Android SDK handles; with
//     Config.UnknownPlayer404, 404 {"errors":["Device with player_id not
//     found"]}, as the docs say. GET of an unknown id is always that 404.
//   - Tag values may be strings or numbers; a number is stored as the text
//     it was sent as (42 as "42"). "" and null delete a tag. A boolean,
//     array or object is refused with 400 {"errors":["Tag \"k\" must be a
//     string or a number."],"success":false}.
//   - external_user_id "" clears it: the device moves to a new anonymous
//     user (the SDKs' logout). null, like leaving it out, changes nothing.
//     Setting one another user has moves the device to that user; setting
//     a new one gives it to the owner when the owner has no external_id (so
//     all the owner's devices get it, as on an SDK login), else moves the
//     device to a new user with it. A device that moves shows its new
//     user's tags, as in the user model; a new user has none. Tags in the
//     same request go to the device's owner after the move.
//   - Tags live on users, so editing tags by external user id changes them
//     on every device with that id. The id must be on a device: a user that
//     has it but no device gets the same 404 {"errors":["No players found
//     for given external_user_id"]} as an id nobody has, what the docs
//     say. With Config.NoPlayersAnswersOK it gets 200 {"success":true}
//     instead, what the API spec and the old SDKs' mocks show (which of
//     the two OneSignal sends is not confirmed), and nothing is done
//     either way: the tags are kept nowhere, not on the user that has the
//     id and not for a device linked to it later. A client cannot tell
//     that 200 from tags applied; it must bring the tags with the link.
//   - POST /players needs a device_type of 0–14 but 12 (else 400 "… is not
//     a valid device_type."), and an identifier for email and SMS. A device
//     of the same type and identifier is edited instead, and its id
//     returned; both answer 200 {"success":true,"id":…}. Windows Phone (3)
//     and Alexa (10) have no user-model type; their subscriptions are typed
//     "WindowsPhonePush" and "AlexaPush". A user-model "SafariPush" shows as
//     device_type 7.
//   - With Config.IdentityVerification, player writes must carry the
//     legacy identity verification hashes (HMAC-SHA256 keyed with the API
//     key, hex, any case): external_user_id_auth_hash of an
//     external_user_id set, or of the one cleared, and identifier_auth_hash
//     (or email_auth_hash) of an email or SMS record's identifier on every
//     write to it. A missing hash is 400 "<field> is required: the app has
//     identity verification on.", a wrong one 400 "<field> does not match:
//     …". Edit tags by external user id needs none (not confirmed either
//     way), nor does the user model.
//   - A device keeps its language and country (JSON strings; "" and null
//     clear one) and its timezone (a whole number of seconds from UTC;
//     null clears it), per device, not on the user; one left out stays.
//     Another JSON type, or a timezone with a fraction, is refused with 400
//     {"errors":["timezone must be a whole number of seconds from
//     UTC."],"success":false} (or "… must be a string."). Their values are
//     not checked, as in the user model. The other fields (session_count,
//     lat, long, device_type on edit, …) are accepted and dropped; an empty
//     identifier on edit leaves it alone. A player shows id, identifier,
//     device_type, tags, external_user_id (null when none),
//     invalid_identifier (always false), and language, timezone and country
//     when set.
//   - GET /players takes a limit from 1 up (above 300 is 300; default 300)
//     and an offset from 0 (default 0), and pages through all devices,
//     sorted by id. Its 80,000-user cutoff is not emulated.
//
// Rules common to both:
//
//   - Over 100 tag changes (deletions count) in one request is refused with
//     400 {"errors":["Please limit your tag updates to 100 per request"],
//     "success":false}, in both models.
//   - With a TagLimit, a write that would leave a user with more tags than
//     that, and more than it had, is refused with 400 {"errors":["App is
//     limited to a maximum of N tags on a given player"],"success":false}.
//     A user already over the cap may still change and delete tags.
//   - With RateLimits on, every write (POST, PUT, PATCH or DELETE) costs the app one
//     of its 1,000 per second when it arrives, before its body is read;
//     reads are not limited. A write also costs one of the 1 per second of
//     the user or subscription it addresses, when that exists on arrival
//     and the body is well formed: the user or subscription in the path,
//     the user create user's identity matches, the device add device's type
//     and identifier match. A device has one budget in both models, a user
//     one by any alias. What a write creates starts with a full budget. The
//     budgets are token buckets, refilled evenly. Over budget, the answer is
//     429 {"errors":["API rate limit exceeded."]} with Retry-After in whole
//     seconds, rounded up, and nothing is applied or charged.
//   - Answers, then faults, come before everything else, authentication
//     included, as a proxy or the network would. A dropped answer is dropped whatever it
//     was. An injected 503 says {"errors":["Service temporarily
//     unavailable"]}, a 429 is the rate-limit answer, others carry the
//     status text.
//
// The reads for reconciliation, the CSV exports (asynchronous, one at a
// time) and the view limit, and the drift routes that change state behind
// a client's back (/emulator/drift/…) are described in exports.go,
// views.go and drift.go, and in docs/emulator.md.
//
// Not emulated (yet): deleting devices, the other user-model routes, the
// subscription cap, and the user model's identity verification (JWTs for
// the SDKs).
package emulator
