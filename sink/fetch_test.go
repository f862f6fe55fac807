package sink_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap/zaptest"

	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
)

// failingOnce is a reader whose first fetches fail with err, as kafka-go's
// reader hands a broker's KAFKA_STORAGE_ERROR to its caller, and which
// then reads on.
type failingOnce struct {
	*kafka.Reader
	err      error
	failures atomic.Int32
}

func (f *failingOnce) FetchMessage(ctx context.Context) (kafka.Message, error) {
	if f.failures.Add(1) <= 2 {
		return kafka.Message{}, f.err
	}
	return f.Reader.FetchMessage(ctx)
}

func TestTheSinkRidesOutARetriableFetchErrorAndStopsOnAnother(t *testing.T) {
	b := kafkatest.Start(t)
	produce(t, b, userEvent("u1", "pro"))
	cfg, _ := manualConfig()
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
			r := &failingOnce{Reader: newReader(b, "g-"+tc.sentence), err: tc.err}
			defer r.Close()
			api := newRecordingAPI(cfg.Clock, nil)
			s := sink.New(testConfig(t), r, api, mapping, zaptest.NewLogger(t))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			if tc.stops {
				if err := <-done; err == nil || !errors.Is(err, tc.err) {
					t.Errorf("Run returned %v, want it to stop on %v", err, tc.err)
				}
				return
			}
			waitFor(t, "the message to be applied", func() bool { return api.count() == 1 })
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run returned %v", err)
			}
		})
	}
}
