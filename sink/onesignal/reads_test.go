package onesignal_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
)

// oddIDs are ids with what a path or a query must escape, and Unicode.
var oddIDs = []string{"user/1", "50% off", "what?now", "a b", "Zoë 東京", "..", "x&app_id=y#z"}

// countingLimiter counts the tokens taken; it never waits.
type countingLimiter struct{ waits, slowDowns atomic.Int64 }

func (l *countingLimiter) Wait(context.Context) error { l.waits.Add(1); return nil }
func (l *countingLimiter) SlowDown(time.Time)         { l.slowDowns.Add(1) }
func (l *countingLimiter) Now() time.Time             { return time.Now() }

// readers returns both models' clients on one emulator, with the
// limiters given.
func readers(t *testing.T, cfg emulator.Config, writes, views onesignal.Limiter) (*emulator.Emulator, *onesignal.Client, *onesignal.PlayerClient) {
	t.Helper()
	cfg.AppID, cfg.APIKey = appID, apiKey
	emu, url := emulator.NewTestServer(t, cfg)
	c, err := onesignal.New(onesignal.Config{BaseURL: url, AppID: appID, APIKey: apiKey, Limiter: writes, ViewLimiter: views})
	if err != nil {
		t.Fatal(err)
	}
	return emu, c, c.Players(false, false)
}

// fastPoll makes an export's waits short.
var fastPoll = onesignal.ExportPoll{First: 5 * time.Millisecond, Max: 20 * time.Millisecond, Within: 5 * time.Second, Idle: 5 * time.Second}

func collect(t *testing.T, x *onesignal.Export) (map[string]onesignal.ExportRecord, error) {
	t.Helper()
	got := map[string]onesignal.ExportRecord{}
	err := x.Records(t.Context(), func(r onesignal.ExportRecord) error {
		got[r.ID] = r
		return nil
	})
	return got, err
}

func TestViewUserReadsIdentityTagsAndSubscriptionsOfAnyExternalID(t *testing.T) {
	t.Parallel()
	emu, c, _ := readers(t, emulator.Config{}, nil, &countingLimiter{})
	for _, ext := range oddIDs {
		id := emu.AddUser(ext, map[string]string{"plan": "pro " + ext})
		emu.AddSubscription(emulator.Subscription{ID: "dev " + ext})
		emu.MoveDevice("dev "+ext, ext)
		u, found, err := c.ViewUser(t.Context(), ext)
		if err != nil || !found {
			t.Fatalf("ViewUser(%q) = %v, %v", ext, found, err)
		}
		want := onesignal.UserView{OneSignalID: id, ExternalID: ext, Identity: map[string]string{"onesignal_id": id, "external_id": ext},
			Tags: map[string]string{"plan": "pro " + ext}, Subscriptions: []onesignal.SubscriptionView{{ID: "dev " + ext, Type: "AndroidPush", Token: "dev " + ext}}}
		if !reflect.DeepEqual(u, want) {
			t.Errorf("ViewUser(%q) = %+v, want %+v", ext, u, want)
		}
	}
	if _, found, err := c.ViewUser(t.Context(), "nobody"); found || err != nil {
		t.Errorf("ViewUser of nobody = %v, %v; want not found, no error", found, err)
	}
}

func TestViewDeviceReadsExternalUserIDAndTagsOfAnyID(t *testing.T) {
	t.Parallel()
	emu, _, p := readers(t, emulator.Config{}, nil, &countingLimiter{})
	for _, id := range oddIDs {
		emu.AddSubscription(emulator.Subscription{ID: id})
		emu.MoveDevice(id, "owner "+id)
		emu.SetDeviceTags(id, map[string]string{"k": id})
		d, found, err := p.ViewDevice(t.Context(), id)
		if err != nil || !found {
			t.Fatalf("ViewDevice(%q) = %v, %v", id, found, err)
		}
		want := onesignal.DeviceView{ID: id, Identifier: id, DeviceType: 1, ExternalUserID: "owner " + id, Tags: map[string]string{"k": id}}
		if !reflect.DeepEqual(d, want) {
			t.Errorf("ViewDevice(%q) = %+v, want %+v", id, d, want)
		}
	}
	emu.AddSubscription(emulator.Subscription{ID: "anonymous"})
	if d, found, err := p.ViewDevice(t.Context(), "anonymous"); !found || err != nil || d.ExternalUserID != "" || len(d.Tags) != 0 {
		t.Errorf("ViewDevice of an unlinked device = %+v, %v, %v", d, found, err)
	}
	if _, found, err := p.ViewDevice(t.Context(), "nothing"); found || err != nil {
		t.Errorf("ViewDevice of nothing = %v, %v; want not found, no error", found, err)
	}
}

func TestViewsTakeTheirTokensFromTheViewLimiterNotTheWriteLimiter(t *testing.T) {
	t.Parallel()
	writes, views := &countingLimiter{}, &countingLimiter{}
	emu, c, p := readers(t, emulator.Config{}, writes, views)
	emu.AddUser("u", nil)
	_, _, _ = c.ViewUser(t.Context(), "u")
	_, _, _ = p.ViewDevice(t.Context(), "d")
	if err := c.SetTags(t.Context(), "u", map[string]string{"a": "1"}, false); err != nil {
		t.Fatal(err)
	}
	if views.waits.Load() != 2 || writes.waits.Load() != 1 {
		t.Errorf("views took %d view tokens and writes %d write tokens; want 2 and 1", views.waits.Load(), writes.waits.Load())
	}
}

func TestViewsKeepToOneASecondByDefaultAndMeetNo429(t *testing.T) {
	t.Parallel()
	emu, c, _ := readers(t, emulator.Config{RateLimits: emulator.RateLimits{Enabled: true}}, nil, nil)
	emu.AddUser("u", nil)
	start := time.Now()
	for range 2 {
		if _, _, err := c.ViewUser(t.Context(), "u"); err != nil {
			t.Fatalf("a view met %v", err)
		}
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("two views took %s: the default view limit is 1/s", d)
	}
	if n := emu.Stats().RateLimited; n != 0 {
		t.Errorf("%d views were refused 429", n)
	}
}

func TestAViewRefused429IsRetryableAndSlowsTheViewLimiter(t *testing.T) {
	t.Parallel()
	views := &countingLimiter{}
	emu, c, _ := readers(t, emulator.Config{RateLimits: emulator.RateLimits{Enabled: true}}, nil, views)
	emu.AddUser("u", nil)
	_, _, _ = c.ViewUser(t.Context(), "u")
	_, _, err := c.ViewUser(t.Context(), "u")
	if apiErr := requireAPIError(t, err, 429); !apiErr.Retryable() || apiErr.RetryAfter != time.Second {
		t.Errorf("429 on a view: retryable %v, retry after %s", apiErr.Retryable(), apiErr.RetryAfter)
	}
	if views.slowDowns.Load() != 1 {
		t.Errorf("the view limiter was slowed %d times, want 1", views.slowDowns.Load())
	}
}

func TestViewLimiterSpacesRequestsEvenly(t *testing.T) {
	t.Parallel()
	l := onesignal.NewViewLimiter(20)
	start := time.Now()
	for range 5 {
		if err := l.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d < 190*time.Millisecond {
		t.Errorf("5 tokens at 20/s took %s, want at least 200ms less the first", d)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := onesignal.NewViewLimiter(0.001).Wait(ctx); err == nil {
		t.Error("Wait on an ended context succeeded")
	}
}

func TestUserExportGivesEveryUserOnceReady(t *testing.T) {
	t.Parallel()
	emu, c, _ := readers(t, emulator.Config{ExportDelay: 100 * time.Millisecond}, &countingLimiter{}, &countingLimiter{})
	ids := map[string]string{}
	for _, ext := range oddIDs {
		ids[ext] = emu.AddUser(ext, map[string]string{"plan": ext, "n": "1"})
	}
	x, err := c.StartExport(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	x.Poll = fastPoll
	got, err := collect(t, x)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(oddIDs) {
		t.Fatalf("%d records, want %d: %v", len(got), len(oddIDs), got)
	}
	for ext, id := range ids {
		want := onesignal.ExportRecord{ID: id, ExternalID: ext, Tags: map[string]string{"plan": ext, "n": "1"}}
		if !reflect.DeepEqual(got[id], want) {
			t.Errorf("record of %q = %+v, want %+v", ext, got[id], want)
		}
	}
	if n := emu.Stats().Requests["GET /csv_exports/{id}/{file}"][404]; n == 0 {
		t.Error("the file was never asked for before it was ready: the export is not asynchronous")
	}
}

func TestPlayerExportGivesEveryDeviceWithItsExternalID(t *testing.T) {
	t.Parallel()
	emu, _, p := readers(t, emulator.Config{ExportDelay: 50 * time.Millisecond}, nil, nil)
	for _, id := range oddIDs {
		emu.AddSubscription(emulator.Subscription{ID: id})
		emu.MoveDevice(id, "ext "+id)
		emu.SetDeviceTags(id, map[string]string{"t": id})
	}
	emu.AddSubscription(emulator.Subscription{ID: "anonymous"})
	x, err := p.StartExport(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	x.Poll = fastPoll
	got, err := collect(t, x)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range oddIDs {
		want := onesignal.ExportRecord{ID: id, ExternalID: "ext " + id, Tags: map[string]string{"t": id}}
		if !reflect.DeepEqual(got[id], want) {
			t.Errorf("record of %q = %+v, want %+v", id, got[id], want)
		}
	}
	if r := got["anonymous"]; r.ExternalID != "" || len(r.Tags) != 0 || r.Tags == nil {
		t.Errorf("record of an unlinked device = %+v", r)
	}
}

func TestASecondExportWhileOneRunsIsRetryable(t *testing.T) {
	t.Parallel()
	_, c, p := readers(t, emulator.Config{ExportDelay: time.Hour}, nil, nil)
	if _, err := c.StartExport(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, err := p.StartExport(t.Context())
	if apiErr := requireAPIError(t, err, 429); !apiErr.Retryable() || apiErr.RetryAfter != onesignal.MaxRetryAfter {
		t.Errorf("a second export: retryable %v, retry after %s", apiErr.Retryable(), apiErr.RetryAfter)
	}
}

func TestAnExportNotReadyInTimeIsRetryable(t *testing.T) {
	t.Parallel()
	_, c, _ := readers(t, emulator.Config{ExportDelay: time.Hour}, nil, nil)
	x, err := c.StartExport(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	x.Poll = onesignal.ExportPoll{First: 5 * time.Millisecond, Max: 10 * time.Millisecond, Within: 100 * time.Millisecond}
	_, err = collect(t, x)
	if nr, ok := errors.AsType[*onesignal.NotReadyError](err); !ok || !nr.Retryable() {
		t.Errorf("Records = %v (%T), want a retryable *NotReadyError", err, err)
	}
}

func TestAnExportWithAWrongKeyIsFatal(t *testing.T) {
	t.Parallel()
	_, url := emulator.NewTestServer(t, emulator.Config{AppID: appID, APIKey: apiKey})
	_, err := newClient(t, url, "wrong").StartExport(t.Context())
	if apiErr := requireAPIError(t, err, 403); !apiErr.Fatal() {
		t.Error("a refused key on an export is not fatal")
	}
}

// gz gzips s.
func gz(s string) string {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	_, _ = w.Write([]byte(s))
	_ = w.Close()
	return b.String()
}

func TestAnExportFileThatBreaksOffOrIsNotTheCSVIsClassified(t *testing.T) {
	t.Parallel()
	good := gz("onesignal_id,external_id,tags\nid1,e1,\"{\"\"a\"\":\"\"1\"\"}\"\nid2,e2,{}\n")
	tests := []struct {
		name      string
		answer    emulator.Answer
		retryable bool
		want      string
	}{
		{"a body cut short is a transport error", emulator.Answer{Status: 200, Body: good, Cut: len(good) / 2}, true, "read the file"},
		{"a body that is not gzip is permanent", emulator.Answer{Status: 200, Body: "<html><title>Export</title><body>Sign in to download.</body></html>"}, false, "not gzipped"},
		{"a missing column is permanent", emulator.Answer{Status: 200, Body: gz("onesignal_id,tags\nx,{}\n")}, false, `no column "external_id"`},
		{"tags that are not an object are permanent, by line", emulator.Answer{Status: 200, Body: gz("onesignal_id,external_id,tags\nx,secret,[1]\n")}, false, "line 2: the tags are not a JSON object"},
		{"a 410 is permanent", emulator.Answer{Status: 410}, false, "HTTP 410"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			emu, c, _ := readers(t, emulator.Config{ExportDelay: time.Millisecond}, nil, nil)
			tc.answer.Path = "/csv_exports/"
			if err := emu.SetAnswers(tc.answer); err != nil {
				t.Fatal(err)
			}
			x, err := c.StartExport(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			x.Poll = fastPoll
			_, err = collect(t, x)
			requireNoSecret(t, err)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Records = %v, want it to say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "/csv_exports/") || strings.Contains(err.Error(), "secret") {
				t.Errorf("the error shows the file's URL or a record: %v", err)
			}
			r, ok := err.(interface{ Retryable() bool })
			if got := ok && r.Retryable(); got != tc.retryable {
				t.Errorf("retryable = %v, want %v (%T)", got, tc.retryable, err)
			}
		})
	}
}

func TestAnExportStopsAtTheCallbacksError(t *testing.T) {
	t.Parallel()
	emu, c, _ := readers(t, emulator.Config{ExportDelay: time.Millisecond}, nil, nil)
	for _, ext := range oddIDs {
		emu.AddUser(ext, nil)
	}
	x, err := c.StartExport(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	x.Poll = fastPoll
	stop := errors.New("enough")
	n := 0
	err = x.Records(t.Context(), func(onesignal.ExportRecord) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("Records = %v after %d records, want the callback's error after 1", err, n)
	}
}
