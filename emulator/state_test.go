package emulator_test

import (
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
)

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestStateDumpMatchesState(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.emu.AddSubscription(emulator.Subscription{ID: "dev-b", Type: "iOSPush", Token: "tok"})
	a.emu.AddSubscription(emulator.Subscription{ID: "dev-a"})
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"alice"},"properties":{"tags":{"plan":"pro"}},"subscriptions":[{"id":"dev-b"}]}`).
		must(t, http.StatusCreated)

	var dumped emulator.State
	r := a.send(http.MethodGet, "/emulator/state", "").must(t, http.StatusOK)
	if err := json.Unmarshal([]byte(r.body), &dumped); err != nil {
		t.Fatal(err)
	}
	st := a.emu.State()
	if !reflect.DeepEqual(dumped, st) {
		t.Errorf("dump = %+v\nState = %+v", dumped, st)
	}
	if len(st.Users) != 2 || st.Users[0].OneSignalID > st.Users[1].OneSignalID {
		t.Errorf("users = %+v, want two, sorted by onesignal_id", st.Users)
	}
	wantSubs := []emulator.Subscription{
		{ID: "dev-a", Type: "AndroidPush", Token: "dev-a", OneSignalID: st.Subscriptions[0].OneSignalID},
		{ID: "dev-b", Type: "iOSPush", Token: "tok", OneSignalID: st.Subscriptions[1].OneSignalID},
	}
	if !reflect.DeepEqual(st.Subscriptions, wantSubs) {
		t.Errorf("subscriptions = %+v, want %+v", st.Subscriptions, wantSubs)
	}
	for _, u := range st.Users {
		if !uuidPattern.MatchString(u.OneSignalID) || u.Identity["onesignal_id"] != u.OneSignalID {
			t.Errorf("user %+v: want a v4 UUID as onesignal_id, in identity too", u)
		}
	}
	if st.ExternalIDOf("dev-b") != "alice" || st.ExternalIDOf("dev-a") != "" || st.ExternalIDOf("nope") != "" {
		t.Errorf("ExternalIDOf gets the owners wrong: %+v", st)
	}
}

func TestAnEmptyStateDumpsAsEmptyLists(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	if r := a.send(http.MethodGet, "/emulator/state", "").must(t, http.StatusOK); r.body != `{"users":[],"subscriptions":[]}` {
		t.Errorf("body = %s", r.body)
	}
}

func TestStateIsACopy(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.emu.AddSubscription(emulator.Subscription{ID: "dev-1"})
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"alice"},"properties":{"tags":{"plan":"pro"}}}`).must(t, http.StatusCreated)
	st := a.emu.State()
	for _, u := range st.Users {
		u.Tags["plan"] = "hacked"
		u.Identity["external_id"] = "mallory"
		for i := range u.Subscriptions {
			u.Subscriptions[i] = "hacked"
		}
	}
	st.Subscriptions[0].ID = "hacked"
	again := a.emu.State()
	if alice, ok := again.UserByExternalID("alice"); !ok || alice.Tags["plan"] != "pro" || again.Subscriptions[0].ID != "dev-1" {
		t.Errorf("changing a State changed the emulator: %+v", again)
	}
}

func TestSeedingSubscriptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		body   string
		status int
		want   emulator.Subscription // OneSignalID is not compared
	}{
		{
			name: "fills in type and token", body: `{"id":"dev-1"}`, status: http.StatusCreated,
			want: emulator.Subscription{ID: "dev-1", Type: "AndroidPush", Token: "dev-1"},
		},
		{
			name: "keeps a given type and token", body: `{"id":"dev-1","type":"Email","token":"a@example.com"}`, status: http.StatusCreated,
			want: emulator.Subscription{ID: "dev-1", Type: "Email", Token: "a@example.com"},
		},
		{name: "requires an id", body: `{"type":"Email"}`, status: http.StatusBadRequest},
		{name: "refuses an unknown type", body: `{"id":"dev-1","type":"Pager"}`, status: http.StatusBadRequest},
		{name: "refuses a body that is not JSON", body: `dev-1`, status: http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := newAPI(t)
			r := a.send(http.MethodPost, "/emulator/subscriptions", tt.body).must(t, tt.status)
			if tt.status != http.StatusCreated {
				if st := a.emu.State(); len(st.Users)+len(st.Subscriptions) != 0 {
					t.Errorf("a refused seed changed the state: %+v", st)
				}
				return
			}
			var got emulator.Subscription
			if err := json.Unmarshal([]byte(r.body), &got); err != nil {
				t.Fatal(err)
			}
			owner := got.OneSignalID
			got.OneSignalID = ""
			if got != tt.want {
				t.Errorf("seeded %+v, want %+v", got, tt.want)
			}
			st := a.emu.State()
			if len(st.Users) != 1 || st.Users[0].OneSignalID != owner || len(st.Users[0].Identity) != 1 {
				t.Errorf("users = %+v, want one anonymous owner %s", st.Users, owner)
			}
			// Seeding again is a no-op that names the same owner.
			again := a.send(http.MethodPost, "/emulator/subscriptions", tt.body).must(t, http.StatusOK)
			if !strings.Contains(again.body, owner) || len(a.emu.State().Users) != 1 {
				t.Errorf("second seed = %s, state %+v; want no change", again.body, a.emu.State())
			}
		})
	}
}

func TestAddSubscriptionMakesUpAnEmptyID(t *testing.T) {
	t.Parallel()
	emu := emulator.New(emulator.Config{AppID: appID, APIKey: apiKey})
	owner := emu.AddSubscription(emulator.Subscription{})
	st := emu.State()
	if len(st.Subscriptions) != 1 || !uuidPattern.MatchString(st.Subscriptions[0].ID) || st.Subscriptions[0].OneSignalID != owner {
		t.Errorf("state = %+v, want one subscription with a UUID, owned by %s", st, owner)
	}
}

func TestResetForgetsEverything(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.emu.AddSubscription(emulator.Subscription{ID: "dev-1"})
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"alice"}}`).must(t, http.StatusCreated)
	a.send(http.MethodPost, "/emulator/reset", "").must(t, http.StatusNoContent)
	if st := a.emu.State(); len(st.Users)+len(st.Subscriptions) != 0 {
		t.Errorf("state after reset = %+v", st)
	}
	a.send(http.MethodGet, userPath("external_id", "alice"), "").must(t, http.StatusNotFound)
}

func TestStartServesOnARealAddress(t *testing.T) {
	t.Parallel()
	if _, err := emulator.Start(emulator.Config{AppID: appID}, ""); err == nil || !strings.Contains(err.Error(), "APIKey is empty") {
		t.Errorf("Start without a key = %v, want an error naming APIKey", err)
	}
	srv, err := emulator.Start(emulator.Config{AppID: appID, APIKey: apiKey}, "")
	if err != nil {
		t.Fatal(err)
	}
	srv.Emulator().AddSubscription(emulator.Subscription{ID: "dev-1"})
	resp, err := http.Get(srv.URL() + "/emulator/state")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"dev-1"`) {
		t.Errorf("state = %s, want dev-1", body)
	}
	if err := srv.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if _, err := http.Get(srv.URL() + "/emulator/state"); err == nil {
		t.Error("the server still answers after Close")
	}
}

func TestANewEmulatorWithoutAKeyDeniesEverything(t *testing.T) {
	t.Parallel()
	emu := emulator.New(emulator.Config{AppID: appID})
	req, _ := http.NewRequest(http.MethodGet, userPath("external_id", "alice"), nil)
	req.Header.Set("Authorization", "Key ")
	rec := httptestRecorder(emu.Handler(), req)
	if rec != http.StatusForbidden {
		t.Errorf("status = %d, want 403", rec)
	}
}
