package connector

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/jackc/pglogrepl"

	"github.com/onesignal-cdc/onesignal-cdc/connector/pgcodec"
	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// The window's rules, on a table users (id bigint primary key, plan text,
// bio text): the chunk's rows as the snapshot codec encodes them, the
// stream's as the decoder's general path hands them over.

var (
	usersKey    = []string{"id"}
	unavailable = string(event.UnavailableValue()) // an unchanged TOAST value
)

const (
	windowCommit = pglogrepl.LSN(0x5000) // the high watermark's transaction
	windowHigh   = pglogrepl.LSN(0x5100) // the high watermark
)

// readRow is the row the chunk read.
func readRow(id int, plan, bio string) pgcodec.SnapshotRow {
	c := pgcodec.NewSnapshotCodec(pgcodec.Source{DB: "app", TopicPrefix: "cdc", Version: "v1"}, "public", "users",
		[]string{"id", "plan", "bio"}, []uint32{20, 25, 25}, usersKey)
	return c.Row([][]byte{[]byte(strconv.Itoa(id)), []byte(plan), []byte(bio)}, 0x4000, 1_700_000_000_000)
}

// streamed is a change the stream carried: cols are name, JSON value pairs.
func streamed(table string, op event.Op, cols ...string) *pgcodec.Change {
	var image event.Row
	for i := 0; i < len(cols); i += 2 {
		image = append(image, event.Field{Name: cols[i], Value: json.RawMessage(cols[i+1])})
	}
	return &pgcodec.Change{Table: table, Op: op, Image: image, KeyCols: usersKey}
}

// atHigh opens a window on public.users, notes changes in it, closes it
// and returns what the chunk's row r becomes: nil when it is dropped.
func atHigh(t *testing.T, r pgcodec.SnapshotRow, changes ...*pgcodec.Change) *event.Envelope {
	t.Helper()
	ws := windows{}
	ws.open("w1", "public.users")
	for _, ch := range changes {
		ws.note(ch)
	}
	w := ws.close("w1")
	if w == nil || len(ws) != 0 {
		t.Fatalf("closing the window gave %v, %d left open", w, len(ws))
	}
	value, err := w.chunkRow(r, windowCommit, windowHigh, usersKey)
	if err != nil {
		t.Fatal(err)
	}
	if value == nil {
		return nil
	}
	ev, err := event.Decode(value)
	if err != nil {
		t.Fatalf("the produced row does not decode: %v\n%s", err, value)
	}
	return ev
}

func after(t *testing.T, ev *event.Envelope, col string) string {
	t.Helper()
	v, ok := ev.After.Get(col)
	if !ok {
		t.Fatalf("the event has no %s", col)
	}
	return string(v)
}

func TestAWindowProducesARowTheStreamDidNotCarryAsTheChunkReadIt(t *testing.T) {
	r := readRow(1, "free", "hello")
	ev := atHigh(t, r,
		streamed("public.users", event.OpUpdate, "id", "2", "plan", `"pro"`, "bio", `"x"`), // another row
		streamed("public.devices", event.OpDelete, "id", "1"),                              // another table
	)
	if ev == nil {
		t.Fatal("the row was dropped")
	}
	want, _ := event.Decode(r.Value)
	if got, wantJSON := mustEncode(ev), mustEncode(want); got != wantJSON {
		t.Errorf("the row became\n%s\nwant it as read\n%s", got, wantJSON)
	}
}

func TestAWindowDropsARowTheStreamDeletedInIt(t *testing.T) {
	ev := atHigh(t, readRow(1, "free", "hello"),
		streamed("public.users", event.OpUpdate, "id", "1", "plan", `"pro"`, "bio", unavailable),
		streamed("public.users", event.OpDelete, "id", "1"),
	)
	if ev != nil {
		t.Errorf("a row deleted in the window was produced: %s", mustEncode(ev))
	}
}

func TestAWindowDropsARowTheStreamSentWhole(t *testing.T) {
	for _, op := range []event.Op{event.OpCreate, event.OpUpdate} {
		// A delete and a create again (a primary-key change back and forth,
		// or a delete and an insert): the create starts the row over.
		ev := atHigh(t, readRow(1, "free", "hello"),
			streamed("public.users", event.OpDelete, "id", "1"),
			streamed("public.users", op, "id", "1", "plan", `"pro"`, "bio", `"bye"`),
		)
		if ev != nil {
			t.Errorf("after a delete and a %s carrying every column, the chunk's row was produced: %s", op, mustEncode(ev))
		}
	}
}

func TestAWindowCompletesARowTheStreamSentInPartFromTheChunkAtTheHighWatermark(t *testing.T) {
	// Two updates leave the TOASTed bio unchanged; the second changes the
	// plan again.
	ev := atHigh(t, readRow(1, "free", "a long bio"),
		streamed("public.users", event.OpUpdate, "id", "1", "plan", `"pro"`, "bio", unavailable),
		streamed("public.users", event.OpUpdate, "id", "1", "plan", `"team"`, "bio", unavailable),
	)
	if ev == nil {
		t.Fatal("the row was dropped: the bio would never reach Kafka")
	}
	if plan, bio := after(t, ev, "plan"), after(t, ev, "bio"); plan != `"team"` || bio != `"a long bio"` {
		t.Errorf("plan %s, bio %s; want the stream's newest plan and the chunk's bio", plan, bio)
	}
	if ev.Op != event.OpSnapshot || ev.Source.LSN != int64(windowHigh) || ev.Source.CommitLSN != int64(windowCommit) {
		t.Errorf("op %s at lsn %d commit %d; want a snapshot read at the high watermark %d of transaction %d",
			ev.Op, ev.Source.LSN, ev.Source.CommitLSN, windowHigh, windowCommit)
	}
}

func TestAWindowDoesNotForgetAValueTheStreamSentBeforeALaterPartialUpdate(t *testing.T) {
	// The first update sends the bio; the second leaves it out.
	ev := atHigh(t, readRow(1, "free", "old bio"),
		streamed("public.users", event.OpUpdate, "id", "1", "plan", `"pro"`, "bio", `"new bio"`),
		streamed("public.users", event.OpUpdate, "id", "1", "plan", `"team"`, "bio", unavailable),
	)
	if ev != nil {
		t.Errorf("the stream sent every column over the window, yet the chunk's row was produced: %s", mustEncode(ev))
	}
}

func TestAWindowNotesNothingOfAChangeWithoutARowImage(t *testing.T) {
	noImage := &pgcodec.Change{Table: "public.users", Op: event.OpUpdate, KeyCols: usersKey}
	if ev := atHigh(t, readRow(1, "free", "hello"), noImage); ev == nil {
		t.Error("a change without an image made the window drop the chunk's row")
	}
}

func TestARowOfAWindowThisSessionDidNotSeeOpenIsProducedAsRead(t *testing.T) {
	r := readRow(1, "free", "hello")
	var w *window // windows{}.close of an id never opened
	if w = (windows{}).close("w1"); w != nil {
		t.Fatalf("a window never opened closed as %v", w)
	}
	value, err := w.chunkRow(r, windowCommit, windowHigh, usersKey)
	if err != nil || string(value) != string(r.Value) {
		t.Errorf("got %s (%v), want the row as read", value, err)
	}
}

func TestWatermarksReadBackAsWritten(t *testing.T) {
	for _, w := range []watermark{{low: true, id: "0123abcd", table: "public.users"}, {low: true, id: "0123abcd", table: "crm.CRM Contacts ✓"}, {id: "0123abcd"}} {
		got, ok := parseWatermark([]byte(w.String()))
		if !ok || got != w {
			t.Errorf("%q read back as %+v (%v), want %+v", w.String(), got, ok, w)
		}
	}
	for _, content := range []string{"", "L", "L id", "H", "H id extra", "X id table", `{"snapshot":[]}`} {
		if w, ok := parseWatermark([]byte(content)); ok {
			t.Errorf("%q read as the watermark %+v", content, w)
		}
	}
}

func mustEncode(ev *event.Envelope) string { return string(ev.Encode(nil)) }
