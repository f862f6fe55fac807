package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// A command is what `onesignal-cdc NAME --help` says about a subcommand.
// Its flags are declared where it runs, on the flag set from flags.
type command struct {
	name     string // as typed: "run", "slot status"
	synopsis string // what follows the name in a usage line
	summary  string // what it does, in a line
	details  string // more, when one line is not enough
	example  string
}

// commands are every subcommand, in the order of the top-level help.
var commands = []*command{
	{name: "run", synopsis: "[--config FILE]",
		summary: "PostgreSQL → Kafka → OneSignal in one process: connector and sink",
		details: "Runs until SIGTERM or Ctrl-C, then finishes what it holds and stops.",
		example: "onesignal-cdc run --config onesignal-cdc.yaml"},
	{name: "connector", synopsis: "[--config FILE]",
		summary: "PostgreSQL → Kafka only (one process per replication slot)",
		details: "Runs until SIGTERM or Ctrl-C, then finishes what it holds and stops.",
		example: "onesignal-cdc connector --config onesignal-cdc.yaml"},
	{name: "sink", synopsis: "[--config FILE]",
		summary: "Kafka → OneSignal only (run several to scale out)",
		details: "Runs until SIGTERM or Ctrl-C, then finishes what it holds and stops.",
		example: "onesignal-cdc sink --config onesignal-cdc.yaml"},
	{name: "validate", synopsis: "[--config FILE] [--online] [--role run|connector|sink]",
		summary: "check the configuration; with --online the services it names too",
		details: "Checks the file offline; with --online also reaches PostgreSQL, Kafka and\n" +
			"OneSignal. Prints every finding with its fix.\n" +
			"Exits 0 when it finds nothing, 2 when the file does not load or fails a check,\n" +
			"1 when the file is valid but an --online check found a problem.",
		example: "onesignal-cdc validate --config onesignal-cdc.yaml --online"},
	{name: "snapshot", synopsis: "[--config FILE] (--table SCHEMA.TABLE... | --all | --reset)",
		summary: "snapshot tables again while streaming; --reset after a lost slot",
		details: "Writes a request into the WAL that the running connector acts on when it\n" +
			"reaches it; --reset instead lets the connector create a new slot and\n" +
			"snapshot every table at its next start.",
		example: "onesignal-cdc snapshot --config onesignal-cdc.yaml --table public.users"},
	{name: "slot status", synopsis: "[--config FILE]",
		summary: "the replication slot's position, lag and retained WAL",
		example: "onesignal-cdc slot status --config onesignal-cdc.yaml"},
	{name: "slot drop", synopsis: "[--config FILE] --yes",
		summary: "drop the replication slot, when decommissioning",
		details: "Gives up the stream position: PostgreSQL no longer keeps WAL for the\n" +
			"connector, which then needs a full re-snapshot (snapshot --reset).\n" +
			"Refuses a slot in use, and asks for --yes.",
		example: "onesignal-cdc slot drop --config onesignal-cdc.yaml --yes"},
	{name: "dlq replay", synopsis: "[--config FILE] [--dry-run] [--from-beginning]",
		summary: "send dead letters back to their topics after a fix",
		details: "Skips a dead letter that a newer event of the same key superseded, and\n" +
			"remembers (in a consumer group) how far it got.",
		example: "onesignal-cdc dlq replay --config onesignal-cdc.yaml --dry-run"},
	{name: "explain", synopsis: "[--config FILE] (--external-id ID | --device-id ID) [--sink URL]... [--json]",
		summary: "did this user or device sync, and if not, why",
		details: "Reads Kafka directly and changes nothing (no consumer group, no commit): the\n" +
			"target's records in its partition of the targets topic (the source rows that fed\n" +
			"it, with their positions and events, and the desired state the sink folds from\n" +
			"them), the sink group's committed offsets past them, and the dead-letter topic;\n" +
			"then asks each --sink's ops server (/debug/target) what it holds of the target:\n" +
			"pending messages, failed attempts, its window, what it believes applied, its last\n" +
			"call. Ends with a verdict: in sync as far as the sink knows, waiting, retrying,\n" +
			"dead-lettered, or nothing known. Reads the target's partition and the whole\n" +
			"dead-letter topic once.",
		example: "onesignal-cdc explain --config onesignal-cdc.yaml --external-id 'team/ops 7' --sink http://sink-0:9090"},
	{name: "mapping preview", synopsis: "[--config FILE] [--table SCHEMA.TABLE [--where SQL]] [--limit N] [--json]",
		summary: "the OneSignal requests the sink would send for some rows; sends nothing",
		details: "Reads rows of the mapped tables (--limit per table, in primary-key order) and\n" +
			"runs them through the sink itself, in this process, against a OneSignal\n" +
			"emulator that holds nothing yet but the rows' devices; prints each row and\n" +
			"the requests (method, path, body) made for the users and devices it feeds,\n" +
			"in onesignal.model. Nothing reaches onesignal.base_url or Kafka.\n" +
			"--where is an SQL condition over --table's columns: it runs as the\n" +
			"configured PostgreSQL user, in a read-only transaction.",
		example: "onesignal-cdc mapping preview --config onesignal-cdc.yaml --table public.users --where \"plan = 'pro'\" --limit 3"},
	{name: "mapping diff", synopsis: "OLD.yaml NEW.yaml [--config FILE] [--limit N]",
		summary: "how many users and devices a mapping change would change, with examples",
		details: "OLD and NEW are configuration files, or files holding only a mapping:\n" +
			"section. Reads every row of the tables either maps (read-only), computes\n" +
			"each user's and device's desired state under both, and reports what differs\n" +
			"(tags, records, properties, aliases, owners), with up to --limit examples\n" +
			"of each, and the tables whose mapping changed: those the connector snapshots\n" +
			"again when it starts with the new mapping. The database is --config's when\n" +
			"the flag is given, else OLD's (when OLD is a configuration file).",
		example: "onesignal-cdc mapping diff onesignal-cdc.yaml new-mapping.yaml --limit 5"},
	{name: "reconcile", synopsis: "[--config FILE] [--repair] [--table SCHEMA.TABLE [--where SQL]] [--limit N] [--read views|export|auto] [--json]",
		summary: "report where OneSignal differs from the rows (drift); --repair has the sink fix it",
		details: "Reads the mapped tables' rows (read-only, as of one moment) and folds them through\n" +
			"the mapping as the sink does: what OneSignal should hold. Reads what it holds by\n" +
			"views (1 a second, up to 100 users and devices) or by its exports, and prints the\n" +
			"drift: missing or undeleted users, wrong, missing, stale or extra mapped tags,\n" +
			"devices missing or on the wrong user. Tags the mapping does not name are ignored,\n" +
			"and counted. --repair writes a repair record per drifted user and device to the\n" +
			"sink's targets topic: the running sink sends each its desired state again, the\n" +
			"newest by source position, so a repair never undoes a newer change.\n" +
			"Exits 0 when OneSignal holds what the rows say, 1 when it found drift (also with\n" +
			"--repair: run it again to see the repair done), 2 on bad usage or configuration.",
		example: "onesignal-cdc reconcile --config onesignal-cdc.yaml --table public.users --where \"plan = 'pro'\" --limit 50"},
	{name: "emulator", synopsis: "[flags]",
		summary: "a local OneSignal API emulator, for development and tests",
		example: "onesignal-cdc emulator --listen 127.0.0.1:8089 --api-key emulator-key"},
	{name: "version", synopsis: "",
		summary: "the version of this build",
		example: "onesignal-cdc version"},
	{name: "help", synopsis: "[COMMAND]",
		summary: "help on a command: its flags, defaults and an example",
		example: "onesignal-cdc help validate"},
}

// groups are the words that only introduce commands: `slot status`.
var groups = map[string]string{
	"slot":    "the connector's replication slot",
	"dlq":     "the dead-letter topic",
	"mapping": "what a mapping makes of your rows, before it runs",
}

// lookup finds the command that args start with and returns the arguments
// that follow its name.
func lookup(args []string) (*command, []string, error) {
	name := args[0]
	if _, ok := groups[name]; ok {
		if len(args) == 1 {
			return nil, nil, usageError{fmt.Errorf("onesignal-cdc %s needs a command: %s (see onesignal-cdc %s --help)", name, strings.Join(groupCommands(name), " or "), name)}
		}
		name += " " + args[1]
		args = args[1:]
	}
	for _, c := range commands {
		if c.name == name {
			return c, args[1:], nil
		}
	}
	return nil, nil, usageError{fmt.Errorf("unknown command %q (see onesignal-cdc --help)", name)}
}

// groupCommands are the second words of a group's commands.
func groupCommands(group string) []string {
	var out []string
	for _, c := range commands {
		if rest, ok := strings.CutPrefix(c.name, group+" "); ok {
			out = append(out, rest)
		}
	}
	return out
}

// errHelpShown ends a command whose help was asked for and printed: exit 0.
var errHelpShown = errors.New("help shown")

// flagSet is one command's flags. Every command parses the same way: help
// to stdout on -h or --help; an unknown flag, a bad value or an argument
// left over is an error that names it.
type flagSet struct {
	*flag.FlagSet
	cmd    *command
	stdout io.Writer
}

func (c *command) flags(stdout io.Writer) *flagSet {
	fs := flag.NewFlagSet("onesignal-cdc "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parse reports the errors, and help goes to stdout
	fs.Usage = func() {}
	return &flagSet{FlagSet: fs, cmd: c, stdout: stdout}
}

// config declares the --config flag most commands take.
func (f *flagSet) config() *string {
	return f.String("config", "onesignal-cdc.yaml", "the configuration `FILE`")
}

// parse parses args. It returns errHelpShown once it printed the help, or a
// usageError.
func (f *flagSet) parse(args []string) error {
	_, err := f.parseWith(args, nil)
	return err
}

// parseWith parses args that hold, among the flags, the arguments names
// name (such as OLD.yaml), and returns them. Flags may come before,
// between and after them.
func (f *flagSet) parseWith(args []string, names []string) ([]string, error) {
	var positional []string
	rest := args
	for {
		err := f.Parse(rest)
		switch {
		case errors.Is(err, flag.ErrHelp):
			f.cmd.help(f.stdout, f.FlagSet)
			return nil, errHelpShown
		case err != nil:
			return nil, f.usageError(f.problem(err, args))
		}
		if f.NArg() == 0 || len(positional) == len(names) {
			break
		}
		positional = append(positional, f.Arg(0))
		rest = f.Args()[1:]
	}
	switch {
	case f.NArg() > 0:
		arg := f.Arg(0)
		hint := ""
		if len(names) == 0 && (strings.HasSuffix(arg, ".yaml") || strings.HasSuffix(arg, ".yml")) {
			hint = fmt.Sprintf("; to name the configuration file: --config %s", arg)
		}
		return nil, f.usageError(fmt.Sprintf("unexpected argument %q%s", arg, hint))
	case len(positional) < len(names):
		missing := names[len(positional):]
		return nil, f.usageError(fmt.Sprintf("missing %s: give %s", strings.Join(missing, " and "), strings.Join(names, " ")))
	}
	return positional, nil
}

func (f *flagSet) usageError(problem string) error {
	return usageError{fmt.Errorf("onesignal-cdc %s: %s (see onesignal-cdc %s --help)", f.cmd.name, problem, f.cmd.name)}
}

// problem rewords an error of the flag package for a person, naming the
// flag the way it was typed.
func (f *flagSet) problem(err error, args []string) string {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return "unknown flag " + typed(name, args)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return typed(name, args) + " needs a value"
	}
	// invalid value "x" for flag -tag-limit: parse error
	// invalid boolean value "x" for -online: parse error
	for _, prefix := range []string{"invalid value ", "invalid boolean value "} {
		rest, ok := strings.CutPrefix(msg, prefix)
		if !ok {
			continue
		}
		value, rest, _ := strings.Cut(rest, " for ")
		name, why, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(rest, "flag "), "-"), ": ")
		if fl := f.Lookup(name); fl != nil {
			if want := wantValue(fl.Value); want != "" {
				why = "want " + want
			}
		}
		return fmt.Sprintf("%s %s: %s", typed(name, args), value, why)
	}
	return msg
}

// typed is the flag name as args spell it: -x or --x.
func typed(name string, args []string) string {
	for _, a := range args {
		if a == "--" {
			break
		}
		t, _, _ := strings.Cut(a, "=")
		if strings.HasPrefix(t, "-") && strings.TrimLeft(t, "-") == name {
			return t
		}
	}
	return "--" + name
}

// wantValue says what a flag of the standard kinds takes.
func wantValue(v flag.Value) string {
	switch fmt.Sprintf("%T", v) {
	case "*flag.intValue", "*flag.int64Value", "*flag.uintValue", "*flag.uint64Value":
		return "a whole number"
	case "*flag.float64Value":
		return "a number, such as 0.5"
	case "*flag.durationValue":
		return "a duration, such as 500ms or 2m"
	case "*flag.boolValue":
		return "true or false"
	}
	return ""
}

// help prints what the command does, its flags with their defaults, and an
// example.
func (c *command) help(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "onesignal-cdc %s: %s\n", c.name, c.summary)
	if c.details != "" {
		fmt.Fprintf(w, "\n%s\n", c.details)
	}
	fmt.Fprintf(w, "\nUsage:\n  %s\n", strings.TrimSpace("onesignal-cdc "+c.name+" "+c.synopsis))
	if fs != nil {
		var flags strings.Builder
		tw := tabwriter.NewWriter(&flags, 0, 4, 3, ' ', 0)
		fs.VisitAll(func(f *flag.Flag) {
			arg, usage := flag.UnquoteUsage(f)
			if arg != "" {
				arg = " " + arg
			}
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
				usage += fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(tw, "  --%s%s\t%s\n", f.Name, arg, usage)
		})
		tw.Flush()
		if flags.Len() > 0 {
			fmt.Fprintf(w, "\nFlags:\n%s", flags.String())
		}
	}
	fmt.Fprintf(w, "\nExample:\n  %s\n", c.example)
}

// groupHelp is the help of `onesignal-cdc slot`: its commands.
func groupHelp(w io.Writer, group string) {
	fmt.Fprintf(w, "onesignal-cdc %s: %s\n\nCommands:\n", group, groups[group])
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	for _, c := range commands {
		if strings.HasPrefix(c.name, group+" ") {
			fmt.Fprintf(tw, "  onesignal-cdc %s\t%s\n", c.name, c.summary)
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\nEach takes --help for its flags and an example: onesignal-cdc %s %s --help\n", group, groupCommands(group)[0])
}

// exitCodes are the exit statuses every command keeps. The README's table
// says the same (a test compares them).
var exitCodes = []struct {
	code    int
	meaning string
}{
	{exitOK, "success: the command did its work, a daemon stopped cleanly on SIGTERM or Ctrl-C, or help was shown; validate: no problem found"},
	{exitFailure, "stopped on a runtime error: PostgreSQL, Kafka or OneSignal failed or refused (a missing or busy slot, wrong credentials); validate: the configuration is valid but an --online check found a problem; reconcile: drift found"},
	{exitUsage, "bad usage or configuration: an unknown command, flag or argument, a bad flag value, or a configuration file that is missing, does not parse or fails a check (validate too): fix the command line or the file"},
}

// usage is the top-level help.
func usage(w io.Writer) {
	fmt.Fprint(w, "onesignal-cdc keeps OneSignal in step with PostgreSQL.\n\nUsage:\n  onesignal-cdc COMMAND [flags]\n\nCommands:\n")
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprint(w, `
Every command takes --help (or -h) for its flags, their defaults and an
example; so does onesignal-cdc help COMMAND.

Flags:
  -h, --help      this help
  -v, --version   the version of this build

Exit codes:
`)
	for _, e := range exitCodes {
		fmt.Fprintf(w, "  %d  %s\n", e.code, wrap(e.meaning, 74, "     "))
	}
}

// wrap breaks text into lines of at most width, indenting all but the first.
func wrap(text string, width int, indent string) string {
	var b strings.Builder
	line := 0
	for i, word := range strings.Fields(text) {
		if i > 0 && line+1+len([]rune(word)) > width {
			b.WriteString("\n" + indent)
			line = 0
		} else if i > 0 {
			b.WriteByte(' ')
			line++
		}
		b.WriteString(word)
		line += len([]rune(word))
	}
	return b.String()
}
