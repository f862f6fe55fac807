package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/connector"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
)

// errInvalid makes validate exit 1 once it has printed its findings.
var errInvalid = errors.New("validation found problems")

// validate checks a configuration offline (strict parse and semantic
// checks) and, with --online, against the services it names. It prints
// every finding with its fix.
func validate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("onesignal-cdc validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "onesignal-cdc.yaml", "configuration file")
	online := fs.Bool("online", false, "also check PostgreSQL, Kafka and OneSignal")
	roleName := fs.String("role", "run", "check what this process needs: run (everything), connector or sink")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	roles, ok := map[string]config.Role{"run": config.All, "connector": config.Connector, "sink": config.Sink}[*roleName]
	if !ok {
		return usageError{fmt.Errorf("--role %q is not run, connector or sink", *roleName)}
	}
	cfg, err := config.LoadFor(*path, roles)
	if err != nil {
		fmt.Fprintln(stdout, err)
		return errInvalid
	}
	fmt.Fprintf(stdout, "%s: the configuration is valid\n", *path)
	if !*online {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ok = true
	report := func(what string, err error) {
		if err != nil {
			ok = false
			fmt.Fprintf(stdout, "%s: %v\n", what, err)
			return
		}
		fmt.Fprintf(stdout, "%s: ok\n", what)
	}
	if roles&config.Connector != 0 {
		report("postgres", checkPostgres(ctx, cfg))
	}
	if cfg.EmbeddedKafka() {
		// Nothing to reach, and nothing to call ok: it keeps nothing.
		fmt.Fprintln(stdout, "kafka: embedded development broker, in this process, not durable")
	} else {
		report("kafka", checkKafka(ctx, cfg))
	}
	if roles&config.Sink != 0 {
		report("onesignal", checkOneSignal(ctx, cfg))
	}
	if !ok {
		return errInvalid
	}
	return nil
}

func checkPostgres(ctx context.Context, cfg *config.Config) error {
	conn, err := pgx.Connect(ctx, cfg.Postgres.DSN.Reveal())
	if err != nil {
		return fmt.Errorf("cannot connect (%w): check postgres.dsn and that the server accepts this client", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	findings, err := connector.Check(ctx, conn, connector.Config{
		Slot: cfg.Postgres.Slot, Publication: cfg.Postgres.Publication, Tables: cfg.Mapping.Tables(), Columns: cfg.Mapping.Columns(),
		InitialSnapshot: cfg.Postgres.Snapshot == "initial",
	})
	if err != nil {
		return err
	}
	if len(findings) > 0 {
		return findings
	}
	return nil
}

func checkKafka(ctx context.Context, cfg *config.Config) error {
	cluster, err := cfg.KafkaCluster(nil)
	if err != nil {
		return err
	}
	meta, err := cluster.Client(10*time.Second).Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return fmt.Errorf("cannot reach the brokers %v (%w): check kafka.brokers, kafka.tls, kafka.sasl and the network", cfg.Kafka.Brokers, err)
	}
	if len(meta.Brokers) == 0 {
		return fmt.Errorf("the brokers %v list no broker: check kafka.brokers", cfg.Kafka.Brokers)
	}
	return nil
}

func checkOneSignal(ctx context.Context, cfg *config.Config) error {
	httpClient, err := oneSignalHTTP(cfg, nil)
	if err != nil {
		return err
	}
	c, err := onesignal.New(onesignal.Config{BaseURL: cfg.OneSignal.BaseURL, AppID: cfg.OneSignal.AppID, APIKey: onesignal.Secret(cfg.OneSignal.APIKey.Reveal()), HTTPClient: httpClient})
	if err != nil {
		return err
	}
	if err := forModel(cfg, c).CheckCredentials(ctx); err != nil {
		if apiErr, ok := errors.AsType[*onesignal.APIError](err); ok && apiErr.Refusal() != "" {
			return fmt.Errorf("%s (%w)", apiErr.Refusal(), err)
		}
		return fmt.Errorf("%w: check onesignal.base_url, onesignal.app_id and onesignal.api_key", err)
	}
	return nil
}
