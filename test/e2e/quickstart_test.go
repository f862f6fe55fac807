package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
)

// TestQuickstartSyncsTheSampleRows runs the README's first command as a
// newcomer would, with --exit-after-sync, on the binary under test, and
// checks that its summary shows OneSignal holding what the sample rows say:
// tags from the users and the count of their orders (a second table, by
// foreign key), a computed tag, no user for an internal account (the
// filter) nor for the deleted user (on_delete: delete_user).
// The script brings its own PostgreSQL, emulator and embedded broker, so
// this test needs nothing from the environment but bash.
func TestQuickstartSyncsTheSampleRows(t *testing.T) {
	t.Parallel()
	script, err := filepath.Abs(filepath.Join("..", "..", "scripts", "quickstart"))
	if err != nil {
		t.Fatal(err)
	}
	// The script is part of the repository: its absence is a bug, never a
	// reason to skip.
	if _, err := os.Stat(script); err != nil {
		t.Fatalf("the quickstart script is missing: %v", err)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("bash is not installed, and the quickstart is a bash script: %v", err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bash, script, "--exit-after-sync")
	cmd.Env = append(os.Environ(), "ONESIGNAL_CDC_BIN="+daemontest.Binary())
	// On timeout, SIGTERM lets the script's trap stop the daemon, the
	// emulator and PostgreSQL; SIGKILL would leave them running.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 45 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	started := time.Now()
	err = cmd.Run()
	t.Logf("./scripts/quickstart --exit-after-sync (%s):\n%s", time.Since(started).Round(100*time.Millisecond), out.Bytes())
	if ctx.Err() != nil {
		t.Fatalf("the quickstart did not finish within 3 minutes: %v", err)
	}
	if exit, ok := errors.AsType[*exec.ExitError](err); ok {
		t.Fatalf("the quickstart exited with status %d", exit.ExitCode())
	} else if err != nil {
		t.Fatal(err)
	}

	for _, line := range []struct{ shows, pattern string }{
		{"a row that predates the slot, an order of it cancelled", `ada +country=GB level=42 orders=1 plan=pro vip=no`},
		{"an inserted user, and its order", `barbara +country=US level=88 orders=1 plan=pro vip=yes`},
		{"an inserted user without orders", `dennis +country=US level=31 plan=free vip=no`},
		{"a changed plan", `grace +country=US level=17 orders=1 plan=pro vip=no`},
		{"a country set to NULL as a removed tag", `linus +level=73 plan=free vip=yes`},
		{"a row the changes left alone", `margaret +country=US level=58 orders=1 plan=pro vip=yes`},
		{"a deleted user gone from OneSignal", `ken +no user: its row was deleted \(on_delete: delete_user\)`},
		{"an internal account filtered out", `qa-bot +no user: plan internal: the filter leaves it out`},
		{"a linked device", `5f1c9e2a-7d34-4b8e-a6f0-3c2d1e000001 +ada`},
		{"a linked device", `5f1c9e2a-7d34-4b8e-a6f0-3c2d1e000002 +grace`},
		{"an unlinked device", `5f1c9e2a-7d34-4b8e-a6f0-3c2d1e000003 +\(an anonymous user: unlinked\)`},
	} {
		if !regexp.MustCompile(`(?m)^ +` + line.pattern + `$`).Match(out.Bytes()) {
			t.Errorf("the summary does not show %s: no line matches %q", line.shows, line.pattern)
		}
	}

	for _, id := range []string{"ken", "qa-bot"} {
		if regexp.MustCompile(`(?m)^  ` + id + ` +(\(no tags\)|\w+=)`).Match(out.Bytes()) {
			t.Errorf("the summary lists %s among OneSignal's users, whom the rows leave out", id)
		}
	}

	// Everything the script wrote lives beside its config, and goes on exit.
	m := regexp.MustCompile(`(?m)^Config: +(\S+)$`).FindSubmatch(out.Bytes())
	if m == nil {
		t.Fatal("the summary does not say where the config is")
	}
	if _, err := os.Stat(filepath.Dir(string(m[1]))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the quickstart left %s behind (stat: %v)", filepath.Dir(string(m[1])), err)
	}
}
