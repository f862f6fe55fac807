package chaos

import (
	"context"
	"math/rand/v2"

	"github.com/jackc/pgx/v5"
)

// The workload's picture of the tables: which users and devices exist,
// changed as each statement is drawn, with an undo log for what does not
// commit.

// contact is a users row as the workload knows it: the columns that say
// which OneSignal user and records it feeds ("" is NULL).
type contact struct {
	ext   string
	email string
	toast bool // "Bio" holds a TOAST value
}

// deviceRow is a devices row as the workload knows it.
type deviceRow struct {
	contact int64
	ext     string // "" is NULL: no owner
}

// idSet is a set that draws a random member in O(1), in an order that
// depends only on the operations done: the seed repeats a run.
type idSet[T comparable] struct {
	items []T
	at    map[T]int
}

func (s *idSet[T]) add(v T) {
	if s.at == nil {
		s.at = map[T]int{}
	}
	if _, ok := s.at[v]; ok {
		return
	}
	s.at[v] = len(s.items)
	s.items = append(s.items, v)
}

func (s *idSet[T]) remove(v T) {
	i, ok := s.at[v]
	if !ok {
		return
	}
	last := s.items[len(s.items)-1]
	s.items[i], s.at[last] = last, i
	s.items = s.items[:len(s.items)-1]
	delete(s.at, v)
}

func (s *idSet[T]) len() int { return len(s.items) }

func (s *idSet[T]) random(rng *rand.Rand) T { return s.items[rng.IntN(len(s.items))] }

// The picture's changes, each with its undo.

func (w *workload) putUser(id int64, c contact) {
	old, had := w.users[id]
	w.setUser(id, c, true)
	w.undo = append(w.undo, func() { w.setUser(id, old, had) })
}

func (w *workload) dropUser(id int64) {
	old, had := w.users[id]
	if !had {
		return
	}
	if old.ext != "" { // ON DELETE SET NULL
		w.cascade(old.ext, "")
	}
	w.setUser(id, contact{}, false)
	w.undo = append(w.undo, func() { w.setUser(id, old, had) })
}

// setUser makes the picture's row id c (exists) or none, keeping byExt
// and gone in step. It records no undo.
func (w *workload) setUser(id int64, c contact, exists bool) {
	if old, ok := w.users[id]; ok {
		if old.ext != "" && w.byExt[old.ext] == id {
			delete(w.byExt, old.ext)
			w.gone.add(old.ext)
		}
		delete(w.users, id)
		w.live.remove(id)
	}
	if !exists {
		return
	}
	w.users[id] = c
	w.live.add(id)
	if c.ext != "" {
		w.byExt[c.ext] = id
		w.gone.remove(c.ext)
	}
}

func (w *workload) putDevice(dev string, d deviceRow) {
	old, had := w.devices[dev]
	w.setDevice(dev, d, true)
	w.undo = append(w.undo, func() { w.setDevice(dev, old, had) })
}

func (w *workload) dropDevice(dev string) {
	old, had := w.devices[dev]
	w.setDevice(dev, deviceRow{}, false)
	w.undo = append(w.undo, func() { w.setDevice(dev, old, had) })
}

func (w *workload) setDevice(dev string, d deviceRow, exists bool) {
	if !exists {
		delete(w.devices, dev)
		w.linked.remove(dev)
		w.free.add(dev)
		return
	}
	w.devices[dev] = d
	w.free.remove(dev)
	w.linked.add(dev)
}

// cascade is the devices' foreign key acting on a change of a user's
// external id from old to new ("" when the user goes).
func (w *workload) cascade(old, new string) {
	for _, dev := range w.linked.items {
		if d := w.devices[dev]; d.ext == old {
			d.ext = new
			w.putDevice(dev, d)
		}
	}
}

// undoTo takes back the picture's changes after mark (a length of undo).
func (w *workload) undoTo(mark int) {
	for i := len(w.undo) - 1; i >= mark; i-- {
		w.undo[i]()
	}
	w.undo = w.undo[:mark]
}

// reload reads the picture from the tables, after a commit whose outcome
// is unknown.
func (w *workload) reload(ctx context.Context, conn *pgx.Conn) error {
	users := map[int64]contact{}
	rows, err := conn.Query(ctx, `SELECT "Contact ID", coalesce("External Id", ''), coalesce(email, ''), coalesce(octet_length("Bio"), 0) > 2000 FROM users ORDER BY 1`)
	if err != nil {
		return err
	}
	var ids []int64
	for rows.Next() {
		var id int64
		var c contact
		if err := rows.Scan(&id, &c.ext, &c.email, &c.toast); err != nil {
			return err
		}
		users[id] = c
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	devices := map[string]deviceRow{}
	rows, err = conn.Query(ctx, `SELECT device_id, contact_id, coalesce(ext_id, '') FROM devices ORDER BY 1`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var dev string
		var d deviceRow
		if err := rows.Scan(&dev, &d.contact, &d.ext); err != nil {
			return err
		}
		devices[dev] = d
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, id := range append([]int64(nil), w.live.items...) {
		w.setUser(id, contact{}, false)
	}
	for _, id := range ids {
		w.setUser(id, users[id], true)
	}
	for _, dev := range w.pool {
		d, ok := devices[dev]
		w.setDevice(dev, d, ok)
	}
	w.undo = nil
	return nil
}
