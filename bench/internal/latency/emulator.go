package latency

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
)

// receipts keeps, from the emulator's OnArrival hook, every accepted
// update of a benchmark user's seq tag.
type receipts struct {
	prefix string // the path of a user by external_id, without the id

	mu       sync.Mutex
	arrivals []arrival
}

func newReceipts(appID string) *receipts {
	return &receipts{prefix: "/apps/" + appID + "/users/by/external_id/"}
}

// note is the emulator's OnArrival hook.
func (r *receipts) note(a emulator.Arrival) {
	if a.Status < 200 || a.Status > 299 {
		return
	}
	user, seq, ok := r.read(a)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.arrivals = append(r.arrivals, arrival{user: user, seq: seq, at: a.At})
}

// read takes the user and the seq tag from an update user request:
// PATCH /apps/{app_id}/users/by/external_id/lat-{n} {"properties":{"tags":{"seq":"…"}}}.
func (r *receipts) read(a emulator.Arrival) (user int, seq int64, ok bool) {
	id, found := strings.CutPrefix(a.Path, r.prefix)
	if a.Method != http.MethodPatch || !found {
		return 0, 0, false
	}
	n, found := strings.CutPrefix(id, userPrefix)
	if !found {
		return 0, 0, false
	}
	user, err := strconv.Atoi(n)
	if err != nil {
		return 0, 0, false
	}
	var body struct {
		Properties struct {
			Tags map[string]string `json:"tags"`
		} `json:"properties"`
	}
	if json.Unmarshal(a.Body, &body) != nil {
		return 0, 0, false
	}
	v, found := body.Properties.Tags["seq"]
	if !found {
		return 0, 0, false
	}
	seq, err = strconv.ParseInt(v, 10, 64)
	return user, seq, err == nil
}

// all returns the arrivals so far.
func (r *receipts) all() []arrival {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.arrivals[:len(r.arrivals):len(r.arrivals)]
}
