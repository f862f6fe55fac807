package emulator_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
)

const rateLimited = `{"errors":["API rate limit exceeded."]}`

// newLimitedAPI serves an emulator with OneSignal's rate limits on a clock
// that moves only when the test says.
func newLimitedAPI(t *testing.T, limits emulator.RateLimits) (*api, *clock) {
	t.Helper()
	clk := newClock()
	limits.Enabled = true
	a := newAPIWith(t, func(c *emulator.Config) {
		c.RateLimits = limits
		c.Clock = clk.Now
	})
	return a, clk
}

// mustBeRateLimited fails unless r is OneSignal's 429 with the Retry-After.
func mustBeRateLimited(t *testing.T, r reply, retryAfter string) {
	t.Helper()
	r.must(t, http.StatusTooManyRequests)
	if r.body != rateLimited || r.header.Get("Retry-After") != retryAfter {
		t.Errorf("429 body %s, Retry-After %q; want %s and %q", r.body, r.header.Get("Retry-After"), rateLimited, retryAfter)
	}
}

func TestRateLimitsPerTarget(t *testing.T) {
	t.Parallel()
	// Each pair of writes goes to the same user or device (dev-1, owned by
	// ada) at the same instant.
	tests := []struct {
		name          string
		first, second func(a *api) reply
	}{
		{
			name: "one write per second to a user",
			first: func(a *api) reply {
				return a.send(http.MethodPatch, userPath("external_id", "ada"), `{"properties":{"tags":{"a":"1"}}}`)
			},
			second: func(a *api) reply {
				return a.send(http.MethodPatch, userPath("external_id", "ada"), `{"properties":{"tags":{"a":"2"}}}`)
			},
		},
		{
			name:   "one write per second to a user, by any alias or model",
			first:  func(a *api) reply { return a.send(http.MethodPut, tagsPath("ada"), `{"tags":{"a":"1"}}`) },
			second: func(a *api) reply { return a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"ada"}}`) },
		},
		{
			name:   "one write per second to a device",
			first:  func(a *api) reply { return a.send(http.MethodPut, playerPath("dev-1"), player(`"tags":{"a":"1"}`)) },
			second: func(a *api) reply { return a.send(http.MethodPut, playerPath("dev-1"), player(`"tags":{"a":"2"}`)) },
		},
		{
			name: "one write per second to a device, in either model",
			first: func(a *api) reply {
				return a.send(http.MethodPatch, ownerPath("dev-1"), `{"identity":{"external_id":"ada"}}`)
			},
			second: func(a *api) reply {
				return a.send(http.MethodPost, "/players", player(`"device_type":1,"identifier":"dev-1"`))
			},
		},
	}
	for _, tt := range tests {
		t.Run("allows "+tt.name, func(t *testing.T) {
			t.Parallel()
			a, clk := newLimitedAPI(t, emulator.RateLimits{})
			a.emu.AddSubscription(emulator.Subscription{ID: "dev-1"})
			a.send(http.MethodPut, playerPath("dev-1"), player(`"external_user_id":"ada"`)).must(t, http.StatusOK)
			clk.Advance(time.Second)

			if r := tt.first(a); r.status >= 300 {
				t.Fatalf("first write: %d %s", r.status, r.body)
			}
			before := a.emu.State()
			mustBeRateLimited(t, tt.second(a), "1")
			if after := a.emu.State(); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("the refused write changed the state")
			}
			clk.Advance(999 * time.Millisecond)
			mustBeRateLimited(t, tt.second(a), "1")
			clk.Advance(time.Millisecond)
			if r := tt.second(a); r.status >= 300 {
				t.Errorf("a second later: %d %s, want success", r.status, r.body)
			}
		})
	}
}

func TestRateLimitsKeepTargetsApart(t *testing.T) {
	t.Parallel()
	a, _ := newLimitedAPI(t, emulator.RateLimits{})
	for _, ext := range []string{"ada", "bob"} {
		a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"`+ext+`"}}`).must(t, http.StatusCreated)
	}
	a.send(http.MethodPatch, userPath("external_id", "ada"), `{"properties":{"tags":{"a":"1"}}}`).must(t, http.StatusAccepted)
	a.send(http.MethodPatch, userPath("external_id", "bob"), `{"properties":{"tags":{"a":"1"}}}`).must(t, http.StatusAccepted)
	// Reads are not writes, and a write to nothing costs no user's budget.
	a.send(http.MethodGet, userPath("external_id", "ada"), "").must(t, http.StatusOK)
	a.send(http.MethodPatch, userPath("external_id", "carol"), `{"properties":{"tags":{"a":"1"}}}`).must(t, http.StatusNotFound)
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"carol"}}`).must(t, http.StatusCreated)
	a.send(http.MethodPatch, userPath("external_id", "carol"), `{"properties":{"tags":{"a":"1"}}}`).must(t, http.StatusAccepted)
}

func TestRateLimitsAllowOneThousandWritesPerSecondPerApp(t *testing.T) {
	t.Parallel()
	a, clk := newLimitedAPI(t, emulator.RateLimits{})
	write := func(i int) reply {
		// Users nobody has: only the app's budget is at stake.
		return a.send(http.MethodPatch, userPath("external_id", fmt.Sprint("u", i)), `{"properties":{"tags":{"a":"1"}}}`)
	}
	for i := range 1000 {
		write(i).must(t, http.StatusNotFound)
	}
	mustBeRateLimited(t, write(1000), "1")
	a.send(http.MethodGet, userPath("external_id", "u1"), "").must(t, http.StatusNotFound) // reads are not limited
	clk.Advance(time.Millisecond)
	write(1001).must(t, http.StatusNotFound)
	mustBeRateLimited(t, write(1002), "1")
	if st := a.emu.Stats(); st.RateLimited != 2 || st.TooManyRequests != 2 {
		t.Errorf("stats = %+v, want 2 rate-limited 429s", st)
	}
}

func TestRateLimitsRoundRetryAfterUp(t *testing.T) {
	t.Parallel()
	a, clk := newLimitedAPI(t, emulator.RateLimits{AppPerSecond: 1, TargetPerSecond: 1})
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"ada"}}`).must(t, http.StatusCreated)
	clk.Advance(100 * time.Millisecond)
	mustBeRateLimited(t, a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"bob"}}`), "1")
}

func TestRateLimitsAreOffUnlessEnabled(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"ada"}}`).must(t, http.StatusCreated)
	for range 5 {
		a.send(http.MethodPatch, userPath("external_id", "ada"), `{"properties":{"tags":{"a":"1"}}}`).must(t, http.StatusAccepted)
	}
}

func TestResetForgetsWhatTheRateLimitsCounted(t *testing.T) {
	t.Parallel()
	a, _ := newLimitedAPI(t, emulator.RateLimits{AppPerSecond: 1})
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"ada"}}`).must(t, http.StatusCreated)
	mustBeRateLimited(t, a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"bob"}}`), "1")
	a.emu.Reset()
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"bob"}}`).must(t, http.StatusCreated)
}
