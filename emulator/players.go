package emulator

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// The player model (the legacy API) on the same store as the user model: a
// player is a subscription, its identifier the subscription's token, its
// external_user_id the owner's external_id alias and its tags the owner's.

// playerRequest is the body of POST /players and PUT /players/{id}: the
// fields the emulator keeps or checks. The Player's others (session_count,
// game_version, lat, long, …) are accepted and dropped.
type playerRequest struct {
	AppID      string  `json:"app_id"`
	DeviceType *int    `json:"device_type"`
	Identifier *string `json:"identifier"`
	// ExternalUserID is nil when absent or null: both leave it alone.
	ExternalUserID *string                    `json:"external_user_id"`
	Tags           map[string]json.RawMessage `json:"tags"`
	// The device's fields the emulator keeps (see devicePropChanges);
	// nil when absent.
	Language json.RawMessage `json:"language"`
	Timezone json.RawMessage `json:"timezone"`
	Country  json.RawMessage `json:"country"`
	// The identity verification hashes, checked with
	// Config.IdentityVerification.
	ExternalUserIDAuthHash string `json:"external_user_id_auth_hash"`
	IdentifierAuthHash     string `json:"identifier_auth_hash"`
	EmailAuthHash          string `json:"email_auth_hash"`
}

type successBody struct {
	Success bool   `json:"success"`
	ID      string `json:"id,omitempty"`
}

// playerWrite is a player write, decoded and checked.
type playerWrite struct {
	playerRequest
	tags  map[string]*string
	props propChanges
}

// readPlayer decodes a player write and checks what every one has: the
// app, the tags and the device's fields. It answers and returns false when
// the request goes no further.
func (e *Emulator) readPlayer(w http.ResponseWriter, r *http.Request) (playerWrite, bool) {
	var req playerWrite
	if !decode(w, r, &req.playerRequest) || !e.admitLegacyApp(w, req.AppID) {
		return req, false
	}
	tags, ok := legacyTags(w, req.Tags)
	if !ok || !checkTagChanges(w, tags) {
		return req, false
	}
	props, msg := devicePropChanges(req.playerRequest)
	if msg != "" {
		writeTagError(w, msg) // the player era's envelope, with "success": false
		return req, false
	}
	req.tags, req.props = tags, props
	return req, true
}

// addPlayer is POST /players. A device whose type and identifier are
// already there is edited instead, and its id returned; else a device is
// created, owned by the user with the external_user_id, or by a new user.
func (e *Emulator) addPlayer(w http.ResponseWriter, r *http.Request) {
	req, ok := e.readPlayer(w, r)
	if !ok {
		return
	}
	if req.DeviceType == nil {
		writeMessages(w, http.StatusBadRequest, "device_type is required: a missing one is not a valid device_type.")
		return
	}
	typ, known := deviceTypes[*req.DeviceType]
	if !known {
		writeMessages(w, http.StatusBadRequest, strconv.Itoa(*req.DeviceType)+" is not a valid device_type.")
		return
	}
	identifier := deref(req.Identifier)
	if identifier == "" && (typ == "Email" || typ == "SMS") {
		writeMessages(w, http.StatusBadRequest, "identifier is required: the email address or phone number.")
		return
	}
	e.lock()
	defer e.mu.Unlock()
	st := e.store
	if sub := st.subscriptionByToken(typ, identifier); sub != nil {
		if e.editDevice(w, sub, req) {
			writeJSON(w, http.StatusOK, successBody{Success: true, ID: sub.id})
		}
		return
	}
	ext := deref(req.ExternalUserID)
	if !e.verify(w, req.playerRequest, typ, identifier, "") {
		return
	}
	owner := st.ownerFor(ext)
	var current map[string]string
	if owner != nil {
		current = owner.tags
	}
	if !e.checkTagLimit(w, current, req.tags) {
		return
	}
	if owner == nil && ext != "" {
		owner = st.newUser(map[string]string{externalIDLabel: ext})
	} else if owner == nil {
		owner = st.newUser(nil)
	}
	sub := st.newSubscription(newUUID(), typ, identifier, owner)
	sub.setDevice(req.props)
	st.setTags(owner, req.tags)
	writeJSON(w, http.StatusOK, successBody{Success: true, ID: sub.id})
}

// editPlayer is PUT /players/{player_id}: set or clear the device's
// external_user_id (see planExternalID), then merge the tags into its new
// owner's and set the device's language, timezone and country.
// device_type is accepted and ignored; an empty identifier leaves the
// identifier alone.
func (e *Emulator) editPlayer(w http.ResponseWriter, r *http.Request) {
	req, ok := e.readPlayer(w, r)
	if !ok {
		return
	}
	e.lock()
	defer e.mu.Unlock()
	sub := e.store.subs[r.PathValue("player_id")]
	if sub == nil {
		if e.cfg.UnknownPlayer404 {
			writeMessages(w, http.StatusNotFound, msgDeviceNotFound)
		} else {
			writeMessages(w, http.StatusBadRequest, msgNoUserWithID)
		}
		return
	}
	if e.editDevice(w, sub, req) {
		writeJSON(w, http.StatusOK, successBody{Success: true})
	}
}

// editDevice applies a player write to an existing device, whole or not at
// all. It answers with an error and returns false when it refuses.
func (e *Emulator) editDevice(w http.ResponseWriter, sub *subscription, req playerWrite) bool {
	st := e.store
	identifier := sub.token
	if id := deref(req.Identifier); id != "" {
		identifier = id
	}
	if !e.verify(w, req.playerRequest, sub.typ, identifier, st.users[sub.owner].aliases[externalIDLabel]) {
		return false
	}
	if !e.admitTarget(w, subscriptionTarget(sub)) {
		return false
	}
	m := move{to: st.users[sub.owner]}
	if req.ExternalUserID != nil {
		m = st.planExternalID(sub, *req.ExternalUserID)
	}
	if !e.checkTagLimit(w, m.tags(), req.tags) {
		return false
	}
	owner := st.apply(sub, m)
	if id := deref(req.Identifier); id != "" && id != sub.token {
		st.setToken(sub, id)
	}
	sub.setDevice(req.props)
	st.setTags(owner, req.tags)
	return true
}

// editTagsByExternalID is PUT /apps/{app_id}/users/{external_user_id}. Tags
// live on users, so the tags of every device with the external id change
// at once. The id must be set on a device: a user that has it but no
// device gets the same 404 as an id nobody has, or with
// NoPlayersAnswersOK a 200; either way the tags are dropped.
func (e *Emulator) editTagsByExternalID(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Tags map[string]json.RawMessage `json:"tags"`
	}
	if !decode(w, r, &req) {
		return
	}
	tags, ok := legacyTags(w, req.Tags)
	if !ok || !checkTagChanges(w, tags) {
		return
	}
	e.lock()
	defer e.mu.Unlock()
	u := e.store.userBy(externalIDLabel, r.PathValue("external_user_id"))
	if u == nil || len(u.subs) == 0 {
		if e.cfg.NoPlayersAnswersOK {
			writeJSON(w, http.StatusOK, successBody{Success: true})
			return
		}
		writeMessages(w, http.StatusNotFound, msgNoPlayersForExternalID)
		return
	}
	if !e.admitTarget(w, userTarget(u)) || !e.checkTagLimit(w, u.tags, tags) {
		return
	}
	e.store.setTags(u, tags)
	writeJSON(w, http.StatusOK, successBody{Success: true})
}

// viewPlayer is GET /players/{player_id}?app_id=….
func (e *Emulator) viewPlayer(w http.ResponseWriter, r *http.Request) {
	e.lock()
	defer e.mu.Unlock()
	sub := e.store.subs[r.PathValue("player_id")]
	if sub == nil {
		writeMessages(w, http.StatusNotFound, msgDeviceNotFound)
		return
	}
	writeJSON(w, http.StatusOK, e.store.player(sub))
}

// maxPlayersPage is the most devices GET /players returns at once, and
// how many it returns when not told.
const maxPlayersPage = 300

// viewPlayers is GET /players?app_id=…&limit=…&offset=…: a page of the
// devices, sorted by id.
func (e *Emulator) viewPlayers(w http.ResponseWriter, r *http.Request) {
	limit, offset, msg := pageOf(r.URL.Query())
	if msg != "" {
		writeMessages(w, http.StatusBadRequest, msg)
		return
	}
	e.lock()
	defer e.mu.Unlock()
	ids := slices.Sorted(maps.Keys(e.store.subs))
	page := struct {
		TotalCount int      `json:"total_count"`
		Offset     int      `json:"offset"`
		Limit      int      `json:"limit"`
		Players    []Player `json:"players"`
	}{TotalCount: len(ids), Offset: offset, Limit: limit, Players: []Player{}}
	from := min(offset, len(ids))
	for _, id := range ids[from : from+min(limit, len(ids)-from)] {
		page.Players = append(page.Players, e.store.player(e.store.subs[id]))
	}
	writeJSON(w, http.StatusOK, page)
}

// pageOf reads limit (1 or more; above 300 is 300; default 300) and offset
// (0 or more; default 0), or says what is wrong with them.
func pageOf(q url.Values) (limit, offset int, msg string) {
	limit, offset = maxPlayersPage, 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return 0, 0, "limit must be a whole number from 1 to 300."
		}
		limit = min(n, maxPlayersPage)
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, 0, "offset must be a whole number, 0 or more."
		}
		offset = n
	}
	return limit, offset, ""
}

// verify checks a player write's identity verification hashes when
// Config.IdentityVerification is on, the legacy way: HMAC-SHA256 of the
// value keyed with the API key, in hex (any case). Setting
// external_user_id needs external_user_id_auth_hash of the new id;
// clearing it, of the id it had (current). An email or SMS record needs
// identifier_auth_hash (email_auth_hash too for email) of its identifier
// on every write. It answers 400 and returns false when a hash is missing
// or wrong; the texts are the emulator's (OneSignal's are not documented).
func (e *Emulator) verify(w http.ResponseWriter, req playerRequest, typ, identifier, current string) bool {
	if !e.cfg.IdentityVerification {
		return true
	}
	check := func(field, got, value string) bool {
		switch {
		case got == "":
			writeMessages(w, http.StatusBadRequest, field+" is required: the app has identity verification on.")
			return false
		case !strings.EqualFold(got, e.authHash(value)):
			writeMessages(w, http.StatusBadRequest, field+" does not match: it must be the HMAC-SHA256 of the value, keyed with the REST API key, in hex.")
			return false
		}
		return true
	}
	if req.ExternalUserID != nil {
		ext := *req.ExternalUserID
		if ext == "" {
			ext = current
		}
		if ext != "" && !check("external_user_id_auth_hash", req.ExternalUserIDAuthHash, ext) {
			return false
		}
	}
	if typ == "Email" || typ == "SMS" {
		got := req.IdentifierAuthHash
		if got == "" && typ == "Email" {
			got = req.EmailAuthHash
		}
		return check("identifier_auth_hash", got, identifier)
	}
	return true
}

// authHash is the identity verification hash of v.
func (e *Emulator) authHash(v string) string {
	m := hmac.New(sha256.New, []byte(e.cfg.APIKey))
	m.Write([]byte(v))
	return hex.EncodeToString(m.Sum(nil))
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
