package connector

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// HeartbeatPrefix marks the connector's heartbeat messages in the WAL.
const HeartbeatPrefix = "onesignal_cdc_heartbeat"

// housekeeping runs beside the stream on a regular connection, every
// HeartbeatInterval (10s when heartbeats are off), until ctx ends:
//
//   - It writes a heartbeat: a small non-transactional logical decoding
//     message that publishes nothing but gives the walsender WAL of this
//     database to decode, after which its keepalive carries a WAL end that
//     the idle connector confirms.
//   - It puts mapped tables back into the publication. Dropping a table
//     removes it from every publication, so a table dropped and created
//     again under the same name would otherwise stay silent.
//
// Failures are logged and retried at the next round: they delay WAL
// release or a table's return, they lose nothing already streamed.
func (c *Connector) housekeeping(ctx context.Context) {
	interval := c.cfg.HeartbeatInterval
	if interval <= 0 {
		interval = 10 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.WithoutCancel(ctx))
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var err error
		if conn == nil {
			if conn, err = c.connect(ctx); err != nil {
				conn = nil
				c.log.Warn("housekeeping: connect failed", zap.Error(err))
				continue
			}
		}
		if c.cfg.HeartbeatInterval > 0 {
			_, err = conn.Exec(ctx, `SELECT pg_logical_emit_message(false, $1, '')`, HeartbeatPrefix)
		}
		if err == nil {
			err = c.ensurePublication(ctx, conn)
		}
		if err != nil && ctx.Err() == nil {
			c.log.Warn("housekeeping failed", zap.Error(err))
			conn.Close(context.WithoutCancel(ctx))
			conn = nil
		}
	}
}
