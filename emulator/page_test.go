package emulator_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
)

func TestTheRootServesAPageOfTheEmulatorsState(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.emu.AddSubscription(emulator.Subscription{ID: "dev-ada", Type: "iOSPush", Token: "tok-1"})
	a.emu.AddSubscription(emulator.Subscription{ID: "dev-nobody"})
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"ada"},"properties":{"tags":{"plan":"pro","level":"<b>42</b>"}},"subscriptions":[{"id":"dev-ada"}]}`).
		must(t, http.StatusCreated)
	before := a.emu.Stats()

	r := a.send(http.MethodGet, "/", "", "Authorization", "").must(t, http.StatusOK)
	if ct := r.header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q, want HTML", ct)
	}
	flat := strings.Join(strings.Fields(r.body), " ")
	for _, want := range []string{
		`<code id="app-id">` + appID + `</code>`,
		`<div class="count" id="users"><b>2</b>users</div>`,
		`<div class="count" id="subscriptions"><b>2</b>devices and records</div>`,
		`<div class="count" id="tags"><b>2</b>tags</div>`,
		`<div class="count" id="requests"><b>1</b>API requests</div>`,
		`<tr class="user"><td>ada</td><td>level=&lt;b&gt;42&lt;/b&gt;, plan=pro</td> <td class="id">dev-ada</td>`,
		`<tr class="subscription"><td class="id">dev-ada</td><td>iOSPush</td><td class="id">tok-1</td> <td>ada</td></tr>`,
		`<tr class="subscription"><td class="id">dev-nobody</td><td>AndroidPush</td>`,
		`<a href="/emulator/state">GET /emulator/state</a>`,
		`<a href="/emulator/stats">GET /emulator/stats</a>`,
		`<a href="/emulator/faults">GET /emulator/faults</a>`,
	} {
		if !strings.Contains(flat, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	if strings.Contains(r.body, apiKey) {
		t.Errorf("the page shows the API key")
	}
	if after := a.emu.Stats(); len(after.Requests) != len(before.Requests) {
		t.Errorf("the page counts as an API request: %v", after.Requests)
	}
}

func TestTheAPIRoutesAnswerAsBeforeBesideThePage(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	if r := a.send(http.MethodGet, "/no/such/route", "").must(t, http.StatusNotFound); r.body != `{"errors":["Not Found"]}` {
		t.Errorf("an unknown route answers %s, want OneSignal's 404", r.body)
	}
	if r := a.send(http.MethodPost, "/", `{}`).must(t, http.StatusNotFound); r.body != `{"errors":["Not Found"]}` {
		t.Errorf("POST / answers %s, want OneSignal's 404", r.body)
	}
	a.send(http.MethodGet, userPath("external_id", "nobody"), "").must(t, http.StatusNotFound)
	a.send(http.MethodGet, "/emulator/state", "").must(t, http.StatusOK)
}

func TestThePageListsTheFirst200AndPointsToTheRest(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	for i := range 205 {
		a.emu.AddUser(fmt.Sprintf("user-%03d", i), map[string]string{"n": fmt.Sprint(i)})
	}
	r := a.send(http.MethodGet, "/", "").must(t, http.StatusOK)
	if n := strings.Count(r.body, `<tr class="user">`); n != 200 {
		t.Errorf("the page lists %d users, want 200", n)
	}
	if !strings.Contains(r.body, `The first 200 of 205; all of them are in <a href="/emulator/state">/emulator/state</a>.`) {
		t.Errorf("the page does not say where the rest are")
	}
}
