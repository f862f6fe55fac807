package onesignal_test

import (
	"errors"
	"maps"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
)

// The ids of users, aliases and devices in these tests have what a path
// must escape, and more than ASCII.
const (
	oddExt   = "team/ä b?c%41#d"
	oddAlias = "crm/ü?%2F"
)

// limited is an emulator with OneSignal's rate limits on a clock that
// moves only when the test says, and a user-model client of it: a second
// write to a user within its second is a 429, which fails the test.
type limited struct {
	emu *emulator.Emulator
	c   *onesignal.Client
	mu  sync.Mutex
	now time.Time
}

func newLimited(t *testing.T, set func(*emulator.Config)) *limited {
	t.Helper()
	l := &limited{now: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	cfg := emulator.Config{AppID: appID, APIKey: apiKey, RateLimits: emulator.RateLimits{Enabled: true}, Clock: l.clock}
	if set != nil {
		set(&cfg)
	}
	emu, url := emulator.NewTestServer(t, cfg)
	l.emu, l.c = emu, newClient(t, url, apiKey)
	return l
}

func (l *limited) clock() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.now
}

func (l *limited) advance(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.now = l.now.Add(d)
}

// set makes the attempts SetUser asks for, as the sink does: it repeats an
// attempt that returns a *DeferredError once the wait it asks for has
// passed. It returns the attempts made.
func (l *limited) set(t *testing.T, ext string, w onesignal.UserWrite) int {
	t.Helper()
	for n := 1; n <= 10; n++ {
		err := l.c.SetUser(t.Context(), ext, w)
		deferred, ok := errors.AsType[*onesignal.DeferredError](err)
		if !ok {
			if err != nil {
				t.Fatalf("attempt %d: %v", n, err)
			}
			if rl := l.emu.Stats().RateLimited; rl != 0 {
				t.Errorf("the emulator answered 429 %d times, want none", rl)
			}
			return n
		}
		l.advance(deferred.RetryAfterDuration())
	}
	t.Fatal("SetUser still deferred after 10 attempts")
	return 0
}

// user returns the user with the external id.
func (l *limited) user(t *testing.T, ext string) emulator.User {
	t.Helper()
	u, ok := l.emu.State().UserByExternalID(ext)
	if !ok {
		t.Fatalf("no user %q", ext)
	}
	return u
}

// requests counts the requests the emulator served, by route.
func requests(emu *emulator.Emulator) map[string]int {
	n := map[string]int{}
	for route, byStatus := range emu.Stats().Requests {
		for _, c := range byStatus {
			n[route] += c
		}
	}
	return n
}

const (
	routeCreate      = "POST /apps/{app_id}/users"
	routeUpdate      = "PATCH /apps/{app_id}/users/by/{alias_label}/{alias_id}"
	routeIdentity    = "PATCH /apps/{app_id}/users/by/{alias_label}/{alias_id}/identity"
	routeDeleteAlias = "DELETE /apps/{app_id}/users/by/{alias_label}/{alias_id}/identity/{alias_label_to_delete}"
	routeDeleteUser  = "DELETE /apps/{app_id}/users/by/{alias_label}/{alias_id}"
)

func float(f float64) *float64 { return &f }

// customAliases is the identity of u but external_id and onesignal_id.
func customAliases(u emulator.User) map[string]string {
	m := maps.Clone(u.Identity)
	delete(m, "external_id")
	delete(m, "onesignal_id")
	return m
}

func TestSetUserCreatesANewUserWithTagsPropertiesAndAliasesInOneRequest(t *testing.T) {
	t.Parallel()
	l := newLimited(t, nil)
	w := onesignal.UserWrite{
		Tags: tags("plan", "pro", "gone", ""),
		Properties: map[string]string{"language": "de", "timezone_id": "Europe/Berlin", "country": "DE",
			"lat": "52.52", "long": "-13.405"},
		Aliases: map[string]string{"crm_id": oddAlias, "shop": "Ωmega", "old": ""},
		Create:  true,
	}
	if n := l.set(t, oddExt, w); n != 1 {
		t.Errorf("attempts = %d, want 1", n)
	}
	u := l.user(t, oddExt)
	want := emulator.User{Language: "de", TimezoneID: "Europe/Berlin", Country: "DE", Lat: float(52.52), Long: float(-13.405)}
	if got := (emulator.User{Language: u.Language, TimezoneID: u.TimezoneID, Country: u.Country, Lat: u.Lat, Long: u.Long}); !reflect.DeepEqual(got, want) {
		t.Errorf("properties = %+v, want %+v", got, want)
	}
	if !reflect.DeepEqual(u.Tags, tags("plan", "pro")) {
		t.Errorf("tags = %v, want plan=pro", u.Tags)
	}
	if got, want := customAliases(u), map[string]string{"crm_id": oddAlias, "shop": "Ωmega"}; !reflect.DeepEqual(got, want) {
		t.Errorf("aliases = %v, want %v", got, want)
	}
	if got := requests(l.emu); !reflect.DeepEqual(got, map[string]int{routeCreate: 1}) {
		t.Errorf("requests = %v, want one create user", got)
	}
}

func TestSetUserWritesTheAliasesOfAnExistingUserInTheNextAttemptAndOnlyWhenTheyChange(t *testing.T) {
	t.Parallel()
	l := newLimited(t, nil)
	l.emu.AddUser(oddExt, tags("plan", "free"))
	w := onesignal.UserWrite{Tags: tags("plan", "pro"), Properties: map[string]string{"country": "NO"},
		Aliases: map[string]string{"crm_id": oddAlias}, Create: true}

	// Create user finds her (200, nothing applied); then the update; then the aliases.
	if n := l.set(t, oddExt, w); n != 3 {
		t.Errorf("attempts = %d, want 3", n)
	}
	u := l.user(t, oddExt)
	if u.Tags["plan"] != "pro" || u.Country != "NO" || u.Identity["crm_id"] != oddAlias {
		t.Errorf("user = %+v, want plan=pro, country NO and crm_id", u)
	}
	want := map[string]int{routeCreate: 1, routeUpdate: 1, routeIdentity: 1}
	if got := requests(l.emu); !reflect.DeepEqual(got, want) {
		t.Errorf("requests = %v, want %v: the repeat does not send the update again", got, want)
	}

	// The same aliases again: one request. New ones: two attempts.
	l.advance(time.Second)
	w.Tags = tags("plan", "team")
	if n := l.set(t, oddExt, w); n != 1 {
		t.Errorf("attempts with the same aliases = %d, want 1", n)
	}
	l.advance(time.Second)
	w.Aliases = map[string]string{"crm_id": "c-2"}
	if n := l.set(t, oddExt, w); n != 2 {
		t.Errorf("attempts with a changed alias = %d, want 2", n)
	}
	if u := l.user(t, oddExt); u.Identity["crm_id"] != "c-2" || u.Tags["plan"] != "team" {
		t.Errorf("user = %+v, want crm_id c-2, plan team", u)
	}
}

func TestSetUserUpdatesAndClearsProperties(t *testing.T) {
	t.Parallel()
	l := newLimited(t, nil)
	l.set(t, oddExt, onesignal.UserWrite{Properties: map[string]string{"language": "de", "lat": "1.5", "long": "2", "country": "DE"}})
	l.advance(time.Second)
	l.set(t, oddExt, onesignal.UserWrite{Properties: map[string]string{"language": "", "lat": "", "timezone_id": "Asia/Kolkata"}})
	u := l.user(t, oddExt)
	got := emulator.User{Language: u.Language, TimezoneID: u.TimezoneID, Country: u.Country, Lat: u.Lat, Long: u.Long}
	if want := (emulator.User{TimezoneID: "Asia/Kolkata", Country: "DE", Long: float(2)}); !reflect.DeepEqual(got, want) {
		t.Errorf("properties = %+v, want %+v", got, want)
	}
}

func TestSetUserCreatesAMissingUserWithEverythingSetWhenItUpdates(t *testing.T) {
	t.Parallel()
	l := newLimited(t, nil)
	w := onesignal.UserWrite{Tags: tags("plan", "pro", "x", ""), Properties: map[string]string{"language": "fr", "country": ""},
		Aliases: map[string]string{"crm_id": "c/1", "gone": ""}}
	if n := l.set(t, oddExt, w); n != 1 {
		t.Errorf("attempts = %d, want 1", n)
	}
	u := l.user(t, oddExt)
	if u.Language != "fr" || !reflect.DeepEqual(u.Tags, tags("plan", "pro")) || !reflect.DeepEqual(customAliases(u), map[string]string{"crm_id": "c/1"}) {
		t.Errorf("user = %+v", u)
	}
	if got, want := requests(l.emu), map[string]int{routeUpdate: 1, routeCreate: 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("requests = %v, want %v", got, want)
	}

	// Nothing set, only deletions and clears: no user.
	l.set(t, "nobody", onesignal.UserWrite{Tags: tags("x", ""), Properties: map[string]string{"lat": ""}, Aliases: map[string]string{"a": ""}})
	if _, ok := l.emu.State().UserByExternalID("nobody"); ok {
		t.Error("a user was created for deletions only")
	}
}

func TestSetUserDeletesAliasesOneAttemptEach(t *testing.T) {
	t.Parallel()
	l := newLimited(t, nil)
	l.set(t, oddExt, onesignal.UserWrite{Aliases: map[string]string{"crm_id": "1", "shop/x": "2", "keep": "3"}, Create: true})
	l.advance(time.Second)
	if n := l.set(t, oddExt, onesignal.UserWrite{Aliases: map[string]string{"crm_id": "", "shop/x": "", "never": ""}}); n != 3 {
		t.Errorf("attempts = %d, want 3: one per alias deleted (one it never had included)", n)
	}
	if got, want := customAliases(l.user(t, oddExt)), map[string]string{"keep": "3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("aliases = %v, want %v", got, want)
	}
}

func TestSetUserRefusesAnAliasThatAnotherUserHasOnceItHasWaitedForIt(t *testing.T) {
	t.Parallel()
	l := newLimited(t, nil)
	onesignal.SetAliasConflictWait(l.c, 0) // waited already
	l.set(t, "bob", onesignal.UserWrite{Aliases: map[string]string{"crm_id": "7"}, Create: true})
	l.emu.AddUser("ada", nil)

	// An existing user: OneSignal's 409, permanent.
	l.advance(time.Second)
	err := l.c.SetUser(t.Context(), "ada", onesignal.UserWrite{Aliases: map[string]string{"crm_id": "7"}})
	if apiErr := requireAPIError(t, err, 409); apiErr.Retryable() || apiErr.Fatal() {
		t.Errorf("409 is retryable or fatal: %v", err)
	}
	// A new user: create user returns bob (upsert with retrieval by the
	// alias), which is not her. She is created without the alias, whose
	// own request is then refused for good.
	w := onesignal.UserWrite{Tags: tags("plan", "pro"), Aliases: map[string]string{"crm_id": "7"}, Create: true}
	for range 5 {
		l.advance(time.Second)
		err = l.c.SetUser(t.Context(), "eve", w)
		if _, deferred := errors.AsType[*onesignal.DeferredError](err); !deferred {
			break
		}
	}
	if apiErr := requireAPIError(t, err, 409); apiErr.Retryable() || !strings.Contains(err.Error(), "another user has held the alias") {
		t.Errorf("error = %v, want a permanent 409 saying another user holds the alias", err)
	}
	if eve := l.user(t, "eve"); !maps.Equal(eve.Tags, tags("plan", "pro")) || len(customAliases(eve)) != 0 {
		t.Errorf("eve = tags %v, aliases %v; want her tags without the alias", eve.Tags, customAliases(eve))
	}
	if bob := l.user(t, "bob"); len(bob.Tags) != 0 {
		t.Errorf("bob got eve's tags: %v", bob.Tags)
	}
}

// After an external-id change (bob becomes eve) the new user's write can
// come before the old one's that lets go of the alias: the new user is
// created with its tags, and its alias waits for bob to let it go.
func TestSetUserWaitsForAnotherUserToLetGoOfAnAlias(t *testing.T) {
	t.Parallel()
	l := newLimited(t, nil)
	l.set(t, "bob", onesignal.UserWrite{Tags: tags("plan", "pro"), Aliases: map[string]string{"crm_id": "7"}, Create: true})
	l.advance(time.Second)

	eve := onesignal.UserWrite{Tags: tags("plan", "pro"), Aliases: map[string]string{"crm_id": "7"}, Create: true}
	var waits int
	for ; waits < 5; waits++ {
		err := l.c.SetUser(t.Context(), "eve", eve)
		deferred, ok := errors.AsType[*onesignal.DeferredError](err)
		if !ok {
			t.Fatalf("attempt %d: %v, want a wait for bob to let go of crm_id", waits+1, err)
		}
		l.advance(deferred.RetryAfterDuration())
	}
	if got := l.user(t, "eve"); !maps.Equal(got.Tags, tags("plan", "pro")) || len(customAliases(got)) != 0 {
		t.Errorf("eve = tags %v, aliases %v; want her tags, without the alias bob holds", got.Tags, customAliases(got))
	}
	l.set(t, "bob", onesignal.UserWrite{Tags: map[string]string{"plan": ""}, Aliases: map[string]string{"crm_id": ""}})
	l.advance(time.Second)
	l.set(t, "eve", eve)
	if got, want := customAliases(l.user(t, "eve")), map[string]string{"crm_id": "7"}; !reflect.DeepEqual(got, want) {
		t.Errorf("eve's aliases = %v, want %v once bob let go", got, want)
	}
}

func TestSetUserRefusesWhatItCannotSendAndSendsNothing(t *testing.T) {
	t.Parallel()
	l := newLimited(t, nil)
	tests := []struct {
		name string
		ext  string
		w    onesignal.UserWrite
		want string
	}{
		{"an empty external id", "", onesignal.UserWrite{Tags: tags("a", "1")}, "the external ID is empty"},
		{"an unknown property", "ada", onesignal.UserWrite{Properties: map[string]string{"timezone": "3600"}},
			`property "timezone" is not one OneSignal's user model takes: use language, timezone_id, country, lat, long`},
		{"a lat that is no number", "ada", onesignal.UserWrite{Properties: map[string]string{"lat": "north"}}, "property lat is not a decimal number"},
		{"a long that is infinite", "ada", onesignal.UserWrite{Properties: map[string]string{"long": "Inf"}}, "property long is not a decimal number"},
		{"external_id as an alias", "ada", onesignal.UserWrite{Aliases: map[string]string{"external_id": "x"}}, "alias external_id is the user's external ID"},
		{"onesignal_id as an alias", "ada", onesignal.UserWrite{Aliases: map[string]string{"onesignal_id": "x"}}, "alias onesignal_id is OneSignal's to assign"},
		{"an empty alias label", "ada", onesignal.UserWrite{Aliases: map[string]string{"": "x"}}, "an alias label is empty"},
	}
	for _, tt := range tests {
		err := l.c.SetUser(t.Context(), tt.ext, tt.w)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error = %v, want it to say %q", tt.name, err, tt.want)
		}
	}
	if got := requests(l.emu); len(got) != 0 {
		t.Errorf("requests = %v, want none", got)
	}
}

func TestSetUserLeavesTheValuesStandardsToTheCaller(t *testing.T) {
	t.Parallel()
	l := newLimited(t, nil)
	l.set(t, "ada", onesignal.UserWrite{Properties: map[string]string{"language": "klingon", "country": "ZZZ", "lat": "91", "long": "-181"}})
	if u := l.user(t, "ada"); u.Language != "klingon" || u.Country != "ZZZ" || *u.Lat != 91 || *u.Long != -181 {
		t.Errorf("user = %+v: the client sends what it is given", u)
	}
}

func TestDeleteUser(t *testing.T) {
	t.Parallel()
	l := newLimited(t, nil)
	l.emu.AddSubscription(emulator.Subscription{ID: "dev-1"})
	l.set(t, oddExt, onesignal.UserWrite{Tags: tags("plan", "pro"), Aliases: map[string]string{"crm_id": oddAlias}, Create: true})
	link := func() error { return l.c.LinkSubscription(t.Context(), "dev-1", oddExt, nil) }
	if err := link(); err != nil {
		t.Fatal(err)
	}
	l.advance(time.Second)
	if err := l.c.DeleteUser(t.Context(), oddExt); err != nil {
		t.Fatal(err)
	}
	if st := l.emu.State(); len(st.Users) != 0 || len(st.Subscriptions) != 0 {
		t.Errorf("state = %+v, want the user gone with its device", st)
	}
	// Gone already: done.
	l.advance(time.Second)
	if err := l.c.DeleteUser(t.Context(), oddExt); err != nil {
		t.Errorf("deleting a user that is gone: %v", err)
	}
	if err := l.c.DeleteUser(t.Context(), ""); err == nil {
		t.Error("an empty external id was accepted")
	}

	// The client forgot what it wrote to her: the same aliases are
	// written again, and create her anew.
	l.set(t, oddExt, onesignal.UserWrite{Aliases: map[string]string{"crm_id": oddAlias}})
	if got := customAliases(l.user(t, oddExt)); got["crm_id"] != oddAlias {
		t.Errorf("aliases after the user was created again = %v", got)
	}
	if n := requests(l.emu)[routeDeleteUser]; n != 2 {
		t.Errorf("delete user requests = %d, want 2", n)
	}
}

func TestDeleteUserIsAWriteToTheUser(t *testing.T) {
	t.Parallel()
	l := newLimited(t, nil)
	l.emu.AddUser("ada", nil)
	l.set(t, "ada", onesignal.UserWrite{Tags: tags("a", "1")})
	err := l.c.DeleteUser(t.Context(), "ada")
	if apiErr := requireAPIError(t, err, 429); !apiErr.Retryable() || apiErr.RetryAfterDuration() != time.Second {
		t.Errorf("a delete within the user's second: %v, want a retryable 429 after 1s", err)
	}
}

func TestAWriteToAUserTheClientDeletedWaitsUntilOneSignalHasDeletedIt(t *testing.T) {
	t.Parallel()
	l := newLimited(t, func(c *emulator.Config) { c.DeleteDelay = 5 * time.Second })
	l.set(t, oddExt, onesignal.UserWrite{Tags: tags("plan", "pro"), Create: true})
	l.advance(time.Second)
	if err := l.c.DeleteUser(t.Context(), oddExt); err != nil {
		t.Fatal(err)
	}
	l.advance(time.Second)
	err := l.c.SetUser(t.Context(), oddExt, onesignal.UserWrite{Tags: tags("plan", "gold"), Create: true})
	if d, ok := errors.AsType[*onesignal.DeferredError](err); !ok || !strings.Contains(d.Reason, "still being deleted") {
		t.Fatalf("a write while OneSignal deletes the user: %v, want it deferred until the user is gone", err)
	}
	l.advance(5 * time.Second)
	l.set(t, oddExt, onesignal.UserWrite{Tags: tags("plan", "gold"), Create: true})
	if u := l.user(t, oddExt); u.Tags["plan"] != "gold" || u.Deleting {
		t.Errorf("the user after its delete = %+v, want created again with plan gold", u)
	}
}
