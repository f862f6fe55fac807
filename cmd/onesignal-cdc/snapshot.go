package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/connector"
)

// tableList is a repeatable --table flag.
type tableList []string

func (l *tableList) String() string     { return strings.Join(*l, ",") }
func (l *tableList) Set(v string) error { *l = append(*l, v); return nil }

// snapshot asks the running connector to re-snapshot tables, or, with
// --reset, lets it start over from a new slot after the old one was lost.
func snapshot(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("onesignal-cdc snapshot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "onesignal-cdc.yaml", "configuration file")
	var tables tableList
	fs.Var(&tables, "table", "schema.table to snapshot again (repeatable)")
	all := fs.Bool("all", false, "snapshot every mapped table again")
	reset := fs.Bool("reset", false, "after a lost slot: let the connector create a new one and snapshot every table")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	cfg, err := config.LoadFor(*path, config.Database)
	if err != nil {
		return usageError{err}
	}
	mapped := cfg.Mapping.Tables()
	switch {
	case *reset:
		if len(tables) > 0 || *all {
			return usageError{errors.New("--reset snapshots every table; give it without --table or --all")}
		}
		if len(cfg.Kafka.Brokers) == 0 {
			return usageError{errors.New("--reset writes the connector's state to Kafka: list the brokers in kafka.brokers")}
		}
		if cfg.EmbeddedKafka() {
			return usageError{errors.New("--reset writes the connector's state to Kafka; the embedded broker keeps none across restarts, so there is nothing to reset")}
		}
		cluster, err := cfg.KafkaCluster(nil)
		if err != nil {
			return usageError{err}
		}
		store, err := cluster.OpenStateStore(ctx, cfg.Kafka.StateTopic)
		if err != nil {
			return err
		}
		defer store.Close()
		if err := connector.Reset(ctx, store, cfg.Postgres.Slot); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "reset: at its next start the connector creates slot %q and snapshots %s\n", cfg.Postgres.Slot, strings.Join(mapped, ", "))
		return nil
	case *all:
		tables = mapped
	case len(tables) == 0:
		return usageError{errors.New("name the tables to snapshot with --table schema.table, or give --all")}
	}
	for _, t := range tables {
		if !contains(mapped, t) {
			return usageError{fmt.Errorf("table %q is not in the mapping (%s)", t, strings.Join(mapped, ", "))}
		}
	}
	if err := connector.Signal(ctx, cfg.Postgres.DSN.Reveal(), tables); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "requested a snapshot of %s: the connector starts it when the request reaches it through the WAL\n", strings.Join(tables, ", "))
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
