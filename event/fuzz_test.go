package event

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzDecode feeds Decode arbitrary bytes. Whatever it accepts re-encodes
// to valid JSON that decodes to the same encoding again: the codec has a
// fixed point, so a message that went through the sink's hands once reads
// the same the second time.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"before":null,"after":{"id":1,"name":"a"},"source":{"connector":"postgresql","schema":"public","table":"users","lsn":42,"commit_lsn":40},"op":"c","ts_ms":1}`))
	f.Add([]byte(`{"schema":{"type":"struct"},"payload":{"before":{"id":1},"after":null,"source":{"schema":"public","table":"users"},"op":"d"}}`))
	f.Add([]byte(`{"schema":null,"payload":null}`))
	f.Add([]byte(`{"op":"t","source":{}}`))
	f.Add([]byte(`{"op":"u","after":{"bio":"` + Unavailable + `"}}`))
	f.Add([]byte(``))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := Decode(data)
		if err != nil {
			return
		}
		once := ev.Encode(nil)
		if !json.Valid(once) {
			t.Fatalf("Encode of a decoded event is not JSON: %s", once)
		}
		again, err := Decode(once)
		if err != nil {
			t.Fatalf("the encoding of a decoded event does not decode: %v\n%s", err, once)
		}
		if twice := again.Encode(nil); !bytes.Equal(once, twice) {
			t.Fatalf("encoding is not stable:\n%s\n%s", once, twice)
		}
	})
}

// FuzzAppendString: the JSON escaper's output is a JSON string that decodes
// to the input, with invalid UTF-8 replaced as encoding/json replaces it.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", `quote " and \ backslash`, "\x00\x1f\u2028\u2029", "\xff\xfe invalid", "<html>&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := AppendString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("AppendString(%q) = %s, not a JSON string: %v", s, b, err)
		}
		want, _ := json.Marshal(s)
		var wantS string
		json.Unmarshal(want, &wantS)
		if got != wantS {
			t.Fatalf("AppendString(%q) decodes to %q, want %q", s, got, wantS)
		}
	})
}
