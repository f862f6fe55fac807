package connector

import (
	"encoding/json"
	"testing"

	"github.com/jackc/pglogrepl"
)

func TestADeleteBeforeTheEndOfATablesInitialSnapshotStaysMarkedWhenStreamedAgainAfterIt(t *testing.T) {
	k := &stateKeeper{st: State{
		Snapshots:   map[string]*Progress{"public.running": {Initial: true}, "public.again": {}},
		InitialEnds: map[string]pglogrepl.LSN{"public.done": 0x1000},
	}}
	for _, c := range []struct {
		table string
		lsn   pglogrepl.LSN
		want  bool
	}{
		{"public.running", 0x5000, true},  // its initial snapshot runs
		{"public.done", 0x0fff, true},     // streamed again after it finished: a replay
		{"public.done", 0x1000, false},    // at its end or after: the sink saw every row
		{"public.again", 0x0001, false},   // a snapshot asked for later: the sink saw the rows
		{"public.unknown", 0x0001, false}, // no initial snapshot
	} {
		if got := k.initial(c.table, c.lsn); got != c.want {
			t.Errorf("a delete of %s at %s: marked %v, want %v", c.table, c.lsn, got, c.want)
		}
	}
}

func TestTheEndsOfInitialSnapshotsAreKeptInTheSavedState(t *testing.T) {
	b, err := json.Marshal(State{Slot: "s", InitialEnds: map[string]pglogrepl.LSN{`crm."Contacts"`: 0x16B3748}})
	if err != nil {
		t.Fatal(err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if st.InitialEnds[`crm."Contacts"`] != 0x16B3748 {
		t.Errorf("read back %v from %s", st.InitialEnds, b)
	}
}
