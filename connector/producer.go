package connector

import (
	"context"
	"errors"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/onesignal-cdc/onesignal-cdc/retry"
)

// producer writes events to Kafka in batches, in the order it receives
// them, and acknowledges each event's transaction once Kafka holds it.
type producer struct {
	w         MessageWriter
	log       *zap.Logger
	batchSize int
	obs       Observer
}

// maxBatchBytes keeps one partition's share of a write within kafka-go's
// batch limit, so a write is never split into batches Kafka could apply out
// of order.
const maxBatchBytes = 768 << 10

// run writes until in is closed and drained (nil) or ctx ends. A failed
// write is retried whole, with backoff, for as long as it takes: nothing
// after it is acknowledged meanwhile, so the confirmed LSN waits too.
func (p *producer) run(ctx context.Context, in <-chan outgoing) error {
	batch := make([]outgoing, 0, p.batchSize)
	msgs := make([]kafka.Message, 0, p.batchSize)
	policy := retry.Policy{Initial: 100 * time.Millisecond, Max: 10 * time.Second}
	for {
		var o outgoing
		var ok bool
		select {
		case o, ok = <-in:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !ok {
			return nil
		}
		batch, msgs = append(batch[:0], o), append(msgs[:0], o.msg)
		size := len(o.msg.Value) + len(o.msg.Key)
		closed := false
	fill:
		for len(batch) < p.batchSize && size < maxBatchBytes {
			select {
			case o, ok := <-in:
				if !ok {
					closed = true
					break fill
				}
				batch, msgs = append(batch, o), append(msgs, o.msg)
				size += len(o.msg.Value) + len(o.msg.Key)
			default:
				break fill
			}
		}
		err := policy.Do(ctx, func() error {
			started := time.Now()
			err := p.w.WriteMessages(ctx, msgs...)
			if err == nil {
				p.obs.Produced(written(batch, time.Since(started)))
			} else if ctx.Err() == nil {
				p.obs.Produced(Write{Duration: time.Since(started), Err: err})
			}
			return classifyWriteError(err)
		},
			func(err error, wait time.Duration) {
				p.log.Warn("kafka write failed; retrying", zap.Error(err), zap.Int("events", len(msgs)), zap.Duration("wait", wait))
			})
		if err != nil {
			return err
		}
		for _, o := range batch {
			o.txn.Ack()
			if o.chunk != nil {
				o.chunk.ack()
			}
		}
		if closed {
			return nil
		}
	}
}

// permanentKafka are the Kafka errors a retry cannot fix. They stop the
// connector rather than loop forever out of sight.
var permanentKafka = []kafka.Error{
	kafka.MessageSizeTooLarge, kafka.RecordListTooLarge, kafka.InvalidTopic,
	kafka.TopicAuthorizationFailed, kafka.ClusterAuthorizationFailed, kafka.SASLAuthenticationFailed,
}

// classifyWriteError marks every other write error as transient.
func classifyWriteError(err error) error {
	if err == nil {
		return nil
	}
	errs := []error{err}
	var we kafka.WriteErrors
	if errors.As(err, &we) {
		errs = append(errs, we...)
	}
	for _, e := range errs {
		for _, p := range permanentKafka {
			if errors.Is(e, p) {
				return err
			}
		}
	}
	return retry.Transient(err)
}
