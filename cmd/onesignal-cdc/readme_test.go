package main

import (
	"io"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/config"
)

var exampleRef = regexp.MustCompile(`docs/examples/[\w.-]+\.ya?ml`)

// Each `onesignal-cdc emulator` command in the README names the example
// configuration it is for, and the two fit: the emulator accepts that
// file's app ID and key at its base_url. (They did not once, and a
// newcomer combining them got a 403.)
func TestTheREADMEsEmulatorCommandFitsTheExampleItNames(t *testing.T) {
	t.Setenv("ONESIGNAL_CDC_ONESIGNAL_API_KEY", "") // the emulator's default key, and the file's
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for line := range strings.SplitSeq(string(readme), "\n") {
		cmd, comment, _ := strings.Cut(strings.TrimSpace(line), "#")
		if !strings.HasPrefix(cmd, "onesignal-cdc emulator") {
			continue
		}
		found++
		ref := exampleRef.FindString(comment)
		if ref == "" {
			t.Errorf("README: %q names no example configuration to use it with (docs/examples/…)", line)
			continue
		}
		emu, listen, err := emulatorFlags(emulatorCommand(t), strings.Fields(cmd)[2:], io.Discard)
		if err != nil {
			t.Fatalf("README: %q: %v", line, err)
		}
		cfg, err := config.Load("../../" + ref)
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		base, err := url.Parse(cfg.OneSignal.BaseURL)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct{ what, readme, example string }{
			{"app ID", emu.AppID, cfg.OneSignal.AppID},
			{"API key", emu.APIKey, cfg.OneSignal.APIKey.Reveal()},
			{"address", listen, base.Host},
		} {
			if c.readme != c.example {
				t.Errorf("README: %q serves %s %q, but %s has %q", line, c.what, c.readme, ref, c.example)
			}
		}
		if cfg.OneSignal.LegacyAPIKey && !emu.AcceptLegacyKeys {
			t.Errorf("README: %q refuses the legacy key that %s sends (onesignal.legacy_api_key): add --accept-legacy-keys", line, ref)
		}
	}
	if found == 0 {
		t.Error("the README shows no onesignal-cdc emulator command")
	}
}
