package emulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
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
		writeMessages(w, http.StatusBadRequest, "The body must be a subscription as JSON: "+jsonProblem(err))
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

// serveFaults is GET /emulator/faults: the faults being injected, as
// POST takes them.
func (e *Emulator) serveFaults(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, e.Faults())
}

// setFaults is POST /emulator/faults, SetFaults over HTTP: the body
// replaces the faults (so {} ends them) and restarts their sequence from
// its seed, e.g.
//
//	{"seed": 7, "status": {"500": 0.1, "429": 0.05}, "retry_after": 2,
//	 "latency": "20ms", "latency_max": "80ms", "reset": 0.01, "drop": 0.01}
//
// It answers 200 with the faults now in force, or 400 saying what is wrong.
func (e *Emulator) setFaults(w http.ResponseWriter, r *http.Request) {
	var f Faults
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&f); err != nil {
		writeMessages(w, http.StatusBadRequest, "The body must be faults as JSON: "+jsonProblem(err))
		return
	}
	if err := e.SetFaults(f); err != nil {
		writeMessages(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, e.Faults())
}

// serveStats is GET /emulator/stats.
func (e *Emulator) serveStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, e.Stats())
}

// jsonProblem says what is wrong with a JSON body in the body's terms,
// without the Go types and struct names of encoding/json's errors.
func jsonProblem(err error) string {
	var typ *json.UnmarshalTypeError
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &typ) && typ.Field != "":
		return fmt.Sprintf("%s cannot be a JSON %s", typ.Field, typ.Value)
	case errors.As(err, &typ):
		return fmt.Sprintf("it is a JSON %s", typ.Value)
	case errors.As(err, &syn):
		return fmt.Sprintf("it is not valid JSON (at byte %d)", syn.Offset)
	case errors.Is(err, io.EOF):
		return "it is empty"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "it is cut short"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}
