package onesignal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// The reads, for reconciliation: a view of one user or one device, under
// the views' own limit, and the exports (export.go) for full sweeps.

const (
	epViewUserByExt = "GET /apps/{app_id}/users/by/external_id/{external_id}"
	epViewPlayer    = "GET /players/{player_id}?app_id={app_id}"
)

// DefaultViewRate is OneSignal's limit on views: 1 request a second per
// app.
const DefaultViewRate = 1.0

// ViewLimiter spaces requests evenly, perSecond of them a second, with
// no burst: OneSignal's view budget is too small to save up. The spacing
// has a margin of a twentieth: OneSignal counts requests when they
// arrive, and one that travelled faster than the one before would
// otherwise arrive within the same second. Callers are served in the
// order they asked. A 429 pushes the next request a whole interval past
// it. Safe for concurrent use.
type ViewLimiter struct {
	interval time.Duration

	mu   sync.Mutex
	next time.Time // the earliest time the next request may go
}

// viewMargin stretches the views' spacing (see ViewLimiter).
const viewMargin = 1.05

// NewViewLimiter allows perSecond requests a second (at least one an
// hour).
func NewViewLimiter(perSecond float64) *ViewLimiter {
	interval := time.Hour
	if perSecond > 1.0/3600 {
		interval = time.Duration(float64(time.Second) / perSecond * viewMargin)
	}
	return &ViewLimiter{interval: interval}
}

// Wait reserves the next slot and waits for it; it fails only when ctx
// ends, giving the slot up unused.
func (l *ViewLimiter) Wait(ctx context.Context) error {
	l.mu.Lock()
	now := time.Now()
	slot := later(l.next, now)
	l.next = slot.Add(l.interval)
	l.mu.Unlock()
	wait := slot.Sub(now)
	if wait <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// SlowDown keeps the next request at least an interval after now: the
// request sent at sent was refused as over the budget.
func (l *ViewLimiter) SlowDown(sent time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.next = later(l.next, time.Now().Add(l.interval))
}

// Now is the wall clock.
func (l *ViewLimiter) Now() time.Time { return time.Now() }

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// viewer is the caller for views: the same, under the views' limiter.
func (c *caller) viewer() *caller {
	v := *c
	v.limiter = c.views
	return &v
}

// UserView is what OneSignal holds of a user, as view user shows it.
type UserView struct {
	OneSignalID string
	ExternalID  string
	Identity    map[string]string // every alias, onesignal_id included
	Tags        map[string]string // never nil
	// Subscriptions are the user's devices and email and SMS records.
	Subscriptions []SubscriptionView
}

// SubscriptionView is one subscription of a user.
type SubscriptionView struct {
	ID, Type, Token string
}

// ViewUser reads the user whose external_id is externalID: found false
// (and no error) when OneSignal has no such user. It costs one view, and
// waits for the views' limiter. Errors follow the package's contract; a
// 429 is retryable, with the server's Retry-After.
func (c *Client) ViewUser(ctx context.Context, externalID string) (u UserView, found bool, err error) {
	if externalID == "" {
		return UserView{}, false, errors.New("view user: the external ID is empty")
	}
	_, body, err := c.viewer().exchange(ctx, epViewUserByExt, c.appPath+"/users/by/external_id/"+pathSegment(externalID), nil)
	if hasStatus(err, http.StatusNotFound) {
		return UserView{}, false, nil
	}
	if err != nil {
		return UserView{}, false, err
	}
	var b struct {
		Identity   map[string]string `json:"identity"`
		Properties struct {
			Tags map[string]json.RawMessage `json:"tags"`
		} `json:"properties"`
		Subscriptions []struct {
			ID    string `json:"id"`
			Type  string `json:"type"`
			Token string `json:"token"`
		} `json:"subscriptions"`
	}
	if err := decodeView(epViewUserByExt, body, &b); err != nil {
		return UserView{}, false, err
	}
	tags, err := tagStrings(b.Properties.Tags)
	if err != nil {
		return UserView{}, false, fmt.Errorf("%s: %w", epViewUserByExt, err)
	}
	u = UserView{OneSignalID: b.Identity["onesignal_id"], ExternalID: b.Identity["external_id"], Identity: b.Identity, Tags: tags}
	for _, s := range b.Subscriptions {
		u.Subscriptions = append(u.Subscriptions, SubscriptionView{ID: s.ID, Type: s.Type, Token: s.Token})
	}
	return u, true, nil
}

// DeviceView is what OneSignal holds of a device (a player), as view
// device shows it.
type DeviceView struct {
	ID         string
	Identifier string // the push token, email address or phone number
	DeviceType int
	// ExternalUserID is the user the device is linked to; "" when none.
	ExternalUserID string
	Tags           map[string]string // never nil
}

// ViewDevice reads the device playerID: found false (and no error) when
// OneSignal has no such device (404, or the 400 "No user with this id
// found" some versions send). It costs one view, and waits for the views'
// limiter.
func (c *PlayerClient) ViewDevice(ctx context.Context, playerID string) (d DeviceView, found bool, err error) {
	if playerID == "" {
		return DeviceView{}, false, errors.New("view device: the player ID is empty")
	}
	path := "/players/" + pathSegment(playerID) + "?app_id=" + url.QueryEscape(c.appID)
	_, body, err := c.viewer().exchange(ctx, epViewPlayer, path, nil)
	if apiErr, ok := errors.AsType[*APIError](err); ok &&
		(apiErr.StatusCode == http.StatusNotFound || (apiErr.StatusCode == http.StatusBadRequest && apiErr.mentions("no user with this id"))) {
		return DeviceView{}, false, nil
	}
	if err != nil {
		return DeviceView{}, false, err
	}
	var b struct {
		ID             string                     `json:"id"`
		Identifier     string                     `json:"identifier"`
		DeviceType     int                        `json:"device_type"`
		ExternalUserID *string                    `json:"external_user_id"`
		Tags           map[string]json.RawMessage `json:"tags"`
	}
	if err := decodeView(epViewPlayer, body, &b); err != nil {
		return DeviceView{}, false, err
	}
	tags, err := tagStrings(b.Tags)
	if err != nil {
		return DeviceView{}, false, fmt.Errorf("%s: %w", epViewPlayer, err)
	}
	return DeviceView{ID: b.ID, Identifier: b.Identifier, DeviceType: b.DeviceType, ExternalUserID: deref(b.ExternalUserID), Tags: tags}, true, nil
}

// decodeView reads a view's 2xx body into v. A body too long to keep (a
// view is a few kilobytes) or of another shape is a permanent error.
func decodeView(endpoint string, body []byte, v any) error {
	if body == nil {
		return fmt.Errorf("%s: the answer is longer than %d bytes: not a view OneSignal sends", endpoint, maxErrorBody)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s: the answer is not the view's JSON: %w", endpoint, err)
	}
	return nil
}

// tagStrings reads tag values as text: OneSignal's are strings, but the
// player model has stored numbers (42 as "42"), and booleans have been
// seen; null is no tag. A nested value is kept as its compact JSON.
func tagStrings(raw map[string]json.RawMessage) (map[string]string, error) {
	tags := make(map[string]string, len(raw))
	for k, v := range raw {
		s, ok, err := tagText(v)
		if err != nil {
			return nil, fmt.Errorf("tag %q: %w", k, err)
		}
		if ok {
			tags[k] = s
		}
	}
	return tags, nil
}

// tagText is one tag value as text; false for null.
func tagText(v json.RawMessage) (string, bool, error) {
	var x any
	if err := json.Unmarshal(v, &x); err != nil {
		return "", false, err
	}
	switch x := x.(type) {
	case nil:
		return "", false, nil
	case string:
		return x, true, nil
	case bool:
		return strconv.FormatBool(x), true, nil
	case float64:
		// The text it was sent as: 42 stays "42", 1.5 "1.5".
		var n json.Number
		if json.Unmarshal(v, &n) == nil {
			return n.String(), true, nil
		}
		return strconv.FormatFloat(x, 'f', -1, 64), true, nil
	}
	compact, err := json.Marshal(x)
	return string(compact), err == nil, err
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
