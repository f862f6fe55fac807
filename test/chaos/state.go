package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
)

// tagColumns is the users mapping of the harness's configuration, column
// → tag: what expectedState derives the tags from. tier, which the
// workload adds during the run, is not mapped: a mapped column must exist
// when the connector starts (its start-up checks refuse one that does
// not), and every row that lacked it would be dead-lettered.
var tagColumns = map[string]string{"Plan": "plan", "Score": "level", "Country Code": "geo", "Bio": "Bio"}

// The API generations a run can use (onesignal.model).
const (
	ModelUser   = "user"
	ModelPlayer = "player"
)

// oneSignalState is what OneSignal holds for the ids the workload touched,
// as far as the mapping decides it.
type oneSignalState struct {
	// tags are, in the user model, every user's tags (empty for an
	// external id no row holds now, or a user that never got any), by
	// external id. The player model keeps tags on devices: nil.
	tags map[string]map[string]string
	// owners are every device's owner, by device id: the external id of
	// the user it belongs to, "" for nobody.
	owners map[string]string
	// deviceTags are, in the player model, the tags every device shows:
	// its owner's mapped tags, none when it has no owner. Email records
	// are devices too, and in it. nil in the user model.
	deviceTags map[string]map[string]string
	// records are the owners of the email records of the addresses the
	// rows hold now, by address.
	records map[string]string
}

// expectedState is what the mapping derives from the final rows in model:
// for the external ids in users (every one the workload ever wrote) and
// the devices in pool (the whole pool).
func expectedState(ctx context.Context, conn *pgx.Conn, model string, users, pool []string) (oneSignalState, error) {
	s := oneSignalState{owners: map[string]string{}, records: map[string]string{}}
	rowTags := map[string]map[string]string{} // the mapped tags of the rows, by external id
	recordOf := map[string]string{}           // the address of each external id's row
	// to_jsonb renders a row whatever columns it has by now, with numbers
	// as PostgreSQL writes them, which is also how the connector and the
	// mapping render them.
	rows, err := conn.Query(ctx, `SELECT "External Id", coalesce(email, ''), to_jsonb(u) FROM users u WHERE "External Id" IS NOT NULL`)
	if err != nil {
		return s, fmt.Errorf("read users: %w", err)
	}
	for rows.Next() {
		var id, email string
		var row map[string]json.RawMessage
		if err := rows.Scan(&id, &email, &row); err != nil {
			return s, fmt.Errorf("read users: %w", err)
		}
		rowTags[id] = mappedTags(row)
		if email != "" {
			s.records[email] = id
			recordOf[id] = email
		}
	}
	if err := rows.Err(); err != nil {
		return s, fmt.Errorf("read users: %w", err)
	}
	for _, p := range pool {
		s.owners[p] = ""
	}
	rows, err = conn.Query(ctx, `SELECT device_id, coalesce(ext_id, '') FROM devices`)
	if err != nil {
		return s, fmt.Errorf("read devices: %w", err)
	}
	for rows.Next() {
		var p, owner string
		if err := rows.Scan(&p, &owner); err != nil {
			return s, fmt.Errorf("read devices: %w", err)
		}
		s.owners[p] = owner
	}
	if err := rows.Err(); err != nil {
		return s, fmt.Errorf("read devices: %w", err)
	}
	switch model {
	case ModelPlayer:
		s.deviceTags = map[string]map[string]string{}
		for p, owner := range s.owners {
			s.deviceTags[p] = ownTags(rowTags, owner)
		}
		for address, owner := range s.records {
			s.deviceTags[recordDevice(address)] = ownTags(rowTags, owner)
		}
	default:
		s.tags = map[string]map[string]string{}
		for _, id := range users {
			s.tags[id] = ownTags(rowTags, id) // none for an id no row holds
		}
	}
	return s, nil
}

// recordDevice names an email record among the devices of deviceTags.
func recordDevice(address string) string { return "email " + address }

func ownTags(rowTags map[string]map[string]string, owner string) map[string]string {
	if t, ok := rowTags[owner]; ok && owner != "" {
		return maps.Clone(t)
	}
	return map[string]string{}
}

// mappedTags is what the mapping makes of a users row, rendered as JSON:
// its tag columns, without those NULL or empty (OneSignal has no empty
// tag: "" deletes it).
func mappedTags(row map[string]json.RawMessage) map[string]string {
	tags := map[string]string{}
	for col, tag := range tagColumns {
		v, ok := row[col]
		if !ok || string(v) == "null" {
			continue
		}
		var text string
		if json.Unmarshal(v, &text) != nil {
			text = string(v) // a number
		}
		if text != "" {
			tags[tag] = text
		}
	}
	return tags
}

// observedState reads the emulator's state for the ids in want.
func observedState(st emulator.State, want oneSignalState) oneSignalState {
	byExternalID := map[string]emulator.User{}
	users := map[string]emulator.User{} // by onesignal id
	for _, u := range st.Users {
		users[u.OneSignalID] = u
		if id, ok := u.Identity["external_id"]; ok {
			byExternalID[id] = u
		}
	}
	owner := map[string]string{}
	shown := map[string]map[string]string{} // the tags each device shows: its owner's (the emulator keeps tags on users)
	emails := map[string]string{}           // address → the email record's id
	for _, sub := range st.Subscriptions {
		u := users[sub.OneSignalID]
		owner[sub.ID] = u.Identity["external_id"]
		shown[sub.ID] = u.Tags
		if sub.Type == "Email" {
			emails[sub.Token] = sub.ID
		}
	}
	s := oneSignalState{owners: map[string]string{}, records: map[string]string{}}
	if want.tags != nil {
		s.tags = map[string]map[string]string{}
		for id := range want.tags {
			tags := map[string]string{}
			if u, ok := byExternalID[id]; ok {
				maps.Copy(tags, u.Tags)
			}
			s.tags[id] = tags
		}
	}
	for p := range want.owners {
		s.owners[p] = owner[p]
	}
	for address := range want.records {
		if id, ok := emails[address]; ok {
			s.records[address] = owner[id]
		} else {
			s.records[address] = "(no record)"
		}
	}
	if want.deviceTags != nil {
		s.deviceTags = map[string]map[string]string{}
		for p := range want.owners {
			s.deviceTags[p] = withTags(shown[p])
		}
		for address := range want.records {
			s.deviceTags[recordDevice(address)] = withTags(shown[emails[address]])
		}
	}
	return s
}

func withTags(t map[string]string) map[string]string {
	out := map[string]string{}
	maps.Copy(out, t)
	return out
}

// mismatches lists every difference between want and got, sorted, and
// the ids that differ (external ids, device ids and addresses).
func mismatches(want, got oneSignalState) (lines, ids []string) {
	seen := map[string]bool{}
	differs := func(id string) {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	compareTags := func(what, id string, w, g map[string]string) {
		for _, tag := range slices.Sorted(maps.Keys(unionKeys(w, g))) {
			wv, wok := w[tag]
			gv, gok := g[tag]
			switch {
			case wok && !gok:
				differs(id)
				lines = append(lines, fmt.Sprintf("%s %q: tag %s missing, want %s", what, id, tag, abbreviate(wv)))
			case !wok && gok:
				differs(id)
				lines = append(lines, fmt.Sprintf("%s %q: tag %s is %s, want none", what, id, tag, abbreviate(gv)))
			case wv != gv:
				differs(id)
				lines = append(lines, fmt.Sprintf("%s %q: tag %s is %s, want %s", what, id, tag, abbreviate(gv), abbreviate(wv)))
			}
		}
	}
	for id, w := range want.tags {
		compareTags("user", id, w, got.tags[id])
	}
	for p, w := range want.deviceTags {
		compareTags("device", p, w, got.deviceTags[p])
	}
	for p, w := range want.owners {
		if g := got.owners[p]; g != w {
			differs(p)
			lines = append(lines, fmt.Sprintf("device %q: owner %q, want %q", p, g, w))
		}
	}
	for address, w := range want.records {
		if g := got.records[address]; g != w {
			differs(address)
			lines = append(lines, fmt.Sprintf("email record %q: owner %q, want %q", address, g, w))
		}
	}
	slices.Sort(lines)
	slices.Sort(ids)
	return lines, ids
}

func unionKeys(a, b map[string]string) map[string]struct{} {
	out := map[string]struct{}{}
	for k := range a {
		out[k] = struct{}{}
	}
	for k := range b {
		out[k] = struct{}{}
	}
	return out
}

// abbreviate quotes a tag value, shortening the large (TOAST) ones.
func abbreviate(v string) string {
	if len(v) > 40 {
		return fmt.Sprintf("%q…(%d bytes)", v[:24], len(v))
	}
	return fmt.Sprintf("%q", v)
}
