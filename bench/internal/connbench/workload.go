package connbench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/onesignal-cdc/onesignal-cdc/bench/internal/harness"
)

// The benchmark's tables look like a user table a OneSignal sync reads:
// ids, text, a small jsonb document and timestamps, about 200 bytes a row.
const tableColumns = `(
	id          bigint PRIMARY KEY,
	external_id text NOT NULL,
	email       text NOT NULL,
	language    text NOT NULL,
	country     text,
	score       integer NOT NULL,
	tags        jsonb,
	created_at  timestamptz NOT NULL,
	updated_at  timestamptz NOT NULL
)`

// insertRows inserts the rows with ids $1 to $2.
func insertRows(table string) string {
	return `INSERT INTO ` + table + `
	SELECT g, 'ext-' || g, 'user' || g || '@example.com',
	       (ARRAY['en','de','fr','es','pt'])[1 + g % 5], 'US', (g % 1000)::int,
	       jsonb_build_object('plan', 'pro', 'visits', g % 97, 'beta', g % 2 = 0),
	       now(), now()
	FROM generate_series($1::bigint, $2::bigint) g`
}

// updateRows changes the rows with ids $1 to $2.
func updateRows(table string) string {
	return `UPDATE ` + table + `
	SET score = score + 1, updated_at = now(), tags = jsonb_set(tags, '{visits}', to_jsonb(score + 1))
	WHERE id BETWEEN $1 AND $2`
}

// workload writes rows changes in transactions of txn rows: of every five
// transactions three insert new rows and two update rows inserted before,
// cycling through them. It returns how many transactions of each kind it
// committed and the end of the WAL after the last commit.
func (b *Bench) workload(ctx context.Context, table string, rows, txn int) (end pglogrepl.LSN, inserts, updates int, err error) {
	conn, err := b.DB.Connect(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	inserted, cursor := 0, 0
	for i, done := 0, 0; done < rows; i++ {
		n := min(txn, rows-done)
		if i%5 >= 3 && inserted >= n {
			if cursor+n > inserted {
				cursor = 0
			}
			if _, err := conn.Exec(ctx, updateRows(table), cursor+1, cursor+n); err != nil {
				return 0, 0, 0, fmt.Errorf("update transaction %d: %w", i, err)
			}
			cursor += n
			updates++
		} else {
			if _, err := conn.Exec(ctx, insertRows(table), inserted+1, inserted+n); err != nil {
				return 0, 0, 0, fmt.Errorf("insert transaction %d: %w", i, err)
			}
			inserted += n
			inserts++
		}
		done += n
	}
	end, err = harness.CurrentLSN(ctx, conn)
	return end, inserts, updates, err
}

// recvlogical is pg_recvlogical draining a pgoutput slot to /dev/null until
// it has consumed the WAL up to end.
func (b *Bench) recvlogical(ctx context.Context, slot, publication string, end pglogrepl.LSN) (run, error) {
	prog, err := b.Srv.Program("pg_recvlogical")
	if err != nil {
		return run{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.Opts.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, "--dbname", b.DB.DSN, "--slot", slot, "--start",
		"--endpos", end.String(), "--no-loop", "--file", "/dev/null",
		"--option", "proto_version=1", "--option", "publication_names="+publication)
	cmd.Stderr = os.Stderr
	started := time.Now()
	if err := cmd.Run(); err != nil {
		return run{}, fmt.Errorf("pg_recvlogical: %w", err)
	}
	r := run{elapsed: time.Since(started)}
	r.cpu, r.maxRSS = harness.Usage(cmd.ProcessState)
	return r, nil
}
