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

func targetOf(op transform.Op) targetKey {
	if op.Kind == transform.SetTags {
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
// messages they came from.
type request struct {
	kind  transform.Kind    // SetTags for a user; Link or Unlink for a device
	tags  map[string]string // SetTags: later values win, "" deletes
	owner string            // Link: the external ID the device goes to
	from  []*fetched        // once per operation merged in
	// partial is set on the first part of tag changes split for OneSignal's
	// limit per request: its messages are done with the part that follows
	// (which holds them too), and dead-lettered if this part is refused.
	partial bool

	digest [sha256.Size]byte // effect(), once taken to be sent
}

// maxTagsPerRequest is OneSignal's limit of tag changes in one request.
const maxTagsPerRequest = 100

// split keeps the first maxTagsPerRequest tag changes (in key order) in r
// and returns the rest as the request to send next, when there are more.
func (r *request) split() (rest *request) {
	if r.kind != transform.SetTags || len(r.tags) <= maxTagsPerRequest {
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
// for a device's owner.
func (r *request) merge(op transform.Op, m *fetched) {
	switch op.Kind {
	case transform.SetTags:
		if r.tags == nil {
			r.tags = make(map[string]string, len(op.Tags))
		}
		maps.Copy(r.tags, op.Tags)
	case transform.Link, transform.Unlink:
		r.owner = op.ExternalID
	}
	r.kind = op.Kind
	r.from = append(r.from, m)
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

// send makes one attempt at the request.
func (r *request) send(ctx context.Context, api OneSignal, to targetKey) error {
	switch r.kind {
	case transform.SetTags:
		return api.SetTags(ctx, to.id, r.tags)
	case transform.Link:
		return api.LinkSubscription(ctx, to.id, r.owner)
	case transform.Unlink:
		return api.UnlinkSubscription(ctx, to.id)
	}
	return fmt.Errorf("unknown operation %v", r.kind)
}
