package emulator

import (
	"encoding/json"
	"errors"
	"mime"
	"net/http"
)

// The error texts that OneSignal is known to send, verbatim.
const (
	// Note the two spaces after "denied.".
	msgAccessDenied = "Access denied.  Please include an 'Authorization: ...' header with a valid API key (https://documentation.onesignal.com/docs/en/keys-and-ids#api-keys)."
	msgBadBody      = "app_id not found. You may be missing a Content-Type: application/json header."
	// The legacy host's answer to a wrong or missing key, with the link it
	// sends in "reference".
	msgLegacyAuth = `Please include a case-sensitive header of Authorization: Basic <YOUR-REST-API-KEY-HERE> or Bearer token="<YOUR-REST-API-KEY-HERE>" with a valid REST API key.`
	refKeysAndIDs = "https://documentation.onesignal.com/docs/accounts-and-keys#section-keys-ids"

	msgTooManyTagChanges = "Please limit your tag updates to 100 per request"
	msgTagLimit          = "App is limited to a maximum of %d tags on a given player"
	msgRateLimited       = "API rate limit exceeded."
	msgUnavailable       = "Service temporarily unavailable"

	// What PUT /players/{id} of an unknown id gets: the Android SDK's
	// reading, and the docs'.
	msgNoUserWithID   = "No user with this id found"
	msgDeviceNotFound = "Device with player_id not found"
	// The docs' 404 for editing tags by an external id nobody has.
	msgNoPlayersForExternalID = "No players found for given external_user_id"
)

// The titles of the emulator's 404s. The real bodies are not documented
// (an empty {} has been seen); these keep the generic error shape, and say
// which resource is missing so that a client can tell the two apart.
const (
	titleUserNotFound         = "User not found"
	titleSubscriptionNotFound = "Subscription not found"
)

// maxBody caps a request body; real requests are a few kilobytes.
const maxBody = 1 << 20

// The user-model wire shapes, as far as the emulator models them.
type (
	userBody struct {
		Properties    propertiesBody     `json:"properties"`
		Identity      map[string]string  `json:"identity"`
		Subscriptions []subscriptionBody `json:"subscriptions"`
	}
	propertiesBody struct {
		Tags       map[string]string `json:"tags"`
		Language   string            `json:"language,omitempty"`
		TimezoneID string            `json:"timezone_id,omitempty"`
		Country    string            `json:"country,omitempty"`
		Lat        *float64          `json:"lat,omitempty"`
		Long       *float64          `json:"long,omitempty"`
	}
	subscriptionBody struct {
		ID    string `json:"id,omitempty"`
		Type  string `json:"type,omitempty"`
		Token string `json:"token,omitempty"`
	}
	// propertiesRequest reads tags as *string: null deletes like "", and a
	// number, bool, array or object is refused by the decoder. The other
	// properties the emulator keeps are read by userPropChanges; the rest
	// (first_active, amount_spent, …) are accepted and dropped.
	propertiesRequest struct {
		Tags       map[string]*string `json:"tags"`
		Language   json.RawMessage    `json:"language"`
		TimezoneID json.RawMessage    `json:"timezone_id"`
		Country    json.RawMessage    `json:"country"`
		Lat        json.RawMessage    `json:"lat"`
		Long       json.RawMessage    `json:"long"`
	}
	createUserRequest struct {
		Identity      map[string]string  `json:"identity"`
		Properties    *propertiesRequest `json:"properties"`
		Subscriptions []subscriptionBody `json:"subscriptions"`
	}
	identityBody struct {
		Identity map[string]string `json:"identity"`
	}
)

// errorObject is one entry of the {"errors": [{…}]} envelope.
type errorObject struct {
	Code  string `json:"code,omitempty"`
	Title string `json:"title"`
	Meta  any    `json:"meta,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client hung up; nothing to do
}

// writeMessages sends the most common envelope, {"errors": ["…"]}.
func writeMessages(w http.ResponseWriter, status int, msgs ...string) {
	writeJSON(w, status, map[string][]string{"errors": msgs})
}

// writeObjects sends the structured envelope, {"errors": [{"title": …}]}.
func writeObjects(w http.ResponseWriter, status int, errs ...errorObject) {
	writeJSON(w, status, map[string][]errorObject{"errors": errs})
}

func writeNotFound(w http.ResponseWriter, title string) {
	writeObjects(w, http.StatusNotFound, errorObject{Title: title})
}

// isJSON reports whether the request says its body is JSON.
func isJSON(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/json"
}

// decode reads the JSON body into v, or answers the request with a 4xx and
// returns false. A body that is not JSON gets OneSignal's Content-Type
// message; JSON of the wrong shape (a number as a tag value, say) gets a
// message that says so.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(v)
	if err == nil {
		return true
	}
	var tooBig *http.MaxBytesError
	var wrongType *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		writeMessages(w, http.StatusRequestEntityTooLarge, "Request body too large.")
	case errors.As(err, &wrongType):
		writeMessages(w, http.StatusBadRequest, "Invalid value for "+wrongType.Field+": expected "+wrongType.Type.String()+", got JSON "+wrongType.Value+".")
	default: // empty, truncated or not JSON at all
		writeMessages(w, http.StatusBadRequest, msgBadBody)
	}
	return false
}
