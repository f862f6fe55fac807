package onesignal

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// The endpoints, by template: errors name these, never the real path.
const (
	epUpdateUser = "PATCH /apps/{app_id}/users/by/external_id/{external_id}"
	epCreateUser = "POST /apps/{app_id}/users"
	epTransfer   = "PATCH /apps/{app_id}/subscriptions/{subscription_id}/owner"
	epAddRecord  = "POST /apps/{app_id}/users/by/external_id/{external_id}/subscriptions"
)

// properties is the user model's PropertiesObject: "tags" and the
// properties SetUser writes, by their API names.
type properties map[string]any

type updateUserRequest struct {
	Properties properties `json:"properties"`
}

type createUserRequest struct {
	Identity      map[string]string `json:"identity"`
	Properties    properties        `json:"properties,omitempty"`
	Subscriptions []subscriptionRef `json:"subscriptions,omitempty"`
}

type identityRequest struct {
	Identity map[string]string `json:"identity"`
}

type subscriptionRef struct {
	ID    string `json:"id,omitempty"`
	Type  string `json:"type,omitempty"`
	Token string `json:"token,omitempty"`
}

type createSubscriptionRequest struct {
	Subscription subscriptionRef `json:"subscription"`
}

type transferRequest struct {
	Identity map[string]string `json:"identity"`
}

// SetTags sets the data tags of the user whose external_id is externalID:
// SetUser with tags only.
func (c *Client) SetTags(ctx context.Context, externalID string, tags map[string]string, create bool) error {
	return c.SetUser(ctx, externalID, UserWrite{Tags: tags, Create: create})
}

// LinkSubscription makes the subscription (a device, in the dashboard's
// words) belong to the user whose external_id is externalID. Linking a
// subscription to the user that already owns it succeeds and changes
// nothing. The subscription takes the user's tags, which live on the user,
// so tags must be empty: it is there for the player model, where they are
// carried to the device.
//
// A 404 that names only the subscription is returned as is: the device is
// not in OneSignal, and repeating will not change that. Any other 404 is
// taken to mean the user is missing (OneSignal's 404 bodies are not
// documented and have been seen empty): the user is created, which is
// harmless if it existed, and a *DeferredError asks for the attempt to be
// repeated once the subscription's one-second window has passed. Doing the
// transfer again at once would be a second write to the subscription
// within the second, which OneSignal answers with 429; the documented way
// to create a user with a subscription names it by type and token, which
// the sink does not know. Finding out first with a lookup would cost a
// request from the tight budget OneSignal gives view endpoints.
func (c *Client) LinkSubscription(ctx context.Context, subscriptionID, externalID string, tags map[string]string) error {
	if subscriptionID == "" {
		return errors.New("link subscription: the subscription ID is empty")
	}
	if externalID == "" {
		return errors.New("link subscription: the external ID is empty")
	}
	if len(tags) > 0 {
		return errors.New("link subscription: the user model carries no tags with a link: a subscription takes its user's tags")
	}
	if err := c.awaitDeleted(ctx, externalID); err != nil {
		return err
	}
	path := "/subscriptions/" + pathSegment(subscriptionID) + "/owner"
	req := transferRequest{Identity: map[string]string{"external_id": externalID}}
	_, err := c.call(ctx, epTransfer, path, req)
	apiErr, ok := errors.AsType[*APIError](err)
	if !ok || apiErr.StatusCode != http.StatusNotFound ||
		(apiErr.mentions("subscription") && !apiErr.mentions("user")) {
		return err
	}
	if _, err := c.createUser(ctx, createUserRequest{
		Identity: map[string]string{"external_id": externalID},
	}); err != nil {
		return err
	}
	return &DeferredError{Endpoint: epTransfer, Reason: "the user was missing and is created now; the transfer follows once the subscription's one-second window has passed", After: time.Second}
}

// UnlinkSubscription takes the subscription away from its user by moving it
// to a new anonymous user (one with no external_id), which is what the
// SDKs do on logout. Repeating it leaves one anonymous owner: OneSignal
// deletes a user that is left with no subscriptions and no aliases.
//
// It creates the anonymous user with the subscription named by "id" in
// "subscriptions". OneSignal documents subscriptions in a create-user
// request by type and token; that it accepts an existing one by id is not
// confirmed against the real API (the emulator, package emulator, does).
//
// A subscription OneSignal does not have (404 "Subscription not found")
// counts as unlinked: no user has it.
//
// previousExternalID is not needed: the user model has no identity
// verification hash for server calls. Tags are not either: they live on
// the user, not on the subscription.
func (c *Client) UnlinkSubscription(ctx context.Context, subscriptionID, previousExternalID string, _ map[string]string) error {
	if subscriptionID == "" {
		return errors.New("unlink subscription: the subscription ID is empty")
	}
	_, err := c.call(ctx, epCreateUser, "/users", createUserRequest{
		Identity:      map[string]string{},
		Subscriptions: []subscriptionRef{{ID: subscriptionID}},
	})
	if apiErr, ok := errors.AsType[*APIError](err); ok && apiErr.StatusCode == http.StatusNotFound && apiErr.mentions("subscription") {
		// The subscription is gone (deleted with its user, on_delete:
		// delete_user, or by the app): no user has it, as asked.
		return nil
	}
	return err
}

// Channels of AddRecord.
const (
	ChannelEmail = "email"
	ChannelSMS   = "sms"
)

// subscriptionTypes are the user model's subscription types of the
// channels.
var subscriptionTypes = map[string]string{ChannelEmail: "Email", ChannelSMS: "SMS"}

// AddRecord gives the user whose external_id is externalID an email or SMS
// subscription (channel ChannelEmail or ChannelSMS) for identifier, the
// address or phone number: created when new, moved to the user when
// another has it (202), left alone when the user has it (200). A missing
// user is created with the subscription in one request. tags must be
// empty, as for LinkSubscription.
func (c *Client) AddRecord(ctx context.Context, externalID, channel, identifier string, tags map[string]string) error {
	typ, ok := subscriptionTypes[channel]
	switch {
	case !ok:
		return fmt.Errorf("add record: channel %q is not %s or %s", channel, ChannelEmail, ChannelSMS)
	case externalID == "":
		return errors.New("add record: the external ID is empty")
	case identifier == "":
		return errors.New("add record: the " + channel + " identifier is empty")
	case len(tags) > 0:
		return errors.New("add record: the user model carries no tags with a record: a subscription takes its user's tags")
	}
	if err := c.awaitDeleted(ctx, externalID); err != nil {
		return err
	}
	sub := subscriptionRef{Type: typ, Token: identifier}
	path := "/users/by/external_id/" + pathSegment(externalID) + "/subscriptions"
	_, err := c.call(ctx, epAddRecord, path, createSubscriptionRequest{Subscription: sub})
	if !hasStatus(err, http.StatusNotFound) {
		if err == nil {
			c.exists.add(externalID)
		}
		return err
	}
	status, err := c.createUser(ctx, createUserRequest{
		Identity:      map[string]string{"external_id": externalID},
		Subscriptions: []subscriptionRef{sub},
	})
	if err == nil {
		c.exists.add(externalID)
	}
	if err == nil && status == http.StatusOK {
		// Upsert with retrieval: the user appeared meanwhile and nothing
		// was applied; the next attempt adds the subscription to it.
		return &DeferredError{Endpoint: epCreateUser, Reason: "the user was created by someone else meanwhile; the subscription is added on the next attempt", After: time.Second}
	}
	return err
}

// createUser creates a user that names no subscription, so a 404 cannot
// be about a missing resource: it means the route is not there, and the
// error says so and is fatal. (UnlinkSubscription names a subscription, and
// its 404 is the ordinary, permanent one.) It returns the answer's status.
func (c *Client) createUser(ctx context.Context, req createUserRequest) (int, error) {
	status, _, err := c.createUserBody(ctx, req)
	return status, err
}

// createUserBody is createUser, also returning the answer's body.
func (c *Client) createUserBody(ctx context.Context, req createUserRequest) (int, []byte, error) {
	status, body, err := c.exchange(ctx, epCreateUser, c.appPath+"/users", req)
	if apiErr, ok := errors.AsType[*APIError](err); ok && apiErr.StatusCode == http.StatusNotFound {
		apiErr.noUsersEndpoint = true
	}
	return status, body, err
}

func hasStatus(err error, status int) bool {
	apiErr, ok := errors.AsType[*APIError](err)
	return ok && apiErr.StatusCode == status
}

// CheckCredentials asks OneSignal about a user that does not exist: a 404
// means the app ID and key were accepted, and the error of any other answer
// says what is wrong. It costs one read request.
func (c *Client) CheckCredentials(ctx context.Context) error {
	_, err := c.call(ctx, epViewUser, "/users/by/external_id/onesignal-cdc-credentials-check", nil)
	if apiErr, ok := errors.AsType[*APIError](err); ok && apiErr.StatusCode == http.StatusNotFound {
		return nil
	}
	return err
}
