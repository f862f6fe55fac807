package emulator

import (
	"maps"
	"slices"
	"strings"
)

// State is a copy of everything the emulator holds, for tests to inspect.
// GET /emulator/state serves it as JSON.
type State struct {
	Users         []User         `json:"users"`         // sorted by onesignal_id
	Subscriptions []Subscription `json:"subscriptions"` // sorted by id
}

// User is one OneSignal user.
type User struct {
	OneSignalID   string            `json:"onesignal_id"`
	Identity      map[string]string `json:"identity"`      // all aliases, onesignal_id included
	Tags          map[string]string `json:"tags"`          // never nil
	Subscriptions []string          `json:"subscriptions"` // subscription ids, sorted

	// The user's properties besides tags, as create user and update user
	// set them; "" and nil when not set.
	Language   string   `json:"language,omitempty"`
	TimezoneID string   `json:"timezone_id,omitempty"`
	Country    string   `json:"country,omitempty"`
	Lat        *float64 `json:"lat,omitempty"`
	Long       *float64 `json:"long,omitempty"`

	// Deleting says a delete user was accepted for the user and is not
	// carried out yet (Config.DeleteDelay).
	Deleting bool `json:"deleting,omitempty"`
}

// Subscription is one device (push token), email address or phone number:
// a player, in the legacy player model, whose identifier is the Token and
// whose device_type DeviceType tells.
type Subscription struct {
	ID          string `json:"id"`
	Type        string `json:"type"` // e.g. "AndroidPush", "iOSPush", "Email", "SMS"
	Token       string `json:"token"`
	OneSignalID string `json:"onesignal_id"` // its owner

	// The player model's fields of the device that PUT and POST /players
	// set; "" and nil when not set. (The user model keeps language and
	// country on the user, in its properties.)
	Language string `json:"language,omitempty"`
	Timezone *int   `json:"timezone,omitempty"` // seconds from UTC
	Country  string `json:"country,omitempty"`
}

// UserByExternalID finds the user whose external_id alias is ext.
func (s State) UserByExternalID(ext string) (User, bool) {
	for _, u := range s.Users {
		if id, ok := u.Identity["external_id"]; ok && id == ext {
			return u, true
		}
	}
	return User{}, false
}

// ExternalIDOf returns the external_id of the subscription's owner, "" when
// the owner has none (or the subscription is unknown).
func (s State) ExternalIDOf(subscriptionID string) string {
	for _, sub := range s.Subscriptions {
		if sub.ID != subscriptionID {
			continue
		}
		for _, u := range s.Users {
			if u.OneSignalID == sub.OneSignalID {
				return u.Identity["external_id"]
			}
		}
	}
	return ""
}

// snapshot copies the store into a State that shares no memory with it.
func (s *store) snapshot() State {
	st := State{Users: []User{}, Subscriptions: []Subscription{}}
	for _, u := range s.users {
		st.Users = append(st.Users, s.userState(u))
	}
	for _, sub := range s.subs {
		st.Subscriptions = append(st.Subscriptions, s.subscriptionState(sub))
	}
	slices.SortFunc(st.Users, func(a, b User) int { return strings.Compare(a.OneSignalID, b.OneSignalID) })
	slices.SortFunc(st.Subscriptions, func(a, b Subscription) int { return strings.Compare(a.ID, b.ID) })
	return st
}

// userState copies u.
func (s *store) userState(u *user) User {
	subs := append([]string{}, u.subs...) // [] in JSON, never null
	slices.Sort(subs)
	_, deleting := s.deleting[u.id]
	return User{
		OneSignalID: u.id, Identity: s.identity(u), Tags: maps.Clone(u.tags), Subscriptions: subs,
		Language: u.props.language, TimezoneID: u.props.timezoneID, Country: u.props.country,
		Lat: clonePtr(u.props.lat), Long: clonePtr(u.props.long),
		Deleting: deleting,
	}
}

// subscriptionState copies sub.
func (s *store) subscriptionState(sub *subscription) Subscription {
	return Subscription{
		ID: sub.id, Type: sub.typ, Token: sub.token, OneSignalID: sub.owner,
		Language: sub.device.language, Timezone: clonePtr(sub.device.timezone), Country: sub.device.country,
	}
}

// clonePtr returns a pointer to a copy of *p, nil for nil: a State shares
// no memory with the store.
func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
