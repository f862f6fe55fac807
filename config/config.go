// Package config loads the daemon's configuration: one YAML file, decoded
// strictly (an unknown key is an error that names its line), with every
// default set in Default and every problem reported at once.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.yaml.in/yaml/v3"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/internal/suggest"
	"github.com/onesignal-cdc/onesignal-cdc/secret"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// Config is the whole configuration.
type Config struct {
	Postgres  Postgres          `yaml:"postgres"`
	Kafka     Kafka             `yaml:"kafka"`
	OneSignal OneSignal         `yaml:"onesignal"`
	Sink      SinkOptions       `yaml:"sink"`
	Mapping   transform.Mapping `yaml:"mapping"`
	Log       Log               `yaml:"log"`
	Ops       Ops               `yaml:"ops"`

	warnings []string // what ParseFor found deprecated
}

// SinkOptions are how the sink keeps its state (docs/architecture.md):
// durably in its Kafka topics, and as a cache on local disk.
type SinkOptions struct {
	// StateDir is the directory of the sink's local cache of its state (the
	// row index and every target's desired state), rebuilt from Kafka at
	// every start, so it needs no persistent volume: an emptyDir will do.
	// Its content is deleted at start; a directory that holds files the
	// sink did not write is refused. Default "": a new directory under the
	// system's temporary directory, removed at exit.
	StateDir string `yaml:"state_dir"`
	// SessionTimeout is how long the group's coordinator waits for a
	// member's heartbeat before it gives the member's partitions to the
	// others: the failover time after a crash (OOM kill, a lost node).
	// Default 6s, the least brokers accept by default (their
	// group.min.session.timeout.ms), for a failover within 10s.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// HeartbeatInterval is how often a member heartbeats, and so how soon
	// it learns that the group rebalances (a member that left or joined);
	// at most a third of session_timeout. Default 500ms.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// RebalanceTimeout is how long the coordinator waits in a rebalance
	// for every member to stop its work and rejoin; a member slower than
	// that is dropped. Default 30s, Kubernetes' default
	// terminationGracePeriodSeconds.
	RebalanceTimeout time.Duration `yaml:"rebalance_timeout"`
	// Drift is continuous mode: a sweep that compares what OneSignal
	// holds with the sink's desired states (docs/operations.md). Off by
	// default.
	Drift DriftOptions `yaml:"drift"`
}

// DriftOptions are continuous mode's: every sweep_period each sink member
// reads one export of OneSignal and compares the targets of its
// partitions with their desired states.
type DriftOptions struct {
	// SweepPeriod is how often a sweep starts, counted from the start of
	// the one before. Default 0: no sweeps.
	SweepPeriod time.Duration `yaml:"sweep_period"`
	// Share is the share of onesignal.rate_limit the sweep's repairs may
	// take, above 0 and at most 0.5. Default 0.05.
	Share float64 `yaml:"share"`
	// Repair makes the sweep send every drifted target its desired state
	// again; without it, drift is only reported. Default false.
	Repair bool `yaml:"repair"`
}

// minSweepPeriod is the least sink.drift.sweep_period: an export of a
// million users takes OneSignal about 9 minutes.
const minSweepPeriod = 10 * time.Minute

// validate reports the sink's options that cannot work.
func (o SinkOptions) validate(bad func(format string, a ...any)) {
	if o.SessionTimeout < time.Second {
		bad("sink.session_timeout %s is too short: use at least 1s, and no less than the broker's group.min.session.timeout.ms (6s by default; default 6s)", o.SessionTimeout)
	}
	if o.HeartbeatInterval < 100*time.Millisecond {
		bad("sink.heartbeat_interval %s is too short: use at least 100ms (default 500ms)", o.HeartbeatInterval)
	} else if o.HeartbeatInterval*3 > o.SessionTimeout && o.SessionTimeout >= time.Second {
		bad("sink.heartbeat_interval %s is more than a third of sink.session_timeout %s, so one late heartbeat ends the session: shorten the interval or lengthen the timeout (defaults 500ms and 6s)", o.HeartbeatInterval, o.SessionTimeout)
	}
	if o.RebalanceTimeout < time.Second {
		bad("sink.rebalance_timeout %s is too short: use at least 1s, more than a sink needs to stop its work (default 30s)", o.RebalanceTimeout)
	}
	d := o.Drift
	switch {
	case d.SweepPeriod < 0:
		bad("sink.drift.sweep_period %s is negative: use a period such as 24h, or 0 to sweep never (default 0)", d.SweepPeriod)
	case d.SweepPeriod > 0 && d.SweepPeriod < minSweepPeriod:
		bad("sink.drift.sweep_period %s is too short: each sweep reads a whole export of OneSignal (about 9 minutes for a million users); use at least %s, such as 24h", d.SweepPeriod, minSweepPeriod)
	}
	if d.Share <= 0 || d.Share > 0.5 || d.Share != d.Share {
		bad("sink.drift.share %g is out of range: use a share of onesignal.rate_limit above 0 and at most 0.5, such as 0.05 (the default), so the stream keeps the rest", d.Share)
	}
	if d.Repair && d.SweepPeriod == 0 {
		bad("sink.drift.repair is true but sink.drift.sweep_period is 0, so no sweep runs to repair anything: set a sweep_period such as 24h, or remove repair")
	}
}

// Postgres is the source database.
type Postgres struct {
	// DSN is a libpq connection string or URL; required by the connector.
	// Overridden by $ONESIGNAL_CDC_POSTGRES_DSN, or by the content of the
	// file named by $ONESIGNAL_CDC_POSTGRES_DSN_FILE.
	DSN secret.Value `yaml:"dsn"`
	// DSNFile names a file holding the DSN (a mounted secret), instead of
	// dsn; one trailing newline is ignored.
	DSNFile string `yaml:"dsn_file"`
	// Slot is the logical replication slot; default "onesignal_cdc".
	Slot string `yaml:"slot"`
	// Publication is the publication covering the mapped tables; created
	// when missing. Default "onesignal_cdc".
	Publication string `yaml:"publication"`
	// StatusInterval is how often the connector reports its confirmed LSN;
	// default 10s, and never more than a quarter of wal_sender_timeout.
	StatusInterval time.Duration `yaml:"status_interval"`
	// HeartbeatInterval is how often a heartbeat message is written to the
	// WAL so an idle database's slot still advances; default 10s, 0 off.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// Snapshot is "initial" (default): when the slot is first created, the
	// existing rows of every mapped table are emitted while streaming
	// starts; or "never": only changes from then on.
	Snapshot string `yaml:"snapshot"`
	// SnapshotChunkSize is how many rows one snapshot chunk reads; default 10000.
	SnapshotChunkSize int `yaml:"snapshot_chunk_size"`
	// SnapshotParallelism is how many chunks of one table the snapshot
	// reads at once, each on a connection of its own; tables are read side
	// by side, each so. Default 1, at most 64.
	SnapshotParallelism int `yaml:"snapshot_parallelism"`
}

// maxSnapshotParallelism bounds postgres.snapshot_parallelism: every chunk
// read at once holds a connection and a backend of the source database.
const maxSnapshotParallelism = 64

// Embedded is the value of kafka.brokers that runs an in-process broker.
const Embedded = "embedded"

// Kafka is the event log between connector and sink.
type Kafka struct {
	// Brokers are host:port seed brokers, or [embedded] for the
	// development broker: in the process, in memory, gone when it stops,
	// and usable only by `onesignal-cdc run`. Required: no default, so
	// that a file without a kafka section is an error, not a broker that
	// loses everything.
	Brokers []string `yaml:"brokers"`
	// EmbeddedListen is where the embedded broker listens; default
	// "127.0.0.1:0" (a free port, printed in the log).
	EmbeddedListen string `yaml:"embedded_listen"`
	// EmbeddedDataDir is where the embedded broker keeps its events, the
	// sink's offsets and the connector's state, so that they outlive the
	// process; a relative path is from the working directory. "" keeps
	// them in memory only. Default "onesignal-cdc-data".
	EmbeddedDataDir string `yaml:"embedded_data_dir"`
	// TopicPrefix names the topics: <prefix>.<schema>.<table>; default
	// "onesignal_cdc".
	TopicPrefix string `yaml:"topic_prefix"`
	// Partitions is the partition count of topics the connector creates;
	// default 6.
	Partitions int `yaml:"partitions"`
	// ConsumerGroup is the sink's consumer group; default "onesignal-cdc-sink".
	ConsumerGroup string `yaml:"consumer_group"`
	// StateTopic is the compacted topic where the connector keeps its state
	// (snapshot progress); default "<topic_prefix>.connector-state".
	StateTopic string `yaml:"state_topic"`
	// DeadLetterTopic receives the messages the sink cannot apply, with the
	// reason in their headers; default "<topic_prefix>.dlq".
	DeadLetterTopic string    `yaml:"dead_letter_topic"`
	TLS             KafkaTLS  `yaml:"tls"`
	SASL            KafkaSASL `yaml:"sasl"`
}

// KafkaTLS is TLS to the brokers.
type KafkaTLS struct {
	Enabled bool   `yaml:"enabled"` // default false: plaintext
	CAFile  string `yaml:"ca_file"` // PEM CA of the brokers' certificates; default the system's
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// mutual TLS; both or neither.
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"` // default false; never in production
}

// KafkaSASL is authentication to the brokers.
type KafkaSASL struct {
	// Mechanism is "" (none, default), "PLAIN", "SCRAM-SHA-256" or
	// "SCRAM-SHA-512".
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	// Password; overridden by $ONESIGNAL_CDC_KAFKA_SASL_PASSWORD or the
	// file named by $ONESIGNAL_CDC_KAFKA_SASL_PASSWORD_FILE.
	Password     secret.Value `yaml:"password"`
	PasswordFile string       `yaml:"password_file"`
}

// OneSignal is the destination app.
type OneSignal struct {
	// BaseURL of the API; default "https://api.onesignal.com". Plain
	// http:// is refused, as it would send the API key in clear text,
	// unless the host is this machine (localhost, 127.0.0.0/8, ::1) or
	// AllowInsecureHTTP is set.
	BaseURL string `yaml:"base_url"`
	// AllowInsecureHTTP lets BaseURL be plain http:// to another machine,
	// such as an emulator in a docker compose network. Default false; the
	// daemon logs a warning at start when it is set.
	AllowInsecureHTTP bool `yaml:"allow_insecure_http"`
	// AppID is the app's ID, a UUID (Settings › Keys & IDs); required.
	AppID string `yaml:"app_id"`
	// APIKey is an App API key (user model) or the REST API key (player
	// model); required by the sink. Overridden by
	// $ONESIGNAL_CDC_ONESIGNAL_API_KEY, or by the content of the file named
	// by $ONESIGNAL_CDC_ONESIGNAL_API_KEY_FILE.
	APIKey secret.Value `yaml:"api_key"`
	// APIKeyFile names a file holding the API key (a mounted secret),
	// instead of api_key; one trailing newline is ignored.
	APIKeyFile string `yaml:"api_key_file"`
	// Model is the API generation the sink writes with: "user" (default:
	// users by external_id alias and subscriptions) or "player" (the
	// legacy v7 API: players and external_user_id). Both send the key as
	// a current App API key, "Authorization: Key <key>".
	Model string `yaml:"model"`
	// LegacyAPIKey sends the key the way legacy REST API keys went,
	// "Authorization: Basic <key>", for the player model only: OneSignal
	// retires legacy keys and their scheme in 2026; create an App API key
	// instead. Default false.
	LegacyAPIKey bool `yaml:"legacy_api_key"`
	// IdentityVerification sends, with every external_user_id, email or
	// phone number written in the player model, its identity verification
	// hash (HMAC-SHA256 keyed with the API key, hex). Default false.
	IdentityVerification bool `yaml:"identity_verification"`
	// CAFile is a PEM CA bundle trusted for the API besides the system's,
	// for a TLS-intercepting proxy or a private emulator. Default "".
	CAFile string `yaml:"ca_file"`
	// MaxTags is the most data tags one user may hold in your plan (10 on
	// the free plan): a mapping that can give a user more is refused when
	// the configuration loads (a flatten column counts as unbounded), and
	// a row that would give a user more is dead-lettered naming the tags
	// instead of being sent. Default 0: not checked here, OneSignal decides.
	MaxTags int `yaml:"max_tags"`
	// TagLimit is the old name of MaxTags, still read, with a deprecation
	// warning at start; setting both is an error. Default 0.
	TagLimit int `yaml:"tag_limit"`
	// Concurrency is how many requests may be in flight at once, each to
	// a different user or device; default 128, enough for the default
	// rate limit at OneSignal round trips up to about 140 ms.
	Concurrency int `yaml:"concurrency"`
	// RateLimit is the most requests per second sent to the app, retries
	// included; default 900, below OneSignal's 1,000. A 429 slows the sink
	// down for a while.
	RateLimit float64 `yaml:"rate_limit"`
	// MaxInFlight is how many Kafka messages each of the sink's two stages
	// may hold fetched and not yet done (events on their way to the targets
	// topic, targets records on their way to OneSignal); fetching waits at
	// the cap, which bounds memory. Default 10000.
	MaxInFlight int `yaml:"max_in_flight"`
}

// The API generations of OneSignal.Model.
const (
	ModelUser   = "user"
	ModelPlayer = "player"
)

// maxRateLimit is OneSignal's documented write limit per app.
const maxRateLimit = 1000

// Log configures logging.
type Log struct {
	Level string `yaml:"level"` // debug, info, warn or error; default info
	// Format is "json" (default) or "console".
	Format string `yaml:"format"`
}

// Ops is the operations HTTP server: metrics, health and the status page.
type Ops struct {
	// Listen is the host:port of /metrics, /livez, /readyz and the status
	// page at /; default ":9090", "" turns the server off. Overridden by
	// $ONESIGNAL_CDC_OPS_LISTEN.
	//
	// The server has no authentication, and the default binds every
	// interface so that Prometheus and the kubelet can reach it in a pod.
	// It shows the mapping, topics, positions, lag and recent errors
	// (never a secret). Outside a pod, bind it to 127.0.0.1:9090.
	Listen string `yaml:"listen"`
}

// Default returns the configuration with every default set.
func Default() Config {
	return Config{
		Postgres: Postgres{
			Slot:                "onesignal_cdc",
			Publication:         "onesignal_cdc",
			StatusInterval:      10 * time.Second,
			HeartbeatInterval:   10 * time.Second,
			Snapshot:            "initial",
			SnapshotChunkSize:   10000,
			SnapshotParallelism: 1,
		},
		Kafka: Kafka{
			EmbeddedListen: "127.0.0.1:0",
			TopicPrefix:    "onesignal_cdc",
			Partitions:     6,
			ConsumerGroup:  "onesignal-cdc-sink",

			// In the working directory, where a newcomer runs the
			// daemon, sees it and removes it to start over.
			EmbeddedDataDir: "onesignal-cdc-data",
		},
		OneSignal: OneSignal{
			BaseURL:     "https://api.onesignal.com",
			Model:       ModelUser,
			Concurrency: 128,
			RateLimit:   900,
			MaxInFlight: 10000,
		},
		Sink: SinkOptions{
			SessionTimeout:    6 * time.Second,
			HeartbeatInterval: 500 * time.Millisecond,
			RebalanceTimeout:  30 * time.Second,
			Drift:             DriftOptions{Share: 0.05},
		},
		Log: Log{Level: "info", Format: "json"},
		Ops: Ops{Listen: ":9090"},
	}
}

// Role is what a process runs; each role needs its own part of the
// configuration.
type Role uint8

// The roles. Connector needs postgres and kafka; Sink needs kafka,
// onesignal and the mapping's OneSignal side; All needs everything.
// Database is a command that works on PostgreSQL alone (slot, snapshot):
// it needs postgres.dsn, and no kafka.brokers. The zero Role (dlq replay)
// needs kafka only.
//
// A process of the Connector or the Sink role alone cannot use the
// embedded broker: it lives inside one process.
const (
	Connector Role = 1 << iota
	Sink
	Database
	All = Connector | Sink
)

// Load reads the file at path for a process running every role.
func Load(path string) (*Config, error) { return LoadFor(path, All) }

// LoadFor reads the file at path, applies the environment and validates
// what role needs.
func LoadFor(path string, role Role) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	cfg, err := ParseFor(f, role)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse is ParseFor every role.
func Parse(r io.Reader) (*Config, error) { return ParseFor(r, All) }

// ParseFor decodes YAML over the defaults, applies the environment and
// validates what role needs, reporting every problem found.
func ParseFor(r io.Reader, role Role) (*Config, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	cfg := Default()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, explainYAML(err, data)
	}
	var errs []error
	for _, s := range []struct {
		value          *secret.Value
		key, file, env string
	}{
		{&cfg.Postgres.DSN, "postgres.dsn", cfg.Postgres.DSNFile, "ONESIGNAL_CDC_POSTGRES_DSN"},
		{&cfg.OneSignal.APIKey, "onesignal.api_key", cfg.OneSignal.APIKeyFile, "ONESIGNAL_CDC_ONESIGNAL_API_KEY"},
		{&cfg.Kafka.SASL.Password, "kafka.sasl.password", cfg.Kafka.SASL.PasswordFile, "ONESIGNAL_CDC_KAFKA_SASL_PASSWORD"},
	} {
		if err := resolveSecret(s.value, s.key, s.file, s.env); err != nil {
			errs = append(errs, err)
			*s.value = unreadable // reported already: not "empty" as well
		}
	}
	if v, ok := os.LookupEnv("ONESIGNAL_CDC_OPS_LISTEN"); ok {
		cfg.Ops.Listen = v
	}
	if err := errors.Join(append(errs, cfg.ValidateFor(role))...); err != nil {
		return nil, withLines(err, data)
	}
	if cfg.OneSignal.TagLimit != 0 {
		cfg.OneSignal.MaxTags, cfg.OneSignal.TagLimit = cfg.OneSignal.TagLimit, 0
		cfg.warnings = append(cfg.warnings, lineOf(data, []any{"onesignal", "tag_limit"})+
			"onesignal.tag_limit is deprecated: rename it onesignal.max_tags, which means the same; tag_limit will go in a later release")
	}
	if cfg.Kafka.StateTopic == "" {
		cfg.Kafka.StateTopic = cfg.Kafka.TopicPrefix + ".connector-state"
	}
	if cfg.Kafka.DeadLetterTopic == "" {
		cfg.Kafka.DeadLetterTopic = cfg.Kafka.TopicPrefix + ".dlq"
	}
	return &cfg, nil
}

// Warnings returns what the file holds that still works but should change,
// such as a deprecated key, one sentence each, for the log at start.
func (c *Config) Warnings() []string { return slices.Clone(c.warnings) }

// setting is an error about one setting, which can name its path (the
// keys from the top, a list's index as an int).
type setting interface {
	error
	Setting() []any
}

// keyError is a config error about the setting at path.
type keyError struct {
	path []any
	msg  string
}

func (e *keyError) Error() string  { return e.msg }
func (e *keyError) Setting() []any { return e.path }

// withLines puts, in front of each error about a setting, the line of
// the file where the setting is (or, when it is missing, its nearest
// parent), as yaml's own errors have.
func withLines(err error, data []byte) error {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil {
		return err
	}
	var out []error
	var walk func(err error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		if s, ok := err.(setting); ok {
			if line := lineAt(&doc, s.Setting()); line > 0 {
				out = append(out, fmt.Errorf("line %d: %w", line, err))
				return
			}
		}
		out = append(out, err)
	}
	walk(err)
	return errors.Join(out...)
}

// lineOf is "line N: " for the setting at path, or "" when the file does
// not hold it.
func lineOf(data []byte, path []any) string {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil {
		return ""
	}
	if line := lineAt(&doc, path); line > 0 {
		return fmt.Sprintf("line %d: ", line)
	}
	return ""
}

// lineAt is the line of the key at path in doc, or of the deepest key on
// the way that is there; 0 when not even the first is.
func lineAt(doc *yaml.Node, path []any) int {
	n, line := doc, 0
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, p := range path {
		found := false
		switch {
		case n.Kind == yaml.MappingNode:
			key, ok := p.(string)
			if !ok {
				return line
			}
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == key {
					line, n, found = n.Content[i].Line, n.Content[i+1], true
					break
				}
			}
		case n.Kind == yaml.SequenceNode:
			i, ok := p.(int)
			if ok && i >= 0 && i < len(n.Content) {
				line, n, found = n.Content[i].Line, n.Content[i], true
			}
		}
		if !found {
			return line
		}
		for n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
	}
	return line
}

// unreadable stands for a secret whose file could not be read.
const unreadable secret.Value = "(unreadable)"

// resolve sets the secret from, in this order of precedence, $env,
// the file named by $env_FILE, the value in the YAML, or the file the
// YAML names with key_file.
func resolveSecret(s *secret.Value, key, file, env string) error {
	if v := os.Getenv(env); v != "" {
		*s = secret.Value(v)
		return nil
	}
	if f := os.Getenv(env + "_FILE"); f != "" {
		return readSecret(s, f, "$"+env+"_FILE")
	}
	if file == "" {
		return nil
	}
	if *s != "" {
		return fmt.Errorf("%s and %s_file are both set: keep one", key, key)
	}
	return readSecret(s, file, key+"_file")
}

func readSecret(s *secret.Value, path, from string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: cannot read the secret: %w: mount the file or fix the path", from, err)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if len(b) == 0 {
		return fmt.Errorf("%s: %s is empty: write the secret into it", from, path)
	}
	*s = secret.Value(b)
	return nil
}

var unknownField = regexp.MustCompile(`line (\d+): field (\S+) not found in type ([\w.]+)`)

// typeError is one of yaml's type errors: the line, the YAML tag and
// value found (no value for a list or a mapping), and the Go type wanted.
var customTag = regexp.MustCompile(`^line (\d+): cannot unmarshal !`)

var typeError = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+)(?: `(.*)`)? into (.+)$")

// kinds say, for each Go type a key may take, what its value must be in
// a person's words and how to write one.
var kinds = []struct {
	goType     *regexp.Regexp
	noun, hint string
}{
	{regexp.MustCompile(`^time\.Duration$`), "a duration", "write a duration such as 500ms, 10s or 1m30s"},
	{regexp.MustCompile(`^bool$`), "true or false", "write true or false"},
	{regexp.MustCompile(`^u?int\d*$`), "a whole number", "write a whole number, such as 4"},
	{regexp.MustCompile(`^float\d+$`), "a number", "write a number, such as 900 or 2.5"},
	{regexp.MustCompile(`^\[\]`), "a list", "write a list, such as [a, b]"},
	{regexp.MustCompile(`^map\[`), "a mapping", "write a mapping of names to names, such as {column: tag}"},
	{regexp.MustCompile(`^(string|secret\.Value)$`), "a single value", "write a single value, quoted if it holds ': ' or starts with a special character"},
	{regexp.MustCompile(`^\w+\.[A-Z]\w*$`), "a section", "write its keys indented below it, as docs/configuration.md shows"},
}

// explainYAML turns yaml's type-error list into one line per problem,
// each naming the key and saying what its value should look like, in
// words rather than Go's and YAML's type names.
func explainYAML(err error, data []byte) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		// "yaml: line 3: …": the line says enough without the package.
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if strings.Contains(msg, "tab character") || strings.Contains(msg, "cannot start any token") && bytes.ContainsRune(data, '\t') {
			return fmt.Errorf("%s: the file holds a tab; YAML indents with spaces only", msg)
		}
		return errors.New(msg)
	}
	var doc yaml.Node
	_ = yaml.Unmarshal(data, &doc) // it parsed once already
	errs := make([]error, 0, len(te.Errors))
	for _, e := range te.Errors {
		if m := unknownField.FindStringSubmatch(e); m != nil {
			if key, _, glued := strings.Cut(m[2], ":"); glued && key != "" {
				// "dsn:postgres://…": a value without the space YAML needs,
				// which may be a secret: not shown.
				errs = append(errs, fmt.Errorf("line %s: unknown key %q: to give %s a value, write a space after the colon (%s: …); or check the key's spelling and nesting against docs/configuration.md",
					m[1], key+":…", key, key))
				continue
			}
			errs = append(errs, fmt.Errorf("line %s: unknown key %q: check its spelling and nesting against docs/configuration.md", m[1], m[2]))
			continue
		}
		errs = append(errs, errors.New(explainTypeError(e, &doc)))
	}
	return errors.Join(errs...)
}

// explainTypeError words one yaml type error, such as "line 3: cannot
// unmarshal !!int `500` into time.Duration", as "line 3:
// postgres.status_interval: 500 has no unit: write a duration such as
// 500ms, 10s or 1m30s".
func explainTypeError(e string, doc *yaml.Node) string {
	m := typeError.FindStringSubmatch(e)
	if m == nil {
		if t := customTag.FindStringSubmatch(e); t != nil {
			// A tag of the file's own (!name): it may be a value written
			// as one, a secret included, so it is not shown.
			return "line " + t[1] + ": a YAML tag (a word after !) is not something this file takes: write the value plainly, as docs/configuration.md shows"
		}
		return e
	}
	line, tag, value, goType := m[1], m[2], m[3], m[4]
	noun, hint := "the kind of value this key takes", "see docs/configuration.md"
	for _, k := range kinds {
		if k.goType.MatchString(goType) {
			noun, hint = k.noun, k.hint
			break
		}
	}
	prefix := "line " + line + ": "
	kind := yaml.ScalarNode
	switch tag {
	case "seq":
		kind = yaml.SequenceNode
	case "map":
		kind = yaml.MappingNode
	}
	if n, err := strconv.Atoi(line); err == nil {
		if key, v := keyAt(doc, n, kind, value); key != "" {
			prefix += key + ": "
			value = v
		}
	}
	found := "`" + value + "`"
	if noun == "a section" {
		// A section's misplaced value may be its secret written on one
		// line (postgres: dsn:…): name its kind, never its text.
		found = "a single value"
	}
	switch tag {
	case "seq":
		found = "a list"
	case "map":
		found = "a mapping"
	case "int", "float", "bool":
		found = value
	}
	what := found + " is not " + noun
	if goType == "time.Duration" && (tag == "int" || tag == "float") {
		what = value + " has no unit"
	}
	return prefix + what + ": " + hint
}

// keyAt finds the dotted key (postgres.status_interval) whose value is a
// node of kind on line and, for a scalar, starts as value does (yaml cuts
// long values to 7 characters and "..."). It returns the key, "" when
// none is found, and the value in full.
func keyAt(n *yaml.Node, line int, kind yaml.Kind, value string) (string, string) {
	value = strings.TrimSuffix(value, "...")
	var walk func(n *yaml.Node, path string) (string, string)
	walk = func(n *yaml.Node, path string) (string, string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				if k, v := walk(c, path); k != "" {
					return k, v
				}
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				key, v := n.Content[i], n.Content[i+1]
				p := key.Value
				if path != "" {
					p = path + "." + key.Value
				}
				if v.Line == line && v.Kind == kind && (kind != yaml.ScalarNode || strings.HasPrefix(v.Value, value)) {
					return p, v.Value
				}
				if k, found := walk(v, p); k != "" {
					return k, found
				}
			}
		}
		return "", ""
	}
	return walk(n, "")
}

var identifier = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// Validate reports every semantic problem at once, for every role.
func (c *Config) Validate() error { return c.ValidateFor(All) }

// ValidateFor reports every semantic problem of what role needs at once.
func (c *Config) ValidateFor(role Role) error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if role&(Connector|Database) != 0 {
		switch c.Postgres.DSN {
		case "":
			bad("postgres.dsn is empty: set it, $ONESIGNAL_CDC_POSTGRES_DSN or $ONESIGNAL_CDC_POSTGRES_DSN_FILE to a connection string such as postgres://user@host:5432/db")
		case unreadable: // reported already
		default:
			if _, err := pgconn.ParseConfig(c.Postgres.DSN.Reveal()); err != nil {
				bad("postgres.dsn does not parse: %s: fix the connection string (a URL or key=value pairs, as libpq takes them), or the file it names", dsnProblem(err, c.Postgres.DSN.Reveal()))
			}
		}
	}
	if !identifier.MatchString(c.Postgres.Slot) {
		bad("postgres.slot %q is not a valid slot name: use lower-case letters, digits and underscores", c.Postgres.Slot)
	}
	if !identifier.MatchString(c.Postgres.Publication) {
		bad("postgres.publication %q is not a valid name: use lower-case letters, digits and underscores", c.Postgres.Publication)
	}
	if c.Postgres.StatusInterval < 100*time.Millisecond {
		bad("postgres.status_interval %s is too short: use at least 100ms (default 10s)", c.Postgres.StatusInterval)
	}
	if c.Postgres.HeartbeatInterval != 0 && c.Postgres.HeartbeatInterval < 100*time.Millisecond {
		bad("postgres.heartbeat_interval %s is too short: use at least 100ms, or 0 to turn heartbeats off (default 10s)", c.Postgres.HeartbeatInterval)
	}
	if c.Postgres.Snapshot != "initial" && c.Postgres.Snapshot != "never" {
		bad("postgres.snapshot %q is not initial or never", c.Postgres.Snapshot)
	}
	if c.Postgres.SnapshotChunkSize < 1 {
		bad("postgres.snapshot_chunk_size %d must be at least 1 (default 10000)", c.Postgres.SnapshotChunkSize)
	}
	if c.Postgres.SnapshotParallelism < 1 || c.Postgres.SnapshotParallelism > maxSnapshotParallelism {
		bad("postgres.snapshot_parallelism %d must be from 1 to %d (default 1): it is how many chunks of a table the snapshot reads at once, each on a connection of its own", c.Postgres.SnapshotParallelism, maxSnapshotParallelism)
	}
	if len(c.Kafka.Brokers) == 0 && role != Database {
		bad("kafka.brokers is empty: list your Kafka brokers as host:port, e.g. [kafka-1:9092, kafka-2:9092], or write [embedded] for the development broker (in this process, in memory, for onesignal-cdc run only)")
	}
	for _, b := range c.Kafka.Brokers {
		if b == Embedded {
			if len(c.Kafka.Brokers) > 1 {
				bad("kafka.brokers: %q cannot be combined with other brokers", Embedded)
			}
			continue
		}
		if err := checkBroker(b); err != nil {
			errs = append(errs, err)
		}
	}
	if c.EmbeddedKafka() && (role == Connector || role == Sink) {
		errs = append(errs, embeddedAlone(role))
	}
	if c.Kafka.TopicPrefix == "" {
		bad("kafka.topic_prefix is empty: set a prefix such as onesignal_cdc")
	}
	if c.Kafka.Partitions < 1 {
		bad("kafka.partitions %d must be at least 1", c.Kafka.Partitions)
	}
	if c.Kafka.ConsumerGroup == "" {
		bad("kafka.consumer_group is empty: name the sink's consumer group")
	}
	if c.EmbeddedKafka() && (c.Kafka.TLS.Enabled || c.Kafka.SASL.Mechanism != "") {
		bad("kafka.tls and kafka.sasl do not apply to the embedded broker: remove them, or list real brokers in kafka.brokers")
	}
	if _, err := broker.NewCluster(c.Kafka.Brokers, c.KafkaSecurity()); err != nil {
		errs = append(errs, err)
	}
	if sasl := c.Kafka.SASL; sasl.Mechanism != "" && (sasl.Username == "" || sasl.Password == "") {
		bad("kafka.sasl.mechanism %s needs kafka.sasl.username and a password (kafka.sasl.password, password_file or $ONESIGNAL_CDC_KAFKA_SASL_PASSWORD)", sasl.Mechanism)
	}
	badAt := func(path []any, format string, a ...any) {
		errs = append(errs, &keyError{path: path, msg: fmt.Sprintf(format, a...)})
	}
	if role&Sink != 0 {
		c.OneSignal.validate(bad, badAt)
		c.Sink.validate(bad)
	}
	lim := transform.Limits{Model: c.OneSignal.Model}
	if role&Sink != 0 {
		lim.MaxTags, lim.MaxTagsKey = c.OneSignal.MaxTags, "onesignal.max_tags"
		if c.OneSignal.MaxTags == 0 && c.OneSignal.TagLimit > 0 {
			lim.MaxTags, lim.MaxTagsKey = c.OneSignal.TagLimit, "onesignal.tag_limit"
		}
	}
	if err := c.Mapping.ValidateFor(lim); err != nil {
		errs = append(errs, err)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level %q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		bad("log.format %q is not json or console", c.Log.Format)
	}
	if c.Ops.Listen != "" {
		if _, port, err := net.SplitHostPort(c.Ops.Listen); err != nil || port == "" {
			bad("ops.listen %q is not host:port: use e.g. \":9090\", \"127.0.0.1:9090\", or \"\" to turn the ops server off", c.Ops.Listen)
		}
	}
	return errors.Join(errs...)
}

func (o *OneSignal) validate(bad func(string, ...any), badAt func([]any, string, ...any)) {
	if u, err := url.Parse(o.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("onesignal.base_url %q is not an http(s) URL", o.BaseURL)
	} else if u.Scheme == "http" && !o.AllowInsecureHTTP && !loopback(u.Hostname()) {
		bad("onesignal.base_url %q is plain http to another machine, which would send the API key across the network in clear text: "+
			"use https://, or, for a test service on a network you trust (an emulator in docker compose), set onesignal.allow_insecure_http: true", o.BaseURL)
	}
	switch {
	case o.AppID == "":
		bad("onesignal.app_id is empty: set it to your app's ID from Settings › Keys & IDs")
	case !uuid.MatchString(o.AppID):
		bad("onesignal.app_id %q is not an app ID: OneSignal's app IDs are UUIDs such as 5eb5a37e-b458-11e3-ac11-000c2940e62c; copy yours from the dashboard, Settings › Keys & IDs", o.AppID)
	}
	if o.APIKey == "" {
		bad("onesignal.api_key is empty: set it, $ONESIGNAL_CDC_ONESIGNAL_API_KEY or $ONESIGNAL_CDC_ONESIGNAL_API_KEY_FILE to an App API key")
	}
	if o.Model != ModelUser && o.Model != ModelPlayer {
		bad("onesignal.model %q is not %s (the current API, default) or %s (the legacy v7 player API)", o.Model, ModelUser, ModelPlayer)
	}
	if o.CAFile != "" {
		if _, err := broker.LoadCA(o.CAFile); err != nil {
			bad("onesignal.ca_file: %v: give a readable PEM CA bundle", err)
		}
	}
	if o.MaxTags < 0 {
		badAt([]any{"onesignal", "max_tags"}, "onesignal.max_tags %d must be 0 (not checked) or your plan's tags per user, such as 10", o.MaxTags)
	}
	if o.TagLimit < 0 {
		badAt([]any{"onesignal", "tag_limit"}, "onesignal.tag_limit %d must be 0 (not checked) or your plan's tags per user; and rename it max_tags", o.TagLimit)
	}
	if o.MaxTags != 0 && o.TagLimit != 0 {
		badAt([]any{"onesignal", "tag_limit"}, "onesignal.tag_limit and onesignal.max_tags are both set: keep max_tags (tag_limit is its old name)")
	}
	if o.IdentityVerification && o.Model == ModelUser {
		bad("onesignal.identity_verification is for the player model: the user model's identity verification signs the SDKs' requests (JWT), and server calls with an App API key send no hash: remove it, or set onesignal.model: player")
	}
	if o.LegacyAPIKey && o.Model == ModelUser {
		bad("onesignal.legacy_api_key is for the player model: the user model takes App API keys only: remove it, or set onesignal.model: player")
	}
	if o.Concurrency < 1 {
		bad("onesignal.concurrency %d must be at least 1 (default 128)", o.Concurrency)
	}
	switch r := o.RateLimit; {
	case r <= 0:
		bad("onesignal.rate_limit %g must be above 0 requests/s (default 900)", r)
	case r > maxRateLimit:
		bad("onesignal.rate_limit %g is above OneSignal's limit of %d writes/s per app: use at most %d (default 900)", r, maxRateLimit, maxRateLimit)
	}
	if o.MaxInFlight < 1 {
		bad("onesignal.max_in_flight %d must be at least 1 (default 10000)", o.MaxInFlight)
	}
}

// uuid is the form of OneSignal's app IDs.
var uuid = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// loopback reports whether host, as in a URL, is this machine:
// "localhost", or an address in 127.0.0.0/8 or ::1.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkBroker reports a kafka.brokers entry that is not host:port.
func checkBroker(b string) error {
	host, port, err := net.SplitHostPort(b)
	if (err != nil && strings.Contains(err.Error(), "missing port")) || (err == nil && port == "") {
		msg := fmt.Sprintf("kafka.brokers: %q has no port: write host:port, e.g. %q", b, strings.TrimSuffix(b, ":")+":9092")
		if _, close := suggest.Closest(b, []string{Embedded}); close {
			msg += fmt.Sprintf(`; or, if you meant the development broker, spell it %q: brokers: [%s]`, Embedded, Embedded)
		}
		return errors.New(msg)
	}
	if err != nil {
		return fmt.Errorf("kafka.brokers: %q is not host:port: write it as kafka-1:9092, or [::1]:9092 for an IPv6 address", b)
	}
	if host == "" {
		return fmt.Errorf("kafka.brokers: %q has no host: write host:port, e.g. \"kafka-1%s\"", b, b)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("kafka.brokers: %q: the port %q is not a number from 1 to 65535", b, port)
	}
	return nil
}

// embeddedAlone is why a process of role (Connector or Sink alone) cannot
// use the embedded broker.
func embeddedAlone(role Role) error {
	name, why := "connector", "a sink in another process can never read what the connector writes to it, "+
		"and the connector would confirm to PostgreSQL changes that only its own memory holds (lost when it stops)"
	if role == Sink {
		name, why = "sink", "no connector in another process can write to it, and the sink would wait for changes that never come"
	}
	return fmt.Errorf("kafka.brokers is [embedded], which onesignal-cdc %s cannot use: the embedded development broker lives inside one process, so %s. "+
		"Run connector and sink in one process with onesignal-cdc run, or list your Kafka brokers (host:port)", name, why)
}

// dsnProblem says why a DSN does not parse, without the DSN itself: pgconn's
// error quotes it (its password masked only as far as it could find it),
// and so does the URL parser's underneath.
func dsnProblem(err error, dsn string) string {
	reason := "it is neither a URL nor key=value pairs"
	if pce, ok := errors.AsType[*pgconn.ParseConfigError](err); ok {
		full := pce.Error()
		inner := pce.Unwrap()
		if inner != nil {
			full = strings.TrimSuffix(full, " ("+inner.Error()+")")
		}
		if i := strings.LastIndex(full, "`: "); i >= 0 {
			reason = full[i+len("`: "):]
		}
		if ue, ok := errors.AsType[*url.Error](inner); ok {
			inner = ue.Err
		}
		if inner != nil {
			reason += ": " + inner.Error()
		}
	}
	if dsn != "" && strings.Contains(reason, dsn) {
		return "it does not parse" // a reason that quotes it would print it
	}
	// The URL parser quotes the part it stopped at ("unexpected spaces found
	// in \"…\""), which may be a password's.
	return quotedPart.ReplaceAllStringFunc(reason, func(q string) string {
		if part, err := strconv.Unquote(q); err == nil && dsn != "" && strings.Contains(dsn, part) {
			return "(a part of it)"
		}
		return q
	})
}

// quotedPart matches a string as strconv.Quote writes it.
var quotedPart = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// KafkaSecurity is the TLS and SASL part of the kafka section.
func (c *Config) KafkaSecurity() broker.Security {
	t, a := c.Kafka.TLS, c.Kafka.SASL
	return broker.Security{
		TLS: t.Enabled, CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile, InsecureSkipVerify: t.InsecureSkipVerify,
		SASLMechanism: a.Mechanism, Username: a.Username, Password: a.Password,
	}
}

// KafkaCluster is how to reach the configured brokers; brokers replaces
// kafka.brokers when not nil (the embedded broker's address).
func (c *Config) KafkaCluster(brokers []string) (broker.Cluster, error) {
	if brokers == nil {
		brokers = c.Kafka.Brokers
	}
	if c.EmbeddedKafka() {
		return broker.Plain(brokers), nil
	}
	return broker.NewCluster(brokers, c.KafkaSecurity())
}

// EmbeddedKafka reports whether the config asks for the in-process broker.
func (c *Config) EmbeddedKafka() bool {
	return len(c.Kafka.Brokers) == 1 && c.Kafka.Brokers[0] == Embedded
}
