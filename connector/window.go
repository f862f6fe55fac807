package connector

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/checkpoint"
	"github.com/onesignal-cdc/onesignal-cdc/connector/pgcodec"
	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// A snapshot window is the stretch of the stream between a chunk's low
// and high watermarks, which the snapshotter writes around the chunk's
// SELECT (snapshot.go). The chunk shows each of its rows as it was at some
// point inside the window; the stream shows every change in it. At the
// high watermark, each row of the chunk is
//
//   - produced as read, when the stream did not carry it in the window;
//   - dropped, when the stream deleted it in the window, or sent the whole
//     row: the stream's state is as new as the chunk's, or newer;
//   - completed, when the stream sent only part of it (an UPDATE leaves
//     out unchanged TOAST values): the columns the stream sent take the
//     newest value it sent, the others the chunk's, which no change in the
//     window touched.
//
// So every key's events stay in order, and a value the stream could not
// send still reaches Kafka.

// watermark is the content of a watermark message: "L <id> <table>" opens
// the window of chunk id, "H <id>" closes it.
type watermark struct {
	low   bool
	id    string
	table string // the low watermark's: "schema.table"
}

func (w watermark) String() string {
	if w.low {
		return "L " + w.id + " " + w.table
	}
	return "H " + w.id
}

// parseWatermark reads a watermark message's content; ok is false for
// anything else. The table is the rest of the line: a quoted name may
// hold spaces.
func parseWatermark(content []byte) (w watermark, ok bool) {
	kind, rest, _ := strings.Cut(string(content), " ")
	id, table, hasTable := strings.Cut(rest, " ")
	switch {
	case id == "":
	case kind == "L" && hasTable && table != "":
		return watermark{low: true, id: id, table: table}, true
	case kind == "H" && !hasTable:
		return watermark{id: id}, true
	}
	return watermark{}, false
}

// windows are a session's open windows, by watermark id.
type windows map[string]*window

// window collects, between a chunk's watermarks, what the stream carried
// of the rows of its table.
type window struct {
	table string
	seen  map[string]*seenRow // by pgcodec.MatchKey
}

// seenRow is what the stream carried of one row within a window: the
// newest value it sent of each column (an UPDATE does not send an
// unchanged TOAST value), or that the row was deleted.
type seenRow struct {
	values  map[string]json.RawMessage
	deleted bool
}

// open starts the window of chunk id over table.
func (ws windows) open(id, table string) {
	ws[id] = &window{table: table, seen: make(map[string]*seenRow)}
}

// close ends the window of chunk id and returns it: nil when it was not
// open.
func (ws windows) close(id string) *window {
	w := ws[id]
	delete(ws, id)
	return w
}

// note records a streamed row in every open window of its table: the
// newest value the stream sent of each column, or that the row was
// deleted. A create or a delete starts the row over. A change without a
// row image (a truncate; a row decoded while no window was open) is not
// one to note.
func (ws windows) note(ch *pgcodec.Change) {
	for _, w := range ws {
		if w.table != ch.Table || ch.Image == nil {
			continue
		}
		k := pgcodec.MatchKey(ch.Image, ch.KeyCols)
		seen := w.seen[k]
		if seen == nil || ch.Op == event.OpCreate || ch.Op == event.OpDelete {
			seen = &seenRow{}
			w.seen[k] = seen
		}
		if ch.Op == event.OpDelete {
			seen.deleted = true
			continue
		}
		if seen.values == nil {
			seen.values = make(map[string]json.RawMessage, len(ch.Image))
		}
		for _, f := range ch.Image {
			if !event.IsUnavailable(f.Value) {
				seen.values[f.Name] = f.Value
			}
		}
	}
}

// chunkRow returns the event to produce at the high watermark for a row
// the chunk read, or nil when the stream carried all of it in the window
// (or deleted it). commit and high are the high watermark's transaction
// and position; key is the table's primary key. A nil window, one this
// session did not see open, produces the row as read.
func (w *window) chunkRow(r pgcodec.SnapshotRow, commit, high pglogrepl.LSN, key []string) ([]byte, error) {
	if w == nil {
		return r.Value, nil
	}
	seen, changed := w.seen[string(r.Match)]
	if !changed {
		return r.Value, nil
	}
	return completeRow(r, seen, commit, high, key)
}

// completeRow returns the event that completes what the stream sent of a
// row changed within its chunk's window, or nil when the stream sent all
// of it (or deleted it). A column the stream never sent in the window was
// unchanged by every change in it, so the value the chunk read is
// current; every other column takes the newest value the stream sent. The
// event is a snapshot read positioned at the high watermark (commit,
// lsn), after every change of the window, so the sink does not take it
// for a stale one.
func completeRow(r pgcodec.SnapshotRow, seen *seenRow, commit, high pglogrepl.LSN, key []string) ([]byte, error) {
	if seen.deleted {
		return nil, nil
	}
	ev, err := event.Decode(r.Value)
	if err != nil {
		return nil, fmt.Errorf("snapshot row of %s: %w", r.Key, err)
	}
	missing := false
	for i, f := range ev.After {
		if v, ok := seen.values[f.Name]; ok {
			ev.After[i].Value = v
		} else {
			missing = true
		}
	}
	if !missing {
		return nil, nil
	}
	ev.Source.LSN, ev.Source.CommitLSN = int64(high), int64(commit)
	return pgcodec.Encode(ev, key), nil
}

// watermark handles a watermark message of this session's snapshotter: a
// low one opens its chunk's window, a high one closes it and produces the
// chunk. Watermarks replayed from an earlier session are not ours, and
// open no window that would never close.
func (s *session) watermark(ctx context.Context, txn *checkpoint.Txn, m *pglogrepl.LogicalDecodingMessage) error {
	wm, ok := parseWatermark(m.Content)
	if !ok || s.snap == nil || !s.snap.owns(wm.id) {
		return nil
	}
	if wm.low {
		s.windows.open(wm.id, wm.table)
		return nil
	}
	defer s.snap.release(wm.id)
	return s.produceChunk(ctx, txn, wm.id, m.LSN)
}

// produceChunk produces, at the high watermark, the chunk's rows as its
// window has them. A watermark without its chunk comes from a session
// before this one and is ignored.
func (s *session) produceChunk(ctx context.Context, txn *checkpoint.Txn, id string, high pglogrepl.LSN) error {
	w := s.windows.close(id)
	for {
		select {
		case ch := <-s.snapChunks():
			s.chunks[ch.id] = ch
			continue
		default:
		}
		break
	}
	ch := s.chunks[id]
	delete(s.chunks, id)
	if ch == nil {
		return nil
	}
	if txn == nil {
		return fatal(fmt.Errorf("snapshot watermark %s outside a transaction", id))
	}
	if err := s.ensureTopic(ctx, ch.topic); err != nil {
		return err
	}
	for _, r := range ch.rows {
		value, err := w.chunkRow(r, s.dec.CommitLSN(), high, ch.key)
		if err != nil {
			return err
		}
		if value == nil {
			continue
		}
		txn.Add()
		ch.pending.Add(1)
		msg := kafka.Message{Topic: ch.topic, Key: r.Key, Value: value}
		if err := s.enqueue(ctx, outgoing{msg: msg, txn: txn, chunk: ch, op: event.OpSnapshot, committed: s.dec.CommitTime()}); err != nil {
			return err
		}
	}
	ch.ack() // all handed over
	return nil
}

func (s *session) snapChunks() <-chan *chunk {
	if s.snap == nil {
		return nil
	}
	return s.snap.chunks
}
