package chaos

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// TestTheSinkProcessRidesOutARetriableFetchError answers one fetch of the
// sink process with KAFKA_STORAGE_ERROR or UNKNOWN_SERVER_ERROR, retriable
// errors that kafka-go's reader hands to the caller of FetchMessage rather
// than retrying them itself. The process must keep running and apply what
// is written afterwards. (The chaos harness found the sink exiting with
// status 1 on them; a supervisor brought it back, after the dead member's
// 30 s session in the group.)
func TestTheSinkProcessRidesOutARetriableFetchError(t *testing.T) {
	for _, fault := range []*kerr.Error{kerr.KafkaStorageError, kerr.UnknownServerError} {
		t.Run(fault.Message, func(t *testing.T) {
			t.Parallel()
			st := daemontest.NewStack(t, daemontest.StackOptions{Emulator: emulator.Config{AppID: "3c1e8f9a-0000-4000-8000-0000000fe7c4", APIKey: "key"}})
			kb, emu := st.Kafka, st.Emulator
			if err := broker.EnsureTopics(context.Background(), kb.Brokers(), 1, "cdc.public.users"); err != nil {
				t.Fatal(err)
			}
			c := st.Config()
			c.Kafka.TopicPrefix, c.Kafka.ConsumerGroup = "cdc", "fetch-errors"
			c.Mapping.Users = &transform.UsersMapping{Table: "public.users", ExternalID: "external_id", Tags: map[string]string{"plan": ""}}
			c.Ops.Listen = ""
			sink := daemontest.StartWith(t, opsOff, daemontest.Sink, "--config", daemontest.WriteConfig(t, c))

			w := broker.NewWriter(kb.Brokers(), 1)
			defer w.Close()
			write := func(lsn int64, plan string) {
				ev := event.Envelope{Op: event.OpUpdate, Source: event.Source{Schema: "public", Table: "users", LSN: lsn, CommitLSN: lsn},
					After: event.Row{{Name: "external_id", Value: json.RawMessage(`"u-1"`)}, {Name: "plan", Value: json.RawMessage(`"` + plan + `"`)}}}
				if err := w.WriteMessages(context.Background(), kafka.Message{Topic: "cdc.public.users", Key: []byte(`{"external_id":"u-1"}`), Value: ev.Encode(nil)}); err != nil {
					t.Fatal(err)
				}
			}
			// applied waits for the user's plan to be plan, failing at
			// once if the process exits.
			applied := func(plan string) {
				t.Helper()
				deadline := time.After(time.Minute)
				for {
					if u, ok := emu.State().UserByExternalID("u-1"); ok && u.Tags["plan"] == plan {
						return
					}
					select {
					case <-sink.Done():
						t.Fatalf("the sink exited (%v) before applying plan %q:\n%s", sink.Err(), plan, sink.Output())
					case <-deadline:
						t.Fatalf("the sink did not apply plan %q within a minute", plan)
					case <-time.After(100 * time.Millisecond):
					}
				}
			}
			write(100, "free")
			applied("free")

			h := kb.Cluster().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Err: fault, Count: 1})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := h.Wait(ctx, 1); err != nil {
				t.Fatal("the sink made no fetch in 30 s")
			}
			write(200, "pro")
			applied("pro")
		})
	}
}
