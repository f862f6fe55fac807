package onesignal

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// The player model's endpoints, by template.
const (
	epEditDevice    = "PUT /players/{player_id}"
	epAddDevice     = "POST /players"
	epEditTagsByExt = "PUT /apps/{app_id}/users/{external_user_id}"
	epViewDevice    = "GET /players/{player_id}"
)

// The player model's device_type codes of the records AddRecord makes.
const (
	deviceTypeEmail = 11
	deviceTypeSMS   = 14
)

// PlayerConfig is what the player-model client needs: Config (whose APIKey
// is the app's API key, sent as "Authorization: Key <key>", or "Basic
// <key>" with LegacyKey, and whose HTTPClient carries every request), and
// whether the app has identity verification on.
type PlayerConfig struct {
	Config
	// IdentityVerification sends, with every external_user_id and every
	// email or SMS identifier written, its hash: HMAC-SHA256 of the value
	// keyed with the REST API key, in hex. Default false.
	IdentityVerification bool
	// LegacyKey sends the key the way legacy REST API keys went,
	// "Authorization: Basic <key>", instead of "Key <key>"
	// (onesignal.legacy_api_key). OneSignal retires legacy keys in Q1
	// 2026; a refusal of the key then names the option and says to
	// create an App API key. Default false.
	LegacyKey bool
}

// PlayerClient calls OneSignal's legacy player-model API (the v7 guide's
// devices, "players", and their external_user_id) for one app. Its methods
// are those of Client, with the same error contract (see the package doc)
// and the same idempotence.
type PlayerClient struct {
	caller
	appID   string
	appPath string
	key     []byte // the key the identity verification hashes are keyed with
	verify  bool
}

// NewPlayers checks cfg and returns a player-model client.
func NewPlayers(cfg PlayerConfig) (*PlayerClient, error) {
	c, err := newCaller(cfg.Config, "Key ")
	if err != nil {
		return nil, err
	}
	c.usePlayerModel(cfg.APIKey, cfg.LegacyKey)
	return &PlayerClient{
		caller: c, appID: cfg.AppID, appPath: "/apps/" + pathSegment(cfg.AppID),
		key: []byte(cfg.APIKey.Reveal()), verify: cfg.IdentityVerification,
	}, nil
}

// device is the body of PUT and POST /players: the fields the sink sets.
// ExternalUserID is a pointer so that "" (clear it) is sent while nil
// leaves it out.
type device struct {
	AppID                  string            `json:"app_id"`
	DeviceType             int               `json:"device_type,omitempty"`
	Identifier             string            `json:"identifier,omitempty"`
	ExternalUserID         *string           `json:"external_user_id,omitempty"`
	ExternalUserIDAuthHash string            `json:"external_user_id_auth_hash,omitempty"`
	IdentifierAuthHash     string            `json:"identifier_auth_hash,omitempty"`
	Tags                   map[string]string `json:"tags,omitempty"`
	// The device's properties: a pointer to "" clears language or
	// country, and Timezone is a number or null (cleared).
	Language *string         `json:"language,omitempty"`
	Timezone json.RawMessage `json:"timezone,omitempty"`
	Country  *string         `json:"country,omitempty"`
}

// PropTimezone is the player model's timezone of a device: its offset from
// UTC in whole seconds, in text ("-18000"). Its language and country are
// PropLanguage and PropCountry, named as in the user model.
const PropTimezone = "timezone"

// DeviceProperties are the properties DeviceWrite.Properties takes, by
// the names of PUT /players/{player_id}.
var DeviceProperties = []string{PropLanguage, PropTimezone, PropCountry}

// DeviceWrite is what SetDevice and LinkDevice write to one device.
type DeviceWrite struct {
	// Tags are data tags; "" deletes one. Tags not named are left alone.
	Tags map[string]string
	// Properties are the device's language (ISO 639-1), timezone (offset
	// from UTC in whole seconds, in text: "3600") and country (ISO 3166-1
	// alpha-2) (DeviceProperties); "" clears one (timezone goes as null).
	// Properties not named are left alone. The client checks the names and
	// that timezone is a whole number, not the values' standards.
	Properties map[string]string
}

// apply puts w's tags and properties into d.
func (w DeviceWrite) apply(d *device) error {
	d.Tags = w.Tags
	for _, name := range slices.Sorted(maps.Keys(w.Properties)) {
		v := w.Properties[name]
		switch name {
		case PropLanguage:
			d.Language = &v
		case PropCountry:
			d.Country = &v
		case PropTimezone:
			if v == "" {
				d.Timezone = json.RawMessage("null")
				continue
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("property timezone is not a whole number of seconds from UTC")
			}
			d.Timezone = json.RawMessage(strconv.Itoa(n))
		default:
			return fmt.Errorf("property %q is not one PUT /players/{player_id} takes: use %s", name, strings.Join(DeviceProperties, ", "))
		}
	}
	return nil
}

// hash is the identity verification hash of v, when the app verifies.
func (c *PlayerClient) hash(v string) string {
	if !c.verify {
		return ""
	}
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(v))
	return hex.EncodeToString(m.Sum(nil))
}

// SetTags is SetUser with tags only.
func (c *PlayerClient) SetTags(ctx context.Context, externalID string, tags map[string]string, create bool) error {
	return c.SetUser(ctx, externalID, UserWrite{Tags: tags, Create: create})
}

// SetUser edits the data tags of the devices whose external_user_id is
// externalID (PUT /apps/{app_id}/users/{external_user_id}, a "/" in the id
// sent as %2F); a tag whose value is "" is deleted. When no device carries
// the id, OneSignal has nowhere to put the tags: the error's NoDevice()
// says so, and the caller keeps the tags for the device linked later.
//
// Only w.Tags go. The edit by external user id takes nothing but tags, so
// the player model's properties go to each device (SetDevice, LinkDevice),
// and w.Properties must be empty; the player model has no aliases, and
// w.Aliases must be empty too: either is a permanent error otherwise.
// w.Create is for the user model's benefit; the player model has no user
// to create.
func (c *PlayerClient) SetUser(ctx context.Context, externalID string, w UserWrite) error {
	switch {
	case externalID == "":
		return errors.New("set user: the external ID is empty")
	case len(w.Properties) > 0:
		return errors.New("set user: the player model edits only tags by external user id: its language, timezone and country go to each device (SetDevice, LinkDevice)")
	case len(w.Aliases) > 0:
		return errors.New("set user: the player model has no aliases")
	}
	tags := w.Tags
	if len(tags) == 0 {
		return nil
	}
	path := c.appPath + "/users/" + pathSegment(externalID)
	_, err := c.call(ctx, epEditTagsByExt, path, struct {
		Tags map[string]string `json:"tags"`
	}{tags})
	if apiErr, ok := errors.AsType[*APIError](err); ok && apiErr.mentions("no players found") &&
		(apiErr.StatusCode == http.StatusNotFound || apiErr.refused()) {
		apiErr.noDevice = true
	}
	return err
}

// LinkSubscription is LinkDevice with tags only.
func (c *PlayerClient) LinkSubscription(ctx context.Context, playerID, externalID string, tags map[string]string) error {
	return c.LinkDevice(ctx, playerID, externalID, DeviceWrite{Tags: tags})
}

// LinkDevice sets the device's external_user_id (PUT /players/{player_id}),
// with w, the user's tags that no device of it has yet and the device's
// properties, in the same request. A device OneSignal does not know is a
// permanent error.
func (c *PlayerClient) LinkDevice(ctx context.Context, playerID, externalID string, w DeviceWrite) error {
	if playerID == "" {
		return errors.New("link device: the player ID is empty")
	}
	if externalID == "" {
		return errors.New("link device: the external ID is empty")
	}
	d := device{ExternalUserID: &externalID, ExternalUserIDAuthHash: c.hash(externalID)}
	if err := w.apply(&d); err != nil {
		return fmt.Errorf("link device: %w", err)
	}
	return c.editDevice(ctx, playerID, d)
}

// SetDevice writes w's tags and properties to the device (PUT
// /players/{player_id}), leaving its external_user_id alone; nothing is
// sent when w names nothing. The properties are the device's own; tags
// live on the user since OneSignal's user model (as in the emulator), so
// the user's other devices may show them too. A device OneSignal does not
// know is a permanent error.
func (c *PlayerClient) SetDevice(ctx context.Context, playerID string, w DeviceWrite) error {
	if playerID == "" {
		return errors.New("set device: the player ID is empty")
	}
	if len(w.Tags) == 0 && len(w.Properties) == 0 {
		return nil
	}
	var d device
	if err := w.apply(&d); err != nil {
		return fmt.Errorf("set device: %w", err)
	}
	return c.editDevice(ctx, playerID, d)
}

// UnlinkSubscription clears the device's external_user_id (PUT
// /players/{player_id} with ""), and sets tags in the same request: the
// caller clears the tags the device carried for its user. With identity
// verification the request carries the hash of the id being removed,
// previousExternalID; without it that cannot be done, and the error says
// what to change.
func (c *PlayerClient) UnlinkSubscription(ctx context.Context, playerID, previousExternalID string, tags map[string]string) error {
	if playerID == "" {
		return errors.New("unlink device: the player ID is empty")
	}
	d := device{ExternalUserID: new(string), Tags: tags}
	if c.verify {
		if previousExternalID == "" {
			return errors.New("unlink device: identity verification needs the external_user_id being removed, and the change does not carry it: " +
				"run ALTER TABLE … REPLICA IDENTITY FULL on the devices table so that updates and deletes carry the old owner")
		}
		d.ExternalUserIDAuthHash = c.hash(previousExternalID)
	}
	return c.editDevice(ctx, playerID, d)
}

func (c *PlayerClient) editDevice(ctx context.Context, playerID string, d device) error {
	d.AppID = c.appID
	_, err := c.call(ctx, epEditDevice, "/players/"+pathSegment(playerID), d)
	return err
}

// AddRecord adds an email (device_type 11) or SMS (14) record for
// identifier with external_user_id externalID and tags (POST /players);
// OneSignal edits the record that has the identifier already instead of
// adding another.
func (c *PlayerClient) AddRecord(ctx context.Context, externalID, channel, identifier string, tags map[string]string) error {
	var typ int
	switch channel {
	case ChannelEmail:
		typ = deviceTypeEmail
	case ChannelSMS:
		typ = deviceTypeSMS
	default:
		return fmt.Errorf("add record: channel %q is not %s or %s", channel, ChannelEmail, ChannelSMS)
	}
	if externalID == "" {
		return errors.New("add record: the external ID is empty")
	}
	if identifier == "" {
		return errors.New("add record: the " + channel + " identifier is empty")
	}
	_, err := c.call(ctx, epAddDevice, "/players", device{
		AppID: c.appID, DeviceType: typ, Identifier: identifier,
		ExternalUserID: &externalID, ExternalUserIDAuthHash: c.hash(externalID),
		IdentifierAuthHash: c.hash(identifier), Tags: tags,
	})
	return err
}

// CheckCredentials asks OneSignal for a device that does not exist: "not
// found" (404, or 400 "No user with this id found") means the app ID and
// REST API key were accepted, and the error of any other answer says what
// is wrong. It costs one read request.
func (c *PlayerClient) CheckCredentials(ctx context.Context) error {
	_, err := c.call(ctx, epViewDevice, "/players/onesignal-cdc-credentials-check?app_id="+url.QueryEscape(c.appID), nil)
	if apiErr, ok := errors.AsType[*APIError](err); ok &&
		(apiErr.StatusCode == http.StatusNotFound || (apiErr.StatusCode == http.StatusBadRequest && apiErr.mentions("no user with this id"))) {
		return nil
	}
	return err
}

// DeleteUser is refused: the player model has no user to delete, only
// devices that carry an external_user_id (on_delete: delete_user needs the
// user model).
func (c *PlayerClient) DeleteUser(ctx context.Context, externalID string) error {
	return errors.New("delete user: the player model has no users to delete (a player is a device): set onesignal.model: user, or mapping.users.on_delete: remove_tags")
}
