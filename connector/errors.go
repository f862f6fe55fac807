package connector

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/internal/errclass"
)

// fatal marks err as one no reconnect can fix: Run stops with it, as
// worded. Nil stays nil.
func fatal(err error) error { return errclass.Mark(err, errclass.Fatal) }

// classify decides what Run does when a session ended on err: reconnect
// (Retryable) or stop (anything else). An error the connector marked
// decides for itself; a PostgreSQL or a Kafka error by its dependency's
// classifier; any other (a connection that broke in a way no classifier
// names) is retried, as losing the connection is what a session most
// often ends on.
func classify(err error) errclass.Class {
	return cmp.Or(errclass.Of(err), postgresClass(err), broker.Classify(err), errclass.Retryable)
}

// postgresClass is the classifier of PostgreSQL's errors. A server's
// error is retryable for the SQLSTATEs of a connection lost or refused for
// now: connection exceptions (class 08), the server shutting down or
// starting (57P), too many connections (53300), a transaction rolled back
// by a serialization failure or a deadlock (class 40), and another
// process holding the slot (55006); every other is fatal: a statement the
// server refused is refused again after a reconnect, and the connector
// cannot skip it. Of the client's errors, those pgx calls safe to retry
// (nothing was sent), timeouts and broken or refused connections are
// retryable, a DSN it cannot parse fatal. Unknown for any other error.
func postgresClass(err error) errclass.Class {
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		if retryableSQLState(pgErr.Code) {
			return errclass.Retryable
		}
		return errclass.Fatal
	}
	if _, ok := errors.AsType[*pgconn.ParseConfigError](err); ok {
		return errclass.Fatal
	}
	if _, ok := errors.AsType[*net.OpError](err); ok ||
		pgconn.SafeToRetry(err) || pgconn.Timeout(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errclass.Retryable
	}
	return errclass.Unknown
}

func retryableSQLState(code string) bool {
	switch {
	case strings.HasPrefix(code, "08"), // connection exceptions
		strings.HasPrefix(code, "57P"), // admin shutdown, crash shutdown, cannot connect now
		strings.HasPrefix(code, "40"),  // serialization failure, deadlock detected
		code == "53300",                // too many connections
		code == "55006":                // object in use: another process holds the slot
		return true
	}
	return false
}

// pgFix names the fix of a PostgreSQL error that stops the connector, ""
// when there is none to name.
func pgFix(err error) string {
	pgErr, ok := errors.AsType[*pgconn.PgError](err)
	if !ok {
		return ""
	}
	switch pgErr.Code {
	case "28P01": // invalid_password
		return "check the user and password in postgres.dsn"
	case "28000": // invalid_authorization_specification: no such role, or pg_hba.conf
		return "check the user in postgres.dsn, and that pg_hba.conf lets it connect from this host"
	case "3D000": // invalid_catalog_name
		return "check the database name in postgres.dsn"
	case "42501": // insufficient_privilege
		return "grant the role of postgres.dsn what it lacks (docs/operations.md, A least-privilege PostgreSQL role)"
	case "42704": // undefined_object
		return "check postgres.publication and postgres.slot: the connector creates them at start, and one was dropped or cannot be seen by its role"
	}
	return ""
}

// withFix words an error the connector stops with: a PostgreSQL or Kafka
// error gets its fix appended, unless the connector marked it fatal itself
// (and worded it then).
func withFix(err error) error {
	if errclass.Of(err) == errclass.Fatal {
		return err
	}
	if fix := cmp.Or(pgFix(err), broker.Fix(err)); fix != "" {
		return fmt.Errorf("%w: %s", err, fix)
	}
	return err
}
