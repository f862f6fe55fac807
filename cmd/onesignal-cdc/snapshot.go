package main

import (
	"context"
	"errors"
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
func snapshot(ctx context.Context, cmd *command, args []string, stdout io.Writer) error {
	fs := cmd.flags(stdout)
	path := fs.config()
	var tables tableList
	fs.Var(&tables, "table", "a mapped `SCHEMA.TABLE` to snapshot again; repeat the flag for more")
	all := fs.Bool("all", false, "snapshot every mapped table again")
	reset := fs.Bool("reset", false, "after a lost slot: let the connector create a new one and snapshot every table")
	if err := fs.parse(args); err != nil {
		return err
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
		cluster, done, err := commandKafka(cfg, "the broker keeps the connector's state in memory, so each start snapshots every table again: there is nothing to reset")
		if err != nil {
			return err
		}
		defer done()
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
