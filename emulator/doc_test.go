package emulator_test

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
)

// docs/emulator.md, the emulator's documentation for users, names every
// setting of Config and every fault.
func TestTheDocNamesEverySetting(t *testing.T) {
	doc, err := os.ReadFile("../docs/emulator.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[emulator.Config](), reflect.TypeFor[emulator.RateLimits](), reflect.TypeFor[emulator.Faults]()} {
		for f := range typ.Fields() {
			if !strings.Contains(string(doc), "`"+f.Name) && !strings.Contains(string(doc), "."+f.Name+"`") {
				t.Errorf("docs/emulator.md does not mention %s.%s", typ.Name(), f.Name)
			}
		}
	}
}
