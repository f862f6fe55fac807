package onesignal_test

import (
	"go/build"
	"slices"
	"testing"
)

// The client is what the daemon runs; the emulator is what tests and CI
// run it against. The client's own code stays free of the emulator (its
// tests use it).
func TestTheClientDoesNotImportTheEmulator(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(pkg.Imports, "github.com/onesignal-cdc/onesignal-cdc/emulator") {
		t.Error("sink/onesignal imports the emulator outside its tests")
	}
}
