package emulator_test

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
)

// oddIDs are ids with what a path or a query must escape, and Unicode.
var oddIDs = []string{"user/1", "50% off", "what?now", "a b", "Zoë 東京", "..", "x&app_id=y#z"}

// seg escapes id as a path segment, as the client does: "." and ".."
// too, which a server would otherwise clean away.
func seg(id string) string {
	if id == "." || id == ".." {
		return strings.Repeat("%2E", len(id))
	}
	return url.PathEscape(id)
}

// fetchFile GETs an export's file without a key; the reply's body is
// kept raw (gzip).
func (a *api) fetchFile(fileURL string) (int, []byte) {
	a.t.Helper()
	resp, err := a.client.Get(fileURL)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	return resp.StatusCode, b
}

// rows gunzips a CSV and returns its rows as maps by header.
func rows(t *testing.T, gz []byte) []map[string]string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatalf("the file is not gzip: %v", err)
	}
	recs, err := csv.NewReader(zr).ReadAll()
	if err != nil {
		t.Fatalf("the file is not CSV: %v", err)
	}
	var out []map[string]string
	for _, rec := range recs[1:] {
		m := map[string]string{}
		for i, h := range recs[0] {
			m[h] = rec[i]
		}
		out = append(out, m)
	}
	return out
}

func fileURL(t *testing.T, r reply) string {
	t.Helper()
	var b struct {
		URL string `json:"csv_file_url"`
	}
	if err := json.Unmarshal([]byte(r.body), &b); err != nil || b.URL == "" {
		t.Fatalf("body %s has no csv_file_url (%v)", r.body, err)
	}
	return b.URL
}

func TestViewUserShowsIdentityTagsAndSubscriptionsForAnyExternalID(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	for _, ext := range oddIDs {
		a.emu.AddUser(ext, map[string]string{"plan": "pro " + ext})
		a.emu.AddSubscription(emulator.Subscription{ID: "dev-" + ext})
		a.emu.MoveDevice("dev-"+ext, ext)
		r := a.send("GET", userPath("external_id", seg(ext)), "").must(t, http.StatusOK)
		var u struct {
			Identity      map[string]string `json:"identity"`
			Properties    struct{ Tags map[string]string }
			Subscriptions []struct{ ID string }
		}
		if err := json.Unmarshal([]byte(r.body), &u); err != nil {
			t.Fatal(err)
		}
		if u.Identity["external_id"] != ext || u.Properties.Tags["plan"] != "pro "+ext ||
			len(u.Subscriptions) != 1 || u.Subscriptions[0].ID != "dev-"+ext {
			t.Errorf("view user %q = %s", ext, r.body)
		}
	}
}

func TestViewDeviceShowsItsExternalUserIDAndTagsForAnyID(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	for _, id := range oddIDs {
		a.emu.AddSubscription(emulator.Subscription{ID: id})
		a.emu.MoveDevice(id, "owner "+id)
		a.emu.SetDeviceTags(id, map[string]string{"k": id})
		r := a.send("GET", playerPath(seg(id))+"?app_id="+appID, "").must(t, http.StatusOK)
		var p emulator.Player
		if err := json.Unmarshal([]byte(r.body), &p); err != nil {
			t.Fatal(err)
		}
		if p.ID != id || p.ExternalUserID == nil || *p.ExternalUserID != "owner "+id || p.Tags["k"] != id {
			t.Errorf("view device %q = %s", id, r.body)
		}
	}
}

func TestViewsAreLimitedToOneASecondPerAppOnlyWithRateLimits(t *testing.T) {
	t.Parallel()
	clk := newClock()
	a := newAPIWith(t, func(c *emulator.Config) {
		c.RateLimits.Enabled = true
		c.Clock = clk.Now
	})
	a.emu.AddUser("u", nil)
	a.send("GET", userPath("external_id", "u"), "").must(t, http.StatusOK)
	r := a.send("GET", playerPath("nope")+"?app_id="+appID, "").must(t, http.StatusTooManyRequests)
	if r.header.Get("Retry-After") != "1" {
		t.Errorf("Retry-After = %q, want 1", r.header.Get("Retry-After"))
	}
	// Writes have their own budget.
	a.send("PATCH", userPath("external_id", "u"), `{"properties":{"tags":{"a":"1"}}}`).must(t, http.StatusAccepted)
	clk.Advance(time.Second)
	a.send("GET", playerPath("nope")+"?app_id="+appID, "").must(t, http.StatusNotFound)

	off := newAPI(t)
	off.emu.AddUser("u", nil)
	for range 5 {
		off.send("GET", userPath("external_id", "u"), "").must(t, http.StatusOK)
	}
}

func TestPlayerExportIsReadyAfterItsDelayWithTheDocumentedColumns(t *testing.T) {
	t.Parallel()
	clk := newClock()
	a := newAPIWith(t, func(c *emulator.Config) {
		c.Clock = clk.Now
		c.ExportDelay = time.Minute
	})
	for _, id := range oddIDs {
		a.emu.AddSubscription(emulator.Subscription{ID: id})
		a.emu.MoveDevice(id, "ext "+id)
		a.emu.SetDeviceTags(id, map[string]string{"t": id})
	}
	a.emu.AddSubscription(emulator.Subscription{ID: "anonymous"})
	r := a.send("POST", "/players/csv_export?app_id="+appID, `{"extra_fields":["external_user_id","country"]}`).must(t, http.StatusOK)
	u := fileURL(t, r)
	if !strings.Contains(u, "/csv_exports/") || !strings.HasSuffix(u, ".csv.gz") {
		t.Errorf("csv_file_url = %s", u)
	}
	// Drift after the request is not in the file: it is made on request.
	a.emu.SetDeviceTags(oddIDs[0], map[string]string{"t": "later"})
	if status, _ := a.fetchFile(u); status != http.StatusNotFound {
		t.Fatalf("before it is ready, the file answers %d, want 404", status)
	}
	a.send("POST", "/api/v1/players/csv_export?app_id="+appID, "").must(t, http.StatusTooManyRequests)
	clk.Advance(time.Minute)
	status, gz := a.fetchFile(u)
	if status != http.StatusOK {
		t.Fatalf("once ready, the file answers %d", status)
	}
	got := rows(t, gz)
	if len(got) != len(oddIDs)+1 {
		t.Fatalf("%d rows, want %d", len(got), len(oddIDs)+1)
	}
	byID := map[string]map[string]string{}
	for _, row := range got {
		byID[row["id"]] = row
	}
	for _, id := range oddIDs {
		row := byID[id]
		var tags map[string]string
		if err := json.Unmarshal([]byte(row["tags"]), &tags); err != nil || tags["t"] != id || row["external_user_id"] != "ext "+id {
			t.Errorf("row of %q = %v", id, row)
		}
	}
	if row := byID["anonymous"]; row["external_user_id"] != "" || row["tags"] != "{}" || row["device_type"] != "1" || row["invalid_identifier"] != "f" {
		t.Errorf("row of an anonymous device = %v", row)
	}
	for _, col := range []string{"id", "identifier", "session_count", "device_type", "tags", "last_active", "created_at", "invalid_identifier", "badge_count", "external_user_id", "country"} {
		if _, ok := got[0][col]; !ok {
			t.Errorf("no column %s", col)
		}
	}
	// Ready, it no longer blocks another export; it is gone after 3 days.
	a.send("POST", "/players/csv_export?app_id="+appID, "").must(t, http.StatusOK)
	clk.Advance(73 * time.Hour)
	if status, _ := a.fetchFile(u); status != http.StatusNotFound {
		t.Errorf("after 3 days the file answers %d, want 404", status)
	}
}

func TestPlayerExportRefusesWhatItDoesNotEmulate(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.send("POST", "/players/csv_export?app_id="+appID, `{"extra_fields":["shoe_size"]}`).must(t, http.StatusBadRequest)
	a.send("POST", "/players/csv_export?app_id="+appID, `{"segment_name":"Active"}`).must(t, http.StatusBadRequest)
	a.send("POST", "/players/csv_export?app_id="+otherApp, "").must(t, http.StatusBadRequest)
	a.send("POST", "/players/csv_export?app_id="+appID, "", "Authorization", "Key wrong").must(t, http.StatusForbidden)
}

func TestUserExportHasOneRowPerUserWithExternalIDAndTags(t *testing.T) {
	t.Parallel()
	clk := newClock()
	a := newAPIWith(t, func(c *emulator.Config) {
		c.Clock = clk.Now
		c.AcceptLegacyKeys = true
	})
	for _, ext := range oddIDs {
		a.emu.AddUser(ext, map[string]string{"plan": ext})
	}
	a.emu.AddSubscription(emulator.Subscription{ID: "anonymous"})
	a.send("POST", usersPath+"/csv_export", "", "Authorization", "Basic "+apiKey).must(t, http.StatusBadRequest)
	u := fileURL(t, a.send("POST", usersPath+"/csv_export", "").must(t, http.StatusOK))
	a.send("POST", usersPath+"/csv_export", "").must(t, http.StatusTooManyRequests)
	if status, _ := a.fetchFile(u); status != http.StatusNotFound {
		t.Fatalf("before it is ready, the file answers %d, want 404", status)
	}
	clk.Advance(5 * time.Millisecond) // the default pace: 2,000 users a second
	status, gz := a.fetchFile(u)
	if status != http.StatusOK {
		t.Fatalf("once ready, the file answers %d", status)
	}
	got := map[string]map[string]string{}
	for _, row := range rows(t, gz) {
		got[row["external_id"]] = row
	}
	if len(got) != len(oddIDs)+1 {
		t.Fatalf("rows by external id = %v", got)
	}
	for _, ext := range oddIDs {
		var tags map[string]string
		if err := json.Unmarshal([]byte(got[ext]["tags"]), &tags); err != nil || !reflect.DeepEqual(tags, map[string]string{"plan": ext}) || got[ext]["onesignal_id"] == "" {
			t.Errorf("row of %q = %v", ext, got[ext])
		}
	}
	if got[""]["tags"] != "{}" {
		t.Errorf("row of the anonymous user = %v", got[""])
	}
	a.send("POST", usersPath+"/csv_export", `{"segment_id":"x"}`).must(t, http.StatusBadRequest)
}

func TestDriftRoutesChangeStateBehindTheClientsBack(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	for _, ext := range oddIDs {
		a.emu.AddUser(ext, map[string]string{"plan": "free", "keep": "1"})
		a.emu.AddSubscription(emulator.Subscription{ID: "dev " + ext})
		a.emu.MoveDevice("dev "+ext, ext)
	}
	admin := func(route string, body any, status int) reply {
		t.Helper()
		b, _ := json.Marshal(body)
		return a.send("POST", "/emulator/drift/"+route, string(b), "Authorization", "").must(t, status)
	}
	for _, ext := range oddIDs {
		admin("user-tags", map[string]any{"external_id": ext, "tags": map[string]string{"plan": "pro", "keep": ""}}, http.StatusOK)
		u, _ := a.emu.State().UserByExternalID(ext)
		if !reflect.DeepEqual(u.Tags, map[string]string{"plan": "pro"}) {
			t.Errorf("tags of %q after drift = %v", ext, u.Tags)
		}
		dev := "dev " + ext
		admin("device-tags", map[string]any{"id": dev, "tags": map[string]string{"sdk": "set"}}, http.StatusOK)
		if p, _ := a.emu.State().Player(dev); p.Tags["sdk"] != "set" {
			t.Errorf("device %q tags = %v", dev, p.Tags)
		}
		admin("device-owner", map[string]any{"id": dev, "external_id": "other " + ext}, http.StatusOK)
		if got := a.emu.State().ExternalIDOf(dev); got != "other "+ext {
			t.Errorf("device %q moved to %q", dev, got)
		}
		admin("device-owner", map[string]any{"id": dev, "external_id": ""}, http.StatusOK)
		if got := a.emu.State().ExternalIDOf(dev); got != "" {
			t.Errorf("device %q unlinked still belongs to %q", dev, got)
		}
		admin("delete-user", map[string]any{"external_id": ext}, http.StatusOK)
		if _, ok := a.emu.State().UserByExternalID(ext); ok {
			t.Errorf("user %q still there after delete", ext)
		}
	}
	admin("user-tags", map[string]any{"external_id": "nobody", "tags": map[string]string{}}, http.StatusNotFound)
	admin("delete-user", map[string]any{"external_id": "nobody"}, http.StatusNotFound)
	admin("device-owner", map[string]any{"id": "nothing", "external_id": "x"}, http.StatusNotFound)
	admin("device-tags", map[string]any{"id": "nothing"}, http.StatusNotFound)
	admin("device-owner", map[string]any{"id": "x"}, http.StatusBadRequest)
	admin("user-tags", map[string]any{"externalid": "x"}, http.StatusBadRequest)
	if n := len(a.emu.Stats().Requests); n != 0 {
		t.Errorf("drift counted in Stats: %v", a.emu.Stats().Requests)
	}
}

func TestDeletingAUserByDriftTakesItsDevices(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.emu.AddUser("u", nil)
	a.emu.AddSubscription(emulator.Subscription{ID: "d"})
	a.emu.MoveDevice("d", "u")
	if !a.emu.RemoveUser("u") {
		t.Fatal("RemoveUser found no user")
	}
	a.send("GET", playerPath("d")+"?app_id="+appID, "").must(t, http.StatusNotFound)
	if a.emu.MoveDevice("d", "u") || a.emu.SetDeviceTags("d", nil) || a.emu.SetUserTags("u", nil) || a.emu.RemoveUser("u") {
		t.Error("a drift method found what was deleted")
	}
}
