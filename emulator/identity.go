package emulator

import (
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"unicode/utf8"
)

// OneSignal's limits on custom aliases, the aliases besides onesignal_id
// and external_id: 20 per user (its docs; its agent plugin says 10), and
// 128 characters per label and per id (the plugin).
const (
	maxCustomAliases = 20
	maxAliasLength   = 128
)

// custom reports whether label is a custom alias's.
func custom(label string) bool { return label != onesignalIDLabel && label != externalIDLabel }

// checkAliases returns the message of a 400 for aliases a request may not
// set, "" when they are fine: an empty label or id, and a custom alias
// whose label or id is over maxAliasLength characters. Whether a request
// may name onesignal_id is the handler's to say.
func checkAliases(identity map[string]string) string {
	for label, id := range identity {
		switch {
		case label == "" || id == "":
			return "Alias labels and alias ids must not be empty."
		case !custom(label):
		case utf8.RuneCountInString(label) > maxAliasLength:
			return fmt.Sprintf("Alias label %s is longer than %d characters.", quoteShort(label), maxAliasLength)
		case utf8.RuneCountInString(id) > maxAliasLength:
			return fmt.Sprintf("The id of alias %s is longer than %d characters.", strconv.Quote(label), maxAliasLength)
		}
	}
	return ""
}

// checkAliasCount returns the message of a 400 when a user would hold
// more than maxCustomAliases custom aliases, and more than it held (before,
// nil for a new user): a user over the limit may still drop some.
func checkAliasCount(before, after map[string]string) string {
	n, had := 0, 0
	for label := range after {
		if custom(label) {
			n++
		}
	}
	for label := range before {
		if custom(label) {
			had++
		}
	}
	if n > maxCustomAliases && n > had {
		return fmt.Sprintf("A user can have at most %d aliases besides onesignal_id and external_id; this would give it %d.", maxCustomAliases, n)
	}
	return ""
}

// quoteShort quotes s, cut to 40 characters.
func quoteShort(s string) string {
	if utf8.RuneCountInString(s) <= 40 {
		return strconv.Quote(s)
	}
	return strconv.Quote(string([]rune(s)[:40])) + "…"
}

// viewIdentity is GET /apps/{app_id}/users/by/{alias_label}/{alias_id}/identity.
func (e *Emulator) viewIdentity(w http.ResponseWriter, r *http.Request) {
	e.lock()
	defer e.mu.Unlock()
	u := e.store.userBy(r.PathValue("alias_label"), r.PathValue("alias_id"))
	if u == nil {
		writeNotFound(w, titleUserNotFound)
		return
	}
	writeJSON(w, http.StatusOK, identityBody{Identity: e.store.identity(u)})
}

// updateIdentity is PATCH /apps/{app_id}/users/by/{alias_label}/{alias_id}/identity
// with {"identity": {label: id, …}}: each alias is added to the user, or
// changed when the user has the label with another id. An alias another
// user has gets 409, naming it in meta.conflicting_aliases, and nothing is
// applied. The answer, 200, has all the user's aliases. It is a write to
// the user.
func (e *Emulator) updateIdentity(w http.ResponseWriter, r *http.Request) {
	var req identityBody
	if !decode(w, r, &req) {
		return
	}
	if len(req.Identity) == 0 {
		writeMessages(w, http.StatusBadRequest, "identity must name at least one alias.")
		return
	}
	if msg := checkAliases(req.Identity); msg != "" {
		writeMessages(w, http.StatusBadRequest, msg)
		return
	}
	if _, ok := req.Identity[onesignalIDLabel]; ok {
		writeMessages(w, http.StatusBadRequest, "onesignal_id is assigned by OneSignal and cannot be chosen.")
		return
	}
	e.lock()
	defer e.mu.Unlock()
	st := e.store
	u := st.userBy(r.PathValue("alias_label"), r.PathValue("alias_id"))
	if u == nil {
		writeNotFound(w, titleUserNotFound)
		return
	}
	if !e.admitTarget(w, userTarget(u)) {
		return
	}
	conflicts := map[string]string{}
	for label, id := range req.Identity {
		if other := st.userBy(label, id); other != nil && other != u {
			conflicts[label] = id
		}
	}
	if len(conflicts) > 0 {
		writeObjects(w, http.StatusConflict, errorObject{
			Title: "The aliases belong to another user",
			Meta:  map[string]any{"conflicting_aliases": conflicts},
		})
		return
	}
	after := maps.Clone(u.aliases)
	maps.Copy(after, req.Identity)
	if msg := checkAliasCount(u.aliases, after); msg != "" {
		writeMessages(w, http.StatusBadRequest, msg)
		return
	}
	for label, id := range req.Identity {
		st.removeAlias(u, label)
		st.addAlias(u, label, id)
	}
	writeJSON(w, http.StatusOK, identityBody{Identity: st.identity(u)})
}

// deleteAlias is DELETE /apps/{app_id}/users/by/{alias_label}/{alias_id}/identity/{alias_label_to_delete}:
// the alias is gone at once, and the answer, 200, has the aliases left. A
// label the user does not have changes nothing and answers the same (what
// OneSignal answers is not documented). onesignal_id cannot be deleted:
// 400. A user left with no alias but onesignal_id stays, with its
// subscriptions and properties. It is a write to the user.
func (e *Emulator) deleteAlias(w http.ResponseWriter, r *http.Request) {
	label := r.PathValue("alias_label_to_delete")
	if label == onesignalIDLabel {
		writeMessages(w, http.StatusBadRequest, "onesignal_id cannot be deleted.")
		return
	}
	e.lock()
	defer e.mu.Unlock()
	st := e.store
	u := st.userBy(r.PathValue("alias_label"), r.PathValue("alias_id"))
	if u == nil {
		writeNotFound(w, titleUserNotFound)
		return
	}
	if !e.admitTarget(w, userTarget(u)) {
		return
	}
	st.removeAlias(u, label)
	writeJSON(w, http.StatusOK, identityBody{Identity: st.identity(u)})
}

// deleteUser is DELETE /apps/{app_id}/users/by/{alias_label}/{alias_id}:
// 200 {} at once; the user goes, with its aliases, properties and every
// subscription it owns, after Config.DeleteDelay (at once by default).
// Until then it is there as before: found by its aliases, written to,
// shown by State with Deleting set, and a create user matching it gets
// it back (200), so whatever is written to it meanwhile is lost with it.
// Deleting it again answers 200 and keeps the time it goes. It is a write
// to the user.
func (e *Emulator) deleteUser(w http.ResponseWriter, r *http.Request) {
	e.lock()
	defer e.mu.Unlock()
	st := e.store
	u := st.userBy(r.PathValue("alias_label"), r.PathValue("alias_id"))
	if u == nil {
		writeNotFound(w, titleUserNotFound)
		return
	}
	if !e.admitTarget(w, userTarget(u)) {
		return
	}
	switch _, pending := st.deleting[u.id]; {
	case e.cfg.DeleteDelay <= 0:
		st.eraseUser(u)
	case !pending:
		st.deleting[u.id] = e.now().Add(e.cfg.DeleteDelay)
	}
	writeJSON(w, http.StatusOK, struct{}{})
}
