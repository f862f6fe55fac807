package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal/onesignaltest"
)

// tagColumns is the users mapping of the harness's configuration, column
// → tag: what expectedState derives the tags from. tier, which the
// workload adds during the run, is not mapped: a mapped column must exist
// when the connector starts (its start-up checks refuse one that does
// not), and every row that lacked it would be dead-lettered.
var tagColumns = map[string]string{"plan": "plan", "score": "level", "country": "geo", "bio": "bio"}

// oneSignalState is what OneSignal holds for the ids the workload touched:
// every user's tags (empty for a deleted row or a user that never got
// any) and every device's owner ("" for nobody).
type oneSignalState struct {
	tags   map[string]map[string]string // external id → tag → value
	owners map[string]string            // player id → external id
}

// expectedState is what the mapping derives from the final rows, for the
// users in users (every id the workload ever wrote) and the devices in
// devices (the whole pool).
func expectedState(ctx context.Context, conn *pgx.Conn, users, devices []string) (oneSignalState, error) {
	s := oneSignalState{tags: map[string]map[string]string{}, owners: map[string]string{}}
	for _, id := range users {
		s.tags[id] = map[string]string{} // a deleted row leaves no tags
	}
	for _, p := range devices {
		s.owners[p] = ""
	}
	// to_jsonb renders a row whatever columns it has by now, with numbers
	// as PostgreSQL writes them, which is also how the connector and the
	// mapping render them.
	rows, err := conn.Query(ctx, `SELECT external_id, to_jsonb(u) FROM users u`)
	if err != nil {
		return s, fmt.Errorf("read users: %w", err)
	}
	for rows.Next() {
		var id string
		var row map[string]json.RawMessage
		if err := rows.Scan(&id, &row); err != nil {
			return s, fmt.Errorf("read users: %w", err)
		}
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
			if text != "" { // OneSignal has no empty tag: "" deletes it
				tags[tag] = text
			}
		}
		s.tags[id] = tags
	}
	if err := rows.Err(); err != nil {
		return s, fmt.Errorf("read users: %w", err)
	}
	rows, err = conn.Query(ctx, `SELECT player_id, coalesce(user_external_id, '') FROM devices`)
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
	return s, rows.Err()
}

// observedState reads the emulator's state for the ids in want.
func observedState(st onesignaltest.State, want oneSignalState) oneSignalState {
	byExternalID := map[string]onesignaltest.User{}
	externalIDOf := map[string]string{} // onesignal id → external id
	for _, u := range st.Users {
		if id, ok := u.Identity["external_id"]; ok {
			byExternalID[id] = u
			externalIDOf[u.OneSignalID] = id
		}
	}
	owner := map[string]string{}
	for _, sub := range st.Subscriptions {
		owner[sub.ID] = externalIDOf[sub.OneSignalID]
	}
	s := oneSignalState{tags: map[string]map[string]string{}, owners: map[string]string{}}
	for id := range want.tags {
		tags := map[string]string{}
		if u, ok := byExternalID[id]; ok {
			maps.Copy(tags, u.Tags)
		}
		s.tags[id] = tags
	}
	for p := range want.owners {
		s.owners[p] = owner[p]
	}
	return s
}

// mismatches lists every difference between want and got, sorted, and
// the ids that differ.
func mismatches(want, got oneSignalState) (lines, ids []string) {
	seen := map[string]bool{}
	differs := func(id string) {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for id, w := range want.tags {
		g := got.tags[id]
		for _, tag := range slices.Sorted(maps.Keys(unionKeys(w, g))) {
			wv, wok := w[tag]
			gv, gok := g[tag]
			switch {
			case wok && !gok:
				differs(id)
				lines = append(lines, fmt.Sprintf("user %s: tag %s missing, want %s", id, tag, abbreviate(wv)))
			case !wok && gok:
				differs(id)
				lines = append(lines, fmt.Sprintf("user %s: tag %s is %s, want none", id, tag, abbreviate(gv)))
			case wv != gv:
				differs(id)
				lines = append(lines, fmt.Sprintf("user %s: tag %s is %s, want %s", id, tag, abbreviate(gv), abbreviate(wv)))
			}
		}
	}
	for p, w := range want.owners {
		if g := got.owners[p]; g != w {
			differs(p)
			lines = append(lines, fmt.Sprintf("device %s: owner %q, want %q", p, g, w))
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
