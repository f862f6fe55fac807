package sink

import (
	"crypto/sha256"
	"maps"
	"slices"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/sink/desired"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// idleMemory is what the sink remembers of idle targets: a bounded LRU of
// their memos, each kept compact, since a sink that applied a million
// users holds Config.Memory of them (a memo with its maps takes about
// 770 bytes; compact, about 250). Not safe for concurrent use: the sink's
// idleMu guards it.
type idleMemory struct {
	l *lru[transform.Target, idleMemo]
}

func newIdleMemory(size int) *idleMemory {
	return &idleMemory{l: newLRU[transform.Target, idleMemo](size)}
}

// idleMemo is a memo without maps: slices sized to what they hold, and
// the player model's fields behind a pointer, nil for the user model.
type idleMemo struct {
	partition int
	next      time.Time
	applied   []appliedPart
	records   []transform.Record
	player    *playerMemo
}

type appliedPart struct {
	part   string
	digest [sha256.Size]byte
}

// playerMemo is the player model's part of a memo.
type playerMemo struct {
	answered  []string
	sending   desired.Position
	memberFor desired.Position
	memberOf  string
	carried   []string
}

func (m *idleMemory) get(k transform.Target) (memo, bool) {
	im, ok := m.l.get(k)
	if !ok {
		return memo{}, false
	}
	return im.memo(), true
}

func (m *idleMemory) put(k transform.Target, v memo) { m.l.put(k, compact(v)) }

func (m *idleMemory) remove(k transform.Target) { m.l.remove(k) }

// forgetEffects drops what the memos of the partitions given say was
// applied, keeping their windows.
func (m *idleMemory) forgetEffects(partitions map[int]bool) {
	for _, e := range m.l.items {
		im := &e.Value.(*lruEntry[transform.Target, idleMemo]).val
		if partitions[im.partition] {
			*im = im.withoutEffects()
		}
	}
}

// lend returns k's memo for a target that becomes active, and keeps
// only its window in the memory until release puts the memo back: a
// generation that ends with the target active drops the memo it lent,
// and what the memory held before would be stale by then (OneSignal may
// have accepted other values since, or a write was cut short).
func (m *idleMemory) lend(k transform.Target) (memo, bool) {
	im, ok := m.l.get(k)
	if !ok {
		return memo{}, false
	}
	m.l.put(k, im.withoutEffects())
	return im.memo(), true
}

// withoutEffects is im with only its partition and its window.
func (im idleMemo) withoutEffects() idleMemo {
	return idleMemo{partition: im.partition, next: im.next}
}

func compact(v memo) idleMemo {
	im := idleMemo{partition: v.partition, next: v.next}
	if len(v.applied) > 0 {
		im.applied = make([]appliedPart, 0, len(v.applied))
		for _, part := range slices.Sorted(maps.Keys(v.applied)) {
			im.applied = append(im.applied, appliedPart{part, v.applied[part]})
		}
	}
	if len(v.records) > 0 {
		im.records = make([]transform.Record, 0, len(v.records))
		for r, ok := range v.records {
			if ok {
				im.records = append(im.records, r)
			}
		}
	}
	if len(v.answered) > 0 || !v.sending.IsZero() || !v.memberFor.IsZero() || v.memberOf != "" || len(v.carried) > 0 {
		p := &playerMemo{sending: v.sending, memberFor: v.memberFor, memberOf: v.memberOf, carried: slices.Clip(v.carried)}
		for d, ok := range v.answered {
			if ok {
				p.answered = append(p.answered, d)
			}
		}
		im.player = p
	}
	return im
}

func (im idleMemo) memo() memo {
	m := memo{partition: im.partition, next: im.next}
	if len(im.applied) > 0 {
		m.applied = make(map[string][sha256.Size]byte, len(im.applied))
		for _, a := range im.applied {
			m.applied[a.part] = a.digest
		}
	}
	if len(im.records) > 0 {
		m.records = make(map[transform.Record]bool, len(im.records))
		for _, r := range im.records {
			m.records[r] = true
		}
	}
	if p := im.player; p != nil {
		m.sending, m.memberFor, m.memberOf, m.carried = p.sending, p.memberFor, p.memberOf, p.carried
		if len(p.answered) > 0 {
			m.answered = make(map[string]bool, len(p.answered))
			for _, d := range p.answered {
				m.answered[d] = true
			}
		}
	}
	return m
}
