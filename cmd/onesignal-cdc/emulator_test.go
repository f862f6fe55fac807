package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
)

func TestTheEmulatorOnATakenAddressSaysItIsInUseAndHowToChooseAnother(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var out bytes.Buffer
	err = serveEmulator(t.Context(), emulatorCommand(t), []string{"--listen", ln.Addr().String()}, &out)
	want := "the emulator cannot listen on " + ln.Addr().String() + ": the address is in use"
	if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "choose another address with --listen") {
		t.Fatalf("emulator on a taken address: %v, want %q and how to choose another", err, want)
	}
	if strings.Contains(err.Error(), "emulator: ") || strings.Contains(err.Error(), "bind:") {
		t.Errorf("the error shows Go internals: %v", err)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("the error does not wrap EADDRINUSE")
	}
}

func TestTheEmulatorNamesTheFlagOfAValueOutOfRange(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tag-limit", "-1"}, "--tag-limit -1: use 0 for no cap"},
		{[]string{"--rate-limits", "--rate-app", "-5"}, "--rate-app and --rate-target take 0"},
		{[]string{"--fault-reset", "2"}, "fault reset has share 2: use 0 to 1"},
		{[]string{"--rate-view", "-1"}, "--rate-view takes 0"},
		{[]string{"--export-delay", "-1s"}, "--export-delay -1s: use 0"},
	} {
		err := serveEmulator(t.Context(), emulatorCommand(t), append(tc.args, "--listen", "127.0.0.1:0"), &bytes.Buffer{})
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("emulator %v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestTheEmulatorsFlagsSetItsBehaviours(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want func(emulator.Config) bool
		what string
	}{
		{nil, func(c emulator.Config) bool {
			return !c.AcceptLegacyKeys && !c.NoPlayersAnswersOK && !c.UnknownPlayer404
		},
			"by default Basic refused, 404 for tags no device carries, 400 for an unknown player"},
		{[]string{"--accept-legacy-keys"}, func(c emulator.Config) bool { return c.AcceptLegacyKeys }, "legacy keys accepted"},
		{[]string{"--no-players-200"}, func(c emulator.Config) bool { return c.NoPlayersAnswersOK }, "200 for tags no device carries"},
		{[]string{"--unknown-player-404"}, func(c emulator.Config) bool { return c.UnknownPlayer404 }, "404 for an unknown player"},
		{[]string{"--export-delay", "50ms"}, func(c emulator.Config) bool { return c.ExportDelay == 50*time.Millisecond }, "exports ready after 50ms"},
		{[]string{"--rate-limits", "--rate-view", "5"}, func(c emulator.Config) bool { return c.RateLimits.ViewPerSecond == 5 }, "5 views a second"},
	} {
		cfg, _, err := emulatorFlags(emulatorCommand(t), tc.args, io.Discard)
		if err != nil {
			t.Fatalf("emulator %v: %v", tc.args, err)
		}
		if !tc.want(cfg) {
			t.Errorf("emulator %v: %+v, want %s", tc.args, cfg, tc.what)
		}
	}
}

// The emulator started by the command refuses a legacy key unless told,
// with the 403 of a key OneSignal does not take.
func TestTheEmulatorCommandRefusesALegacyKeyUnlessToldToAcceptIt(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		status int
	}{{nil, http.StatusForbidden}, {[]string{"--accept-legacy-keys"}, http.StatusOK}} {
		cfg, _, err := emulatorFlags(emulatorCommand(t), tc.args, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		srv, err := emulator.Start(cfg, "")
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL()+"/players?app_id="+cfg.AppID, nil)
		req.Header.Set("Authorization", "Basic "+cfg.APIKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		srv.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("emulator %v: Basic with the right key got %d, want %d", tc.args, resp.StatusCode, tc.status)
		}
	}
}

// docs/emulator.md, the emulator's documentation for users, names every
// flag the command takes.
func TestTheEmulatorsDocNamesEveryFlag(t *testing.T) {
	var help bytes.Buffer
	if _, _, err := emulatorFlags(emulatorCommand(t), []string{"--help"}, &help); !errors.Is(err, errHelpShown) {
		t.Fatalf("emulator --help: %v", err)
	}
	doc, err := os.ReadFile("../../docs/emulator.md")
	if err != nil {
		t.Fatal(err)
	}
	flags := regexp.MustCompile(`(?m)^\s+(--[a-z0-9-]+)`).FindAllStringSubmatch(help.String(), -1)
	if len(flags) < 10 {
		t.Fatalf("found %d flags in the help, want them all:\n%s", len(flags), help.String())
	}
	for _, f := range flags {
		if !strings.Contains(string(doc), "`"+f[1]) {
			t.Errorf("docs/emulator.md does not mention %s", f[1])
		}
	}
}

func emulatorCommand(t *testing.T) *command {
	t.Helper()
	cmd, _, err := lookup([]string{"emulator"})
	if err != nil {
		t.Fatal(err)
	}
	return cmd
}
