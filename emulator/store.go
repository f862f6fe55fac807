package emulator

import (
	"crypto/rand"
	"fmt"
	"maps"
	"slices"
	"time"
)

// store is the emulator's data: users, their aliases and tags, and
// subscriptions. It does no locking and no HTTP; the Emulator does both,
// holding its mutex around every use.
type store struct {
	users   map[string]*user         // by onesignal_id
	subs    map[string]*subscription // by subscription id
	aliases map[alias]string         // every alias but onesignal_id → onesignal_id
	tokens  map[token]string         // (type, token) → subscription id
	// deleting holds the users a delete user accepted and the emulator
	// has not carried out yet (Config.DeleteDelay), by onesignal_id: when
	// they go.
	deleting map[string]time.Time
}

type user struct {
	id      string            // onesignal_id
	aliases map[string]string // label → id; onesignal_id is not in here
	tags    map[string]string
	props   userProps
	subs    []string // subscription ids, in the order they came
}

// userProps are the user model's properties besides tags that the
// emulator keeps; "" and nil are not set.
type userProps struct {
	language, timezoneID, country string
	lat, long                     *float64
}

type subscription struct {
	id, typ, token string
	owner          string // onesignal_id
	device         deviceProps
}

// deviceProps are the player model's fields of a device that the
// emulator keeps besides its identifier; "" and nil are not set.
type deviceProps struct {
	language, country string
	timezone          *int // seconds from UTC
}

type alias struct{ label, id string }

type token struct{ typ, value string }

const (
	onesignalIDLabel = "onesignal_id"
	externalIDLabel  = "external_id"
)

func newStore() *store {
	return &store{
		users:    map[string]*user{},
		subs:     map[string]*subscription{},
		aliases:  map[alias]string{},
		tokens:   map[token]string{},
		deleting: map[string]time.Time{},
	}
}

// userBy finds a user by any alias, onesignal_id included; nil if none.
func (s *store) userBy(label, id string) *user {
	if label == onesignalIDLabel {
		return s.users[id]
	}
	return s.users[s.aliases[alias{label, id}]]
}

// newUser creates a user with the given aliases (none of which may be
// taken, nor be onesignal_id) and no tags or subscriptions.
func (s *store) newUser(aliases map[string]string) *user {
	u := &user{id: newUUID(), aliases: maps.Clone(aliases), tags: map[string]string{}}
	if u.aliases == nil {
		u.aliases = map[string]string{}
	}
	for label, id := range u.aliases {
		s.aliases[alias{label, id}] = u.id
	}
	s.users[u.id] = u
	return u
}

// addAlias gives u an alias that must not be taken.
func (s *store) addAlias(u *user, label, id string) {
	u.aliases[label] = id
	s.aliases[alias{label, id}] = u.id
}

// removeAlias takes the alias with label from u, if it has one.
func (s *store) removeAlias(u *user, label string) {
	id, ok := u.aliases[label]
	if !ok {
		return
	}
	delete(u.aliases, label)
	delete(s.aliases, alias{label, id})
}

// deleteUser forgets u, which must own no subscription.
func (s *store) deleteUser(u *user) {
	for label, id := range u.aliases {
		delete(s.aliases, alias{label, id})
	}
	delete(s.users, u.id)
	delete(s.deleting, u.id)
}

// eraseUser forgets u and every subscription it owns, as OneSignal's
// delete user does.
func (s *store) eraseUser(u *user) {
	for _, id := range u.subs {
		sub := s.subs[id]
		if tok := (token{sub.typ, sub.token}); s.tokens[tok] == sub.id {
			delete(s.tokens, tok)
		}
		delete(s.subs, id)
	}
	u.subs = nil
	s.deleteUser(u)
}

// purge carries out the deletions that are due at now.
func (s *store) purge(now time.Time) {
	for id, at := range s.deleting {
		if at.After(now) {
			continue
		}
		if u := s.users[id]; u != nil {
			s.eraseUser(u)
		}
		delete(s.deleting, id)
	}
}

// setTags merges tags into u's; nil or "" deletes a tag.
func (s *store) setTags(u *user, tags map[string]*string) {
	for k, v := range tags {
		if v == nil || *v == "" {
			delete(u.tags, k)
		} else {
			u.tags[k] = *v
		}
	}
}

// newSubscription creates a subscription owned by u.
func (s *store) newSubscription(id, typ, tok string, u *user) *subscription {
	sub := &subscription{id: id, typ: typ, owner: u.id}
	s.subs[id] = sub
	s.setToken(sub, tok)
	u.subs = append(u.subs, id)
	return sub
}

// setToken gives sub a new token. The first subscription to hold a (type,
// token) is the one found by it; an empty token (a push device not yet
// registered) finds nothing.
func (s *store) setToken(sub *subscription, tok string) {
	if old := (token{sub.typ, sub.token}); s.tokens[old] == sub.id {
		delete(s.tokens, old)
	}
	sub.token = tok
	if _, taken := s.tokens[token{sub.typ, tok}]; !taken && tok != "" {
		s.tokens[token{sub.typ, tok}] = sub.id
	}
}

// subscriptionByToken finds a subscription by type and token; nil if none.
func (s *store) subscriptionByToken(typ, tok string) *subscription {
	return s.subs[s.tokens[token{typ, tok}]]
}

// transfer makes to the owner of sub. A previous owner left with neither
// subscriptions nor aliases is deleted, as OneSignal does: nothing could
// ever reach it again.
func (s *store) transfer(sub *subscription, to *user) {
	if sub.owner == to.id {
		return
	}
	if from := s.users[sub.owner]; from != nil {
		from.subs = slices.DeleteFunc(from.subs, func(id string) bool { return id == sub.id })
		if len(from.subs) == 0 && len(from.aliases) == 0 {
			s.deleteUser(from)
		}
	}
	sub.owner = to.id
	to.subs = append(to.subs, sub.id)
}

// identity returns all of u's aliases, onesignal_id included.
func (s *store) identity(u *user) map[string]string {
	id := maps.Clone(u.aliases)
	id[onesignalIDLabel] = u.id
	return id
}

// seed adds a subscription as an SDK does on install: owned by a new
// anonymous user. An id that exists already changes nothing. It returns
// the subscription as stored and whether it is new.
func (s *store) seed(sub Subscription) (Subscription, bool) {
	if old := s.subs[sub.ID]; old != nil {
		return s.subscriptionState(old), false
	}
	u := s.newUser(nil)
	stored := s.newSubscription(sub.ID, sub.Type, sub.Token, u)
	stored.device = deviceProps{language: sub.Language, country: sub.Country, timezone: clonePtr(sub.Timezone)}
	return s.subscriptionState(stored), true
}

// newUUID returns a random (version 4) UUID, the form of OneSignal's IDs.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // documented never to fail
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
