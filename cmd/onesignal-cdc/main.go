// Command onesignal-cdc keeps OneSignal in step with a PostgreSQL database:
// a connector streams row changes into Kafka, a sink applies them to
// OneSignal. This file only wires the pieces together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/onesignal-cdc/onesignal-cdc/config"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the daemon stopped on an error
	exitUsage   = 2 // bad flags or configuration
)

const usage = `onesignal-cdc keeps OneSignal in step with PostgreSQL.

Usage:
  onesignal-cdc run       --config FILE   connector and sink in one process
  onesignal-cdc connector --config FILE   Postgres → Kafka only
  onesignal-cdc sink      --config FILE   Kafka → OneSignal only
  onesignal-cdc validate  --config FILE [--online] [--role run|connector|sink]
                                          check the configuration, and with --online the
                                          database, Kafka and OneSignal; every finding
                                          with its fix
  onesignal-cdc snapshot  --config FILE (--table schema.table… | --all | --reset)
                                          snapshot tables again while streaming; --reset
                                          after a lost slot
  onesignal-cdc slot      status|drop --config FILE
                                          the replication slot's position, lag and WAL
                                          retention; drop it when decommissioning
  onesignal-cdc dlq       replay --config FILE [--dry-run] [--from-beginning]
                                          send dead letters back to their topics after a
                                          fix, except those a newer event superseded
  onesignal-cdc emulator  [flags]         a local OneSignal API emulator
  onesignal-cdc version

Exit codes: 0 stopped cleanly (validate: nothing found), 1 stopped on an error
(validate: problems found), 2 bad usage or configuration.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal, restore the default handling: a second
		// signal ends the process at once.
		<-ctx.Done()
		stop()
	}()

	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		err = daemon(ctx, rest, config.All, stderr)
	case "connector":
		err = daemon(ctx, rest, config.Connector, stderr)
	case "sink":
		err = daemon(ctx, rest, config.Sink, stderr)
	case "validate":
		err = validate(ctx, rest, stdout, stderr)
	case "snapshot":
		err = snapshot(ctx, rest, stdout, stderr)
	case "dlq":
		err = dlq(ctx, rest, stdout, stderr)
	case "slot":
		err = slot(ctx, rest, stdout, stderr)
	case "emulator":
		err = emulator(ctx, rest, stdout)
	case "version":
		fmt.Fprintln(stdout, "onesignal-cdc", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue), errors.Is(err, flag.ErrHelp):
		fmt.Fprintln(stderr, err)
		return exitUsage
	case errors.Is(err, errInvalid):
		return exitFailure
	default:
		fmt.Fprintln(stderr, "onesignal-cdc:", err)
		return exitFailure
	}
}

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// usageError is a problem with flags or configuration: exit code 2.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }
