package emulator_test

import (
	"fmt"
	"net/http"
	"reflect"
	"sync"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
)

const (
	badBody            = `{"errors":["app_id not found. You may be missing a Content-Type: application/json header."]}`
	userNotFound       = `{"errors":[{"title":"User not found"}]}`
	subscriptionNotFnd = `{"errors":[{"title":"Subscription not found"}]}`
)

func TestErrorBodies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		method  string
		path    string
		body    string
		headers []string
		status  int
		want    string
	}{
		{
			name: "a write without a content type", method: http.MethodPost, path: usersPath,
			body: `{"identity":{"external_id":"a"}}`, headers: []string{"Content-Type", ""},
			status: http.StatusBadRequest, want: badBody,
		},
		{
			name: "a write declared as form data", method: http.MethodPatch, path: userPath("external_id", "alice"),
			body: `{}`, headers: []string{"Content-Type", "application/x-www-form-urlencoded"},
			status: http.StatusBadRequest, want: badBody,
		},
		{
			name: "a body that is not JSON", method: http.MethodPost, path: usersPath,
			body: `identity=alice`, status: http.StatusBadRequest, want: badBody,
		},
		{
			name: "an empty body", method: http.MethodPatch, path: ownerPath("dev-1"),
			headers: []string{"Content-Type", "application/json; charset=utf-8"},
			status:  http.StatusBadRequest, want: badBody,
		},
		{
			name: "a tag that is a number", method: http.MethodPost, path: usersPath,
			body:   `{"identity":{"external_id":"a"},"properties":{"tags":{"n":1}}}`,
			status: http.StatusBadRequest,
			want:   `{"errors":["Invalid value for properties.tags: expected string, got JSON number."]}`,
		},
		{
			name: "an unknown user", method: http.MethodGet, path: userPath("external_id", "nobody"),
			status: http.StatusNotFound, want: userNotFound,
		},
		{
			name: "an update of an unknown user", method: http.MethodPatch, path: userPath("external_id", "nobody"),
			body: `{"properties":{"tags":{"a":"1"}}}`, status: http.StatusNotFound, want: userNotFound,
		},
		{
			name: "a transfer of an unknown subscription", method: http.MethodPatch, path: ownerPath("nope"),
			body: `{"identity":{"external_id":"alice"}}`, status: http.StatusNotFound, want: subscriptionNotFnd,
		},
		{
			name: "a transfer to an unknown user", method: http.MethodPatch, path: ownerPath("dev-1"),
			body: `{"identity":{"external_id":"nobody"}}`, status: http.StatusNotFound, want: userNotFound,
		},
		{
			name: "a transfer naming two aliases", method: http.MethodPatch, path: ownerPath("dev-1"),
			body:   `{"identity":{"external_id":"alice","onesignal_id":"x"}}`,
			status: http.StatusBadRequest, want: `{"errors":["identity must have exactly one property."]}`,
		},
		{
			name: "a transfer naming no alias", method: http.MethodPatch, path: ownerPath("dev-1"),
			body: `{"identity":{}}`, status: http.StatusBadRequest, want: `{"errors":["identity must have exactly one property."]}`,
		},
		{
			name: "a create moving an unknown subscription", method: http.MethodPost, path: usersPath,
			body: `{"identity":{},"subscriptions":[{"id":"nope"}]}`, status: http.StatusNotFound, want: subscriptionNotFnd,
		},
		{
			name: "a create with a subscription of no known type", method: http.MethodPost, path: usersPath,
			body:   `{"subscriptions":[{"type":"Pager","token":"t"}]}`,
			status: http.StatusBadRequest, want: `{"errors":["subscriptions[0]: \"Pager\" is not a subscription type."]}`,
		},
		{
			name: "a create that chooses its onesignal_id", method: http.MethodPost, path: usersPath,
			body:   `{"identity":{"onesignal_id":"mine"}}`,
			status: http.StatusBadRequest, want: `{"errors":["onesignal_id is assigned by OneSignal and cannot be chosen."]}`,
		},
		{
			name: "an unknown route", method: http.MethodGet, path: "/apps/" + appID + "/players",
			status: http.StatusNotFound, want: `{"errors":["Not Found"]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := newAPI(t)
			a.emu.AddSubscription(emulator.Subscription{ID: "dev-1"})
			r := a.send(tt.method, tt.path, tt.body, tt.headers...).must(t, tt.status)
			if r.body != tt.want {
				t.Errorf("body = %s\nwant   %s", r.body, tt.want)
			}
			if got := a.emu.State(); len(got.Users) != 1 || len(got.Subscriptions) != 1 {
				t.Errorf("a refused request changed the state: %+v", got)
			}
		})
	}
}

func TestCreateUserAnswersWithTheCreatedUser(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	r := a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"alice"},"properties":{"tags":{"plan":"pro","gone":"","nulled":null}},"subscriptions":[{"type":"Email","token":"a@example.com"}]}`).
		must(t, http.StatusCreated)
	id := onesignalID(t, r)
	st := a.emu.State()
	if len(st.Subscriptions) != 1 {
		t.Fatalf("subscriptions = %+v, want the new email", st.Subscriptions)
	}
	sub := st.Subscriptions[0]
	want := map[string]any{
		"properties":    map[string]any{"tags": map[string]any{"plan": "pro"}},
		"identity":      map[string]any{"external_id": "alice", "onesignal_id": id},
		"subscriptions": []any{map[string]any{"id": sub.ID, "type": "Email", "token": "a@example.com"}},
	}
	if got := r.json(t); !reflect.DeepEqual(got, want) {
		t.Errorf("body = %v\nwant   %v", got, want)
	}
	if sub.OneSignalID != id {
		t.Errorf("the email belongs to %s, want %s", sub.OneSignalID, id)
	}
}

func TestCreateUserIsAnUpsertWithRetrieval(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.emu.AddSubscription(emulator.Subscription{ID: "dev-1"})
	first := a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"alice"},"properties":{"tags":{"plan":"free"}}}`).must(t, http.StatusCreated)
	again := a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"alice","custom":"c1"},"properties":{"tags":{"plan":"pro"}},"subscriptions":[{"id":"dev-1"}]}`).
		must(t, http.StatusOK)
	if !reflect.DeepEqual(first.json(t), again.json(t)) {
		t.Errorf("second create = %s, want the existing user unchanged: %s", again.body, first.body)
	}
	st := a.emu.State()
	alice, _ := st.UserByExternalID("alice")
	if alice.Tags["plan"] != "free" || alice.Identity["custom"] != "" || st.ExternalIDOf("dev-1") != "" {
		t.Errorf("the retrieval applied something: alice = %+v, dev-1 owned by %q", alice, st.ExternalIDOf("dev-1"))
	}
}

func TestCreateUserRefusesAliasesOfTwoUsers(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"alice"}}`).must(t, http.StatusCreated)
	a.send(http.MethodPost, usersPath, `{"identity":{"crm":"42"}}`).must(t, http.StatusCreated)
	r := a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"alice","crm":"42"}}`).must(t, http.StatusConflict)
	want := map[string]any{"errors": []any{map[string]any{
		"title": "The aliases belong to different users",
		"meta":  map[string]any{"conflicting_aliases": map[string]any{"external_id": "alice", "crm": "42"}},
	}}}
	if got := r.json(t); !reflect.DeepEqual(got, want) {
		t.Errorf("body = %v\nwant   %v", got, want)
	}
}

func TestUpdateUserMergesTags(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"alice"},"properties":{"tags":{"a":"1","b":"2","c":"3"}}}`).must(t, http.StatusCreated)
	r := a.send(http.MethodPatch, userPath("external_id", "alice"), `{"properties":{"tags":{"a":"10","b":"","c":null,"d":"4"},"language":"nb"}}`).
		must(t, http.StatusAccepted)
	if want := `{"properties":{"language":"nb","tags":{"a":"10","b":"","c":null,"d":"4"}}}`; r.body != want {
		t.Errorf("body = %s, want %s", r.body, want)
	}
	alice, _ := a.emu.State().UserByExternalID("alice")
	if want := map[string]string{"a": "10", "d": "4"}; !reflect.DeepEqual(alice.Tags, want) {
		t.Errorf("tags = %v, want %v", alice.Tags, want)
	}
	// By onesignal_id, and with a slash in a custom alias.
	id := alice.OneSignalID
	a.send(http.MethodPatch, userPath("onesignal_id", id), `{"properties":{"tags":{"e":"5"}}}`).must(t, http.StatusAccepted)
	a.send(http.MethodGet, userPath("onesignal_id", id), "").must(t, http.StatusOK)
}

func TestAnAliasWithASlashIsOneSegment(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"team/a b"}}`).must(t, http.StatusCreated)
	a.send(http.MethodGet, userPath("external_id", "team%2Fa%20b"), "").must(t, http.StatusOK)
}

func TestTransferSubscription(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// setup runs before the transfer of dev-1 to alice.
		setup     func(a *api)
		to        string // the identity body
		wantUsers int    // after the transfer
		wantGone  bool   // the owner dev-1 had before the transfer no longer exists
	}{
		{
			name:      "deletes the anonymous owner it empties",
			to:        `{"identity":{"external_id":"alice"}}`,
			wantUsers: 1, wantGone: true,
		},
		{
			name: "keeps an anonymous owner that still has a subscription",
			setup: func(a *api) {
				owner := a.emu.State().Subscriptions[0].OneSignalID
				a.send(http.MethodPost, usersPath, `{"identity":{"onesignal_id":"`+owner+`"}}`).must(t, http.StatusOK)
				a.emu.AddSubscription(emulator.Subscription{ID: "dev-2"})
				a.send(http.MethodPatch, ownerPath("dev-2"), `{"identity":{"onesignal_id":"`+owner+`"}}`).must(t, http.StatusOK)
			},
			to:        `{"identity":{"external_id":"alice"}}`,
			wantUsers: 2, wantGone: false,
		},
		{
			name: "keeps an owner that has an alias",
			setup: func(a *api) {
				a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"bob"}}`).must(t, http.StatusCreated)
				a.send(http.MethodPatch, ownerPath("dev-1"), `{"identity":{"external_id":"bob"}}`).must(t, http.StatusOK)
			},
			to:        `{"identity":{"external_id":"alice"}}`,
			wantUsers: 2, wantGone: false,
		},
		{
			name:      "finds the new owner by a custom alias",
			to:        `{"identity":{"crm":"42"}}`,
			wantUsers: 1, wantGone: true,
		},
		{
			name: "changes nothing when the owner is the same",
			setup: func(a *api) {
				a.send(http.MethodPatch, ownerPath("dev-1"), `{"identity":{"external_id":"alice"}}`).must(t, http.StatusOK)
			},
			to:        `{"identity":{"external_id":"alice"}}`,
			wantUsers: 1, wantGone: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := newAPI(t)
			a.emu.AddSubscription(emulator.Subscription{ID: "dev-1"})
			alice := onesignalID(t, a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"alice","crm":"42"}}`).must(t, http.StatusCreated))
			if tt.setup != nil {
				tt.setup(a)
			}
			var before string
			for _, sub := range a.emu.State().Subscriptions {
				if sub.ID == "dev-1" {
					before = sub.OneSignalID
				}
			}
			r := a.send(http.MethodPatch, ownerPath("dev-1"), tt.to).must(t, http.StatusOK)
			want := map[string]any{"identity": map[string]any{"external_id": "alice", "crm": "42", "onesignal_id": alice}}
			if got := r.json(t); !reflect.DeepEqual(got, want) {
				t.Errorf("body = %v, want %v", got, want)
			}
			st := a.emu.State()
			if st.ExternalIDOf("dev-1") != "alice" {
				t.Errorf("dev-1 belongs to %q, want alice", st.ExternalIDOf("dev-1"))
			}
			if len(st.Users) != tt.wantUsers {
				t.Errorf("%d users, want %d: %+v", len(st.Users), tt.wantUsers, st.Users)
			}
			gone := true
			for _, u := range st.Users {
				if u.OneSignalID == before {
					gone = false
				}
			}
			if gone != tt.wantGone {
				t.Errorf("previous owner gone = %v, want %v", gone, tt.wantGone)
			}
		})
	}
}

func TestCreateUserTakesOverSubscriptions(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.emu.AddSubscription(emulator.Subscription{ID: "dev-1", Type: "iOSPush", Token: "tok-1"})
	a.emu.AddSubscription(emulator.Subscription{ID: "dev-2", Type: "AndroidPush", Token: "tok-2"})
	r := a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"alice"},"subscriptions":[{"id":"dev-1"},{"type":"AndroidPush","token":"tok-2"}]}`).
		must(t, http.StatusCreated)
	st := a.emu.State()
	alice, _ := st.UserByExternalID("alice")
	if alice.OneSignalID != onesignalID(t, r) || !reflect.DeepEqual(alice.Subscriptions, []string{"dev-1", "dev-2"}) {
		t.Errorf("alice = %+v, want both devices", alice)
	}
	if len(st.Users) != 1 {
		t.Errorf("users = %+v, want the emptied anonymous owners deleted", st.Users)
	}
}

func TestConcurrentCreatesOfOneUserMakeOneUser(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	var wg sync.WaitGroup
	statuses := make(chan int, 20)
	for i := range 20 {
		wg.Go(func() {
			r := a.send(http.MethodPost, usersPath, fmt.Sprintf(`{"identity":{"external_id":"alice"},"properties":{"tags":{"n":"%d"}}}`, i))
			statuses <- r.status
		})
	}
	wg.Wait()
	close(statuses)
	created := 0
	for s := range statuses {
		if s == http.StatusCreated {
			created++
		} else if s != http.StatusOK {
			t.Errorf("status %d, want 200 or 201", s)
		}
	}
	if created != 1 || len(a.emu.State().Users) != 1 {
		t.Errorf("%d creates answered 201 and %d users exist, want 1 and 1", created, len(a.emu.State().Users))
	}
}
