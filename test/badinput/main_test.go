// Package badinput is the bad-input corpus: named cases of input the
// daemon must survive, each run through the built onesignal-cdc binary
// against a real PostgreSQL, the kfake broker and the OneSignal emulator.
//
// Every case ends one of two ways: a clear error that names the fix (a
// configuration the daemon refuses, a table it will not stream), or, for
// a row or a message, a dead letter whose
// __connect.errors.exception.message header gives the reason, or the
// documented outcome when the input is not bad after all (an id with odd
// characters, a tombstone). Either way the daemon keeps running and the
// rows and messages around the bad one reach OneSignal.
//
// The cases are grouped so that one daemon and one emulator serve a
// group: its cases write their input at once, the group waits until the
// sink has committed everything, then each case checks its outcome in a
// subtest of its own.
package badinput

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
)

func TestMain(m *testing.M) { daemontest.Main(m) }

// writeFile writes content to a new file named name in a temporary
// directory of the test, and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
