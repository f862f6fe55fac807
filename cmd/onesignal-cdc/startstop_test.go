package main

import (
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
)

// TestAStopWhileTheConnectorStartsIsAStopNotAFailure: a SIGTERM can come
// at any time, also while the daemon is still starting (Kubernetes stops
// a pod that is not ready yet); the daemon then stops as cleanly as after
// its start, with no error (exit status 0). A chaos run caught the
// connector exiting 1 with "create compacted topic …: context canceled":
// the stop came while the broker was creating its state topic, which this
// test holds up.
func TestAStopWhileTheConnectorStartsIsAStopNotAFailure(t *testing.T) {
	e, err := broker.StartEmbedded("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	c := opsDaemonConfig("postgres://nobody@127.0.0.1:9/none", "startstop", e.Brokers(), "")
	c.Kafka.StateTopic = "cdc.connector-state"
	release, reached := make(chan struct{}), make(chan struct{})
	held := false
	e.Cluster().ControlKey(int16(kmsg.CreateTopics), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.Cluster().KeepControl()
		names := []string{}
		for _, tp := range req.(*kmsg.CreateTopicsRequest).Topics {
			names = append(names, tp.Topic)
		}
		if !held && slices.Contains(names, c.Kafka.StateTopic) {
			held = true
			close(reached)
			e.Cluster().SleepControl(func() { <-release })
		}
		return nil, nil, false
	})
	t.Cleanup(func() { close(release) }) // after the daemon's stop (cleanups run last first)
	startDaemon(t, config.Connector, daemontest.WriteConfig(t, c))
	<-reached // the test's end stops the daemon now
}
