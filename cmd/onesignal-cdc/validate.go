package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/connector"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
)

// errInvalid makes validate exit 1 once it has printed the findings of its
// online checks; errConfigInvalid, exit 2, once it has printed why the
// configuration does not load.
var (
	errInvalid       = reported(exitFailure)
	errConfigInvalid = reported(exitUsage)
)

// validate checks a configuration offline (strict parse and semantic
// checks) and, with --online, against the services it names. It prints
// every finding with its fix.
func validate(ctx context.Context, cmd *command, args []string, stdout io.Writer) error {
	fs := cmd.flags(stdout)
	path := fs.config()
	online := fs.Bool("online", false, "also check PostgreSQL, Kafka and OneSignal")
	roleName := fs.String("role", "run", "check what this `ROLE` needs: run (everything), connector or sink")
	if err := fs.parse(args); err != nil {
		return err
	}
	roles, ok := map[string]config.Role{"run": config.All, "connector": config.Connector, "sink": config.Sink}[*roleName]
	if !ok {
		return fs.usageError(fmt.Sprintf("--role %q is not run, connector or sink", *roleName))
	}
	cfg, err := config.LoadFor(*path, roles)
	if err != nil {
		fmt.Fprintln(stdout, err)
		return errConfigInvalid
	}
	fmt.Fprintf(stdout, "%s: the configuration is valid\n", *path)
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stdout, "%s: warning: %s\n", *path, w)
	}
	if !*online {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ok = true
	report := func(what string, err error) {
		if err != nil {
			ok = false
			if msg := err.Error(); strings.HasPrefix(msg, what+" ") {
				fmt.Fprintln(stdout, msg) // names its service already: "kafka at …"
			} else {
				fmt.Fprintf(stdout, "%s: %s\n", what, msg)
			}
			return
		}
		fmt.Fprintf(stdout, "%s: ok\n", what)
	}
	if roles&config.Connector != 0 {
		warnings, err := checkPostgres(ctx, cfg)
		report("postgres", err)
		for _, w := range warnings {
			fmt.Fprintf(stdout, "postgres: warning: %s\n", w)
		}
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

func checkPostgres(ctx context.Context, cfg *config.Config) (warnings []string, err error) {
	conn, err := pgx.Connect(ctx, cfg.Postgres.DSN.Reveal())
	if err != nil {
		return nil, fmt.Errorf("cannot connect (%w): check postgres.dsn and that the server accepts this client", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	findings, notes, err := connector.Inspect(ctx, conn, connector.Config{
		Slot: cfg.Postgres.Slot, Publication: cfg.Postgres.Publication, Tables: cfg.Mapping.Tables(), Columns: cfg.Mapping.Columns(),
		Expressions: expressions(cfg), Publish: publishOf(&cfg.Mapping),
		InitialSnapshot: cfg.Postgres.Snapshot == "initial",
	})
	if err != nil {
		return nil, err
	}
	if len(findings) > 0 {
		return nil, findings
	}
	for _, n := range notes {
		warnings = append(warnings, n.String())
	}
	more, err := replicaIdentityWarnings(ctx, conn, cfg)
	return append(warnings, more...), err
}

// expressions are the mapping's expressions, for the connector's checks.
func expressions(cfg *config.Config) []connector.Expression {
	var out []connector.Expression
	for _, e := range cfg.Mapping.Expressions() {
		out = append(out, connector.Expression{Table: e.Table, Setting: e.Setting, Program: e.Program})
	}
	return out
}

// replicaIdentityWarnings names the mapped tables whose deletes and key
// changes the sink may not be able to place. The sink's row index knows
// every row it has seen, so under REPLICA IDENTITY DEFAULT a delete, which
// carries only the primary key, still finds its user or device. Without an
// initial snapshot (postgres.snapshot: never) it has not seen the rows
// written before the connector started: a delete, or an update of the
// external id or device id, of such a row needs the old row (REPLICA
// IDENTITY FULL), unless that column is in the primary key.
func replicaIdentityWarnings(ctx context.Context, conn *pgx.Conn, cfg *config.Config) ([]string, error) {
	if cfg.Postgres.Snapshot != "never" {
		return nil, nil
	}
	var out []string
	check := func(table, column, setting string) error {
		schema, name, _ := strings.Cut(table, ".")
		var identity string
		var inKey bool
		err := conn.QueryRow(ctx, `
			SELECT c.relreplident::text,
			       EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
			               WHERE i.indrelid = c.oid AND i.indisprimary AND a.attname = $3)
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relname = $2`, schema, name, column).Scan(&identity, &inKey)
		if err != nil {
			return fmt.Errorf("read the replica identity of %s: %w", table, err)
		}
		if identity == "d" && !inKey {
			ident := pgx.Identifier{schema, name}.Sanitize()
			out = append(out, fmt.Sprintf("with postgres.snapshot: never the sink has not seen the %s rows written before the connector started, "+
				"and under REPLICA IDENTITY DEFAULT a delete (or a change of %s, %q) of such a row does not say which user or device it was: "+
				"run ALTER TABLE %s REPLICA IDENTITY FULL, or snapshot the table once (onesignal-cdc snapshot --table %s)",
				table, setting, column, ident, table))
		}
		return nil
	}
	if u := cfg.Mapping.Users; u != nil {
		if err := check(u.Table, u.ExternalID, "mapping.users.external_id"); err != nil {
			return nil, err
		}
	}
	if d := cfg.Mapping.Devices; d != nil {
		if err := check(d.Table, d.DeviceID, "mapping.devices.device_id"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func checkKafka(ctx context.Context, cfg *config.Config) error {
	cluster, err := cfg.KafkaCluster(nil)
	if err != nil {
		return err
	}
	if err := cluster.Diagnose(ctx); err != nil {
		return err
	}
	client, done := cluster.Client(10 * time.Second)
	defer done()
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		if explained := cluster.Explain(ctx, err); explained != err {
			return explained
		}
		return fmt.Errorf("the brokers %v do not answer a metadata request (%w): check kafka.brokers, kafka.tls, kafka.sasl and the network", cfg.Kafka.Brokers, err)
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
	c, err := onesignal.New(onesignal.Config{BaseURL: cfg.OneSignal.BaseURL, AppID: cfg.OneSignal.AppID, APIKey: cfg.OneSignal.APIKey, HTTPClient: httpClient})
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
