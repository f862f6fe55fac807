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

func TestDecodeSaysWhatIsWrongInTheEventsTermsNotGos(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"op":5}`, "event envelope: op is a JSON number, not a string"},
		{`{"op":"c","after":{},"source":{"lsn":"x"}}`, "event envelope: source.lsn is a JSON string, not a number"},
		{`{"payload":{"op":"c","after":{},"source":{"ts_ms":"x"}}}`, "event envelope: source.ts_ms is a JSON string, not a number"},
		{`{"op":"c","after":{},"source":5}`, "event envelope: source is a JSON number, not an object"},
		{`[1, 2, 3]`, "event is not a JSON object: it is a JSON array"},
		{`<html>`, "event is not a JSON object: invalid character '<' looking for beginning of value"},
	} {
		_, err := Decode([]byte(tc.in))
		if err == nil || err.Error() != tc.want {
			t.Errorf("Decode(%s) = %v, want %q", tc.in, err, tc.want)
		}
	}
}
