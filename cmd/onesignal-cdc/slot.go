package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"

	"github.com/onesignal-cdc/onesignal-cdc/config"
)

// slot shows or drops the connector's replication slot.
func slot(ctx context.Context, cmd *command, args []string, stdout io.Writer) error {
	fs := cmd.flags(stdout)
	path := fs.config()
	drop := cmd.name == "slot drop"
	var yes *bool
	if drop {
		yes = fs.Bool("yes", false, "confirm that the stream position is to be given up")
	}
	if err := fs.parse(args); err != nil {
		return err
	}
	cfg, err := config.LoadFor(*path, config.Database)
	if err != nil {
		return usageError{err}
	}
	conn, err := pgx.Connect(ctx, cfg.Postgres.DSN.Reveal())
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	st, err := readSlot(ctx, conn, cfg.Postgres.Slot)
	if err != nil {
		return err
	}
	if !drop {
		st.print(stdout)
		return nil
	}
	if st.active {
		return fmt.Errorf("slot %q is in use by process %d (%s): stop the connector first; a dropped slot in use cannot be dropped", st.name, st.pid, st.client)
	}
	if !*yes {
		return usageError{fmt.Errorf("dropping slot %q gives up the stream position, and the connector will need a full re-snapshot to start again: repeat with --yes to drop it", st.name)}
	}
	if _, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", st.name); err != nil {
		return fmt.Errorf("drop slot %q: %w", st.name, err)
	}
	fmt.Fprintf(stdout, "dropped slot %q: PostgreSQL no longer keeps WAL for it. The connector's state still names it, so its next start stops with an error until `onesignal-cdc snapshot --reset` (a full re-snapshot); when decommissioning, also drop publication %q.\n",
		st.name, cfg.Postgres.Publication)
	return nil
}

type slotStatus struct {
	name, plugin, database               string
	active                               bool
	pid                                  int32
	client                               string
	restartLSN, confirmedLSN, walStatus  string
	lagBytes, retainedBytes, safeWALSize *int64
	replyTime                            string
}

func readSlot(ctx context.Context, conn *pgx.Conn, name string) (*slotStatus, error) {
	st := &slotStatus{name: name}
	err := conn.QueryRow(ctx, `
SELECT s.plugin, s.database, s.active, coalesce(s.active_pid, 0),
       coalesce(host(r.client_addr), CASE WHEN s.active THEN 'local socket' ELSE '' END),
       coalesce(s.restart_lsn::text, ''), coalesce(s.confirmed_flush_lsn::text, ''), coalesce(s.wal_status, ''),
       (pg_current_wal_lsn() - s.confirmed_flush_lsn)::int8,
       (pg_current_wal_lsn() - s.restart_lsn)::int8,
       s.safe_wal_size,
       coalesce(to_char(r.reply_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), '')
FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
WHERE s.slot_name = $1`, name).Scan(&st.plugin, &st.database, &st.active, &st.pid, &st.client,
		&st.restartLSN, &st.confirmedLSN, &st.walStatus, &st.lagBytes, &st.retainedBytes, &st.safeWALSize, &st.replyTime)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("slot %q does not exist in this database: the connector creates it at its first start; check postgres.slot and the database in postgres.dsn", name)
	}
	if err != nil {
		return nil, fmt.Errorf("read slot %q: %w", name, err)
	}
	return st, nil
}

func (st *slotStatus) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("slot", st.name)
	row("database", st.database)
	row("plugin", st.plugin)
	if st.active {
		row("active", fmt.Sprintf("yes, process %d from %s", st.pid, st.client))
	} else {
		row("active", "no: no connector is streaming from it")
	}
	row("confirmed_flush_lsn", st.confirmedLSN)
	row("restart_lsn", st.restartLSN)
	row("lag_bytes", bytesOrDash(st.lagBytes))
	row("retained_wal_bytes", bytesOrDash(st.retainedBytes))
	row("wal_status", st.walStatus+walAdvice(st.walStatus))
	if st.safeWALSize != nil {
		row("safe_wal_size_bytes", bytesOrDash(st.safeWALSize))
	}
	if st.replyTime != "" {
		row("last_reply", st.replyTime)
	}
	tw.Flush()
}

func bytesOrDash(n *int64) string {
	if n == nil {
		return "-"
	}
	return fmt.Sprintf("%d", *n)
}

func walAdvice(status string) string {
	switch status {
	case "extended":
		return " (beyond max_wal_size, kept by the slot: start the connector or raise max_slot_wal_keep_size)"
	case "unreserved":
		return " (WAL will be removed at the next checkpoint: the connector must catch up now)"
	case "lost":
		return " (the WAL it needs is gone: run `onesignal-cdc snapshot --reset`)"
	}
	return ""
}
