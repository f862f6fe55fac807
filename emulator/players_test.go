package emulator_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
)

const otherApp = "00000000-0000-0000-0000-000000000000"

func playerPath(id string) string { return "/players/" + id }

func tagsPath(ext string) string { return "/apps/" + appID + "/users/" + ext }

// player builds a player body with the app; fields is the rest of it.
func player(fields string) string {
	if fields == "" {
		return `{"app_id":"` + appID + `"}`
	}
	return `{"app_id":"` + appID + `",` + fields + `}`
}

// playerID reads the id of POST /players's answer.
func playerID(t *testing.T, r reply) string {
	t.Helper()
	var b struct {
		Success bool   `json:"success"`
		ID      string `json:"id"`
	}
	if err := json.Unmarshal([]byte(r.body), &b); err != nil || !b.Success || b.ID == "" {
		t.Fatalf("body %s is not {success: true, id: …} (%v)", r.body, err)
	}
	return b.ID
}

// ownerOf returns the user that owns the subscription.
func ownerOf(t *testing.T, st emulator.State, sub string) emulator.User {
	t.Helper()
	for _, s := range st.Subscriptions {
		if s.ID != sub {
			continue
		}
		for _, u := range st.Users {
			if u.OneSignalID == s.OneSignalID {
				return u
			}
		}
	}
	t.Fatalf("no owner of %s in %+v", sub, st)
	return emulator.User{}
}

func TestAddPlayer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		setup     func(a *api)
		body      string
		wantType  string
		wantToken string
		wantExt   string
		wantTags  map[string]string
		wantUsers int
	}{
		{
			name:     "creates an email device owned by a new user with the external id",
			body:     player(`"device_type":11,"identifier":"ada@example.com","external_user_id":"ada","tags":{"plan":"pro","age":42,"ratio":1.5}}`),
			wantType: "Email", wantToken: "ada@example.com", wantExt: "ada",
			wantTags:  map[string]string{"plan": "pro", "age": "42", "ratio": "1.5"},
			wantUsers: 1,
		},
		{
			name:     "creates an SMS device",
			body:     player(`"device_type":14,"identifier":"+4712345678","external_user_id":"ada"`),
			wantType: "SMS", wantToken: "+4712345678", wantExt: "ada", wantTags: map[string]string{}, wantUsers: 1,
		},
		{
			name:     "creates a push device owned by a new anonymous user",
			body:     player(`"device_type":0,"identifier":"apns-token","tags":{"a":"1"}`),
			wantType: "iOSPush", wantToken: "apns-token", wantTags: map[string]string{"a": "1"}, wantUsers: 1,
		},
		{
			name:     "creates a push device without a token",
			body:     player(`"device_type":1`),
			wantType: "AndroidPush", wantTags: map[string]string{}, wantUsers: 1,
		},
		{
			name:     "creates a device of a code the user model has no type for",
			body:     player(`"device_type":10,"identifier":"echo"`),
			wantType: "AlexaPush", wantToken: "echo", wantTags: map[string]string{}, wantUsers: 1,
		},
		{
			name: "gives a device to the user that has the external id, with that user's tags",
			setup: func(a *api) {
				a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"ada"},"properties":{"tags":{"plan":"free"}}}`).must(a.t, http.StatusCreated)
			},
			body:     player(`"device_type":5,"identifier":"https://push/1","external_user_id":"ada","tags":{"seen":"1"}`),
			wantType: "ChromePush", wantToken: "https://push/1", wantExt: "ada",
			wantTags: map[string]string{"plan": "free", "seen": "1"}, wantUsers: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := newAPI(t)
			if tt.setup != nil {
				tt.setup(a)
			}
			id := playerID(t, a.send(http.MethodPost, "/players", tt.body).must(t, http.StatusOK))
			st := a.emu.State()
			got, ok := st.Player(id)
			if !ok {
				t.Fatalf("no player %s in %+v", id, st)
			}
			sub := st.Subscriptions[0]
			if sub.Type != tt.wantType || sub.Token != tt.wantToken {
				t.Errorf("subscription = %+v, want type %s, token %q", sub, tt.wantType, tt.wantToken)
			}
			if ext := st.ExternalIDOf(id); ext != tt.wantExt {
				t.Errorf("external id = %q, want %q", ext, tt.wantExt)
			}
			if !reflect.DeepEqual(got.Tags, tt.wantTags) {
				t.Errorf("tags = %v, want %v", got.Tags, tt.wantTags)
			}
			if len(st.Users) != tt.wantUsers {
				t.Errorf("users = %+v, want %d", st.Users, tt.wantUsers)
			}
		})
	}
}

func TestAddPlayerWithAKnownIdentifierEditsThatDevice(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	first := playerID(t, a.send(http.MethodPost, "/players", player(`"device_type":11,"identifier":"ada@example.com","tags":{"a":"1","b":"2"}`)).must(t, http.StatusOK))
	again := playerID(t, a.send(http.MethodPost, "/players", player(`"device_type":11,"identifier":"ada@example.com","external_user_id":"ada","tags":{"b":"","c":3}`)).must(t, http.StatusOK))
	if again != first {
		t.Errorf("second add answered id %s, want the existing %s", again, first)
	}
	st := a.emu.State()
	ada, ok := st.UserByExternalID("ada")
	if len(st.Subscriptions) != 1 || !ok || !reflect.DeepEqual(ada.Tags, map[string]string{"a": "1", "c": "3"}) {
		t.Errorf("state = %+v, want one device, owned by ada with tags a and c", st)
	}
	// The same identifier with another type is another device.
	playerID(t, a.send(http.MethodPost, "/players", player(`"device_type":14,"identifier":"ada@example.com"`)).must(t, http.StatusOK))
	if n := len(a.emu.State().Subscriptions); n != 2 {
		t.Errorf("%d devices, want 2", n)
	}
}

func TestEditPlayer(t *testing.T) {
	t.Parallel()
	type want struct {
		ext       string // of dev-1's owner
		tags      map[string]string
		users     int
		sameOwner bool // dev-1 has the owner it had before
	}
	tests := []struct {
		name  string
		setup func(a *api) // dev-1 is seeded, owned by an anonymous user with tag seeded=1
		body  string
		want  want
	}{
		{
			name: "gives an anonymous owner the external id, keeping its tags",
			body: player(`"external_user_id":"ada"`),
			want: want{ext: "ada", tags: map[string]string{"seeded": "1"}, users: 1, sameOwner: true},
		},
		{
			name: "moves the device to the user that has the external id, deleting the emptied owner",
			setup: func(a *api) {
				a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"ada"},"properties":{"tags":{"plan":"pro"}}}`).must(a.t, http.StatusCreated)
			},
			body: player(`"external_user_id":"ada","tags":{"x":"1"}`),
			want: want{ext: "ada", tags: map[string]string{"plan": "pro", "x": "1"}, users: 1},
		},
		{
			name: "moves the device to a new user when its owner has another external id",
			setup: func(a *api) {
				a.send(http.MethodPut, playerPath("dev-1"), player(`"external_user_id":"bob"`)).must(a.t, http.StatusOK)
			},
			body: player(`"external_user_id":"ada"`),
			want: want{ext: "ada", tags: map[string]string{}, users: 2},
		},
		{
			name: "clears the external id by moving the device to a new anonymous user",
			setup: func(a *api) {
				a.send(http.MethodPut, playerPath("dev-1"), player(`"external_user_id":"bob"`)).must(a.t, http.StatusOK)
			},
			body: player(`"external_user_id":""`),
			want: want{tags: map[string]string{}, users: 2},
		},
		{
			name: "does nothing to clear the external id of an anonymous owner",
			body: player(`"external_user_id":""`),
			want: want{tags: map[string]string{"seeded": "1"}, users: 1, sameOwner: true},
		},
		{
			name: "leaves the external id alone when it is null",
			setup: func(a *api) {
				a.send(http.MethodPut, playerPath("dev-1"), player(`"external_user_id":"bob"`)).must(a.t, http.StatusOK)
			},
			body: player(`"external_user_id":null,"tags":{"x":"1"}`),
			want: want{ext: "bob", tags: map[string]string{"seeded": "1", "x": "1"}, users: 1, sameOwner: true},
		},
		{
			name: "merges tags, deleting those set to \"\" or null and keeping numbers as text",
			setup: func(a *api) {
				a.send(http.MethodPut, playerPath("dev-1"), player(`"tags":{"a":"1","b":"2"}`)).must(a.t, http.StatusOK)
			},
			body: player(`"tags":{"a":"","b":null,"seeded":7,"c":"3"},"device_type":1,"language":"nb","external_user_id_auth_hash":"abc"`),
			want: want{tags: map[string]string{"seeded": "7", "c": "3"}, users: 1, sameOwner: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := newAPI(t)
			a.emu.AddSubscription(emulator.Subscription{ID: "dev-1"})
			a.send(http.MethodPut, playerPath("dev-1"), player(`"tags":{"seeded":"1"}`)).must(t, http.StatusOK)
			if tt.setup != nil {
				tt.setup(a)
			}
			before := ownerOf(t, a.emu.State(), "dev-1").OneSignalID
			r := a.send(http.MethodPut, playerPath("dev-1"), tt.body).must(t, http.StatusOK)
			if r.body != `{"success":true}` {
				t.Errorf("body = %s, want {\"success\":true}", r.body)
			}
			st := a.emu.State()
			owner := ownerOf(t, st, "dev-1")
			got := want{ext: owner.Identity["external_id"], tags: owner.Tags, users: len(st.Users), sameOwner: owner.OneSignalID == before}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestEditPlayerChangesTheIdentifier(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	id := playerID(t, a.send(http.MethodPost, "/players", player(`"device_type":11,"identifier":"old@example.com"`)).must(t, http.StatusOK))
	a.send(http.MethodPut, playerPath(id), player(`"identifier":"new@example.com"`)).must(t, http.StatusOK)
	if p, _ := a.emu.State().Player(id); p.Identifier != "new@example.com" {
		t.Errorf("identifier = %q, want the new address", p.Identifier)
	}
	// The new address finds the device; the old one is free again.
	again := playerID(t, a.send(http.MethodPost, "/players", player(`"device_type":11,"identifier":"new@example.com"`)).must(t, http.StatusOK))
	other := playerID(t, a.send(http.MethodPost, "/players", player(`"device_type":11,"identifier":"old@example.com"`)).must(t, http.StatusOK))
	if again != id || other == id {
		t.Errorf("new address found %s, old found %s; want %s and another", again, other, id)
	}
}

func TestViewPlayerShowsTheOwnersTagsAndExternalID(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.emu.AddSubscription(emulator.Subscription{ID: "dev-1", Type: "iOSPush", Token: "tok-1"})
	a.emu.AddSubscription(emulator.Subscription{ID: "dev-2", Type: "SafariPush", Token: "tok-2"})
	a.send(http.MethodPut, playerPath("dev-1"), player(`"external_user_id":"ada","tags":{"plan":"pro"}`)).must(t, http.StatusOK)

	r := a.send(http.MethodGet, playerPath("dev-1")+"?app_id="+appID, "").must(t, http.StatusOK)
	want := `{"id":"dev-1","identifier":"tok-1","device_type":0,"tags":{"plan":"pro"},"external_user_id":"ada","invalid_identifier":false}`
	if r.body != want {
		t.Errorf("body = %s\nwant   %s", r.body, want)
	}
	r = a.send(http.MethodGet, "/api/v1"+playerPath("dev-2")+"?app_id="+appID, "").must(t, http.StatusOK)
	want = `{"id":"dev-2","identifier":"tok-2","device_type":7,"tags":{},"external_user_id":null,"invalid_identifier":false}`
	if r.body != want {
		t.Errorf("body = %s\nwant   %s", r.body, want)
	}
}

func TestViewPlayersPagesThroughDevicesSortedByID(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	for _, id := range []string{"dev-3", "dev-1", "dev-5", "dev-2", "dev-4"} {
		a.emu.AddSubscription(emulator.Subscription{ID: id})
	}
	tests := []struct {
		name      string
		query     string
		wantLimit int
		wantIDs   []string
	}{
		{name: "returns up to 300 by default", query: "", wantLimit: 300, wantIDs: []string{"dev-1", "dev-2", "dev-3", "dev-4", "dev-5"}},
		{name: "returns a page", query: "&limit=2&offset=1", wantLimit: 2, wantIDs: []string{"dev-2", "dev-3"}},
		{name: "returns the end of the list", query: "&limit=2&offset=4", wantLimit: 2, wantIDs: []string{"dev-5"}},
		{name: "returns nothing past the end", query: "&offset=9", wantLimit: 300, wantIDs: []string{}},
		{name: "caps the limit at 300", query: "&limit=1000", wantLimit: 300, wantIDs: []string{"dev-1", "dev-2", "dev-3", "dev-4", "dev-5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := a.send(http.MethodGet, "/players?app_id="+appID+tt.query, "").must(t, http.StatusOK)
			var page struct {
				TotalCount int               `json:"total_count"`
				Offset     int               `json:"offset"`
				Limit      int               `json:"limit"`
				Players    []emulator.Player `json:"players"`
			}
			if err := json.Unmarshal([]byte(r.body), &page); err != nil {
				t.Fatal(err)
			}
			ids := []string{}
			for _, p := range page.Players {
				ids = append(ids, p.ID)
				if p.DeviceType != 1 || p.Identifier != p.ID {
					t.Errorf("player %+v, want an Android device whose identifier is its id", p)
				}
			}
			if page.TotalCount != 5 || page.Limit != tt.wantLimit || !reflect.DeepEqual(ids, tt.wantIDs) {
				t.Errorf("page = %s\nwant total 5, limit %d, ids %v", r.body, tt.wantLimit, tt.wantIDs)
			}
		})
	}
}

func TestEditTagsByExternalIDChangesEveryDeviceOfTheUser(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	for _, dev := range []string{"dev-1", "dev-2"} {
		a.emu.AddSubscription(emulator.Subscription{ID: dev})
		a.send(http.MethodPut, playerPath(dev), player(`"external_user_id":"team/ada"`)).must(t, http.StatusOK)
	}
	r := a.send(http.MethodPut, tagsPath("team%2Fada"), `{"app_id":"`+appID+`","tags":{"plan":"pro","score":10}}`).must(t, http.StatusOK)
	if r.body != `{"success":true}` {
		t.Errorf("body = %s", r.body)
	}
	a.send(http.MethodPut, "/api/v1"+tagsPath("team%2Fada"), `{"tags":{"plan":""}}`).must(t, http.StatusOK)
	st := a.emu.State()
	for _, dev := range []string{"dev-1", "dev-2"} {
		if p, _ := st.Player(dev); !reflect.DeepEqual(p.Tags, map[string]string{"score": "10"}) {
			t.Errorf("%s tags = %v, want score 10", dev, p.Tags)
		}
	}
}

// Editing tags by an external id that no device carries: the docs say
// 404, the API spec and the old SDKs' mocks 200. Under either answer the
// tags go nowhere, not even to a device linked to the id afterwards.
func TestEditTagsByAnExternalIDNoDeviceCarriesKeepsNoTagsUnderEitherAnswer(t *testing.T) {
	t.Parallel()
	behaviours := []struct {
		name   string
		ok     bool
		status int
		body   string
	}{
		{"by default 404, as the docs say", false, http.StatusNotFound, `{"errors":["No players found for given external_user_id"]}`},
		{"with NoPlayersAnswersOK 200, as the spec says", true, http.StatusOK, `{"success":true}`},
	}
	ids := []struct{ name, ext, path string }{
		{"an id nobody has", "nobody", tagsPath("nobody")},
		{"an id nobody has, on the legacy host", "nobody", "/api/v1" + tagsPath("nobody")},
		{"the id of a user with no device", "deviceless", tagsPath("deviceless")},
		{"the id of a user whose device was unlinked", "unlinked", tagsPath("unlinked")},
	}
	for _, b := range behaviours {
		for _, id := range ids {
			t.Run(b.name+"/"+id.name, func(t *testing.T) {
				t.Parallel()
				a := newAPIWith(t, func(c *emulator.Config) { c.NoPlayersAnswersOK = b.ok })
				a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"deviceless"},"properties":{"tags":{"kept":"1"}}}`).must(t, http.StatusCreated)
				a.emu.AddSubscription(emulator.Subscription{ID: "dev-0"})
				a.send(http.MethodPut, playerPath("dev-0"), player(`"external_user_id":"unlinked","tags":{"kept":"1"}`)).must(t, http.StatusOK)
				a.send(http.MethodPut, playerPath("dev-0"), player(`"external_user_id":""`)).must(t, http.StatusOK)
				before := a.emu.State()

				r := a.send(http.MethodPut, id.path, `{"tags":{"plan":"pro","kept":""}}`).must(t, b.status)
				if r.body != b.body {
					t.Errorf("body = %s, want %s", r.body, b.body)
				}
				if after := a.emu.State(); !reflect.DeepEqual(after, before) {
					t.Errorf("the tags were kept somewhere:\n%+v\nwas %+v", after, before)
				}
				// A device linked to the id now shows none of them.
				a.emu.AddSubscription(emulator.Subscription{ID: "dev-1"})
				a.send(http.MethodPut, playerPath("dev-1"), player(`"external_user_id":"`+id.ext+`"`)).must(t, http.StatusOK)
				p, _ := a.emu.State().Player("dev-1")
				if _, ok := p.Tags["plan"]; ok || (id.ext != "nobody" && p.Tags["kept"] != "1") {
					t.Errorf("dev-1 linked to %s shows tags %v, want the user's own (no plan)", id.ext, p.Tags)
				}
			})
		}
	}
}

func TestPlayerRoutesTakeTheKeySchemeAndBasicOnlyWhenLegacyKeysAreAccepted(t *testing.T) {
	t.Parallel()
	requests := []struct{ method, path, body string }{
		{http.MethodPost, "/players", player(`"device_type":1,"identifier":"t"`)},
		{http.MethodPut, playerPath("dev-1"), player(`"tags":{"a":"1"}`)},
		{http.MethodGet, playerPath("dev-1") + "?app_id=" + appID, ""},
		{http.MethodGet, "/players?app_id=" + appID, ""},
		{http.MethodPut, tagsPath("ada"), `{"tags":{"a":"1"}}`},
	}
	for _, legacy := range []bool{false, true} {
		for _, auth := range []string{"Basic " + apiKey, "Key " + apiKey, "Key wrong", "Basic wrong", ""} {
			for _, rq := range requests {
				name := fmt.Sprintf("%s %s with %q, AcceptLegacyKeys %v", rq.method, strings.Split(rq.path, "?")[0], auth, legacy)
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					a := newAPIWith(t, func(c *emulator.Config) { c.AcceptLegacyKeys = legacy })
					a.emu.AddSubscription(emulator.Subscription{ID: "dev-1"})
					a.send(http.MethodPut, playerPath("dev-1"), player(`"external_user_id":"ada"`)).must(t, http.StatusOK)
					want := http.StatusOK
					if auth != "Key "+apiKey && (auth != "Basic "+apiKey || !legacy) {
						want = http.StatusForbidden
					}
					a.send(rq.method, rq.path, rq.body, "Authorization", auth).must(t, want)
				})
			}
		}
	}
}

func TestTheTwoModelsShareOneStore(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	id := playerID(t, a.send(http.MethodPost, "/players", player(`"device_type":1,"identifier":"tok","external_user_id":"ada","tags":{"a":"1"}`)).must(t, http.StatusOK))
	// The user model sees the player's user and its tags …
	r := a.send(http.MethodGet, userPath("external_id", "ada"), "").must(t, http.StatusOK)
	if !strings.Contains(r.body, `"tags":{"a":"1"}`) || !strings.Contains(r.body, `"id":"`+id+`","type":"AndroidPush","token":"tok"`) {
		t.Errorf("user = %s, want the tags and the device", r.body)
	}
	// … and the player model sees what the user model does.
	a.send(http.MethodPatch, userPath("external_id", "ada"), `{"properties":{"tags":{"b":"2"}}}`).must(t, http.StatusAccepted)
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"bob"}}`).must(t, http.StatusCreated)
	a.send(http.MethodPatch, ownerPath(id), `{"identity":{"external_id":"bob"}}`).must(t, http.StatusOK)
	r = a.send(http.MethodGet, playerPath(id)+"?app_id="+appID, "").must(t, http.StatusOK)
	if !strings.Contains(r.body, `"tags":{},"external_user_id":"bob"`) {
		t.Errorf("player = %s, want bob's (no) tags", r.body)
	}
}
