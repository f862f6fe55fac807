package onesignal

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// More of the user model's endpoints, by template.
const (
	epSetAliases  = "PATCH /apps/{app_id}/users/by/external_id/{external_id}/identity"
	epDeleteAlias = "DELETE /apps/{app_id}/users/by/external_id/{external_id}/identity/{alias_label}"
	epDeleteUser  = "DELETE /apps/{app_id}/users/by/external_id/{external_id}"
	epViewUser    = "GET /apps/{app_id}/users/by/external_id/{id}"
)

// The user model's properties besides tags that SetUser writes, by their
// API names. lat and long are numbers, the others strings.
const (
	PropLanguage   = "language"    // ISO 639-1
	PropTimezoneID = "timezone_id" // IANA, e.g. "Europe/Berlin"
	PropCountry    = "country"     // ISO 3166-1 alpha-2
	PropLat        = "lat"         // −90 to 90
	PropLong       = "long"        // −180 to 180
)

// UserProperties are the properties UserWrite.Properties takes.
var UserProperties = []string{PropLanguage, PropTimezoneID, PropCountry, PropLat, PropLong}

// UserWrite is what SetUser writes to one user.
type UserWrite struct {
	// Tags are data tags; "" deletes one. Tags not named are left alone.
	Tags map[string]string
	// Properties are the user's properties besides tags (UserProperties),
	// in text: lat and long as decimal numbers ("52.52"), which go as JSON
	// numbers. "" clears one. Properties not named are left alone. The
	// client checks the names and that lat and long are numbers, not the
	// values' standards or ranges: that is the caller's to do.
	Properties map[string]string
	// Aliases are custom aliases, label → id; "" deletes the alias.
	// Aliases not named are left alone. external_id is the user's own
	// (SetUser's externalID) and onesignal_id OneSignal's: neither is
	// named here.
	Aliases map[string]string
	// Create says the user is probably new (its row was just inserted or
	// snapshotted): see SetUser.
	Create bool
}

// progress is how far a write that takes several requests got.
type progress struct {
	write string // the write's fingerprint
	done  int    // its requests done
}

// SetUser writes w to the user whose external_id is externalID.
//
// With w.Create the user is created with everything in one request (create
// user upserts): the tags that are set, the properties that are set, the
// aliases in its identity; it is created even when every tag is a
// deletion, since the row says the user exists. Should the user exist
// already, OneSignal answers 200 with the user as it was, without any of
// it; the client remembers that the user exists and asks, with a
// *DeferredError, for the attempt to be repeated once the user's
// one-second window has passed, which then updates it. Should the user it
// answers with be another's (one of the aliases is that user's), the user
// is created without its aliases, as for a 409 below.
//
// Without w.Create, or for a user known to exist, the tags and properties
// go in one update (PATCH …/users/by/external_id/{id}); a missing user is
// created with what is set (the deletions are left out: there is nothing
// to delete), and not at all when nothing is. The aliases go in one more
// request (PATCH …/identity), and each deleted alias in one of its own
// (DELETE …/identity/{label}; one the user does not have counts as done).
// OneSignal allows one write per second per user, so an attempt makes one
// write to a user that exists: the first of them; when more are left, it
// returns a *DeferredError, and its repeat (the same w) goes on with the
// next. The client remembers the aliases it wrote to each user (the last
// 10,000 users), so a write that names them again does not repeat them;
// after a restart they are written once more. An alias another user has
// is OneSignal's 409: the user is created without its aliases, and their
// request is repeated (a *DeferredError) for AliasConflictWait, for the
// other user to let them go (the user a row named before its external id
// changed loses them in a write of its own); then the 409 is permanent.
//
// The tags go in one request, and OneSignal accepts at most 100 tag
// changes per request (400 otherwise). Splitting them is the caller's
// choice to make: several requests in one attempt would trip the per-user
// rate limit.
func (c *Client) SetUser(ctx context.Context, externalID string, w UserWrite) error {
	if externalID == "" {
		return errors.New("set user: the external ID is empty")
	}
	if err := c.awaitDeleted(ctx, externalID); err != nil {
		return err
	}
	update, create, err := userProperties(w)
	if err != nil {
		return fmt.Errorf("set user: %w", err)
	}
	if err := checkAliasLabels(w.Aliases); err != nil {
		return fmt.Errorf("set user: %w", err)
	}
	// A user whose aliases OneSignal found another's is created without
	// them: they follow in a request of their own, which waits.
	_, conflicted := c.conflicts.get(externalID)
	newUser := createUserRequest{Identity: map[string]string{"external_id": externalID}, Properties: create}
	for label, id := range w.Aliases {
		if id != "" && !conflicted {
			newUser.Identity[label] = id
		}
	}
	stores := len(create) > 0 || len(newUser.Identity) > 1 || slices.ContainsFunc(slices.Collect(maps.Values(w.Aliases)), func(id string) bool { return id != "" })
	aliasPrint := fingerprint(w.Aliases)
	write := fingerprint(map[string]any{"tags": w.Tags, "properties": w.Properties, "aliases": w.Aliases})
	created := func() {
		c.exists.add(externalID)
		c.pending.remove(externalID)
		if len(w.Aliases) > 0 {
			c.aliases.set(externalID, aliasPrint)
		}
	}
	// createdWithout: the user was created with its tags and properties
	// but not its aliases, which another user had; they are left to do.
	createdWithout := func() error {
		c.exists.add(externalID)
		done := 0
		if len(update) > 0 {
			done = 1 // userSteps' first request, the update, is applied
		}
		c.pending.set(externalID, progress{write: write, done: done})
		return &DeferredError{Endpoint: epSetAliases, Reason: "the user is created; its aliases follow once its one-second window has passed", After: time.Second}
	}
	// refusedAliases: OneSignal refused to create the user with aliases
	// another user has; the next attempt creates it without them.
	refusedAliases := func(err error) error {
		c.conflicts.set(externalID, c.now())
		return &DeferredError{Endpoint: epCreateUser, Reason: "an alias is another user's (" + err.Error() + "); the user is created without its aliases, which follow once the other user lets them go", After: time.Second}
	}

	if w.Create && !c.exists.has(externalID) {
		status, body, err := c.createUserBody(ctx, newUser)
		if aliasConflict(err) && !conflicted {
			return refusedAliases(err)
		}
		if err != nil {
			return err
		}
		if status != http.StatusOK {
			if !conflicted {
				created()
				return nil
			}
			return createdWithout()
		}
		// 200 is "upsert with retrieval": the user was there, and
		// OneSignal returned it without applying anything.
		if err := retrievedOther(body, newUser.Identity); err != nil {
			if !conflicted {
				return refusedAliases(err) // another user has an alias: it waits
			}
			return err
		}
		c.exists.add(externalID)
		if len(w.Tags) == 0 && len(w.Properties) == 0 && len(w.Aliases) == 0 {
			return nil
		}
		return &DeferredError{Endpoint: epCreateUser, Reason: "the user existed already; it is updated once its one-second window has passed", After: time.Second}
	}

	steps := c.userSteps(externalID, w, update, aliasPrint)
	if len(steps) == 0 {
		return nil
	}
	start := 0
	if p, ok := c.pending.get(externalID); ok && p.write == write && p.done < len(steps) {
		start = p.done
	}
	step := steps[start]
	_, err = c.call(ctx, step.endpoint, step.path, step.body)
	switch {
	case step.endpoint == epDeleteAlias && hasStatus(err, http.StatusNotFound):
		err = nil // the alias is not there, or not the user: either way it is gone
	case step.endpoint == epSetAliases && aliasConflict(err):
		// Another user has the alias: most often the user a row named
		// before its external id changed, whose write that lets it go
		// is on its way. Wait for it, for a while.
		since, ok := c.conflicts.get(externalID)
		if !ok {
			since = c.now()
			c.conflicts.set(externalID, since)
		}
		if c.now().Sub(since) < c.aliasWait {
			c.pending.set(externalID, progress{write: write, done: start})
			return &DeferredError{Endpoint: epSetAliases, Reason: "an alias is another user's (" + err.Error() + "); it is set once the other user lets it go", After: 2 * time.Second}
		}
		c.conflicts.remove(externalID)
		return fmt.Errorf("%w: another user has held the alias for %s: remove it from that user (or fix the rows that give it twice)", err, c.aliasWait)
	case hasStatus(err, http.StatusNotFound):
		if !stores {
			return nil
		}
		status, body, cerr := c.createUserBody(ctx, newUser)
		if aliasConflict(cerr) && !conflicted {
			return refusedAliases(cerr)
		}
		if cerr != nil {
			return cerr
		}
		if status != http.StatusOK {
			if conflicted {
				return createdWithout()
			}
			created()
			return nil
		}
		if cerr := retrievedOther(body, newUser.Identity); cerr != nil {
			if !conflicted {
				return refusedAliases(cerr)
			}
			return cerr
		}
		// Someone created the user between our two requests, and
		// OneSignal returned it without applying anything. It exists
		// now, so the update will take.
		_, err = c.call(ctx, step.endpoint, step.path, step.body)
	}
	if err != nil {
		return err
	}
	c.exists.add(externalID)
	if next := start + 1; next < len(steps) {
		c.pending.set(externalID, progress{write: write, done: next})
		return &DeferredError{Endpoint: steps[next].endpoint, Reason: "one write to the user is done; the next follows once its one-second window has passed", After: time.Second}
	}
	c.pending.remove(externalID)
	if len(w.Aliases) > 0 {
		c.aliases.set(externalID, aliasPrint)
		c.conflicts.remove(externalID)
	}
	return nil
}

// AliasConflictWait is how long SetUser waits for another user to let go
// of an alias it should set (409 "aliases belong to different users")
// before the conflict is permanent.
const AliasConflictWait = 5 * time.Minute

// aliasConflict reports whether err is OneSignal's refusal of an alias
// that another user has.
func aliasConflict(err error) bool {
	apiErr, ok := errors.AsType[*APIError](err)
	return ok && apiErr.StatusCode == http.StatusConflict && apiErr.mentions("alias")
}

// userStep is one request of a SetUser to a user that exists.
type userStep struct {
	endpoint, path string
	body           any // nil: none
}

// userSteps lists the requests that write w to an existing user: the
// update of tags and properties, the aliases set, each alias deleted (in
// label order); the aliases only when they are not the ones last written.
func (c *Client) userSteps(externalID string, w UserWrite, update properties, aliasPrint string) []userStep {
	user := "/users/by/external_id/" + pathSegment(externalID)
	var steps []userStep
	if len(update) > 0 {
		steps = append(steps, userStep{epUpdateUser, user, updateUserRequest{Properties: update}})
	}
	if len(w.Aliases) == 0 {
		return steps
	}
	if last, ok := c.aliases.get(externalID); ok && last == aliasPrint {
		return steps
	}
	set := map[string]string{}
	var deleted []string
	for label, id := range w.Aliases {
		if id == "" {
			deleted = append(deleted, label)
		} else {
			set[label] = id
		}
	}
	if len(set) > 0 {
		steps = append(steps, userStep{epSetAliases, user + "/identity", identityRequest{Identity: set}})
	}
	slices.Sort(deleted)
	for _, label := range deleted {
		steps = append(steps, userStep{epDeleteAlias, user + "/identity/" + pathSegment(label), nil})
	}
	return steps
}

// DeleteUser deletes the user whose external_id is externalID, with its
// aliases, properties and subscriptions (DELETE
// /apps/{app_id}/users/by/external_id/{external_id}). A user OneSignal
// does not have (404) counts as deleted. OneSignal deletes asynchronously,
// "shortly after" it answers: a write to the user meanwhile, a create user
// included (it finds the user and answers 200), lands on the user being
// deleted and is lost with it.
func (c *Client) DeleteUser(ctx context.Context, externalID string) error {
	if externalID == "" {
		return errors.New("delete user: the external ID is empty")
	}
	_, err := c.call(ctx, epDeleteUser, "/users/by/external_id/"+pathSegment(externalID), nil)
	if hasStatus(err, http.StatusNotFound) {
		err = nil
	}
	if err != nil {
		return err
	}
	c.exists.remove(externalID)
	c.aliases.remove(externalID)
	c.pending.remove(externalID)
	c.deleted.add(externalID)
	return nil
}

// awaitDeleted returns a *DeferredError while a user this client deleted
// is still there: OneSignal deletes "shortly after" it answers, and a
// write meanwhile (a create user included, which finds the user) would be
// lost with it. It asks OneSignal (view user) only for users it deleted,
// the last 10,000; after a restart it does not know of them.
func (c *Client) awaitDeleted(ctx context.Context, externalID string) error {
	if !c.deleted.has(externalID) {
		return nil
	}
	_, err := c.call(ctx, epViewUser, "/users/by/external_id/"+pathSegment(externalID), nil)
	switch {
	case hasStatus(err, http.StatusNotFound):
		c.deleted.remove(externalID)
		return nil
	case err != nil:
		return err
	}
	return &DeferredError{Endpoint: epViewUser, Reason: "the user is still being deleted (OneSignal deletes asynchronously); the write follows once it is gone", After: time.Second}
}

// LinkDevice is LinkSubscription, for the sink's one interface over both
// models: w.Tags must be empty (a subscription takes its user's tags), and
// w.Properties too (the user model keeps language, timezone and country on
// the user: SetUser).
func (c *Client) LinkDevice(ctx context.Context, subscriptionID, externalID string, w DeviceWrite) error {
	if len(w.Properties) > 0 {
		return errors.New("link subscription: the user model keeps properties on the user, not on a subscription")
	}
	return c.LinkSubscription(ctx, subscriptionID, externalID, w.Tags)
}

// userProperties renders w's tags and properties as an update user's
// properties (everything, deletions and clears included: "" for a tag or a
// string property, null for lat and long) and as a create user's (only
// what is set).
func userProperties(w UserWrite) (update, create properties, err error) {
	update, create = properties{}, properties{}
	if len(w.Tags) > 0 {
		update["tags"] = w.Tags
		set := map[string]string{}
		for k, v := range w.Tags {
			if v != "" {
				set[k] = v
			}
		}
		if len(set) > 0 {
			create["tags"] = set
		}
	}
	for _, name := range slices.Sorted(maps.Keys(w.Properties)) {
		v := w.Properties[name]
		switch name {
		case PropLanguage, PropTimezoneID, PropCountry:
			update[name] = v
			if v != "" {
				create[name] = v
			}
		case PropLat, PropLong:
			if v == "" {
				update[name] = nil
				continue
			}
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
				return nil, nil, fmt.Errorf("property %s is not a decimal number", name)
			}
			update[name], create[name] = f, f
		default:
			return nil, nil, fmt.Errorf("property %q is not one OneSignal's user model takes: use %s", name, strings.Join(UserProperties, ", "))
		}
	}
	return update, create, nil
}

// checkAliasLabels refuses alias labels that are no custom alias's.
func checkAliasLabels(aliases map[string]string) error {
	for label := range aliases {
		switch label {
		case "":
			return errors.New("an alias label is empty")
		case "external_id":
			return errors.New("alias external_id is the user's external ID, not a custom alias to set")
		case "onesignal_id":
			return errors.New("alias onesignal_id is OneSignal's to assign, not a custom alias to set")
		}
	}
	return nil
}

// retrievedOther reads the user a create user answered 200 with (upsert
// with retrieval) and returns a permanent error when it is not the user
// asked for: its external_id differs, so one of the aliases in identity
// belongs to another user, and writing on would write to that user or
// never get anywhere. An answer that shows no identity is taken to be the
// user asked for.
func retrievedOther(body []byte, identity map[string]string) error {
	var found struct {
		Identity map[string]string `json:"identity"`
	}
	if json.Unmarshal(body, &found) != nil || len(found.Identity) == 0 || found.Identity["external_id"] == identity["external_id"] {
		return nil
	}
	var labels []string
	for label, id := range identity {
		if label != "external_id" && found.Identity[label] == id {
			labels = append(labels, label)
		}
	}
	slices.Sort(labels)
	return fmt.Errorf("%s: the user's alias %s belongs to another OneSignal user, which create user returned instead: "+
		"an alias must identify one user; remove it from the other user or give this one another", epCreateUser, strings.Join(labels, ", "))
}

// fingerprint is a short digest of v's JSON (maps in key order).
func fingerprint(v any) string {
	b, _ := json.Marshal(v) // maps of strings always encode
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}
