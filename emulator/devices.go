package emulator

import "maps"

// The player model's device_type codes and the user model's subscription
// types they stand for. The pairing is by name: OneSignal does not
// document it. Windows Phone (3) and Alexa (10) have no user-model type;
// the emulator makes up "WindowsPhonePush" and "AlexaPush" for them.
var deviceTypes = map[int]string{
	0: "iOSPush", 1: "AndroidPush", 2: "FireOSPush", 3: "WindowsPhonePush",
	4: "ChromeExtensionPush", 5: "ChromePush", 6: "WindowsPush", 7: "SafariLegacyPush",
	8: "FirefoxPush", 9: "macOSPush", 10: "AlexaPush", 11: "Email", 13: "HuaweiPush", 14: "SMS",
}

// deviceCodes is deviceTypes the other way round. SafariPush, Safari's
// newer web push, shows as Safari (7), the player model's only Safari.
var deviceCodes = func() map[string]int {
	codes := map[string]int{"SafariPush": 7}
	for code, typ := range deviceTypes {
		codes[typ] = code
	}
	return codes
}()

// Player is a subscription as the player model shows a device: with the
// tags and external_id of the user that owns it. GET /players/{id} serves
// it as JSON.
type Player struct {
	ID         string `json:"id"`
	Identifier string `json:"identifier"` // the subscription's token
	DeviceType int    `json:"device_type"`
	// Tags are the owner's: tags live on users, so every device of a user
	// shows the same.
	Tags map[string]string `json:"tags"`
	// ExternalUserID is the owner's external_id alias, nil (null) when
	// it has none.
	ExternalUserID *string `json:"external_user_id"`
	// InvalidIdentifier is always false: the emulator has no notion of
	// unsubscribed devices.
	InvalidIdentifier bool `json:"invalid_identifier"`
	// Language, Timezone (seconds from UTC) and Country are the device's
	// own, as PUT and POST /players set them; left out when not set.
	Language string `json:"language,omitempty"`
	Timezone *int   `json:"timezone,omitempty"`
	Country  string `json:"country,omitempty"`
}

// DeviceType returns the player model's device_type for the
// subscription's type, and false for a type it does not know.
func (s Subscription) DeviceType() (int, bool) {
	code, ok := deviceCodes[s.Type]
	return code, ok
}

// Player returns the device with the subscription id, as the player model
// shows it.
func (s State) Player(id string) (Player, bool) {
	for _, sub := range s.Subscriptions {
		if sub.ID != id {
			continue
		}
		for _, u := range s.Users {
			if u.OneSignalID == sub.OneSignalID {
				return playerOf(sub, u), true
			}
		}
	}
	return Player{}, false
}

// playerOf renders sub, owned by owner, as a Player. An unknown type
// (which only the emulator's own seeding could store) shows as -1.
func playerOf(sub Subscription, owner User) Player {
	code, ok := sub.DeviceType()
	if !ok {
		code = -1
	}
	p := Player{ID: sub.ID, Identifier: sub.Token, DeviceType: code, Tags: maps.Clone(owner.Tags),
		Language: sub.Language, Timezone: clonePtr(sub.Timezone), Country: sub.Country}
	if ext, ok := owner.Identity[externalIDLabel]; ok {
		p.ExternalUserID = &ext
	}
	return p
}

// player renders a stored subscription as a Player.
func (s *store) player(sub *subscription) Player {
	return playerOf(s.subscriptionState(sub), s.userState(s.users[sub.owner]))
}

// move is where setting a device's external_user_id takes it.
type move struct {
	to  *user  // the owner afterwards; nil: a new user
	ext string // the external_id to give a new user, or to add to to
}

// planExternalID decides what setting sub's external_user_id to ext does,
// following what the user model's SDKs do on login and logout:
//
//   - "" (clear), when the owner has an external_id: the device moves to a
//     new anonymous user (logout). When it has none, nothing happens.
//   - the owner's own external_id: nothing happens.
//   - an external_id another user has: the device moves to that user.
//   - a new external_id, when the owner has none: the owner gets it, with
//     every device it has (login of an anonymous user keeps its data).
//   - a new external_id, when the owner has another one: the device moves
//     to a new user with it.
//
// A device that moves takes the tags of its new user, as in the user
// model; a new user has none. Nothing changes until apply.
func (s *store) planExternalID(sub *subscription, ext string) move {
	owner := s.users[sub.owner]
	current, has := owner.aliases[externalIDLabel]
	switch {
	case ext == "" && !has, has && current == ext:
		return move{to: owner}
	case ext == "":
		return move{}
	}
	if u := s.userBy(externalIDLabel, ext); u != nil {
		return move{to: u}
	}
	if !has {
		return move{to: owner, ext: ext}
	}
	return move{ext: ext}
}

// tags are the tags of the device's owner after the move; nil for a new
// user.
func (m move) tags() map[string]string {
	if m.to == nil {
		return nil
	}
	return m.to.tags
}

// apply carries out the move and returns the device's owner afterwards.
func (s *store) apply(sub *subscription, m move) *user {
	to := m.to
	switch {
	case to == nil && m.ext == "":
		to = s.newUser(nil)
	case to == nil:
		to = s.newUser(map[string]string{externalIDLabel: m.ext})
	case m.ext != "":
		s.addAlias(to, externalIDLabel, m.ext)
	}
	s.transfer(sub, to)
	return to
}

// ownerFor is the user a new device with external_user_id ext gets: the
// user with that external_id; nil when a new user is needed.
func (s *store) ownerFor(ext string) *user {
	if ext == "" {
		return nil
	}
	return s.userBy(externalIDLabel, ext)
}
