package onesignaltest

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
)

// The /emulator/ routes belong to the emulator, not to OneSignal: they let
// a test, a demo or a CI job seed devices and look at the result without
// knowing the API key.

// serveState is GET /emulator/state.
func (e *Emulator) serveState(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, e.State())
}

// seedSubscription is POST /emulator/subscriptions, AddSubscription over
// HTTP. The body is a Subscription; id is required. It answers 201 with the
// stored subscription, or 200 with it if the id was already there.
func (e *Emulator) seedSubscription(w http.ResponseWriter, r *http.Request) {
	var sub Subscription
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&sub); err != nil {
		writeMessages(w, http.StatusBadRequest, "The body must be a subscription as JSON: "+err.Error())
		return
	}
	if sub.ID == "" {
		writeMessages(w, http.StatusBadRequest, `"id" is required.`)
		return
	}
	if sub.Type != "" && !slices.Contains(subscriptionTypes, sub.Type) {
		writeMessages(w, http.StatusBadRequest, strconv.Quote(sub.Type)+" is not a subscription type.")
		return
	}
	stored, created := e.addSubscription(sub)
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, stored)
}

// serveReset is POST /emulator/reset.
func (e *Emulator) serveReset(w http.ResponseWriter, r *http.Request) {
	e.Reset()
	w.WriteHeader(http.StatusNoContent)
}
