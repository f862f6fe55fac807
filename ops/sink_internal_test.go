package ops

import (
	"testing"

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
