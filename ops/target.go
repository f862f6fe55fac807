package ops

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// WatchTargets lets GET /debug/target read what the sink knows of one
// target (Sink.Inspect), for `onesignal-cdc explain`. On a nil monitor it
// does nothing.
func (m *SinkMonitor) WatchTargets(inspect func(transform.Target) sink.TargetView) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.inspect = inspect
}

// serveTarget answers GET /debug/target?id=<target key> (or
// ?external_id=<id>, ?device_id=<id>) with the sink's view of the target
// as JSON: its pending messages, attempts and window, what it believes
// applied, its last request's outcome. It reads under the scheduler's lock
// and changes nothing; the last error's text is redacted like the status
// page's.
func (s *Server) serveTarget(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	q := r.URL.Query()
	var t transform.Target
	ok := false
	switch {
	case q.Has("id"):
		t, ok = transform.ParseTarget(q.Get("id"))
	case q.Has("external_id"):
		t, ok = transform.User(q.Get("external_id")), q.Get("external_id") != ""
	case q.Has("device_id"):
		t, ok = transform.Device(q.Get("device_id")), q.Get("device_id") != ""
	}
	if !ok {
		http.Error(w, `name a target: ?id=user:<external id> or device:<device id> (URL-encoded), ?external_id=… or ?device_id=…`, http.StatusBadRequest)
		return
	}
	_, m := s.monitors()
	var inspect func(transform.Target) sink.TargetView
	if m != nil {
		m.mu.Lock()
		inspect = m.inspect
		m.mu.Unlock()
	}
	if inspect == nil {
		http.Error(w, fmt.Sprintf("this process runs no sink: it knows nothing of %s", t), http.StatusNotFound)
		return
	}
	v := inspect(t)
	if v.Last != nil {
		last := *v.Last
		last.Error = s.redact.clean(last.Error)
		v.Last = &last
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v) //nolint:errcheck // the client went away
}
