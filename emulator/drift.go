package emulator

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Drift: changes made behind the client's back, as the dashboard, an SDK
// or an import would make them, for tests of reconciliation. They are
// applied at once, whole, and pass by the rate limits, the faults, the
// answers and the tag limit; they are not counted in Stats. Each has a
// method and a route under /emulator/drift/, which needs no key and
// takes a JSON body (ids of any characters travel in it, never in the
// path). A route answers 200 with the user or the device afterwards (as
// State and State.Player show them), 404 {"errors":["…"]} when the
// external id or device is unknown, 400 for a body it cannot read.

// SetUserTags changes the tags of the user whose external_id is ext: a
// tag "" is deleted, one not named stays. It reports whether the user is
// there.
func (e *Emulator) SetUserTags(ext string, tags map[string]string) bool {
	_, ok := e.setUserTags(ext, tags)
	return ok
}

func (e *Emulator) setUserTags(ext string, tags map[string]string) (User, bool) {
	e.lock()
	defer e.mu.Unlock()
	u := e.store.userBy(externalIDLabel, ext)
	if u == nil {
		return User{}, false
	}
	e.store.setTags(u, stringPtrs(tags))
	return e.store.userState(u), true
}

// RemoveUser deletes the user whose external_id is ext at once, with
// every subscription it owns, as delete user does once carried out (no
// DeleteDelay). It reports whether the user was there.
func (e *Emulator) RemoveUser(ext string) bool {
	e.lock()
	defer e.mu.Unlock()
	u := e.store.userBy(externalIDLabel, ext)
	if u == nil {
		return false
	}
	e.store.eraseUser(u)
	return true
}

// MoveDevice gives the device (subscription) id to the user whose
// external_id is ext, created when nobody has it; ext "" unlinks it,
// moving it to a new anonymous user, as an SDK's logout does. The device
// shows its new owner's tags. A previous owner left with no subscription
// and no alias goes, as with a transfer. It reports whether the device is
// there.
func (e *Emulator) MoveDevice(id, ext string) bool {
	_, ok := e.moveDevice(id, ext)
	return ok
}

func (e *Emulator) moveDevice(id, ext string) (Player, bool) {
	e.lock()
	defer e.mu.Unlock()
	st := e.store
	sub := st.subs[id]
	if sub == nil {
		return Player{}, false
	}
	var to *user
	switch {
	case ext == "":
		to = st.newUser(nil)
	case st.userBy(externalIDLabel, ext) != nil:
		to = st.userBy(externalIDLabel, ext)
	default:
		to = st.newUser(map[string]string{externalIDLabel: ext})
	}
	st.transfer(sub, to)
	return st.player(sub), true
}

// SetDeviceTags changes the tags the device id shows: "" deletes one.
// Tags live on users, so they change on the device's owner, and on every
// device it has, as an SDK's sendTag does. It reports whether the device
// is there.
func (e *Emulator) SetDeviceTags(id string, tags map[string]string) bool {
	_, ok := e.setDeviceTags(id, tags)
	return ok
}

func (e *Emulator) setDeviceTags(id string, tags map[string]string) (Player, bool) {
	e.lock()
	defer e.mu.Unlock()
	sub := e.store.subs[id]
	if sub == nil {
		return Player{}, false
	}
	e.store.setTags(e.store.users[sub.owner], stringPtrs(tags))
	return e.store.player(sub), true
}

func stringPtrs(tags map[string]string) map[string]*string {
	out := make(map[string]*string, len(tags))
	for k, v := range tags {
		out[k] = &v
	}
	return out
}

// driftBody is the body of the /emulator/drift/ routes.
type driftBody struct {
	ExternalID *string           `json:"external_id"`
	ID         string            `json:"id"`
	Tags       map[string]string `json:"tags"`
}

// readDrift decodes a drift body, unknown fields refused (a misspelt one
// would silently inject other drift), and checks that it names what the
// route needs.
func readDrift(w http.ResponseWriter, r *http.Request, needID, needExt bool) (driftBody, bool) {
	var b driftBody
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		writeMessages(w, http.StatusBadRequest, "The body must be a JSON object: "+jsonProblem(err))
		return b, false
	}
	switch {
	case needID && b.ID == "":
		writeMessages(w, http.StatusBadRequest, `"id" (the device's) is required.`)
		return b, false
	case needExt && b.ExternalID == nil:
		writeMessages(w, http.StatusBadRequest, `"external_id" is required.`)
		return b, false
	}
	return b, true
}

// driftUserTags is POST /emulator/drift/user-tags {"external_id": …,
// "tags": {…}}.
func (e *Emulator) driftUserTags(w http.ResponseWriter, r *http.Request) {
	b, ok := readDrift(w, r, false, true)
	if !ok {
		return
	}
	u, ok := e.setUserTags(*b.ExternalID, b.Tags)
	if !ok {
		writeMessages(w, http.StatusNotFound, "No user has external_id "+strconv.Quote(*b.ExternalID)+".")
		return
	}
	writeJSON(w, http.StatusOK, u)
}

// driftDeleteUser is POST /emulator/drift/delete-user {"external_id": …};
// it answers 200 {}.
func (e *Emulator) driftDeleteUser(w http.ResponseWriter, r *http.Request) {
	b, ok := readDrift(w, r, false, true)
	if !ok {
		return
	}
	if !e.RemoveUser(*b.ExternalID) {
		writeMessages(w, http.StatusNotFound, "No user has external_id "+strconv.Quote(*b.ExternalID)+".")
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// driftDeviceOwner is POST /emulator/drift/device-owner {"id": …,
// "external_id": …}; external_id "" unlinks.
func (e *Emulator) driftDeviceOwner(w http.ResponseWriter, r *http.Request) {
	b, ok := readDrift(w, r, true, true)
	if !ok {
		return
	}
	p, ok := e.moveDevice(b.ID, *b.ExternalID)
	if !ok {
		writeMessages(w, http.StatusNotFound, "No device has id "+strconv.Quote(b.ID)+".")
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// driftDeviceTags is POST /emulator/drift/device-tags {"id": …, "tags":
// {…}}.
func (e *Emulator) driftDeviceTags(w http.ResponseWriter, r *http.Request) {
	b, ok := readDrift(w, r, true, false)
	if !ok {
		return
	}
	p, ok := e.setDeviceTags(b.ID, b.Tags)
	if !ok {
		writeMessages(w, http.StatusNotFound, "No device has id "+strconv.Quote(b.ID)+".")
		return
	}
	writeJSON(w, http.StatusOK, p)
}
