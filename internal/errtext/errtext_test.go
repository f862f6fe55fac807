package errtext

import (
	"errors"
	"fmt"
	"io"
	"testing"
)

func TestCleanLeavesOutGoMethodNames(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"create topics: kafka.(*Client).Metadata: dial tcp 127.0.0.1:9092: connect: connection refused",
			"create topics: dial tcp 127.0.0.1:9092: connect: connection refused"},
		{"kafka.(*Writer): Topic must be specified for Writer or Message", "Topic must be specified for Writer or Message"},
		{"read offsets: kafka.(*Client).ListOffsets: kafka.(*Client).Metadata: EOF", "read offsets: EOF"},
		{"slot \"cdc\" (active): fine", "slot \"cdc\" (active): fine"},
		{"tag plan ← plan (unix_seconds): ok", "tag plan ← plan (unix_seconds): ok"},
	} {
		if got := Clean(tc.in); got != tc.want {
			t.Errorf("Clean(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPlainKeepsTheErrorChain(t *testing.T) {
	err := Plain(fmt.Errorf("read metadata: kafka.(*Client).Metadata: %w", io.ErrUnexpectedEOF))
	if err.Error() != "read metadata: unexpected EOF" {
		t.Errorf("message %q", err)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("errors.Is does not see the cause through Plain")
	}
	if Plain(nil) != nil {
		t.Errorf("Plain(nil) is not nil")
	}
	if same := errors.New("nothing to clean"); Plain(same) != same {
		t.Errorf("Plain wrapped an error that needed no cleaning")
	}
}
