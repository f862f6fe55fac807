package emulator

import (
	"crypto/subtle"
	"net/http"
	"slices"
	"strings"
)

// middleware wraps a handler with one concern: authentication, the app
// check, the body type. Each API route gets its own chain, so every
// middleware sees the route's pattern and path values.
type middleware func(http.Handler) http.Handler

// chain applies mws to h, the first one outermost.
func chain(h http.Handler, mws ...middleware) http.Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// legacyPrefixes are where the player model is served: the current host
// has it at the root, the legacy one (onesignal.com) under /api/v1.
var legacyPrefixes = []string{"", "/api/v1"}

func (e *Emulator) routes() http.Handler {
	mux := http.NewServeMux()
	// Every API request is counted, then may get a set answer or meet a
	// fault, before anything else looks at it: answers and faults play
	// the network and OneSignal's edge.
	api := []middleware{e.observe, e.count, e.answer, e.inject}
	read := slices.Concat(api, []middleware{e.authenticate, e.limitView, e.checkApp})
	write := slices.Concat(api, []middleware{e.authenticate, e.limitApp, e.checkApp, requireJSON})
	// A delete has no body to declare.
	del := slices.Concat(api, []middleware{e.authenticate, e.limitApp, e.checkApp})
	// The player model names the app in the query or the body (the
	// handlers check it) or, editing tags by external id, in the path;
	// it answers an app it does not know with a 400, not a 403.
	legacyRead := slices.Concat(api, []middleware{e.authenticate, e.limitView, e.checkQueryApp})
	// Exports are neither views nor writes of users: no budget but one
	// export at a time (see exports.go); the file needs no key.
	userExport := slices.Concat(api, []middleware{e.authenticate, e.checkApp})
	legacyExport := slices.Concat(api, []middleware{e.authenticate, e.checkQueryApp})
	legacyWrite := slices.Concat(api, []middleware{e.authenticate, e.limitApp, requireJSON})
	legacyTags := slices.Concat(api, []middleware{e.authenticate, e.limitApp, e.checkLegacyPathApp, requireJSON})

	handle := func(pattern string, h http.HandlerFunc, mws []middleware) {
		mux.Handle(pattern, chain(h, mws...))
	}
	handle("POST /apps/{app_id}/users", e.createUser, write)
	handle("GET /apps/{app_id}/users/by/{alias_label}/{alias_id}", e.viewUser, read)
	handle("PATCH /apps/{app_id}/users/by/{alias_label}/{alias_id}", e.updateUser, write)
	handle("DELETE /apps/{app_id}/users/by/{alias_label}/{alias_id}", e.deleteUser, del)
	handle("GET /apps/{app_id}/users/by/{alias_label}/{alias_id}/identity", e.viewIdentity, read)
	handle("PATCH /apps/{app_id}/users/by/{alias_label}/{alias_id}/identity", e.updateIdentity, write)
	handle("DELETE /apps/{app_id}/users/by/{alias_label}/{alias_id}/identity/{alias_label_to_delete}", e.deleteAlias, del)
	handle("PATCH /apps/{app_id}/subscriptions/{subscription_id}/owner", e.transferSubscription, write)
	handle("POST /apps/{app_id}/users/by/{alias_label}/{alias_id}/subscriptions", e.createSubscription, write)
	handle("POST /apps/{app_id}/users/csv_export", e.exportUsers, userExport)
	handle("GET /csv_exports/{id}/{file}", e.serveExport, api)
	for _, p := range legacyPrefixes {
		handle("POST "+p+"/players", e.addPlayer, legacyWrite)
		handle("PUT "+p+"/players/{player_id}", e.editPlayer, legacyWrite)
		handle("GET "+p+"/players/{player_id}", e.viewPlayer, legacyRead)
		handle("GET "+p+"/players", e.viewPlayers, legacyRead)
		handle("PUT "+p+"/apps/{app_id}/users/{external_user_id}", e.editTagsByExternalID, legacyTags)
		handle("POST "+p+"/players/csv_export", e.exportPlayers, legacyExport)
	}
	handle("/", func(w http.ResponseWriter, r *http.Request) {
		writeMessages(w, http.StatusNotFound, "Not Found")
	}, api)

	mux.HandleFunc("GET /{$}", e.servePage)
	mux.HandleFunc("GET /emulator/state", e.serveState)
	mux.HandleFunc("POST /emulator/subscriptions", e.seedSubscription)
	mux.HandleFunc("POST /emulator/reset", e.serveReset)
	mux.HandleFunc("GET /emulator/faults", e.serveFaults)
	mux.HandleFunc("POST /emulator/faults", e.setFaults)
	mux.HandleFunc("GET /emulator/answers", e.serveAnswers)
	mux.HandleFunc("POST /emulator/answers", e.setAnswers)
	mux.HandleFunc("GET /emulator/stats", e.serveStats)
	mux.HandleFunc("POST /emulator/drift/user-tags", e.driftUserTags)
	mux.HandleFunc("POST /emulator/drift/delete-user", e.driftDeleteUser)
	mux.HandleFunc("POST /emulator/drift/device-owner", e.driftDeviceOwner)
	mux.HandleFunc("POST /emulator/drift/device-tags", e.driftDeviceTags)
	return mux
}

// authenticate lets through requests that carry the key in a style the
// emulator accepts (see authorized). Others get the 403 of api.onesignal.com, or under /api/v1 the legacy
// host's 400 that asks for the header.
func (e *Emulator) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !e.authorized(r.Header.Get("Authorization")) {
			if strings.HasPrefix(r.URL.Path, "/api/v1/") {
				writeJSON(w, http.StatusBadRequest, map[string][]string{"errors": {msgLegacyAuth}, "reference": {refKeysAndIDs}})
				return
			}
			writeMessages(w, http.StatusForbidden, msgAccessDenied)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authorized accepts "Key <key>" (also "key <key>", as one revision of the
// docs prints it) and, with AcceptLegacyKeys, the legacy "Basic <key>",
// where the raw key follows "Basic " with no base64. Other spellings are
// refused, as the legacy API insists on its header being case-sensitive;
// so is Basic otherwise: OneSignal no longer takes legacy keys.
func (e *Emulator) authorized(header string) bool {
	scheme, key, ok := strings.Cut(header, " ")
	if !ok || e.cfg.APIKey == "" {
		return false
	}
	switch {
	case scheme == "Key", scheme == "key":
	case scheme == "Basic" && e.cfg.AcceptLegacyKeys:
	default:
		return false
	}
	return subtle.ConstantTimeCompare([]byte(key), []byte(e.cfg.APIKey)) == 1
}

// checkApp refuses, in the user model, an app other than the emulated one
// with the same 403 as a wrong key: an App API key belongs to one app, so
// for any other app the key is simply not valid.
func (e *Emulator) checkApp(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !e.isApp(r.PathValue("app_id")) {
			writeMessages(w, http.StatusForbidden, msgAccessDenied)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// checkQueryApp checks the app of the player model's reads, which name
// it in ?app_id= (see admitLegacyApp).
func (e *Emulator) checkQueryApp(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !e.admitLegacyApp(w, r.URL.Query().Get("app_id")) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// checkLegacyPathApp checks the app of the player model's edit tags by
// external id, which names it in the path (see admitLegacyApp).
func (e *Emulator) checkLegacyPathApp(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !e.admitLegacyApp(w, r.PathValue("app_id")) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// admitLegacyApp checks an app_id of a player-model request: none, or
// one the emulator does not serve, gets the legacy API's 400 "app_id not
// found" (its words for a missing app_id as well as an unknown one). It
// answers and returns false when the request goes no further.
func (e *Emulator) admitLegacyApp(w http.ResponseWriter, appID string) bool {
	if !e.isApp(appID) {
		writeMessages(w, http.StatusBadRequest, msgBadBody)
		return false
	}
	return true
}

func (e *Emulator) isApp(appID string) bool {
	return e.cfg.AppID != "" && appID == e.cfg.AppID
}

// requireJSON refuses a write whose body is not declared as JSON, with the
// message OneSignal gives for it.
func requireJSON(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isJSON(r) {
			writeMessages(w, http.StatusBadRequest, msgBadBody)
			return
		}
		next.ServeHTTP(w, r)
	})
}
