package emulator

import (
	"maps"
	"net/http"
	"slices"
	"strconv"
)

// subscriptionTypes are the user model's subscription types.
var subscriptionTypes = []string{
	"iOSPush", "AndroidPush", "FireOSPush", "ChromeExtensionPush", "ChromePush",
	"WindowsPush", "SafariLegacyPush", "FirefoxPush", "macOSPush", "HuaweiPush",
	"SafariPush", "Email", "SMS",
}

// createUser is POST /apps/{app_id}/users. It is an upsert with retrieval:
// when an alias in identity already belongs to a user, that user is
// returned (200) and nothing in the request is applied, not its tags nor
// other properties, not its other aliases, not its subscriptions.
// Otherwise the user is created (201) with the aliases, tags and
// properties, taking over the subscriptions it names.
func (e *Emulator) createUser(w http.ResponseWriter, r *http.Request) {
	var req createUserRequest
	if !decode(w, r, &req) {
		return
	}
	if msg := checkAliases(req.Identity); msg != "" {
		writeMessages(w, http.StatusBadRequest, msg)
		return
	}
	if msg := checkAliasCount(nil, req.Identity); msg != "" {
		writeMessages(w, http.StatusBadRequest, msg)
		return
	}
	if req.Properties != nil && !checkTagChanges(w, req.Properties.Tags) {
		return
	}
	props, msg := userPropChanges(req.Properties)
	if msg != "" {
		writeMessages(w, http.StatusBadRequest, msg)
		return
	}
	for i, s := range req.Subscriptions {
		if s.ID != "" {
			continue
		}
		if s.Type == "" || s.Token == "" {
			writeMessages(w, http.StatusBadRequest, "subscriptions["+strconv.Itoa(i)+"] needs an id, or a type and a token.")
			return
		}
		if !slices.Contains(subscriptionTypes, s.Type) {
			writeMessages(w, http.StatusBadRequest, "subscriptions["+strconv.Itoa(i)+"]: "+strconv.Quote(s.Type)+" is not a subscription type.")
			return
		}
	}

	e.lock()
	defer e.mu.Unlock()
	st := e.store

	var existing *user
	matched := map[string]string{}
	conflict := false
	for label, id := range req.Identity {
		u := st.userBy(label, id)
		if u == nil {
			if label == onesignalIDLabel {
				writeMessages(w, http.StatusBadRequest, "onesignal_id is assigned by OneSignal and cannot be chosen.")
				return
			}
			continue
		}
		matched[label] = id
		if existing != nil && existing != u {
			conflict = true
		}
		existing = u
	}
	if conflict {
		writeObjects(w, http.StatusConflict, errorObject{
			Title: "The aliases belong to different users",
			Meta:  map[string]any{"conflicting_aliases": matched},
		})
		return
	}
	if existing != nil {
		if e.admitTarget(w, userTarget(existing)) {
			writeJSON(w, http.StatusOK, st.userBody(existing))
		}
		return
	}
	if req.Properties != nil && !e.checkTagLimit(w, nil, req.Properties.Tags) {
		return
	}
	for _, s := range req.Subscriptions {
		if s.ID != "" && st.subs[s.ID] == nil {
			writeNotFound(w, titleSubscriptionNotFound)
			return
		}
	}

	u := st.newUser(req.Identity)
	if req.Properties != nil {
		st.setTags(u, req.Properties.Tags)
	}
	u.setProps(props)
	for _, s := range req.Subscriptions {
		sub := st.subs[s.ID]
		if s.ID == "" {
			sub = st.subscriptionByToken(s.Type, s.Token)
		}
		if sub == nil {
			st.newSubscription(newUUID(), s.Type, s.Token, u)
			continue
		}
		st.transfer(sub, u)
	}
	writeJSON(w, http.StatusCreated, st.userBody(u))
}

// viewUser is GET /apps/{app_id}/users/by/{alias_label}/{alias_id}.
func (e *Emulator) viewUser(w http.ResponseWriter, r *http.Request) {
	e.lock()
	defer e.mu.Unlock()
	u := e.store.userBy(r.PathValue("alias_label"), r.PathValue("alias_id"))
	if u == nil {
		writeNotFound(w, titleUserNotFound)
		return
	}
	writeJSON(w, http.StatusOK, e.store.userBody(u))
}

// updateUser is PATCH /apps/{app_id}/users/by/{alias_label}/{alias_id}. Of
// the properties, tags, language, timezone_id, country, lat and long are
// kept (others are accepted and dropped); a tag set to "" or null is
// deleted, and so is a property. The answer, 202, echoes the properties
// sent (a property cleared as null).
func (e *Emulator) updateUser(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Properties *propertiesRequest `json:"properties"`
	}
	if !decode(w, r, &req) {
		return
	}
	var tags map[string]*string
	if req.Properties != nil {
		tags = req.Properties.Tags
	}
	if !checkTagChanges(w, tags) {
		return
	}
	props, msg := userPropChanges(req.Properties)
	if msg != "" {
		writeMessages(w, http.StatusBadRequest, msg)
		return
	}
	e.lock()
	defer e.mu.Unlock()
	u := e.store.userBy(r.PathValue("alias_label"), r.PathValue("alias_id"))
	if u == nil {
		writeNotFound(w, titleUserNotFound)
		return
	}
	if !e.admitTarget(w, userTarget(u)) || !e.checkTagLimit(w, u.tags, tags) {
		return
	}
	echo := map[string]any{}
	if req.Properties != nil {
		e.store.setTags(u, req.Properties.Tags)
		if req.Properties.Tags != nil {
			echo["tags"] = req.Properties.Tags
		}
	}
	u.setProps(props)
	props.echo(echo)
	writeJSON(w, http.StatusAccepted, map[string]any{"properties": echo})
}

// transferSubscription is PATCH /apps/{app_id}/subscriptions/{id}/owner.
// The body names the new owner by exactly one alias. A previous owner left
// with no subscriptions and no alias but onesignal_id is deleted.
func (e *Emulator) transferSubscription(w http.ResponseWriter, r *http.Request) {
	var req identityBody
	if !decode(w, r, &req) {
		return
	}
	if len(req.Identity) != 1 {
		writeMessages(w, http.StatusBadRequest, "identity must have exactly one property.")
		return
	}
	e.lock()
	defer e.mu.Unlock()
	sub := e.store.subs[r.PathValue("subscription_id")]
	if sub == nil {
		writeNotFound(w, titleSubscriptionNotFound)
		return
	}
	if !e.admitTarget(w, subscriptionTarget(sub)) {
		return
	}
	var to *user
	for label, id := range req.Identity {
		to = e.store.userBy(label, id)
	}
	if to == nil {
		writeNotFound(w, titleUserNotFound)
		return
	}
	e.store.transfer(sub, to)
	writeJSON(w, http.StatusOK, identityBody{Identity: e.store.identity(to)})
}

// createSubscription is POST /apps/{app_id}/users/by/{alias_label}/{alias_id}/subscriptions
// with {"subscription": {"type": …, "token": …}}: the user gets the
// subscription of that type and token, created (201), moved from another
// user (202), or found on it already (200). The answer is
// {"subscription": {…}}. It is a write to the user.
func (e *Emulator) createSubscription(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Subscription subscriptionBody `json:"subscription"`
	}
	if !decode(w, r, &req) {
		return
	}
	s := req.Subscription
	if !slices.Contains(subscriptionTypes, s.Type) || s.Token == "" {
		writeMessages(w, http.StatusBadRequest, "subscription needs a type (one of the subscription types) and a token.")
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
	status := http.StatusOK
	sub := st.subscriptionByToken(s.Type, s.Token)
	switch {
	case sub == nil:
		sub = st.newSubscription(newUUID(), s.Type, s.Token, u)
		status = http.StatusCreated
	case sub.owner != u.id:
		st.transfer(sub, u)
		status = http.StatusAccepted
	}
	writeJSON(w, status, map[string]subscriptionBody{"subscription": {ID: sub.id, Type: sub.typ, Token: sub.token}})
}

// userBody renders u as the API's User object.
func (s *store) userBody(u *user) userBody {
	b := userBody{
		Properties: propertiesBody{
			Tags:     maps.Clone(u.tags),
			Language: u.props.language, TimezoneID: u.props.timezoneID, Country: u.props.country,
			Lat: clonePtr(u.props.lat), Long: clonePtr(u.props.long),
		},
		Identity:      s.identity(u),
		Subscriptions: []subscriptionBody{},
	}
	for _, id := range u.subs {
		sub := s.subs[id]
		b.Subscriptions = append(b.Subscriptions, subscriptionBody{ID: sub.id, Type: sub.typ, Token: sub.token})
	}
	return b
}
