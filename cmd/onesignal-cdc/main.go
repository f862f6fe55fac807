// Command onesignal-cdc keeps OneSignal in step with a PostgreSQL database:
// a connector streams row changes into Kafka, a sink applies them to
// OneSignal. This file only wires the pieces together.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/onesignal-cdc/onesignal-cdc/config"
)

// Exit codes (exitCodes in cli.go says what each means).
const (
	exitOK      = 0
	exitFailure = 1 // stopped on a runtime error
	exitUsage   = 2 // bad usage or configuration
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal, restore the default handling: a second
		// signal ends the process at once.
		<-ctx.Done()
		stop()
	}()

	err := dispatch(ctx, args, stdout, stderr)
	var ue usageError
	var r reported
	switch {
	case err == nil, errors.Is(err, errHelpShown):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, err)
		return exitUsage
	case errors.As(err, &r):
		return int(r)
	default:
		fmt.Fprintln(stderr, "onesignal-cdc:", err)
		return exitFailure
	}
}

// dispatch runs the command args name.
func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return reported(exitUsage)
	}
	switch args[0] {
	case "-h", "-help", "--help":
		return dispatch(ctx, append([]string{"help"}, args[1:]...), stdout, stderr)
	case "-v", "-version", "--version":
		return dispatch(ctx, append([]string{"version"}, args[1:]...), stdout, stderr)
	}
	if strings.HasPrefix(args[0], "-") {
		return usageError{fmt.Errorf("unknown flag %s: a command comes first (see onesignal-cdc --help)", args[0])}
	}
	if _, ok := groups[args[0]]; ok && len(args) > 1 && isHelp(args[1]) {
		groupHelp(stdout, args[0])
		return errHelpShown
	}
	cmd, rest, err := lookup(args)
	if err != nil {
		return err
	}
	switch cmd.name {
	case "run":
		return daemon(ctx, cmd, rest, config.All, stdout, stderr)
	case "connector":
		return daemon(ctx, cmd, rest, config.Connector, stdout, stderr)
	case "sink":
		return daemon(ctx, cmd, rest, config.Sink, stdout, stderr)
	case "validate":
		return validate(ctx, cmd, rest, stdout)
	case "snapshot":
		return snapshot(ctx, cmd, rest, stdout)
	case "slot status", "slot drop":
		return slot(ctx, cmd, rest, stdout)
	case "dlq replay":
		return dlq(ctx, cmd, rest, stdout)
	case "explain":
		return explainTarget(ctx, cmd, rest, stdout)
	case "mapping preview":
		return mappingPreview(ctx, cmd, rest, stdout)
	case "mapping diff":
		return mappingDiff(ctx, cmd, rest, stdout)
	case "reconcile":
		return reconcileCmd(ctx, cmd, rest, stdout, stderr)
	case "emulator":
		return serveEmulator(ctx, cmd, rest, stdout)
	case "version":
		if err := cmd.flags(stdout).parse(rest); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "onesignal-cdc", buildVersion())
		return nil
	case "help":
		if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
			// help slot status is slot status --help.
			return dispatch(ctx, append(rest[:len(rest):len(rest)], "--help"), stdout, stderr)
		}
		if err := cmd.flags(stdout).parse(rest); err != nil {
			return err
		}
		usage(stdout)
		return nil
	}
	panic("no dispatch for command " + cmd.name)
}

func isHelp(arg string) bool { return arg == "-h" || arg == "-help" || arg == "--help" }

// usageError is a problem with the command line or the configuration: exit
// code 2.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

// reported is the exit code of a command that has already said what went
// wrong, on stdout (validate's findings) or stderr.
type reported int

func (r reported) Error() string { return fmt.Sprintf("exit status %d", int(r)) }
