package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/connector"
	"github.com/onesignal-cdc/onesignal-cdc/internal/errclass"
	"github.com/onesignal-cdc/onesignal-cdc/ops"
	"github.com/onesignal-cdc/onesignal-cdc/retry"
	"github.com/onesignal-cdc/onesignal-cdc/secret"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// publishOf is what the connector publishes of each mapped table.
func publishOf(m *transform.Mapping) map[string]connector.Publish {
	out := map[string]connector.Publish{}
	for _, t := range m.Tables() {
		cols, filter := m.Publish(t)
		out[t] = connector.Publish{Columns: cols, RowFilterFor: filter}
	}
	return out
}

// fingerprintsOf is the mapping's fingerprint of each mapped table.
func fingerprintsOf(m *transform.Mapping) map[string]string {
	out := map[string]string{}
	for _, t := range m.Tables() {
		out[t] = m.Fingerprint(t)
	}
	return out
}

// daemon runs the daemon with the given roles until ctx ends or a
// component fails. A stop asked for while the daemon starts (a SIGTERM
// before it is ready, as Kubernetes sends to a pod that is not ready yet)
// ends it with no error, as a stop after its start does: whatever step it
// cut short reports context.Canceled.
func daemon(ctx context.Context, cmd *command, args []string, roles config.Role, stdout, stderr io.Writer) error {
	err := runDaemon(ctx, cmd, args, roles, stdout, stderr)
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// runDaemon is daemon without its reading of a stop.
func runDaemon(ctx context.Context, cmd *command, args []string, roles config.Role, stdout, stderr io.Writer) error {
	fs := cmd.flags(stdout)
	path := fs.config()
	if err := fs.parse(args); err != nil {
		return err
	}
	cfg, err := config.LoadFor(*path, roles)
	if err != nil {
		return usageError{err}
	}
	log, err := newLogger(cfg.Log, stderr)
	if err != nil {
		return usageError{err}
	}
	defer log.Sync() //nolint:errcheck // nothing to do about a failed flush of stderr
	for _, w := range cfg.Warnings() {
		log.Warn(w)
	}
	version := buildVersion()

	// The ops server starts first and stops last, so /livez answers while
	// the daemon waits for Kafka and /readyz says what it waits for.
	ctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	var connOps *ops.ConnectorMonitor
	var sinkOps *ops.SinkMonitor
	if cfg.Ops.Listen != "" {
		srv := ops.New(ops.Config{
			Listen:      cfg.Ops.Listen,
			Version:     version,
			Mapping:     &cfg.Mapping,
			TopicPrefix: cfg.Kafka.TopicPrefix,
			Secrets:     secrets(cfg),

			EmbeddedKafka: cfg.EmbeddedKafka(), // the status page says "development only"
		}, log)
		if roles&config.Connector != 0 {
			connOps = srv.Connector(ops.ConnectorConfig{
				Slot:   cfg.Postgres.Slot,
				Tables: cfg.Mapping.Tables(),
				Slots:  connector.NewSlotReader(cfg.Postgres.DSN.Reveal(), cfg.Postgres.Slot),
			})
		}
		if roles&config.Sink != 0 {
			sinkOps = srv.Sink(ops.SinkConfig{BaseURL: cfg.OneSignal.BaseURL, RateLimit: cfg.OneSignal.RateLimit})
		}
		if err := srv.Listen(); err != nil {
			return err
		}
		opsCtx, stopOps := context.WithCancel(context.WithoutCancel(ctx))
		opsDone := make(chan struct{})
		go func() {
			defer close(opsDone)
			if err := srv.Run(opsCtx); err != nil {
				fail(err)
			}
		}()
		defer func() {
			stopOps()
			<-opsDone
		}()
	}

	var embedded []string
	if cfg.EmbeddedKafka() {
		emb, err := broker.StartEmbeddedIn(cfg.Kafka.EmbeddedListen, cfg.Kafka.EmbeddedDataDir)
		if err != nil {
			return err
		}
		defer emb.Close()
		embedded = emb.Brokers()
		if dir := cfg.Kafka.EmbeddedDataDir; dir == "" {
			log.Warn("using the embedded Kafka broker in memory (kafka.embedded_data_dir is empty): events the sink has not applied are lost when the process exits, "+
				"and each start snapshots every table again; for development, never production",
				zap.Strings("brokers", embedded))
		} else {
			abs, _ := filepath.Abs(dir)
			log.Warn("using the embedded Kafka broker, with its data in "+abs+": it keeps events across restarts, but it is one broker on one disk; for development, never production",
				zap.Strings("brokers", embedded), zap.String("data_dir", abs))
		}
	}
	cluster, err := cfg.KafkaCluster(embedded)
	if err != nil {
		return usageError{err}
	}
	topics := make([]string, 0, 2)
	for _, t := range cfg.Mapping.Tables() {
		topics = append(topics, cfg.Kafka.TopicPrefix+"."+t)
	}
	// Every error is waited out here, a refusal too: a broker still being
	// set up (its users, its ACLs) cannot be told from a wrong setting,
	// and the warning says which broker and why.
	err = retry.Startup.Do(ctx, func() error {
		return errclass.Mark(cluster.Explain(ctx, cluster.EnsureTopics(ctx, cfg.Kafka.Partitions, topics...)), errclass.Retryable)
	}, func(err error, wait time.Duration) {
		log.Warn("kafka not reachable; retrying", zap.Error(err), zap.Duration("wait", wait))
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	var components []component
	if roles&config.Connector != 0 {
		w := cluster.NewConnectorWriter()
		defer w.Close()
		state, err := cluster.OpenStateStore(ctx, cfg.Kafka.StateTopic)
		if err != nil {
			return err
		}
		defer state.Close()
		log.Info("connector source", pgTarget(cfg.Postgres.DSN.Reveal())...)
		components = append(components, connector.New(connector.Config{
			DSN:               cfg.Postgres.DSN.Reveal(),
			Slot:              cfg.Postgres.Slot,
			Publication:       cfg.Postgres.Publication,
			Tables:            cfg.Mapping.Tables(),
			Columns:           cfg.Mapping.Columns(),
			Expressions:       expressions(cfg),
			Publish:           publishOf(&cfg.Mapping),
			Fingerprints:      fingerprintsOf(&cfg.Mapping),
			TopicPrefix:       cfg.Kafka.TopicPrefix,
			StatusInterval:    cfg.Postgres.StatusInterval,
			HeartbeatInterval: cfg.Postgres.HeartbeatInterval,
			CreateTopic: func(ctx context.Context, topic string) error {
				return cluster.EnsureTopics(ctx, cfg.Kafka.Partitions, topic)
			},
			State:               state,
			InitialSnapshot:     cfg.Postgres.Snapshot == "initial",
			SnapshotChunkSize:   cfg.Postgres.SnapshotChunkSize,
			SnapshotParallelism: cfg.Postgres.SnapshotParallelism,
			Observer:            connOps.Observer(),
			Version:             version,
		}, cluster.ExplainWrites(w), log))
	}
	if roles&config.Sink != 0 {
		if cfg.OneSignal.AllowInsecureHTTP {
			log.Warn("onesignal.allow_insecure_http is set: the API may be reached over plain http, and then the API key crosses the network in clear text; use https:// outside a test network",
				zap.String("base_url", cfg.OneSignal.BaseURL))
		}
		var wrap func(http.RoundTripper) http.RoundTripper
		if sinkOps != nil {
			wrap = sinkOps.Transport
		}
		httpClient, err := oneSignalHTTP(cfg, wrap)
		if err != nil {
			return usageError{err}
		}
		limiter := sink.NewLimiter(nil, cfg.OneSignal.RateLimit)
		api, err := onesignal.New(onesignal.Config{
			BaseURL:    cfg.OneSignal.BaseURL,
			AppID:      cfg.OneSignal.AppID,
			APIKey:     cfg.OneSignal.APIKey,
			HTTPClient: httpClient,
			Limiter:    limiter,
		})
		if err != nil {
			return usageError{err}
		}
		store, closeStore, err := sinkStore(cfg)
		if err != nil {
			return err
		}
		defer closeStore()
		own := sink.TopicsFor(cfg.Kafka.TopicPrefix)
		group := sink.Cluster{Cluster: cluster, Group: broker.GroupConfig{
			ID: cfg.Kafka.ConsumerGroup, Topics: append(slices.Clone(topics), own.Targets),
			SessionTimeout:    cfg.Sink.SessionTimeout,
			HeartbeatInterval: cfg.Sink.HeartbeatInterval,
			RebalanceTimeout:  cfg.Sink.RebalanceTimeout,
			ErrorLogger:       sinkOps.KafkaErrorLogger(),
		}}
		if err := group.Prepare(ctx, own, cfg.Kafka.Partitions, topics); err != nil {
			return cluster.Explain(ctx, err)
		}
		if err := cluster.EnsureTopics(ctx, cfg.Kafka.Partitions, cfg.Kafka.DeadLetterTopic); err != nil {
			return cluster.Explain(ctx, err)
		}
		targets, rows := group.Writers()
		defer targets.Close()
		defer rows.Close()
		dlq := cluster.NewWriter(100)
		defer dlq.Close()
		s := sink.New(sink.Config{
			Model:           cfg.OneSignal.Model,
			TargetsTopic:    own.Targets,
			RowsTopic:       own.Rows,
			Targets:         cluster.ExplainWrites(targets),
			Rows:            cluster.ExplainWrites(rows),
			Kafka:           group,
			Store:           store,
			Concurrency:     cfg.OneSignal.Concurrency,
			MaxInFlight:     cfg.OneSignal.MaxInFlight,
			DeadLetters:     cluster.ExplainWrites(dlq),
			DeadLetterTopic: cfg.Kafka.DeadLetterTopic,
			TagLimit:        cfg.OneSignal.MaxTags,
			Limiter:         limiter,
			DeadLettered:    sinkOps.DeadLettered(),
			Drift:           driftConfig(cfg, api),
		}, group, sink.RecordCalls(forModel(cfg, api), recordedTargets), &cfg.Mapping, log)
		sinkOps.Watch(s.Stats, s.ReaderStats)
		sinkOps.WatchLag(s.Lag)
		sinkOps.WatchTargets(s.Inspect)
		components = append(components, sinkOps.Wrap(s))
	}
	return runAll(ctx, components)
}

// recordedTargets is how many targets' last OneSignal call the sink
// remembers, for explain (about 2 MB).
const recordedTargets = 10000

type component interface {
	Run(ctx context.Context) error
}

// runAll runs the components until ctx ends or one of them fails, which
// stops the others; it returns the first failure.
func runAll(ctx context.Context, cs []component) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			if err := c.Run(ctx); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func newLogger(cfg config.Log, w io.Writer) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(cfg.Level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "ts"
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if cfg.Format == "console" {
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		enc = zapcore.NewJSONEncoder(ec)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), level)), nil
}

// secrets are the values the ops server must never show: the API key, the
// Kafka SASL password, the DSN and its password.
func secrets(cfg *config.Config) []secret.Value {
	out := []secret.Value{cfg.OneSignal.APIKey, cfg.Kafka.SASL.Password, cfg.Postgres.DSN}
	if c, err := pgconn.ParseConfig(cfg.Postgres.DSN.Reveal()); err == nil {
		out = append(out, secret.Value(c.Password))
	}
	return out
}

// pgTarget describes a DSN for the log without its password.
func pgTarget(dsn string) []zap.Field {
	c, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil
	}
	return []zap.Field{zap.String("host", c.Host), zap.Uint16("port", c.Port), zap.String("database", c.Database), zap.String("user", c.User)}
}
