// Package compose checks deploy/docker-compose.yml offline: compose-go, the
// library Docker Compose itself loads files with, loads and validates it,
// and the services are checked to fit together (the daemon's configuration
// names the Kafka listener, the emulator and the database the file starts).
package compose

import (
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/onesignal-cdc/onesignal-cdc/tools/internal/daemon"
)

// The service names the tests expect.
const (
	postgres = "postgres"
	kafka    = "kafka"
	emulator = "emulator"
	cdc      = "onesignal-cdc"
)

func loadProject(t *testing.T) *types.Project {
	t.Helper()
	deploy := filepath.Join(daemon.Root(t), "deploy")
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(deploy, "docker-compose.yml")},
		cli.WithWorkingDirectory(deploy),
		// Only this environment: the test must not depend on the caller's.
		cli.WithEnv([]string{}),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose-go refuses deploy/docker-compose.yml: %v", err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("no %s service: %v", name, err)
	}
	return s
}

func env(s types.ServiceConfig, name string) string {
	if v := s.Environment[name]; v != nil {
		return *v
	}
	return ""
}

// flag returns the value of --name=value or --name value in a command.
func flag(cmd []string, name string) string {
	for i, arg := range cmd {
		if v, ok := strings.CutPrefix(arg, "--"+name+"="); ok {
			return v
		}
		if arg == "--"+name && i+1 < len(cmd) {
			return cmd[i+1]
		}
	}
	return ""
}

func TestComposeFileLoads(t *testing.T) {
	p := loadProject(t)
	names := p.ServiceNames()
	slices.Sort(names)
	if want := []string{emulator, kafka, cdc, postgres}; !slices.Equal(names, want) {
		t.Errorf("services %v, want %v", names, want)
	}
}

func TestPostgresRunsWithLogicalReplication(t *testing.T) {
	pg := service(t, loadProject(t), postgres)
	if !strings.HasPrefix(pg.Image, "postgres:") {
		t.Errorf("postgres image %q, want the official postgres image", pg.Image)
	}
	cmd := strings.Join(pg.Command, " ")
	if !strings.Contains(cmd, "wal_level=logical") {
		t.Errorf("postgres command %q does not set wal_level=logical: no replication slot could be created", cmd)
	}
	if pg.HealthCheck == nil || len(pg.HealthCheck.Test) == 0 {
		t.Error("postgres has no healthcheck for the daemon to wait on")
	}
}

func TestKafkaRunsInKRaftMode(t *testing.T) {
	p := loadProject(t)
	k := service(t, p, kafka)
	roles := strings.Split(env(k, "KAFKA_PROCESS_ROLES"), ",")
	if !slices.Contains(roles, "broker") || !slices.Contains(roles, "controller") {
		t.Errorf("KAFKA_PROCESS_ROLES %v, want broker and controller on the one node (KRaft)", roles)
	}
	if env(k, "KAFKA_CONTROLLER_QUORUM_VOTERS") == "" || env(k, "CLUSTER_ID") == "" {
		t.Error("a KRaft node needs KAFKA_CONTROLLER_QUORUM_VOTERS and CLUSTER_ID")
	}
	for name, s := range p.Services {
		if strings.Contains(s.Image, "zookeeper") || env(s, "KAFKA_ZOOKEEPER_CONNECT") != "" {
			t.Errorf("%s uses ZooKeeper; KRaft needs none", name)
		}
	}
	if k.HealthCheck == nil || len(k.HealthCheck.Test) == 0 {
		t.Error("kafka has no healthcheck for the daemon to wait on")
	}
}

func TestDaemonAndEmulatorRunFromTheRepositorysImage(t *testing.T) {
	p := loadProject(t)
	root := daemon.Root(t)
	for _, tc := range []struct {
		service, subcommand string
	}{{cdc, "run"}, {emulator, "emulator"}} {
		s := service(t, p, tc.service)
		if s.Build == nil || s.Build.Context != root || s.Build.Dockerfile != "Dockerfile" {
			t.Errorf("%s builds %+v, want the repository's Dockerfile", tc.service, s.Build)
		}
		if len(s.Command) == 0 || s.Command[0] != tc.subcommand {
			t.Errorf("%s runs %q, want the %s subcommand", tc.service, s.Command, tc.subcommand)
		}
		if len(s.Entrypoint) != 0 {
			t.Errorf("%s replaces the image's entrypoint with %q", tc.service, s.Entrypoint)
		}
		if !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") {
			t.Errorf("%s: read_only %v, cap_drop %v: want the restrictions the Kubernetes pods have", tc.service, s.ReadOnly, s.CapDrop)
		}
	}
	d := service(t, p, cdc)
	for _, dep := range []string{postgres, kafka} {
		if c := d.DependsOn[dep].Condition; c != types.ServiceConditionHealthy {
			t.Errorf("the daemon waits for %s with condition %q, want %s", dep, c, types.ServiceConditionHealthy)
		}
	}
}

// The daemon's configuration and secrets, as mounted in its container, are
// valid to the daemon and name what the file starts.
func TestDaemonConfigFitsTheOtherServices(t *testing.T) {
	p := loadProject(t)
	d := service(t, p, cdc)

	configPath := hostPath(t, d, "/etc/onesignal-cdc/config.yaml")
	secrets := map[string]string{} // target in the container → file on the host
	for _, s := range d.Secrets {
		target := s.Target
		if target == "" {
			target = "/run/secrets/" + s.Source
		}
		secrets[target] = p.Secrets[s.Source].File
	}
	var vars []string
	contents := map[string]string{}
	for _, name := range []string{"ONESIGNAL_CDC_POSTGRES_DSN_FILE", "ONESIGNAL_CDC_ONESIGNAL_API_KEY_FILE"} {
		inContainer := env(d, name)
		file, ok := secrets[inContainer]
		if !ok {
			t.Fatalf("%s = %q, which no secret of the service is mounted at (%v)", name, inContainer, secrets)
		}
		vars = append(vars, name+"="+file)
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		contents[name] = strings.TrimSpace(string(b))
	}
	if out, ok := daemon.Validate(t, daemon.Build(t), configPath, vars...); !ok {
		t.Fatalf("onesignal-cdc validate refuses the Compose configuration:\n%s", out)
	}

	var cfg struct {
		Kafka struct {
			Brokers []string `yaml:"brokers"`
		} `yaml:"kafka"`
		OneSignal struct {
			BaseURL string `yaml:"base_url"`
			AppID   string `yaml:"app_id"`
		} `yaml:"onesignal"`
	}
	raw, err := os.ReadFile(configPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}

	// Kafka: the brokers are what the broker advertises to other containers.
	advertised := strings.Split(env(service(t, p, kafka), "KAFKA_ADVERTISED_LISTENERS"), ",")
	for _, b := range cfg.Kafka.Brokers {
		if !slices.ContainsFunc(advertised, func(l string) bool { return strings.HasSuffix(l, "://"+b) }) {
			t.Errorf("kafka.brokers %s is not among the listeners Kafka advertises: %v", b, advertised)
		}
	}

	// The emulator: the base URL reaches it, with the app and key it accepts.
	emu := service(t, p, emulator)
	u, err := url.Parse(cfg.OneSignal.BaseURL)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(flag(emu.Command, "listen"))
	if u.Hostname() != emulator || u.Port() != port {
		t.Errorf("onesignal.base_url %s does not reach the emulator (service %s, listening on port %s)", cfg.OneSignal.BaseURL, emulator, port)
	}
	if got := flag(emu.Command, "app-id"); got != cfg.OneSignal.AppID {
		t.Errorf("the emulator serves app %q, the daemon writes to %q", got, cfg.OneSignal.AppID)
	}
	if got := flag(emu.Command, "api-key"); got != contents["ONESIGNAL_CDC_ONESIGNAL_API_KEY_FILE"] {
		t.Errorf("the emulator accepts API key %q, the daemon's secret holds another", got)
	}

	// PostgreSQL: the DSN names the service, its user and its database.
	pg := service(t, p, postgres)
	dsn, err := url.Parse(contents["ONESIGNAL_CDC_POSTGRES_DSN_FILE"])
	if err != nil {
		t.Fatalf("the DSN secret is not a URL: %v", err)
	}
	pw, _ := dsn.User.Password()
	if dsn.Hostname() != postgres || dsn.User.Username() != env(pg, "POSTGRES_USER") || pw != env(pg, "POSTGRES_PASSWORD") || strings.TrimPrefix(dsn.Path, "/") != env(pg, "POSTGRES_DB") {
		t.Errorf("the DSN %s does not name the postgres service's host, user, password and database", dsn.Redacted())
	}
}

// hostPath returns the file on the host that a service mounts at target.
func hostPath(t *testing.T, s types.ServiceConfig, target string) string {
	t.Helper()
	for _, v := range s.Volumes {
		if v.Target == target && v.Type == types.VolumeTypeBind {
			return v.Source
		}
	}
	t.Fatalf("%s mounts nothing at %s", s.Name, target)
	return ""
}
