// Package config loads the daemon's configuration: one YAML file, decoded
// strictly (an unknown key is an error that names its line), with every
// default set in Default and every problem reported at once.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// Config is the whole configuration.
type Config struct {
	Postgres  Postgres          `yaml:"postgres"`
	Kafka     Kafka             `yaml:"kafka"`
	OneSignal OneSignal         `yaml:"onesignal"`
	Mapping   transform.Mapping `yaml:"mapping"`
	Log       Log               `yaml:"log"`
}

// Postgres is the source database.
type Postgres struct {
	// DSN is a libpq connection string or URL; required. Overridden by
	// $ONESIGNAL_CDC_POSTGRES_DSN.
	DSN Secret `yaml:"dsn"`
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
}

// Embedded is the value of kafka.brokers that runs an in-process broker.
const Embedded = "embedded"

// Kafka is the event log between connector and sink.
type Kafka struct {
	// Brokers are host:port seed brokers, or [embedded] for an in-process,
	// non-durable broker (development only); default [embedded].
	Brokers []string `yaml:"brokers"`
	// EmbeddedListen is where the embedded broker listens; default
	// "127.0.0.1:0" (a free port, printed in the log).
	EmbeddedListen string `yaml:"embedded_listen"`
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
	DeadLetterTopic string `yaml:"dead_letter_topic"`
}

// OneSignal is the destination app.
type OneSignal struct {
	// BaseURL of the API; default "https://api.onesignal.com".
	BaseURL string `yaml:"base_url"`
	// AppID is the app's ID (Settings › Keys & IDs); required.
	AppID string `yaml:"app_id"`
	// APIKey is an App API key; required. Overridden by
	// $ONESIGNAL_CDC_ONESIGNAL_API_KEY.
	APIKey Secret `yaml:"api_key"`
	// Concurrency is how many requests may be in flight at once, each to
	// a different user or device; default 32.
	Concurrency int `yaml:"concurrency"`
	// RateLimit is the most requests per second sent to the app, retries
	// included; default 900, below OneSignal's 1,000. A 429 slows the sink
	// down for a while.
	RateLimit float64 `yaml:"rate_limit"`
	// MaxInFlight is how many Kafka messages may be fetched and not yet
	// applied; fetching waits at the cap, which bounds memory. Default
	// 10000.
	MaxInFlight int `yaml:"max_in_flight"`
}

// maxRateLimit is OneSignal's documented write limit per app.
const maxRateLimit = 1000

// Log configures logging.
type Log struct {
	Level string `yaml:"level"` // debug, info, warn or error; default info
	// Format is "json" (default) or "console".
	Format string `yaml:"format"`
}

// Secret is a string that never prints: logs and errors show "[redacted]".
type Secret string

func (s Secret) String() string                { return "[redacted]" }
func (s Secret) GoString() string              { return `"[redacted]"` }
func (s Secret) MarshalText() ([]byte, error)  { return []byte("[redacted]"), nil }
func (s Secret) Reveal() string                { return string(s) }
func (s *Secret) UnmarshalText(b []byte) error { *s = Secret(b); return nil }

// Default returns the configuration with every default set.
func Default() Config {
	return Config{
		Postgres: Postgres{
			Slot:              "onesignal_cdc",
			Publication:       "onesignal_cdc",
			StatusInterval:    10 * time.Second,
			HeartbeatInterval: 10 * time.Second,
			Snapshot:          "initial",
			SnapshotChunkSize: 10000,
		},
		Kafka: Kafka{
			Brokers:        []string{Embedded},
			EmbeddedListen: "127.0.0.1:0",
			TopicPrefix:    "onesignal_cdc",
			Partitions:     6,
			ConsumerGroup:  "onesignal-cdc-sink",
		},
		OneSignal: OneSignal{
			BaseURL:     "https://api.onesignal.com",
			Concurrency: 32,
			RateLimit:   900,
			MaxInFlight: 10000,
		},
		Log: Log{Level: "info", Format: "json"},
	}
}

// Load reads the file at path, applies the environment and validates.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	cfg, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes YAML over the defaults, applies the environment and
// validates, reporting every problem found.
func Parse(r io.Reader) (*Config, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	cfg := Default()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, explainYAML(err)
	}
	if v := os.Getenv("ONESIGNAL_CDC_POSTGRES_DSN"); v != "" {
		cfg.Postgres.DSN = Secret(v)
	}
	if v := os.Getenv("ONESIGNAL_CDC_ONESIGNAL_API_KEY"); v != "" {
		cfg.OneSignal.APIKey = Secret(v)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Kafka.StateTopic == "" {
		cfg.Kafka.StateTopic = cfg.Kafka.TopicPrefix + ".connector-state"
	}
	if cfg.Kafka.DeadLetterTopic == "" {
		cfg.Kafka.DeadLetterTopic = cfg.Kafka.TopicPrefix + ".dlq"
	}
	return &cfg, nil
}

var unknownField = regexp.MustCompile(`line (\d+): field (\S+) not found in type ([\w.]+)`)

// explainYAML turns yaml's type-error list into one line per problem.
func explainYAML(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	errs := make([]error, 0, len(te.Errors))
	for _, e := range te.Errors {
		if m := unknownField.FindStringSubmatch(e); m != nil {
			errs = append(errs, fmt.Errorf("line %s: unknown key %q: check its spelling and nesting against docs/configuration.md", m[1], m[2]))
			continue
		}
		errs = append(errs, errors.New(e))
	}
	return errors.Join(errs...)
}

var identifier = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// Validate reports every semantic problem at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.Postgres.DSN == "" {
		bad("postgres.dsn is empty: set it, or $ONESIGNAL_CDC_POSTGRES_DSN, to a connection string such as postgres://user@host:5432/db")
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
	if len(c.Kafka.Brokers) == 0 {
		bad("kafka.brokers is empty: list host:port brokers, or [embedded] for the in-process development broker")
	}
	for _, b := range c.Kafka.Brokers {
		if b == Embedded && len(c.Kafka.Brokers) > 1 {
			bad("kafka.brokers: %q cannot be combined with other brokers", Embedded)
		}
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
	if u, err := url.Parse(c.OneSignal.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("onesignal.base_url %q is not an http(s) URL", c.OneSignal.BaseURL)
	}
	if c.OneSignal.AppID == "" {
		bad("onesignal.app_id is empty: set it to your app's ID from Settings › Keys & IDs")
	}
	if c.OneSignal.APIKey == "" {
		bad("onesignal.api_key is empty: set it, or $ONESIGNAL_CDC_ONESIGNAL_API_KEY, to an App API key")
	}
	if c.OneSignal.Concurrency < 1 {
		bad("onesignal.concurrency %d must be at least 1 (default 32)", c.OneSignal.Concurrency)
	}
	switch r := c.OneSignal.RateLimit; {
	case r <= 0:
		bad("onesignal.rate_limit %g must be above 0 requests/s (default 900)", r)
	case r > maxRateLimit:
		bad("onesignal.rate_limit %g is above OneSignal's limit of %d writes/s per app: use at most %d (default 900)", r, maxRateLimit, maxRateLimit)
	}
	if c.OneSignal.MaxInFlight < 1 {
		bad("onesignal.max_in_flight %d must be at least 1 (default 10000)", c.OneSignal.MaxInFlight)
	}
	if err := c.Mapping.Validate(); err != nil {
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
	return errors.Join(errs...)
}

// EmbeddedKafka reports whether the config asks for the in-process broker.
func (c *Config) EmbeddedKafka() bool {
	return len(c.Kafka.Brokers) == 1 && c.Kafka.Brokers[0] == Embedded
}
