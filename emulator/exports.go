package emulator

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The exports, OneSignal's scalable read: POST /players/csv_export (one
// row per device, the player model's) and POST
// /apps/{app_id}/users/csv_export (one row per user; in beta at
// OneSignal). Each answers {"csv_file_url": …} at once; the file is made
// from the state at that moment and is ready Config.ExportDelay later
// (on the Clock): until then its URL answers 404, then the gzipped CSV,
// for three days. One export runs at a time per account (the emulator
// is one account): another, while one is not ready, gets 429 with
// Retry-After until it is.

// exportKeep is how long a ready file stays, as OneSignal's.
const exportKeep = 72 * time.Hour

// exportPace is OneSignal's documented pace of an export.
const exportPace = 2000 // records a second

// The player export's columns: the defaults, in OneSignal's documented
// order, and the extra fields one may ask for.
var (
	playerColumns = []string{
		"id", "identifier", "session_count", "language", "timezone", "game_version", "device_os",
		"device_type", "device_model", "ad_id", "tags", "last_active", "playtime", "amount_spent",
		"created_at", "invalid_identifier", "badge_count",
	}
	playerExtraFields = []string{"location", "country", "rooted", "notification_types", "ip", "external_user_id", "web_auth", "web_p256"}
	// userColumns are the emulator's choice: OneSignal documents the
	// content (external ID, tags, language, timezone, location) but not
	// the header names.
	userColumns = []string{"onesignal_id", "external_id", "tags", "language", "timezone_id", "country", "lat", "long"}
)

const (
	msgExportRunning = "An export is already running for this account: one export at a time; try again once its file is ready."
	// The users export's documented answer to a legacy key.
	msgExportLegacyKey = "Request is malformed: This endpoint does not accept legacy (v1) API keys. Please use a v2 API key."
)

// export is one requested file.
type export struct {
	file  string // the file name in its URL
	body  []byte // gzipped CSV
	ready time.Time
}

// exports holds the files requested, by id. Its zero value is ready.
type exports struct {
	mu   sync.Mutex
	byID map[string]*export
}

// start registers a file made of rows, ready after delay, unless an
// export is still running: then it returns how long until that one is
// ready.
func (x *exports) start(now time.Time, delay time.Duration, name string, body []byte) (string, time.Duration) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.byID == nil {
		x.byID = map[string]*export{}
	}
	var wait time.Duration
	for id, ex := range x.byID {
		if now.Sub(ex.ready) > exportKeep {
			delete(x.byID, id)
			continue
		}
		wait = max(wait, ex.ready.Sub(now))
	}
	if wait > 0 {
		return "", wait
	}
	id := newUUID()
	x.byID[id] = &export{file: name, body: body, ready: now.Add(delay)}
	return id, 0
}

// file returns the body of a ready, kept file; nil otherwise.
func (x *exports) file(id, name string, now time.Time) []byte {
	x.mu.Lock()
	defer x.mu.Unlock()
	ex := x.byID[id]
	if ex == nil || ex.file != name || now.Before(ex.ready) || now.Sub(ex.ready) > exportKeep {
		return nil
	}
	return ex.body
}

func (x *exports) reset() {
	x.mu.Lock()
	defer x.mu.Unlock()
	clear(x.byID)
}

// exportPlayers is POST /players/csv_export?app_id=…. The body is
// optional: extra_fields adds columns (those OneSignal lists; others are
// refused with 400), last_active_since is accepted and ignored (the
// emulator keeps no activity times, so every device is exported), and
// segment_name is refused with 400: there are no segments.
func (e *Emulator) exportPlayers(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ExtraFields     []string        `json:"extra_fields"`
		LastActiveSince json.RawMessage `json:"last_active_since"`
		SegmentName     string          `json:"segment_name"`
	}
	if !decodeOptional(w, r, &req) {
		return
	}
	for _, f := range req.ExtraFields {
		if !slices.Contains(playerExtraFields, f) {
			writeMessages(w, http.StatusBadRequest, strconv.Quote(f)+" is not an extra field: use "+strings.Join(playerExtraFields, ", ")+".")
			return
		}
	}
	if req.SegmentName != "" {
		writeMessages(w, http.StatusBadRequest, "segment_name: the emulator has no segments.")
		return
	}
	e.lock()
	body, n := e.store.playersCSV(req.ExtraFields)
	e.mu.Unlock()
	e.startExport(w, r, "users_"+newUUID()[:8], n, body)
}

// exportUsers is POST /apps/{app_id}/users/csv_export: one row per user
// (see userColumns). It takes only current App API keys: a legacy key
// (Basic, with AcceptLegacyKeys) gets the 400 OneSignal documents.
// segment_id and segment_name are refused with 400 (no segments);
// include_unsubscribed is accepted and ignored.
func (e *Emulator) exportUsers(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.Header.Get("Authorization"), "Basic ") {
		writeMessages(w, http.StatusBadRequest, msgExportLegacyKey)
		return
	}
	var req struct {
		SegmentID           string `json:"segment_id"`
		SegmentName         string `json:"segment_name"`
		IncludeUnsubscribed bool   `json:"include_unsubscribed"`
	}
	if !decodeOptional(w, r, &req) {
		return
	}
	if req.SegmentID != "" || req.SegmentName != "" {
		writeMessages(w, http.StatusBadRequest, "segment_id, segment_name: the emulator has no segments.")
		return
	}
	e.lock()
	body, n := e.store.usersCSV()
	e.mu.Unlock()
	e.startExport(w, r, "users_export_"+newUUID()[:8], n, body)
}

// startExport registers the file and answers with its URL, on the host
// the request came to.
func (e *Emulator) startExport(w http.ResponseWriter, r *http.Request, name string, records int, body []byte) {
	delay := e.cfg.ExportDelay
	if delay == 0 {
		delay = max(time.Duration(records)*time.Second/exportPace, time.Millisecond)
	}
	now := e.now()
	name += "_" + now.UTC().Format("2006-01-02") + ".csv.gz"
	id, wait := e.exports.start(now, delay, name, body)
	if wait > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(max((wait+time.Second-1)/time.Second, 1))))
		writeMessages(w, http.StatusTooManyRequests, msgExportRunning)
		return
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	writeJSON(w, http.StatusOK, map[string]string{"csv_file_url": scheme + "://" + r.Host + "/csv_exports/" + id + "/" + name})
}

// serveExport is GET /csv_exports/{id}/{file}: 404 until the file is
// ready and after it is gone, else the gzipped CSV. Like OneSignal's, the
// URL is unguessable and needs no key.
func (e *Emulator) serveExport(w http.ResponseWriter, r *http.Request) {
	body := e.exports.file(r.PathValue("id"), r.PathValue("file"), e.now())
	if body == nil {
		writeMessages(w, http.StatusNotFound, "Not Found")
		return
	}
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// decodeOptional is decode for a body that may be left out.
func decodeOptional(w http.ResponseWriter, r *http.Request, v any) bool {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeMessages(w, http.StatusRequestEntityTooLarge, "Request body too large.")
		return false
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return true
	}
	if !isJSON(r) {
		writeMessages(w, http.StatusBadRequest, msgBadBody)
		return false
	}
	if err := json.Unmarshal(b, v); err != nil {
		var wrongType *json.UnmarshalTypeError
		if errors.As(err, &wrongType) {
			writeMessages(w, http.StatusBadRequest, "Invalid value for "+wrongType.Field+": expected "+wrongType.Type.String()+", got JSON "+wrongType.Value+".")
			return false
		}
		writeMessages(w, http.StatusBadRequest, msgBadBody)
		return false
	}
	return true
}

// playersCSV renders every device, sorted by id, with the extra columns,
// gzipped, and returns it with the number of rows. Tags are a JSON
// object (the format is not documented); a device's external_user_id is
// its owner's external_id, empty when none; invalid_identifier is "f".
func (s *store) playersCSV(extra []string) ([]byte, int) {
	cols := slices.Concat(playerColumns, extra)
	ids := slices.Sorted(maps.Keys(s.subs))
	return writeCSV(cols, len(ids), func(i int) map[string]string {
		p := s.player(s.subs[ids[i]])
		row := map[string]string{
			"id": p.ID, "identifier": p.Identifier, "device_type": strconv.Itoa(p.DeviceType),
			"tags": tagsJSON(p.Tags), "language": p.Language, "country": p.Country, "invalid_identifier": "f",
		}
		if p.Timezone != nil {
			row["timezone"] = strconv.Itoa(*p.Timezone)
		}
		if p.ExternalUserID != nil {
			row["external_user_id"] = *p.ExternalUserID
		}
		return row
	}), len(ids)
}

// usersCSV renders every user, sorted by onesignal_id, gzipped, and
// returns it with the number of rows.
func (s *store) usersCSV() ([]byte, int) {
	ids := slices.Sorted(maps.Keys(s.users))
	return writeCSV(userColumns, len(ids), func(i int) map[string]string {
		u := s.users[ids[i]]
		row := map[string]string{
			"onesignal_id": u.id, "external_id": u.aliases[externalIDLabel], "tags": tagsJSON(u.tags),
			"language": u.props.language, "timezone_id": u.props.timezoneID, "country": u.props.country,
		}
		if u.props.lat != nil {
			row["lat"] = strconv.FormatFloat(*u.props.lat, 'f', -1, 64)
		}
		if u.props.long != nil {
			row["long"] = strconv.FormatFloat(*u.props.long, 'f', -1, 64)
		}
		return row
	}), len(ids)
}

// writeCSV gzips a CSV of the columns and n rows; a column a row does not
// name is empty.
func writeCSV(cols []string, n int, row func(int) map[string]string) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	cw := csv.NewWriter(zw)
	_ = cw.Write(cols) // a bytes.Buffer does not fail
	rec := make([]string, len(cols))
	for i := range n {
		r := row(i)
		for j, c := range cols {
			rec[j] = r[c]
		}
		_ = cw.Write(rec)
	}
	cw.Flush()
	_ = zw.Close()
	return buf.Bytes()
}

// tagsJSON renders tags as a JSON object, keys sorted; {} when none.
func tagsJSON(tags map[string]string) string {
	if len(tags) == 0 {
		return "{}"
	}
	b, err := json.Marshal(tags)
	if err != nil {
		panic(fmt.Sprintf("emulator: marshal tags: %v", err)) // strings always marshal
	}
	return string(b)
}
