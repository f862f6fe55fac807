// Package daemontest runs the built onesignal-cdc binary in tests, the way
// a user runs it: each role (run, connector, sink) in a process of its
// own, configured by a file, against a real PostgreSQL, a Kafka broker and
// the OneSignal emulator. It is the one harness of test/e2e, test/badinput
// and test/chaos:
//
//   - Main builds the binary once per test binary (with the race
//     detector, which then also watches the daemon) and removes it when
//     the tests are done;
//   - Start runs a role, keeps its log (shown when the test fails) and
//     stops it when the test ends; Process kills, stops and waits for it;
//   - WriteConfig writes a configuration file marshalled from a
//     config.Config, so that a test says what it configures in the
//     daemon's own types;
//   - Stack is what the daemons run against: a database, a broker in the
//     test's process (apart from the daemons, so that killing one leaves
//     Kafka and what it holds) and the emulator behind real HTTP.
package daemontest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Package is the import path of the daemon's main package.
const Package = "github.com/onesignal-cdc/onesignal-cdc/cmd/onesignal-cdc"

// binary is the onesignal-cdc the processes run: built by Main, or set
// by UseBinary.
var binary string

// Main builds onesignal-cdc with the race detector, runs the tests and
// removes the build, whatever happened, then exits with the tests'
// status. Call it from TestMain. With UseBinary called first it builds
// nothing.
func Main(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if binary != "" {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "onesignal-cdc-daemontest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "daemontest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	// -race shares the build cache with go test -race.
	if binary, err = Build(dir, true); err != nil {
		fmt.Fprintln(os.Stderr, "daemontest:", err)
		return 1
	}
	return m.Run()
}

// UseBinary makes the processes run the onesignal-cdc at path (a build of
// another commit, to bisect) instead of one Main builds.
func UseBinary(path string) { binary = path }

// Binary is the path of the onesignal-cdc the processes run.
func Binary() string {
	if binary == "" {
		panic("daemontest: no onesignal-cdc to run: call daemontest.Main from TestMain")
	}
	return binary
}

// Build builds onesignal-cdc into dir, with the race detector when race
// is set, and returns the binary's path. The compiler's output goes to
// standard error.
func Build(dir string, race bool) (string, error) {
	bin := filepath.Join(dir, "onesignal-cdc")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, Package)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build onesignal-cdc: %w", err)
	}
	return bin, nil
}
