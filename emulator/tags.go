package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// maxTagChanges is OneSignal's limit of tag changes (deletions included)
// in one request, in both models.
const maxTagChanges = 100

// checkTagChanges answers 400 and returns false when a request changes
// more tags than OneSignal takes at once.
func checkTagChanges(w http.ResponseWriter, tags map[string]*string) bool {
	if len(tags) > maxTagChanges {
		writeTagError(w, msgTooManyTagChanges)
		return false
	}
	return true
}

// checkTagLimit answers 400 and returns false when the change would leave
// current (a user's tags) holding more than the configured cap. A user
// already over it (the cap was lowered) may still change and delete tags,
// as long as it ends up with no more than it had: OneSignal once refused
// even deletions there, and called that a bug.
func (e *Emulator) checkTagLimit(w http.ResponseWriter, current map[string]string, change map[string]*string) bool {
	limit := e.cfg.TagLimit
	if limit == 0 {
		return true
	}
	after := len(current)
	for k, v := range change {
		_, had := current[k]
		deletes := v == nil || *v == ""
		switch {
		case had && deletes:
			after--
		case !had && !deletes:
			after++
		}
	}
	if after > limit && after > len(current) {
		writeTagError(w, fmt.Sprintf(msgTagLimit, limit))
		return false
	}
	return true
}

// writeTagError sends the player era's envelope for tag errors, which
// carries "success": false besides the message.
func writeTagError(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, struct {
		Errors  []string `json:"errors"`
		Success bool     `json:"success"`
	}{Errors: []string{msg}})
}

// legacyTags reads the player model's tags, whose values may be strings
// or numbers; a number is kept as the text it was sent as ("42"), the way
// OneSignal stores every tag. null deletes, like "". It answers 400 and
// returns false for any other value.
func legacyTags(w http.ResponseWriter, raw map[string]json.RawMessage) (map[string]*string, bool) {
	if raw == nil {
		return nil, true
	}
	tags := make(map[string]*string, len(raw))
	for k, v := range raw {
		var s string
		switch {
		case len(v) == 0 || string(v) == "null":
			tags[k] = nil
			continue
		case v[0] == '"':
			if err := json.Unmarshal(v, &s); err != nil {
				writeTagError(w, "Tag "+strconv.Quote(k)+" is not a valid string.")
				return nil, false
			}
		case v[0] == '-' || (v[0] >= '0' && v[0] <= '9'):
			s = string(v)
		default:
			writeTagError(w, "Tag "+strconv.Quote(k)+" must be a string or a number.")
			return nil, false
		}
		tags[k] = &s
	}
	return tags, true
}
