package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/deadletter"
)

// dlq runs the dead-letter subcommand, replay.
func dlq(ctx context.Context, cmd *command, args []string, stdout io.Writer) error {
	fs := cmd.flags(stdout)
	path := fs.config()
	dryRun := fs.Bool("dry-run", false, "list what would be replayed; write and commit nothing")
	fromBeginning := fs.Bool("from-beginning", false, "handle every dead letter Kafka holds, also those a previous replay handled")
	if err := fs.parse(args); err != nil {
		return err
	}
	cfg, err := config.LoadFor(*path, 0)
	if err != nil {
		return usageError{err}
	}
	cluster, done, err := commandKafka(cfg, "the dead letters live in the memory of the running process, out of this command's reach; set kafka.embedded_data_dir, or use a Kafka cluster")
	if err != nil {
		return err
	}
	defer done()
	w := cluster.NewWriter(100)
	w.Balancer = broker.MessagePartition{} // each back to the partition it came from
	defer w.Close()
	rep, err := deadletter.Replay(ctx, deadletter.Config{
		Cluster:       cluster,
		Topic:         cfg.Kafka.DeadLetterTopic,
		Group:         cfg.Kafka.ConsumerGroup + ".dlq-replay",
		FromBeginning: *fromBeginning,
		DryRun:        *dryRun,
	}, w)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEAD LETTER\tACTION\tORIGIN\tDETAIL")
	for _, o := range rep.Outcomes {
		detail := o.Reason
		switch o.Action {
		case deadletter.Superseded:
			detail = "newer event at " + o.By
		case deadletter.ValueDropped:
			detail = "held without its value (too large for the dead-letter topic): the original is at its origin"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.At, o.Action, o.Origin, detail)
	}
	tw.Flush()
	verb := "replayed"
	if *dryRun {
		verb = "would replay"
	}
	fmt.Fprintf(stdout, "%s %d, superseded %d, without origin %d, without value %d (of %d dead letters)\n", verb,
		rep.Count(deadletter.Replayed), rep.Count(deadletter.Superseded), rep.Count(deadletter.NoOrigin), rep.Count(deadletter.ValueDropped), len(rep.Outcomes))
	return nil
}
