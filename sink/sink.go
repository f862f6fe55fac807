// Package sink consumes change events from Kafka as a consumer group and
// applies them to OneSignal.
//
// Its guarantee: a partition's offset is committed only up to a message
// before which every fetched message was applied to OneSignal. Messages are
// applied concurrently across keys and in order within a key; a transient
// failure (network, 429, 5xx) is retried without end, honouring
// Retry-After; anything else stops the sink with the message's position and
// the reason, leaving its offset uncommitted, the way Kafka Connect's
// errors.tolerance=none does. Wrong credentials stop it the same way: they
// never drain a topic.
package sink

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/onesignal-cdc/onesignal-cdc/checkpoint"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/retry"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// MessageReader is the part of a kafka-go consumer-group reader the sink
// uses. CommitMessages commits, per partition, the offset after the message.
type MessageReader interface {
	FetchMessage(ctx context.Context) (kafka.Message, error)
	CommitMessages(ctx context.Context, msgs ...kafka.Message) error
}

// OneSignal applies operations; each call is one attempt. Errors say
// whether they are retryable (Retryable() bool) and may carry the server's
// Retry-After (RetryAfterDuration() time.Duration).
type OneSignal interface {
	SetTags(ctx context.Context, externalID string, tags map[string]string) error
	LinkSubscription(ctx context.Context, subscriptionID, externalID string) error
	UnlinkSubscription(ctx context.Context, subscriptionID string) error
}

// fatalError is an API error that stops the sink for good, such as wrong
// credentials.
type fatalError interface {
	error
	Fatal() bool
}

// Config tunes the sink.
type Config struct {
	Workers        int           // keys applied concurrently; default 16
	CommitInterval time.Duration // how often offsets are committed; default 1s
	Retry          retry.Policy  // backoff for transient API errors
}

// Sink is the Kafka → OneSignal half of the pipeline.
type Sink struct {
	cfg     Config
	r       MessageReader
	api     OneSignal
	mapping *transform.Mapping
	log     *zap.Logger
	offsets *checkpoint.Offsets
}

// New returns a sink reading r and writing api.
func New(cfg Config, r MessageReader, api OneSignal, mapping *transform.Mapping, log *zap.Logger) *Sink {
	if cfg.Workers <= 0 {
		cfg.Workers = 16
	}
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = time.Second
	}
	return &Sink{cfg: cfg, r: r, api: api, mapping: mapping, log: log.Named("sink"), offsets: checkpoint.NewOffsets()}
}

type work struct {
	msg  kafka.Message
	done func()
}

// Run consumes until ctx ends (nil) or a message cannot be applied (the
// error). Either way it commits what is finished before returning.
func (s *Sink) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	shards := make([]chan work, s.cfg.Workers)
	var wg sync.WaitGroup
	for i := range shards {
		shards[i] = make(chan work, 64)
		wg.Go(func() {
			for w := range shards[i] {
				if err := s.handle(ctx, w.msg); err != nil {
					if ctx.Err() == nil {
						cancel(err)
					}
					return
				}
				w.done()
			}
		})
	}
	committerDone := make(chan struct{})
	go func() {
		defer close(committerDone)
		s.commitLoop(ctx)
	}()

	fetchErr := s.fetch(ctx, shards)
	for _, ch := range shards {
		close(ch)
	}
	wg.Wait()
	cancel(nil)
	<-committerDone
	s.commit(context.Background()) // what finished before the stop

	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return fetchErr
}

// fetch reads messages and deals them to the shards by key, so one key's
// messages are applied in order by one worker.
func (s *Sink) fetch(ctx context.Context, shards []chan work) error {
	for {
		msg, err := s.r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("fetch from kafka: %w", err)
		}
		done := s.offsets.Track(msg.Topic, msg.Partition, msg.Offset)
		h := fnv.New32a()
		h.Write(msg.Key)
		select {
		case shards[h.Sum32()%uint32(len(shards))] <- work{msg: msg, done: done}:
		case <-ctx.Done():
			return nil
		}
	}
}

// handle applies one message, retrying transient failures until ctx ends.
func (s *Sink) handle(ctx context.Context, msg kafka.Message) error {
	where := func() []zap.Field {
		return []zap.Field{zap.String("topic", msg.Topic), zap.Int("partition", msg.Partition), zap.Int64("offset", msg.Offset)}
	}
	ev, err := event.Decode(msg.Value)
	if errors.Is(err, event.ErrTombstone) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("message %s/%d@%d: %w", msg.Topic, msg.Partition, msg.Offset, err)
	}
	if ev.Op == event.OpTruncate {
		s.log.Warn("the source table was truncated; OneSignal keeps its users and tags",
			append(where(), zap.String("table", ev.Source.Schema+"."+ev.Source.Table))...)
	}
	ops, err := s.mapping.Transform(ev)
	if err != nil {
		return fmt.Errorf("message %s/%d@%d: %w", msg.Topic, msg.Partition, msg.Offset, err)
	}
	for _, op := range ops {
		err := s.cfg.Retry.Do(ctx, func() error { return s.apply(ctx, op) }, func(err error, wait time.Duration) {
			s.log.Warn("onesignal call failed; retrying", append(where(), zap.Stringer("op", op.Kind), zap.Error(err), zap.Duration("wait", wait))...)
		})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if f, ok := errors.AsType[fatalError](err); ok && f.Fatal() {
				return fmt.Errorf("OneSignal refused the credentials, so the sink stops with message %s/%d@%d and everything after it uncommitted: check onesignal.app_id and onesignal.api_key: %w",
					msg.Topic, msg.Partition, msg.Offset, err)
			}
			return fmt.Errorf("message %s/%d@%d: %s: %w", msg.Topic, msg.Partition, msg.Offset, op.Kind, err)
		}
	}
	return nil
}

func (s *Sink) apply(ctx context.Context, op transform.Op) error {
	switch op.Kind {
	case transform.SetTags:
		return s.api.SetTags(ctx, op.ExternalID, op.Tags)
	case transform.Link:
		return s.api.LinkSubscription(ctx, op.DeviceID, op.ExternalID)
	case transform.Unlink:
		return s.api.UnlinkSubscription(ctx, op.DeviceID)
	}
	return fmt.Errorf("unknown operation %v", op.Kind)
}

func (s *Sink) commitLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.CommitInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.commit(ctx)
		}
	}
}

// commit commits every partition's highest finished offset.
func (s *Sink) commit(ctx context.Context) {
	ps := s.offsets.Committable()
	if len(ps) == 0 {
		return
	}
	msgs := make([]kafka.Message, len(ps))
	for i, p := range ps {
		msgs[i] = kafka.Message{Topic: p.Topic, Partition: p.Partition, Offset: p.Offset}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.r.CommitMessages(ctx, msgs...); err != nil {
		s.log.Warn("offset commit failed; will retry", zap.Error(err))
		return
	}
	s.offsets.Committed(ps)
}
