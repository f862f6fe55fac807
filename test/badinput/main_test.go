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
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// binary is the onesignal-cdc built for this test run.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "onesignal-cdc-badinput")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "onesignal-cdc")
	// -race shares the build cache with go test -race (and test/e2e), and
	// catches races in the daemon itself.
	build := exec.Command("go", "build", "-race", "-o", binary, "github.com/onesignal-cdc/onesignal-cdc/cmd/onesignal-cdc")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build onesignal-cdc:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemonConfig is what a group's daemon is configured with.
type daemonConfig struct {
	DSN, Slot, Brokers, APIURL, AppID, APIKey string
	Model                                     string // "user" (default) or "player"
	Group                                     string // the consumer group; default "badinput"
	Snapshot                                  string // postgres.snapshot; default "initial"
	Users                                     *usersConfig
	Devices                                   string // the devices table, "" for none
}

type usersConfig struct {
	Table   string
	Tags    map[string]string // column: tag ("" keeps the name)
	Convert map[string]string
}

var configTemplate = template.Must(template.New("config").Parse(`
postgres:
  dsn: "{{.DSN}}"
  slot: {{.Slot}}
  publication: cdc
  status_interval: 200ms
  snapshot: {{.Snapshot}}
kafka:
  brokers: [{{.Brokers}}]
  topic_prefix: cdc
  partitions: 2
  consumer_group: {{.Group}}
onesignal:
  model: {{.Model}}
  base_url: {{.APIURL}}
  app_id: {{.AppID}}
  api_key: {{.APIKey}}
  concurrency: 8
mapping:
{{- with .Users}}
  users:
    table: {{.Table}}
    external_id: external_id
    tags:
{{- range $col, $tag := .Tags}}
      {{$col}}: "{{$tag}}"
{{- end}}
{{- if .Convert}}
    convert:
{{- range $col, $c := .Convert}}
      {{$col}}: {{$c}}
{{- end}}
{{- end}}
{{- end}}
{{- with .Devices}}
  devices:
    table: {{.}}
    device_id: player_id
    external_id: user_external_id
{{- end}}
log:
  level: info
`))

// writeConfig writes c as a configuration file and returns its path.
func writeConfig(t *testing.T, c daemonConfig) string {
	t.Helper()
	if c.Model == "" {
		c.Model = "user"
	}
	if c.Group == "" {
		c.Group = "badinput"
	}
	if c.Snapshot == "" {
		c.Snapshot = "initial"
	}
	if c.Slot == "" {
		c.Slot = "unused"
	}
	if c.DSN == "" {
		c.DSN = "postgres://unused@127.0.0.1:9/unused" // a sink-only process never dials it
	}
	var b bytes.Buffer
	if err := configTemplate.Execute(&b, c); err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "config.yaml", b.String())
}

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

// process is a running onesignal-cdc subprocess.
type process struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan error
}

// start runs the binary with args; its log goes to a file that is printed
// if the test fails. The process is stopped with SIGTERM at cleanup.
func start(t *testing.T, args ...string) *process {
	t.Helper()
	log, err := os.CreateTemp(t.TempDir(), "daemon-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, args...)
	// Groups run side by side: each ops server takes a free port.
	cmd.Env = append(os.Environ(), "ONESIGNAL_CDC_OPS_LISTEN=127.0.0.1:0")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, log: log, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("onesignal-cdc %s log (last 6 kB):\n%s", strings.Join(args, " "), tail(p.output(), 6<<10))
		}
	})
	return p
}

// output is what the process logged so far.
func (p *process) output() string {
	b, _ := os.ReadFile(p.log.Name())
	return string(b)
}

// running reports whether the process has not exited.
func (p *process) running() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return false
	default:
		return true
	}
}

// exit waits for the process to end by itself and returns its exit code.
func (p *process) exit(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("onesignal-cdc did not exit within %s; log:\n%s", timeout, tail(p.output(), 4<<10))
		return -1
	}
}

// stop sends SIGTERM and waits for a clean exit, unless it ended already.
func (p *process) stop(t *testing.T) {
	t.Helper()
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Errorf("onesignal-cdc exited with %v after SIGTERM", err)
		}
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Errorf("onesignal-cdc did not stop within 30 s of SIGTERM")
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// runCommand runs the binary to its end and returns its exit code and
// output (stdout and stderr together).
func runCommand(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	out, err := cmd.CombinedOutput()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("run onesignal-cdc %s: %v", strings.Join(args, " "), err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}
