// Package sink consumes change events from Kafka as a consumer group and
// applies them to OneSignal.
//
// Its guarantee: a partition's offset is committed only up to a message
// before which every fetched message was applied to OneSignal or is held
// by the dead-letter topic. Messages are applied concurrently across keys
// and in order within a key. Errors are handled by class:
//
//   - transient (network, timeouts, 429, 5xx): retried without end,
//     honouring Retry-After;
//   - the message's own fault (not an event, a row the mapping cannot
//     express, another 4xx): the original message goes to the dead-letter
//     topic with the reason in its headers, once Kafka holds it the sink
//     moves on; without a dead-letter topic the sink stops instead, like
//     Kafka Connect's errors.tolerance=none;
//   - wrong credentials (401, 403): the sink stops with nothing committed
//     past the message. It never drains a topic into the dead-letter topic.
package sink

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
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

// MessageWriter writes messages, returning once Kafka acknowledged them.
type MessageWriter interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Config tunes the sink.
type Config struct {
	Workers        int           // keys applied concurrently; default 16
	CommitInterval time.Duration // how often offsets are committed; default 1s
	Retry          retry.Policy  // backoff for transient API errors
	// DeadLetters writes rejected messages to DeadLetterTopic; nil stops
	// the sink at the first rejected message instead.
	DeadLetters     MessageWriter
	DeadLetterTopic string
	// Name is reported in dead letters' headers; default "onesignal-cdc".
	Name string
}

// Header keys of a dead letter. They are Kafka Connect's, so tools that
// read its dead-letter queues read ours.
const (
	HeaderTopic     = "__connect.errors.topic"
	HeaderPartition = "__connect.errors.partition"
	HeaderOffset    = "__connect.errors.offset"
	HeaderConnector = "__connect.errors.connector.name"
	HeaderStage     = "__connect.errors.stage"
	HeaderClass     = "__connect.errors.exception.class.name"
	HeaderMessage   = "__connect.errors.exception.message"
	HeaderStatus    = "onesignal_cdc.errors.http.status" // for the onesignal stage
)

// statusError is an API error that knows its HTTP status.
type statusError interface {
	error
	HTTPStatus() int
}

// rejected is a message that can never be applied as it is.
type rejected struct {
	stage  string // "decode", "transform" or "onesignal"
	status int    // the HTTP status, for the onesignal stage
	err    error
}

func (r *rejected) Error() string { return r.err.Error() }
func (r *rejected) Unwrap() error { return r.err }

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
	if cfg.Name == "" {
		cfg.Name = "onesignal-cdc"
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
				err := s.handle(ctx, w.msg)
				if rej, ok := errors.AsType[*rejected](err); ok && s.cfg.DeadLetters != nil {
					err = s.deadLetter(ctx, w.msg, rej)
				}
				if err != nil {
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
		return &rejected{stage: "decode", err: fmt.Errorf("message %s/%d@%d: %w", msg.Topic, msg.Partition, msg.Offset, err)}
	}
	if ev.Op == event.OpTruncate {
		s.log.Warn("the source table was truncated; OneSignal keeps its users and tags",
			append(where(), zap.String("table", ev.Source.Schema+"."+ev.Source.Table))...)
	}
	ops, err := s.mapping.Transform(ev)
	if err != nil {
		return &rejected{stage: "transform", err: fmt.Errorf("message %s/%d@%d: %w", msg.Topic, msg.Partition, msg.Offset, err)}
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
			status := 0
			if h, ok := errors.AsType[statusError](err); ok {
				status = h.HTTPStatus()
			}
			return &rejected{stage: "onesignal", status: status, err: fmt.Errorf("message %s/%d@%d: %s: %w", msg.Topic, msg.Partition, msg.Offset, op.Kind, err)}
		}
	}
	return nil
}

// deadLetter writes a rejected message, as it was, to the dead-letter
// topic with the reason in its headers, retrying until Kafka holds it.
func (s *Sink) deadLetter(ctx context.Context, msg kafka.Message, rej *rejected) error {
	headers := append(slices.Clip(msg.Headers),
		kafka.Header{Key: HeaderTopic, Value: []byte(msg.Topic)},
		kafka.Header{Key: HeaderPartition, Value: strconv.AppendInt(nil, int64(msg.Partition), 10)},
		kafka.Header{Key: HeaderOffset, Value: strconv.AppendInt(nil, msg.Offset, 10)},
		kafka.Header{Key: HeaderConnector, Value: []byte(s.cfg.Name)},
		kafka.Header{Key: HeaderStage, Value: []byte(rej.stage)},
		kafka.Header{Key: HeaderClass, Value: []byte(fmt.Sprintf("%T", errors.Unwrap(rej.err)))},
		kafka.Header{Key: HeaderMessage, Value: []byte(rej.Error())},
	)
	if rej.status != 0 {
		headers = append(headers, kafka.Header{Key: HeaderStatus, Value: strconv.AppendInt(nil, int64(rej.status), 10)})
	}
	dl := kafka.Message{Topic: s.cfg.DeadLetterTopic, Key: msg.Key, Value: msg.Value, Headers: headers}
	err := s.cfg.Retry.Do(ctx, func() error { return retry.Transient(s.cfg.DeadLetters.WriteMessages(ctx, dl)) }, func(err error, wait time.Duration) {
		s.log.Warn("dead-letter write failed; retrying", zap.Error(err), zap.Duration("wait", wait))
	})
	if err != nil {
		return fmt.Errorf("dead-letter %s/%d@%d: %w", msg.Topic, msg.Partition, msg.Offset, err)
	}
	s.log.Warn("message rejected; it is in the dead-letter topic",
		zap.String("topic", msg.Topic), zap.Int("partition", msg.Partition), zap.Int64("offset", msg.Offset),
		zap.String("stage", rej.stage), zap.String("dead_letter_topic", s.cfg.DeadLetterTopic), zap.Error(rej.err))
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
