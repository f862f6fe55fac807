package event

import (
	"encoding/json"
	"testing"
)

func TestTheSourceBlockEncodesAsEncodingJSONWouldWriteIt(t *testing.T) {
	for _, src := range []Source{
		{Version: "dev", Connector: "postgresql", Name: "cdc", TsMs: 1, Snapshot: "false", DB: "app", Schema: "public", Table: "users", TxID: 7, LSN: 100, CommitLSN: 120},
		{Version: "<&>", Name: "ünï\"\\", Snapshot: "true", Schema: "s", Table: "t\n"},
	} {
		want, err := json.Marshal(&src)
		if err != nil {
			t.Fatal(err)
		}
		if got := src.appendJSON(nil); string(got) != string(want) {
			t.Errorf("\n got %s\nwant %s", got, want)
		}
	}
}

func TestDecodeTreatsEveryTombstoneFormAsATombstone(t *testing.T) {
	for _, v := range []string{"", "null", `{"schema":null,"payload":null}`} {
		if _, err := Decode([]byte(v)); err != ErrTombstone {
			t.Errorf("Decode(%q) = %v, want ErrTombstone", v, err)
		}
	}
}
