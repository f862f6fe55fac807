package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var configFlag = regexp.MustCompile(`\n  --config FILE +the configuration FILE \(default onesignal-cdc\.yaml\)\n`)

// helpForms are the three ways to ask for a command's help.
func helpForms(name string) [][]string {
	words := strings.Fields(name)
	return [][]string{
		append(words[:len(words):len(words)], "--help"),
		append(words[:len(words):len(words)], "-h"),
		append([]string{"help"}, words...),
	}
}

func TestEveryCommandsHelpNamesItSaysWhatItDoesListsItsFlagsAndAnExample(t *testing.T) {
	for _, c := range commands {
		for _, args := range helpForms(c.name) {
			var stdout, stderr bytes.Buffer
			code := run(args, &stdout, &stderr)
			out := stdout.String()
			if code != 0 || stderr.Len() > 0 {
				t.Errorf("%q: exit %d, stderr %q; want 0 and help on stdout", args, code, stderr.String())
			}
			if want := "onesignal-cdc " + c.name + ": " + c.summary + "\n"; !strings.HasPrefix(out, want) {
				t.Errorf("%q: help starts %q, want %q", args, firstLine(out), want)
			}
			for _, want := range []string{"\nUsage:\n  onesignal-cdc " + c.name, "\nExample:\n  " + c.example} {
				if !strings.Contains(out, want) {
					t.Errorf("%q: help lacks %q:\n%s", args, want, out)
				}
			}
			if !strings.HasPrefix(c.example, "onesignal-cdc "+c.name) {
				t.Errorf("%s: the example %q does not run the command", c.name, c.example)
			}
			takesConfig := c.name != "emulator" && c.name != "version" && c.name != "help"
			if takesConfig && !configFlag.MatchString(out) {
				t.Errorf("%q: help does not list --config with its default:\n%s", args, out)
			}
		}
	}
}

func TestEachCommandsHelpListsOnlyItsOwnFlags(t *testing.T) {
	cases := []struct {
		args          []string
		want, notWant []string
	}{
		{[]string{"slot", "drop", "--help"}, []string{"--yes "}, nil},
		{[]string{"slot", "status", "--help"}, nil, []string{"--yes"}},
		{[]string{"validate", "--help"}, []string{"--online ", "--role ROLE ", "(default run)", "Exits 0 when it finds nothing, 2 when the file does not load"}, nil},
		{[]string{"snapshot", "--help"}, []string{"--table SCHEMA.TABLE ", "--all ", "--reset "}, []string{"--online"}},
		{[]string{"dlq", "replay", "--help"}, []string{"--dry-run ", "--from-beginning "}, nil},
		{[]string{"emulator", "--help"}, []string{"--listen ADDRESS ", "(default 127.0.0.1:8089)", "--api-key KEY ", "(default emulator-key)"}, []string{"--config"}},
		{[]string{"run", "--help"}, []string{"--config FILE "}, []string{"--online", "--yes"}},
		{[]string{"mapping", "preview", "--help"}, []string{"--table SCHEMA.TABLE ", "--where SQL ", "--limit N ", "(default 10)", "--json ", "read-only transaction"}, []string{"--yes"}},
		{[]string{"mapping", "diff", "--help"}, []string{"OLD.yaml NEW.yaml", "--limit N ", "files holding only a mapping:"}, []string{"--where", "--table"}},
	}
	for _, tc := range cases {
		var stdout, stderr bytes.Buffer
		if code := run(tc.args, &stdout, &stderr); code != 0 {
			t.Errorf("%q: exit %d", tc.args, code)
		}
		for _, w := range tc.want {
			if !strings.Contains(stdout.String(), w) {
				t.Errorf("%q: help lacks %q:\n%s", tc.args, w, stdout.String())
			}
		}
		for _, w := range tc.notWant {
			if strings.Contains(stdout.String(), w) {
				t.Errorf("%q: help lists %q, which is not its flag:\n%s", tc.args, w, stdout.String())
			}
		}
	}
}

func TestTheEmulatorsHelpNeverShowsTheAPIKeyFromTheEnvironment(t *testing.T) {
	t.Setenv("ONESIGNAL_CDC_ONESIGNAL_API_KEY", "s3cret-from-env")
	var stdout, stderr bytes.Buffer
	run([]string{"emulator", "--help"}, &stdout, &stderr)
	if strings.Contains(stdout.String()+stderr.String(), "s3cret-from-env") {
		t.Errorf("the help shows the key of the environment:\n%s", stdout.String())
	}
}

// TestExitCodesAreTheSameForEveryCommand is the exit-code table of the
// README, held to every subcommand: help is 0; an unknown flag, an
// argument left over, a missing configuration file and one with an unknown
// key are 2, each saying what is wrong.
func TestExitCodesAreTheSameForEveryCommand(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yaml")
	unknownKey := filepath.Join(dir, "unknown-key.yaml")
	if err := os.WriteFile(unknownKey, []byte("postgres:\n  dsnn: postgres://cdc@db/app\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// What each command needs besides --config to get as far as reading it.
	needs := map[string][]string{"snapshot": {"--all"}, "slot drop": {"--yes"}, "mapping diff": {unknownKey, unknownKey}}
	for _, c := range commands {
		words := strings.Fields(c.name)
		cmd := func(more ...string) []string { return append(words[:len(words):len(words)], more...) }
		type tc struct {
			what string
			args []string
			code int
			want string // in stderr, or stdout for validate's findings
		}
		cases := []tc{
			{"help", cmd("--help"), 0, ""},
			{"an unknown flag", cmd("--bogus"), 2, `onesignal-cdc ` + c.name + `: unknown flag --bogus (see onesignal-cdc ` + c.name + ` --help)`},
			{"an unknown single-dash flag with a value", cmd("-bogus=1"), 2, `unknown flag -bogus (see`},
			{"an argument left over", cmd("extra"), 2, `onesignal-cdc ` + c.name + `: unexpected argument "extra" (see onesignal-cdc ` + c.name + ` --help)`},
		}
		if c.name == "help" {
			// help's one argument is a command: more is left over.
			cases[3] = tc{"an argument left over", cmd("run", "extra"), 2, `onesignal-cdc run: unexpected argument "extra"`}
		}
		if c.name == "mapping diff" {
			// Its two files come first: a third is left over.
			cases[3] = tc{"an argument left over", cmd("old.yaml", "new.yaml", "extra"), 2, `onesignal-cdc mapping diff: unexpected argument "extra" (see onesignal-cdc mapping diff --help)`}
		}
		if c.name != "emulator" && c.name != "version" && c.name != "help" {
			cases = append(cases,
				tc{"an argument after the flags", cmd(append([]string{"--config", unknownKey}, append(needs[c.name], "extra")...)...), 2, `unexpected argument "extra"`},
				tc{"a missing configuration file", cmd(append([]string{"--config", missing}, needs[c.name]...)...), 2, "missing.yaml: no such file"},
				tc{"a configuration with an unknown key", cmd(append([]string{"--config", unknownKey}, needs[c.name]...)...), 2, `unknown key "dsnn"`},
			)
		}
		for _, tc := range cases {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Errorf("%s, %s (%q): exit %d, want %d\nstdout: %s\nstderr: %s", c.name, tc.what, tc.args, code, tc.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String()+stderr.String(), tc.want) {
				t.Errorf("%s, %s (%q): the output lacks %q\nstdout: %s\nstderr: %s", c.name, tc.what, tc.args, tc.want, stdout.String(), stderr.String())
			}
			if code == 0 && stderr.Len() > 0 {
				t.Errorf("%s, %s: exit 0 with stderr %q", c.name, tc.what, stderr.String())
			}
			if code == 2 && stdout.Len() > 0 && c.name != "validate" {
				t.Errorf("%s, %s: a usage error on stdout: %q", c.name, tc.what, stdout.String())
			}
		}
	}
}

func TestTheTopLevelTakesHelpVersionAndNamesWhatItDoesNotKnow(t *testing.T) {
	cases := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"--help"}, 0, "Usage:\n  onesignal-cdc COMMAND [flags]", ""},
		{[]string{"-h"}, 0, "\nCommands:\n  run ", ""},
		{[]string{"help"}, 0, "\nExit codes:\n  0  success", ""},
		{[]string{"--help", "validate"}, 0, "onesignal-cdc validate: ", ""},
		{[]string{"--version"}, 0, "onesignal-cdc " + buildVersion() + "\n", ""},
		{[]string{"-v"}, 0, "onesignal-cdc " + buildVersion() + "\n", ""},
		{[]string{"version"}, 0, "onesignal-cdc " + buildVersion() + "\n", ""},
		{nil, 2, "", "Usage:\n  onesignal-cdc COMMAND"},
		{[]string{"--bogus"}, 2, "", "unknown flag --bogus: a command comes first (see onesignal-cdc --help)"},
		{[]string{"bogus"}, 2, "", `unknown command "bogus" (see onesignal-cdc --help)`},
		{[]string{"help", "bogus"}, 2, "", `unknown command "bogus"`},
		{[]string{"slot"}, 2, "", "onesignal-cdc slot needs a command: status or drop (see onesignal-cdc slot --help)"},
		{[]string{"slot", "bogus"}, 2, "", `unknown command "slot bogus"`},
		{[]string{"dlq"}, 2, "", "onesignal-cdc dlq needs a command: replay"},
		{[]string{"mapping"}, 2, "", "onesignal-cdc mapping needs a command: preview or diff"},
		{[]string{"mapping", "diff", "old.yaml"}, 2, "", "onesignal-cdc mapping diff: missing NEW.yaml: give OLD.yaml NEW.yaml (see onesignal-cdc mapping diff --help)"},
		{[]string{"slot", "--help"}, 0, "onesignal-cdc slot: the connector's replication slot\n\nCommands:\n  onesignal-cdc slot status ", ""},
		{[]string{"help", "dlq"}, 0, "  onesignal-cdc dlq replay ", ""},
	}
	for _, tc := range cases {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("%q: exit %d, want %d\nstdout (want %q): %s\nstderr (want %q): %s", tc.args, code, tc.code, tc.stdout, stdout.String(), tc.stderr, stderr.String())
		}
	}
}

func TestABadFlagValueSaysWhatTheFlagTakes(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"emulator", "--tag-limit", "many"}, `onesignal-cdc emulator: --tag-limit "many": want a whole number (see onesignal-cdc emulator --help)`},
		{[]string{"emulator", "-fault-latency=3"}, `-fault-latency "3": want a duration, such as 500ms or 2m`},
		{[]string{"emulator", "--fault-reset", "half"}, `--fault-reset "half": want a number, such as 0.5`},
		{[]string{"emulator", "--fault-status", "500"}, `--fault-status "500": want status=share pairs`},
		{[]string{"validate", "--online=maybe"}, `--online "maybe": want true or false`},
		{[]string{"run", "--config"}, `onesignal-cdc run: --config needs a value (see onesignal-cdc run --help)`},
		{[]string{"validate", "--role", "both"}, `onesignal-cdc validate: --role "both" is not run, connector or sink`},
		{[]string{"validate", "onesignal-cdc.yaml"}, `unexpected argument "onesignal-cdc.yaml"; to name the configuration file: --config onesignal-cdc.yaml`},
	}
	for _, tc := range cases {
		var stdout, stderr bytes.Buffer
		if code := run(tc.args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}

// The README and onesignal-cdc --help state the same exit codes.
func TestTheREADMEsExitCodesAreTheHelps(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var help, stderr bytes.Buffer
	run([]string{"--help"}, &help, &stderr)
	flat := strings.Join(strings.Fields(help.String()), " ")
	for _, e := range exitCodes {
		row := "| " + string(rune('0'+e.code)) + " | " + e.meaning + " |"
		if !strings.Contains(string(readme), row) {
			t.Errorf("README.md lacks the row\n%s", row)
		}
		if !strings.Contains(flat, string(rune('0'+e.code))+" "+e.meaning) {
			t.Errorf("onesignal-cdc --help lacks exit code %d: %s", e.code, e.meaning)
		}
	}
}

// TestVersionIsStampedWithLdflags builds the binary the way the Dockerfile
// does: a version set with -ldflags -X main.version wins over the build info.
func TestVersionIsStampedWithLdflags(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "onesignal-cdc")
	// -race shares the build cache with go test -race.
	build := exec.Command("go", "build", "-race", "-ldflags=-X main.version=v9.8.7-test", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || string(out) != "onesignal-cdc v9.8.7-test\n" {
		t.Errorf("version printed %q (%v), want %q", out, err, "onesignal-cdc v9.8.7-test\n")
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
