package sink_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
)

// failingFetches is the sink's Kafka, but the first fetches from topic
// fail with err, as kafka-go's reader hands a broker's KAFKA_STORAGE_ERROR
// to its caller and then reads on.
type failingFetches struct {
	sink.Kafka
	topic    string
	err      error
	failures atomic.Int32
}

func (f *failingFetches) Reader(topic string, partition int, offset int64) sink.PartitionReader {
	r := f.Kafka.Reader(topic, partition, offset)
	if topic != f.topic {
		return r
	}
	return &failingReader{PartitionReader: r, f: f}
}

type failingReader struct {
	sink.PartitionReader
	f *failingFetches
}

func (r *failingReader) FetchMessage(ctx context.Context) (kafka.Message, error) {
	if r.f.failures.Add(1) <= 2 {
		return kafka.Message{}, r.f.err
	}
	return r.PartitionReader.FetchMessage(ctx)
}

func TestTheSinkRidesOutARetriableFetchErrorAndStopsOnAnother(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err      error
		stops    bool
		sentence string
	}{
		{kafka.KafkaStorageError, false, "a storage error on the broker is retried"},
		{kafka.Unknown, false, "an unknown server error is retried"},
		{kafka.TopicAuthorizationFailed, true, "an authorization failure stops the sink"},
		{errors.New("reader closed"), true, "an error that is not Kafka's stops the sink"},
	} {
		t.Run(tc.sentence, func(t *testing.T) {
			t.Parallel()
			st := newStack(t, sink.ModelUser, emulator.Config{})
			r := st.startWith(crm, options{config: func(c *sink.Config) {
				c.Kafka = &failingFetches{Kafka: c.Kafka, topic: contactsTopic, err: tc.err}
			}})
			st.produce(users(1, "pro")...)
			if tc.stops {
				if err := r.wait(t); err == nil || !errors.Is(err, tc.err) {
					t.Errorf("Run returned %v, want it to stop on %v", err, tc.err)
				}
				return
			}
			st.eventually("the event applied", st.hasTags("u0", map[string]string{"plan": "pro", "score": "0"}))
			if err := r.stop(); err != nil {
				t.Errorf("Run returned %v", err)
			}
		})
	}
}
