package ops

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/onesignal-cdc/onesignal-cdc/sink"
)

// readerWith is a Kafka reader's Stats that reports fetches and errors as
// the test sets them, as kafka-go does since its previous call.
type readerWith struct{ fetches, errors int64 }

func (r *readerWith) stats() kafka.ReaderStats {
	return kafka.ReaderStats{Fetches: r.fetches, Errors: r.errors}
}

func sinkUnderWatch(t *testing.T) (*SinkMonitor, *readerWith) {
	t.Helper()
	srv := New(Config{}, zap.NewNop())
	m := srv.Sink(SinkConfig{})
	r := &readerWith{}
	m.Watch(func() sink.Stats { return sink.Stats{} }, r.stats)
	m.comp.set(true, "consuming", "") // as Wrap does when the sink starts
	return m, r
}

func TestAFewFetchTimeoutsAmongManyFetchesLeaveKafkaUp(t *testing.T) {
	m, r := sinkUnderWatch(t)
	logf := m.KafkaErrorLogger().Printf
	for range 3 {
		for range 12 {
			logf("the kafka reader got an unknown error reading partition %d of %s at offset %d: %s", 0, "cdc.public.users", 1, "read tcp: i/o timeout")
		}
		r.fetches = 60
		m.poll()
	}
	if !m.comp.isUp() {
		t.Errorf("12 timeouts among 60 fetches, three polls in a row, marked the sink down: %v", m.comp.status().Problems)
	}
	if errs := m.comp.status().LastErrors; len(errs) != 0 {
		t.Errorf("they show as errors: %v", errs)
	}
}

func TestFailingFetchesMarkKafkaDownAfterTwoPollsAndUpAfterAGoodOne(t *testing.T) {
	m, r := sinkUnderWatch(t)
	logf := m.KafkaErrorLogger().Printf
	fail := func() {
		for range 10 {
			logf("Unable to establish connection to consumer group coordinator for group %s: %v", "g", "dial tcp 127.0.0.1:9092: connect: connection refused")
		}
		r.fetches, r.errors = 0, 10
		m.poll()
	}
	fail()
	if !m.comp.isUp() {
		t.Fatalf("one failing poll marked the sink down")
	}
	fail()
	st := m.comp.status()
	if st.Up || len(st.Problems) != 1 || st.Problems[0] != "Kafka unreachable or failing: Unable to establish connection to consumer group coordinator for group g: dial tcp 127.0.0.1:9092: connect: connection refused" {
		t.Fatalf("after two failing polls: up %v, problems %q", st.Up, st.Problems)
	}
	if len(st.LastErrors) == 0 {
		t.Errorf("the failure is not among the last errors")
	}
	r.fetches, r.errors = 40, 0
	m.poll()
	if !m.comp.isUp() {
		t.Errorf("a poll with fetches and no error left the sink down: %v", m.comp.status().Problems)
	}
}

func TestAnOutagesDurationReadsAsAPersonWritesIt(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{1234 * time.Millisecond, "1.2s"},
		{4*time.Minute + 12*time.Second + 400*time.Millisecond, "4m12s"},
		{2*time.Hour + 13*time.Minute + 20*time.Second, "2h13m"},
		{50 * time.Hour, "50h0m"},
	} {
		if got := outageDuration(tc.d); got != tc.want {
			t.Errorf("outageDuration(%s) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

// A member whose failing targets moved to another member sends nothing
// more: once every partition it holds is applied, nothing of its own waits
// for OneSignal, and the other member reports the outage.
func TestAFailureEndsBeingAnOutageOnceEveryPartitionHeldIsApplied(t *testing.T) {
	m, r := sinkUnderWatch(t)
	m.Watch(func() sink.Stats { return sink.Stats{Assigned: map[string]int{"cdc.public.users": 1}} }, r.stats)
	m.cfg.UnreachableAfter = time.Nanosecond
	lag, kafkaUp := int64(3), true
	m.WatchLag(func(context.Context) []sink.PartitionLag {
		if !kafkaUp {
			return []sink.PartitionLag{} // no partition's end could be read
		}
		return []sink.PartitionLag{{Topic: "cdc.public.users", Partition: 0, End: 10, Committed: 10 - lag, Lag: lag}}
	})
	m.observe("PATCH /apps/{app_id}/users/by/external_id/{id}", "error", 0, time.Millisecond, errors.New("dial tcp: i/o timeout"))
	m.poll()
	if st := m.comp.status(); len(st.Degraded) != 1 || !st.Up {
		t.Fatalf("with changes waiting, a failure past the threshold: up %v, degraded %q", st.Up, st.Degraded)
	}
	kafkaUp = false // the pod's network is down: Kafka too
	m.poll()
	if st := m.comp.status(); len(st.Degraded) != 1 {
		t.Fatalf("with Kafka unreachable too, the outage is no longer reported: %q", st.Degraded)
	}
	kafkaUp, lag = true, 0
	m.poll()
	if st := m.comp.status(); len(st.Degraded) != 0 {
		t.Errorf("with every partition applied the sink is still degraded: %q", st.Degraded)
	}
	if o, _ := m.outage(time.Now()); o.Seconds != 0 {
		t.Errorf("with every partition applied the outage lasts %v s", o.Seconds)
	}
}

func TestAMembersNameIsTheHostItsKafkaClientIDNames(t *testing.T) {
	for _, tc := range []struct{ clientID, want string }{
		{"onesignal-cdc@sink-7f9c-a (github.com/segmentio/kafka-go)", "sink-7f9c-a"},
		{"onesignal-cdc@sink-7f9c-a", "sink-7f9c-a"},
		{"my-client", "my-client"},
		{"odd@ (x)", "odd@ (x)"},
	} {
		if got := memberName(tc.clientID); got != tc.want {
			t.Errorf("memberName(%q) = %q, want %q", tc.clientID, got, tc.want)
		}
	}
}
