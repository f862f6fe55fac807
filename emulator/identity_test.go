package emulator_test

import (
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
)

func identityPath(label, id string) string { return userPath(label, url.PathEscape(id)) + "/identity" }

// identityOf reads the identity of a body, onesignal_id left out.
func identityOf(t *testing.T, r reply) map[string]any {
	t.Helper()
	id, _ := r.json(t).(map[string]any)["identity"].(map[string]any)
	delete(id, "onesignal_id")
	return id
}

// aliases builds an identity of n custom aliases, a0…, besides extra.
func aliases(n int, extra string) string {
	parts := []string{}
	if extra != "" {
		parts = append(parts, extra)
	}
	for i := range n {
		parts = append(parts, fmt.Sprintf(`"a%d":"v%d"`, i, i))
	}
	return `{"identity":{` + strings.Join(parts, ",") + `}}`
}

func TestCreateUserWithSeveralAliases(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"ada","crm_id":"c/42","shop":"ü?%"}}`).must(t, http.StatusCreated)
	for _, by := range [][2]string{{"external_id", "ada"}, {"crm_id", "c/42"}, {"shop", "ü?%"}} {
		r := a.send(http.MethodGet, identityPath(by[0], by[1]), "").must(t, http.StatusOK)
		want := map[string]any{"external_id": "ada", "crm_id": "c/42", "shop": "ü?%"}
		if got := identityOf(t, r); !reflect.DeepEqual(got, want) {
			t.Errorf("identity by %s = %v, want %v", by[0], got, want)
		}
	}
}

func TestUpdateIdentityAddsAndChangesAliases(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"ada/1","crm_id":"old"}}`).must(t, http.StatusCreated)
	r := a.send(http.MethodPatch, identityPath("external_id", "ada/1"), `{"identity":{"crm_id":"new","shop":"Ωmega 7"}}`).must(t, http.StatusOK)
	want := map[string]any{"external_id": "ada/1", "crm_id": "new", "shop": "Ωmega 7"}
	if got := identityOf(t, r); !reflect.DeepEqual(got, want) {
		t.Errorf("answer identity = %v, want %v", got, want)
	}
	a.send(http.MethodGet, identityPath("crm_id", "old"), "").must(t, http.StatusNotFound)
	ada, _ := a.emu.State().UserByExternalID("ada/1")
	if ada.Identity["crm_id"] != "new" || ada.Identity["shop"] != "Ωmega 7" {
		t.Errorf("state identity = %v", ada.Identity)
	}
	// Setting an alias the user has already changes nothing.
	a.send(http.MethodPatch, identityPath("shop", "Ωmega 7"), `{"identity":{"crm_id":"new"}}`).must(t, http.StatusOK)
	a.send(http.MethodPatch, identityPath("external_id", "nobody"), `{"identity":{"crm_id":"x"}}`).must(t, http.StatusNotFound)
}

func TestUpdateIdentityRefusesAnAliasOfAnotherUserAndAppliesNothing(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"ada"}}`).must(t, http.StatusCreated)
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"bob","crm_id":"7"}}`).must(t, http.StatusCreated)
	r := a.send(http.MethodPatch, identityPath("external_id", "ada"), `{"identity":{"crm_id":"7","shop":"s"}}`).must(t, http.StatusConflict)
	want := map[string]any{"errors": []any{map[string]any{
		"title": "The aliases belong to another user",
		"meta":  map[string]any{"conflicting_aliases": map[string]any{"crm_id": "7"}},
	}}}
	if got := r.json(t); !reflect.DeepEqual(got, want) {
		t.Errorf("body = %v, want %v", got, want)
	}
	if ada, _ := a.emu.State().UserByExternalID("ada"); len(ada.Identity) != 2 {
		t.Errorf("ada's identity = %v, want only external_id and onesignal_id", ada.Identity)
	}
	// external_id too is an alias another user may have.
	a.send(http.MethodPatch, identityPath("external_id", "ada"), `{"identity":{"external_id":"bob"}}`).must(t, http.StatusConflict)
}

func TestDeleteAlias(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.emu.AddSubscription(emulator.Subscription{ID: "dev-1"})
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"ada","crm_id":"c/1"},"subscriptions":[{"id":"dev-1"}]}`).must(t, http.StatusCreated)
	r := a.send(http.MethodDelete, identityPath("crm_id", "c/1")+"/crm_id", "").must(t, http.StatusOK)
	if got, want := identityOf(t, r), map[string]any{"external_id": "ada"}; !reflect.DeepEqual(got, want) {
		t.Errorf("identity after the delete = %v, want %v", got, want)
	}
	// A label the user does not have: the same answer, nothing changes.
	a.send(http.MethodDelete, identityPath("external_id", "ada")+"/crm_id", "").must(t, http.StatusOK)
	r = a.send(http.MethodDelete, identityPath("external_id", "ada")+"/onesignal_id", "").must(t, http.StatusBadRequest)
	if r.body != `{"errors":["onesignal_id cannot be deleted."]}` {
		t.Errorf("body = %s", r.body)
	}
	// The last alias but onesignal_id: the user stays, with its device.
	a.send(http.MethodDelete, identityPath("external_id", "ada")+"/external_id", "").must(t, http.StatusOK)
	st := a.emu.State()
	if owner := ownerOf(t, st, "dev-1"); len(owner.Identity) != 1 {
		t.Errorf("owner of dev-1 = %+v, want it there with onesignal_id only", owner)
	}
	a.send(http.MethodDelete, identityPath("external_id", "ada")+"/crm_id", "").must(t, http.StatusNotFound)
}

func TestAliasLimits(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 129)
	max := strings.Repeat("é", 128)
	tooMany := "A user can have at most 20 aliases besides onesignal_id and external_id; this would give it 21."
	tests := []struct {
		name   string
		create string // the user's create body; "" for none
		method string
		path   string
		body   string
		status int
		want   string
	}{
		{name: "20 custom aliases at creation", method: http.MethodPost, path: usersPath,
			body: aliases(20, `"external_id":"ada"`), status: http.StatusCreated},
		{name: "21 custom aliases at creation", method: http.MethodPost, path: usersPath,
			body: aliases(21, `"external_id":"ada"`), status: http.StatusBadRequest, want: tooMany},
		{name: "a 21st custom alias by update", create: aliases(20, `"external_id":"ada"`),
			method: http.MethodPatch, path: identityPath("external_id", "ada"), body: `{"identity":{"one_more":"x"}}`,
			status: http.StatusBadRequest, want: tooMany},
		{name: "a changed alias at 20", create: aliases(20, `"external_id":"ada"`),
			method: http.MethodPatch, path: identityPath("external_id", "ada"), body: `{"identity":{"a3":"changed"}}`,
			status: http.StatusOK},
		{name: "a label and an id of 128 characters", method: http.MethodPost, path: usersPath,
			body: `{"identity":{"external_id":"ada","` + max + `":"` + max + `"}}`, status: http.StatusCreated},
		{name: "a label of 129 characters", method: http.MethodPost, path: usersPath,
			body: `{"identity":{"external_id":"ada","` + long + `":"x"}}`, status: http.StatusBadRequest,
			want: `Alias label "` + strings.Repeat("é", 40) + `"… is longer than 128 characters.`},
		{name: "an id of 129 characters by update", create: `{"identity":{"external_id":"ada"}}`,
			method: http.MethodPatch, path: identityPath("external_id", "ada"), body: `{"identity":{"crm_id":"` + long + `"}}`,
			status: http.StatusBadRequest, want: `The id of alias "crm_id" is longer than 128 characters.`},
		{name: "an empty id by update", create: `{"identity":{"external_id":"ada"}}`,
			method: http.MethodPatch, path: identityPath("external_id", "ada"), body: `{"identity":{"crm_id":""}}`,
			status: http.StatusBadRequest, want: "Alias labels and alias ids must not be empty."},
		{name: "onesignal_id by update", create: `{"identity":{"external_id":"ada"}}`,
			method: http.MethodPatch, path: identityPath("external_id", "ada"), body: `{"identity":{"onesignal_id":"x"}}`,
			status: http.StatusBadRequest, want: "onesignal_id is assigned by OneSignal and cannot be chosen."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := newAPI(t)
			if tt.create != "" {
				a.send(http.MethodPost, usersPath, tt.create).must(t, http.StatusCreated)
			}
			before := a.emu.State()
			r := a.send(tt.method, tt.path, tt.body).must(t, tt.status)
			if tt.want == "" {
				return
			}
			if got, want := r.json(t), map[string]any{"errors": []any{tt.want}}; !reflect.DeepEqual(got, want) {
				t.Errorf("body = %v, want %v", got, want)
			}
			if after := a.emu.State(); !reflect.DeepEqual(after, before) {
				t.Errorf("a refused request changed the state: %+v", after)
			}
		})
	}
}

func TestDeleteUserRemovesItsAliasesPropertiesAndSubscriptions(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.emu.AddSubscription(emulator.Subscription{ID: "dev-1", Token: "tok-1"})
	a.emu.AddSubscription(emulator.Subscription{ID: "dev-keep"})
	ext := "team/ada ?%ü"
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"`+ext+`","crm_id":"c1"},"properties":{"tags":{"a":"1"},"language":"de"},`+
		`"subscriptions":[{"id":"dev-1"},{"type":"Email","token":"ada@example.com"}]}`).must(t, http.StatusCreated)

	r := a.send(http.MethodDelete, userPath("external_id", url.PathEscape(ext)), "").must(t, http.StatusOK)
	if r.body != "{}" {
		t.Errorf("body = %s, want {}", r.body)
	}
	st := a.emu.State()
	if len(st.Users) != 1 || len(st.Subscriptions) != 1 || st.Subscriptions[0].ID != "dev-keep" {
		t.Errorf("state = %+v, want only dev-keep and its anonymous user", st)
	}
	a.send(http.MethodGet, identityPath("crm_id", "c1"), "").must(t, http.StatusNotFound)
	a.send(http.MethodGet, playerPath("dev-1")+"?app_id="+appID, "").must(t, http.StatusNotFound)
	a.send(http.MethodDelete, userPath("external_id", url.PathEscape(ext)), "").must(t, http.StatusNotFound)

	// The addresses are free again: a new user gets new subscriptions.
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"`+ext+`"},"subscriptions":[{"type":"Email","token":"ada@example.com"}]}`).
		must(t, http.StatusCreated)
	if ada, _ := a.emu.State().UserByExternalID(ext); len(ada.Tags) != 0 || ada.Language != "" || len(ada.Subscriptions) != 1 {
		t.Errorf("the user created again = %+v, want a new one with nothing of the old", ada)
	}
}

func TestDeleteUserWithADelayLeavesTheUserThereUntilItGoes(t *testing.T) {
	t.Parallel()
	clk := newClock()
	a := newAPIWith(t, func(c *emulator.Config) {
		c.DeleteDelay = 2 * time.Second
		c.Clock = clk.Now
	})
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"ada"},"properties":{"tags":{"a":"1"}}}`).must(t, http.StatusCreated)
	a.send(http.MethodDelete, userPath("external_id", "ada"), "").must(t, http.StatusOK)

	if ada, ok := a.emu.State().UserByExternalID("ada"); !ok || !ada.Deleting {
		t.Fatalf("ada = %+v, %v; want her there, marked deleting", ada, ok)
	}
	// Meanwhile a create finds her, and a write lands on her.
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"ada"},"properties":{"tags":{"b":"2"}}}`).must(t, http.StatusOK)
	a.send(http.MethodPatch, userPath("external_id", "ada"), `{"properties":{"tags":{"c":"3"}}}`).must(t, http.StatusAccepted)
	clk.Advance(time.Second)
	a.send(http.MethodDelete, userPath("external_id", "ada"), "").must(t, http.StatusOK) // keeps the time she goes
	clk.Advance(time.Second)

	if _, ok := a.emu.State().UserByExternalID("ada"); ok {
		t.Fatal("ada is still there after the delay")
	}
	a.send(http.MethodGet, userPath("external_id", "ada"), "").must(t, http.StatusNotFound)
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"ada"}}`).must(t, http.StatusCreated)
}

func TestAliasWritesAndDeletesAreWritesToTheUser(t *testing.T) {
	t.Parallel()
	a, clk := newLimitedAPI(t, emulator.RateLimits{})
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"ada"}}`).must(t, http.StatusCreated)
	a.send(http.MethodPatch, identityPath("external_id", "ada"), `{"identity":{"crm_id":"1"}}`).must(t, http.StatusOK)
	mustBeRateLimited(t, a.send(http.MethodDelete, identityPath("external_id", "ada")+"/crm_id", ""), "1")
	clk.Advance(time.Second)
	a.send(http.MethodDelete, identityPath("external_id", "ada")+"/crm_id", "").must(t, http.StatusOK)
	mustBeRateLimited(t, a.send(http.MethodDelete, userPath("external_id", "ada"), ""), "1")
	clk.Advance(time.Second)
	a.send(http.MethodDelete, userPath("external_id", "ada"), "").must(t, http.StatusOK)
}
