package sink

import (
	"context"
	"crypto/sha256"
	"fmt"
	"maps"
	"slices"

	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// targetKey names what one OneSignal request changes, and what OneSignal's
// limit of one write per second applies to: a user (by external ID) or a
// device (by subscription ID).
type targetKey struct {
	device bool
	id     string
}

// targetOf is the target of op. Email and SMS records target their user:
// adding one is a write to the user, and within the user's window it
// queues behind the user's tag changes rather than competing with them.
func targetOf(op transform.Op) targetKey {
	switch op.Kind {
	case transform.SetTags, transform.AddEmail, transform.AddSMS:
		return targetKey{id: op.ExternalID}
	}
	return targetKey{device: true, id: op.DeviceID}
}

func (k targetKey) String() string {
	if k.device {
		return "device " + k.id
	}
	return "user " + k.id
}

// request is the operations for one target merged into one call, and the
// messages they came from. A user's request holds tag changes and email or
// SMS records; a device's, its last link or unlink. What is sent at once
// is one record, or up to maxTagsPerRequest tag changes (see split).
type request struct {
	kind     transform.Kind    // Link or Unlink for a device; SetTags for a user
	tags     map[string]string // SetTags: later values win, "" deletes
	records  []record          // AddEmail, AddSMS: in arrival order, no repeats
	owner    string            // Link: the external ID the device goes to
	previous string            // Unlink: the owner the change named, if known
	from     []*fetched        // once per operation merged in
	// partial is set on the first part of a request split for OneSignal's
	// limits: its messages are done with the part that follows (which
	// holds them too), and dead-lettered if this part is refused.
	partial bool
	// tagCount is the non-empty tags of the whole request before it was
	// split, for onesignal.tag_limit.
	tagCount int

	digest   [sha256.Size]byte // effect(), once taken to be sent
	attempts int               // failed attempts so far, for the backoff
}

// record is an email address or phone number to give a user.
type record struct{ channel, identifier string }

// Channels of records, as the API clients name them.
const (
	channelEmail = "email"
	channelSMS   = "sms"
)

// maxTagsPerRequest is OneSignal's limit of tag changes in one request.
const maxTagsPerRequest = 100

// split keeps in r what one call sends and returns the rest as the request
// to send next, if any: records first, one per call (in the player model
// an email or SMS record with the external id is a device the tags can
// then reach), then the tag changes, the first maxTagsPerRequest (in key
// order) per call.
func (r *request) split() (rest *request) {
	if len(r.records) > 0 && (len(r.records) > 1 || len(r.tags) > 0) {
		rest = &request{kind: transform.SetTags, tags: r.tags, records: r.records[1:], from: r.from}
		r.records, r.tags = r.records[:1], nil
		r.partial = true
		return rest
	}
	if len(r.tags) <= maxTagsPerRequest {
		return nil
	}
	rest = &request{kind: r.kind, tags: make(map[string]string, len(r.tags)-maxTagsPerRequest), from: r.from}
	for _, k := range slices.Sorted(maps.Keys(r.tags))[maxTagsPerRequest:] {
		rest.tags[k] = r.tags[k]
		delete(r.tags, k)
	}
	r.partial = true
	return rest
}

// merge adds op, which targets the request's target. Every operation says
// what the state becomes, so the later one wins: per tag for tags, whole
// for a device's owner. A record is added once.
func (r *request) merge(op transform.Op, m *fetched) {
	switch op.Kind {
	case transform.SetTags:
		if r.tags == nil {
			r.tags = make(map[string]string, len(op.Tags))
		}
		maps.Copy(r.tags, op.Tags)
		r.kind = transform.SetTags
	case transform.AddEmail, transform.AddSMS:
		rec := record{channel: channelEmail, identifier: op.Identifier}
		if op.Kind == transform.AddSMS {
			rec.channel = channelSMS
		}
		if !slices.Contains(r.records, rec) {
			r.records = append(r.records, rec)
		}
		r.kind = transform.SetTags
	case transform.Link:
		r.kind, r.owner, r.previous = op.Kind, op.ExternalID, ""
	case transform.Unlink:
		r.kind, r.owner, r.previous = op.Kind, "", op.PreviousExternalID
	}
	r.from = append(r.from, m)
}

// String names what the request does, for logs and dead letters.
func (r *request) String() string {
	switch {
	case r.kind == transform.Link || r.kind == transform.Unlink:
		return r.kind.String()
	case len(r.records) == 1 && r.records[0].channel == channelEmail:
		return transform.AddEmail.String()
	case len(r.records) == 1:
		return transform.AddSMS.String()
	}
	return transform.SetTags.String()
}

// user is the external ID whose parked tags the request reads or writes:
// the user a tag change or record is for, or a link's new owner; "" for an
// unlink.
func (r *request) user(to targetKey) string {
	switch {
	case !to.device:
		return to.id
	case r.kind == transform.Link:
		return r.owner
	}
	return ""
}

// effect is a digest of the state the request sets. Two requests to a
// target with the same effect leave OneSignal the same, so the second need
// not be sent.
func (r *request) effect() [sha256.Size]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%d\x00%s\x00", r.kind, r.owner)
	for _, k := range slices.Sorted(maps.Keys(r.tags)) {
		fmt.Fprintf(h, "%d:%s%d:%s", len(k), k, len(r.tags[k]), r.tags[k])
	}
	for _, rec := range r.records {
		fmt.Fprintf(h, "\x00%s:%d:%s", rec.channel, len(rec.identifier), rec.identifier)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// applied counts the request's operations as applied; a partial request's
// messages wait for the part that follows.
func (r *request) applied() {
	if r.partial {
		return
	}
	for _, m := range r.from {
		m.applied()
	}
}

// send makes one attempt at the request. carry are tags parked for the
// user that go with a link or a record (player model); tags are what a
// tag change writes (the request's, over the parked ones).
func (r *request) send(ctx context.Context, api OneSignal, to targetKey, tags, carry map[string]string) error {
	switch {
	case r.kind == transform.Link:
		return api.LinkSubscription(ctx, to.id, r.owner, carry)
	case r.kind == transform.Unlink:
		return api.UnlinkSubscription(ctx, to.id, r.previous)
	case len(r.records) == 1:
		return api.AddRecord(ctx, to.id, r.records[0].channel, r.records[0].identifier, carry)
	}
	return api.SetTags(ctx, to.id, tags)
}
