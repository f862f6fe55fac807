package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"strings"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/explain"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// repeated is a flag that may be given more than once.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

// explainTarget runs `onesignal-cdc explain`: what is known of one user or
// device, read from Kafka and the running sinks, changing nothing.
func explainTarget(ctx context.Context, cmd *command, args []string, stdout io.Writer) error {
	fs := cmd.flags(stdout)
	path := fs.config()
	externalID := fs.String("external-id", "", "the user's external `ID`")
	deviceID := fs.String("device-id", "", "the device's `ID` (a player id, or a subscription id in the user model)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	var sinks repeated
	fs.Var(&sinks, "sink", "a running sink's ops server `URL`, asked what it holds of the target; repeat for several (default: ops.listen when it is local)")
	if err := fs.parse(args); err != nil {
		return err
	}
	cfg, err := config.LoadFor(*path, 0)
	if err != nil {
		return usageError{err}
	}
	var t transform.Target
	switch {
	case (*externalID == "") == (*deviceID == ""):
		return fs.usageError("give one of --external-id and --device-id")
	case *externalID != "":
		t = transform.User(*externalID)
	default:
		t = transform.Device(*deviceID)
	}
	if strings.ContainsRune(t.ID, 0) {
		return fs.usageError("an id holds no NUL character")
	}
	cluster, done, err := explainKafka(cfg)
	if err != nil {
		return err
	}
	defer done()
	if len(sinks) == 0 {
		if u := localOps(cfg.Ops.Listen); u != "" {
			sinks = append(sinks, u)
		}
	}
	rep, err := explain.Explain(ctx, explain.Config{
		Cluster:         cluster,
		TargetsTopic:    sink.TopicsFor(cfg.Kafka.TopicPrefix).Targets,
		DeadLetterTopic: cfg.Kafka.DeadLetterTopic,
		Group:           cfg.Kafka.ConsumerGroup,
		Sinks:           sinks,
	}, t)
	if err != nil {
		return cluster.Explain(ctx, err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(rep)
	}
	rep.WriteText(stdout)
	return nil
}

// explainKafka is the Kafka explain reads: with the embedded broker, the
// running daemon's when kafka.embedded_listen names a fixed port, else its
// data directory while no daemon holds it.
func explainKafka(cfg *config.Config) (broker.Cluster, func(), error) {
	if cfg.EmbeddedKafka() {
		if _, port, err := net.SplitHostPort(cfg.Kafka.EmbeddedListen); err == nil && port != "0" {
			return broker.Plain([]string{cfg.Kafka.EmbeddedListen}), func() {}, nil
		}
	}
	return commandKafka(cfg, "the targets topic lives in the memory of the running process; set kafka.embedded_listen to a fixed port to reach it, or kafka.embedded_data_dir")
}

// localOps is the URL of the ops server at listen when it is on this
// machine, "" otherwise (or when its port is picked at start).
func localOps(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil || port == "0" || port == "" {
		return ""
	}
	switch host {
	case "", "0.0.0.0", "::", "localhost":
		host = "127.0.0.1"
	default:
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return ""
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}
