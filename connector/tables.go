package connector

import (
	"context"
	"slices"
	"time"

	"go.uber.org/zap"
)

// A mapping change re-snapshots the tables it changed. The connector keeps
// in its state, per mapped table, what the table's rows in Kafka were read
// under (a TableMark); at start a table whose mark differs from what the
// configuration says now is snapshotted again by the watermark snapshot,
// beside the stream, so that the sink projects every row the new way: a
// row the new filter leaves out loses the tags it gave, a new tag reaches
// every user. The first run that tracks marks only records them.

// TableMark is what a table's rows in Kafka were read under.
type TableMark struct {
	// Mapping is the mapping's fingerprint of the table
	// (transform.Mapping.Fingerprint).
	Mapping string `json:"mapping"`
	// Filter is the row filter the publication carried for it: the sink
	// may never have seen the rows it left out.
	Filter string `json:"filter,omitempty"`
}

// marks are the tables' marks as the configuration and the publication's
// plans have them now; nil when fingerprints are not tracked.
func (c *Connector) marks() map[string]TableMark {
	if c.cfg.Fingerprints == nil {
		return nil
	}
	m := make(map[string]TableMark, len(c.cfg.Tables))
	for _, t := range c.cfg.Tables {
		m[t] = TableMark{Mapping: c.cfg.Fingerprints[t], Filter: c.pushedFilter(t)}
	}
	return m
}

// pushedFilter is the row filter the publication carries for table, "" for
// none.
func (c *Connector) pushedFilter(table string) string {
	if p := c.plan(table); p != nil {
		return p.filter
	}
	return ""
}

// remapped returns the tables of now whose mark differs from the one in
// was, sorted, with the reason of each. A nil was (marks never recorded)
// gives none.
func remapped(was, now map[string]TableMark) (tables []string, why map[string]string) {
	if was == nil {
		return nil, nil
	}
	why = map[string]string{}
	for t, m := range now {
		old, ok := was[t]
		switch {
		case !ok:
			why[t] = "the table is new to the mapping"
		case old.Mapping != m.Mapping:
			why[t] = "the mapping of the table changed"
		case old.Filter != "" && old.Filter != m.Filter:
			why[t] = "the publication's row filter of the table changed (it was " + old.Filter + "): the sink may never have seen rows it left out"
		default:
			continue
		}
		tables = append(tables, t)
	}
	slices.Sort(tables)
	return tables, why
}

// snapshotRemapped queues a snapshot of every table whose mapping changed
// since the last run, and records the new marks, in one save: a crash
// after it resumes the snapshots, one before it finds the change again.
func (c *Connector) snapshotRemapped(ctx context.Context) error {
	now := c.marks()
	if now == nil {
		return nil
	}
	was := c.state.st.Tables
	tables, why := remapped(was, now)
	if was == nil {
		c.log.Info("recording what the mapping reads of each table: a change of it later snapshots the table again", zap.Strings("tables", c.cfg.Tables))
	}
	var queue, keyless []string
	for _, t := range tables {
		if p := c.plan(t); p != nil && len(p.key) == 0 {
			keyless = append(keyless, t)
			continue
		}
		queue = append(queue, t)
	}
	if len(keyless) > 0 {
		c.log.Warn("the mapping of tables without a primary key changed, and they cannot be snapshotted: their rows follow the new mapping only when changed again", zap.Strings("tables", keyless))
	}
	if len(queue) > 0 && !c.cfg.InitialSnapshot {
		for _, t := range queue {
			c.log.Warn("the mapping of a table changed, and postgres.snapshot is never: its rows follow the new mapping only when changed again, or after onesignal-cdc snapshot --table "+t,
				zap.String("table", t), zap.String("why", why[t]))
		}
		queue = nil
	}
	same := len(queue) == 0 && len(was) == len(now)
	for t, m := range now {
		if was[t] != m {
			same = false
		}
	}
	if same {
		return nil
	}
	err := c.state.update(ctx, func(st *State) {
		st.Tables = now
		if len(queue) > 0 && st.Snapshots == nil {
			st.Snapshots = make(map[string]*Progress)
		}
		requested := time.Now().UTC()
		for _, t := range queue {
			st.Snapshots[t] = &Progress{Requested: requested} // every row, from the start
		}
	})
	if err != nil {
		return err
	}
	for _, t := range queue {
		c.log.Info("snapshotting a table again, beside the stream, for the new mapping", zap.String("table", t), zap.String("why", why[t]))
	}
	return nil
}
