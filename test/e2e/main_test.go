// Package e2e runs the built onesignal-cdc binary against a real PostgreSQL,
// the kfake broker and the OneSignal emulator, as a user would.
package e2e

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
	dir, err := os.MkdirTemp("", "onesignal-cdc-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "onesignal-cdc")
	// -race shares the build cache with go test -race and catches races in
	// the daemon itself.
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

// configTemplate is a daemon configuration; tests fill in its fields.
var configTemplate = template.Must(template.New("config").Parse(`
postgres:
  dsn: {{.DSN}}
  slot: {{.Slot}}
  publication: cdc
  status_interval: 200ms
  snapshot_chunk_size: 1000
kafka:
  brokers: [{{.Brokers}}]
{{- with .DataDir}}
  embedded_data_dir: {{.}}
{{- end}}
  topic_prefix: cdc
  partitions: 4
  consumer_group: e2e
onesignal:
  base_url: {{.APIURL}}
  app_id: {{.AppID}}
  api_key: {{.APIKey}}
  concurrency: 8
mapping:
  users:
    table: public.users
    external_id: external_id
    tags:
      plan: ""
      score: level
      country: geo
  devices:
    table: public.devices
    device_id: player_id
    external_id: user_external_id
log:
  level: info
`))

type configValues struct {
	DSN, Slot, Brokers, APIURL, AppID, APIKey string
	DataDir                                   string // kafka.embedded_data_dir, when set (YAML: '""' for none)
}

func writeConfig(t *testing.T, v configValues) string {
	t.Helper()
	if v.APIURL == "" {
		v.APIURL, v.AppID, v.APIKey = "http://127.0.0.1:9", "app", "key" // unused by a connector-only process
	}
	var b bytes.Buffer
	if err := configTemplate.Execute(&b, v); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
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
// if the test fails.
func start(t *testing.T, args ...string) *process {
	t.Helper()
	return startWithEnv(t, nil, args...)
}

// startWithEnv is start with more variables in the environment.
func startWithEnv(t *testing.T, env []string, args ...string) *process {
	t.Helper()
	return startIn(t, t.TempDir(), env, args...)
}

// startIn is startWithEnv in the working directory dir, where the embedded
// broker keeps its data by default: a directory of its own for each
// daemon, unless a test means them to share it.
func startIn(t *testing.T, dir string, env []string, args ...string) *process {
	t.Helper()
	log, err := os.CreateTemp(t.TempDir(), "daemon-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	// Tests run daemons side by side: each ops server takes a free port
	// instead of the default :9090.
	cmd.Env = append(append(os.Environ(), "ONESIGNAL_CDC_OPS_LISTEN=127.0.0.1:0"), env...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, log: log, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			out, _ := os.ReadFile(log.Name())
			t.Logf("%s %s log (last 4 kB):\n%s", filepath.Base(binary), strings.Join(args, " "), tail(out, 4096))
		}
	})
	return p
}

// kill ends the process with SIGKILL: no flush, no final status, no commit.
func (p *process) kill(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.done <- nil // later waits return at once
}

// exited waits up to within for the process to end by itself, and returns
// how it ended.
func (p *process) exited(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- nil // it ended as the test expected: cleanup has nothing to report
		return err
	case <-time.After(within):
		t.Fatalf("onesignal-cdc did not exit within %s", within)
		return nil
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *process) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil && p.cmd.ProcessState != nil && !p.cmd.ProcessState.Exited() {
			return // killed earlier
		}
		if err != nil {
			t.Errorf("onesignal-cdc exited with %v after SIGTERM", err)
		}
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Errorf("onesignal-cdc did not stop within 30 s of SIGTERM")
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
