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
)

// TestQuickstartSyncsTheSampleRows runs the README's first command as a
// newcomer would, with --exit-after-sync, on the binary under test, and
// checks that its summary shows OneSignal holding what the sample rows say.
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
	cmd.Env = append(os.Environ(), "ONESIGNAL_CDC_BIN="+binary)
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
		{"a row that predates the slot, touched", `ada +country=GB level=42 plan=pro`},
		{"an inserted user", `barbara +country=US level=88 plan=pro`},
		{"a changed plan", `grace +country=US level=17 plan=pro`},
		{"a country set to NULL as a removed tag", `linus +level=73 plan=free`},
		{"a deleted user left with no tags", `ken +\(no tags\)`},
		{"a linked device", `5f1c9e2a-7d34-4b8e-a6f0-3c2d1e000001 +ada`},
		{"a linked device", `5f1c9e2a-7d34-4b8e-a6f0-3c2d1e000002 +grace`},
		{"an unlinked device", `5f1c9e2a-7d34-4b8e-a6f0-3c2d1e000003 +\(an anonymous user: unlinked\)`},
	} {
		if !regexp.MustCompile(`(?m)^ +` + line.pattern + `$`).Match(out.Bytes()) {
			t.Errorf("the summary does not show %s: no line matches %q", line.shows, line.pattern)
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
