package emulator_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
)

// arrivals collects what OnArrival reports.
type arrivals struct {
	mu   sync.Mutex
	list []emulator.Arrival
}

func (a *arrivals) add(x emulator.Arrival) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.list = append(a.list, x)
}

func (a *arrivals) all() []emulator.Arrival {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]emulator.Arrival(nil), a.list...)
}

func TestOnArrivalReportsEachRequestWithItsArrivalTimeBodyAndStatus(t *testing.T) {
	t.Parallel()
	a, clk := newLimitedAPI(t, emulator.RateLimits{})
	var got arrivals
	a.emu.OnArrival(got.add)
	a.emu.AddUser("ada", nil)

	a.send(http.MethodPatch, userPath("external_id", "ada"), `{"properties":{"tags":{"seq":"1"}}}`).must(t, http.StatusAccepted)
	clk.Advance(300 * time.Millisecond)
	a.send(http.MethodPatch, userPath("external_id", "ada"), `{"properties":{"tags":{"seq":"2"}}}`).must(t, http.StatusTooManyRequests)
	a.send(http.MethodGet, "/emulator/state", "").must(t, http.StatusOK) // the emulator's own: not reported

	list := got.all()
	if len(list) != 2 {
		t.Fatalf("OnArrival reported %d requests, want the 2 API requests: %+v", len(list), list)
	}
	start := time.Unix(1_700_000_000, 0)
	want := []struct {
		at     time.Time
		body   string
		status int
	}{
		{start, `{"properties":{"tags":{"seq":"1"}}}`, http.StatusAccepted},
		{start.Add(300 * time.Millisecond), `{"properties":{"tags":{"seq":"2"}}}`, http.StatusTooManyRequests},
	}
	for i, w := range want {
		g := list[i]
		if !g.At.Equal(w.at) || string(g.Body) != w.body || g.Status != w.status ||
			g.Method != http.MethodPatch || g.Path != userPath("external_id", "ada") ||
			g.Route != "PATCH /apps/{app_id}/users/by/{alias_label}/{alias_id}" {
			t.Errorf("arrival %d = %+v (body %s), want at %s, body %s, status %d", i, g, g.Body, w.at, w.body, w.status)
		}
	}
}

func TestOnArrivalReportsARequestAFaultCutAsStatusZero(t *testing.T) {
	t.Parallel()
	a := newAPIWith(t, func(c *emulator.Config) { c.Faults = emulator.Faults{Drop: 1} })
	var got arrivals
	a.emu.OnArrival(got.add)

	if _, err := a.try(http.MethodPost, usersPath, `{"identity":{"external_id":"ada"}}`); err == nil {
		t.Fatal("the dropped answer reached the client")
	}
	list := got.all()
	if len(list) != 1 || list[0].Status != 0 || string(list[0].Body) != `{"identity":{"external_id":"ada"}}` {
		t.Fatalf("arrivals = %+v, want one with status 0 and the body", list)
	}
	if _, ok := a.emu.State().UserByExternalID("ada"); !ok {
		t.Error("the write whose answer was dropped was not applied")
	}
}

func TestOnArrivalNilStopsTheReports(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	var got arrivals
	a.emu.OnArrival(got.add)
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"ada"}}`).must(t, http.StatusCreated)
	a.emu.OnArrival(nil)
	a.send(http.MethodPost, usersPath, `{"identity":{"external_id":"bob"}}`).must(t, http.StatusCreated)
	if n := len(got.all()); n != 1 {
		t.Errorf("OnArrival reported %d requests, want 1: none after it was turned off", n)
	}
}
