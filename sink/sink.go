// Package sink consumes change events from Kafka as a consumer group and
// applies them to OneSignal, within OneSignal's limits of 1,000 writes per
// second per app and one per second per user or device.
//
// Its guarantee: a partition's offset is committed only up to a message
// before which every fetched message is done: each operation it produced
// was applied by a request OneSignal accepted, or the message is held by
// the dead-letter topic. A repeat after a crash is harmless, since every
// operation sets a state.
//
// On the way from fetch to done:
//
//   - At most MaxInFlight messages are fetched and not yet done; fetching
//     blocks at the cap, and that bounds everything below (sink.go).
//   - Per Kafka key, the position (commit LSN, LSN) of the newest event
//     fetched is remembered in a bounded LRU. An event at or before it is
//     a replay or stale, and is skipped; it is done when the newer event
//     is, so no commit passes it early (message.go).
//   - Each operation targets a user (set tags, add an email or SMS record)
//     or a device (link, unlink).
//     Operations for a target merge into one pending request while the
//     target's previous request is in flight or was answered less than a
//     second ago: tags merge, later values winning and "" deleting; for a
//     device the last link or unlink wins. Requests to one target never
//     overlap and keep their order; up to Concurrency requests to
//     different targets are in flight at once (schedule.go, request.go).
//   - A request whose effect is what the target's last applied request set
//     (a digest in a bounded LRU, empty after a restart) is not sent.
//   - Every attempt, retries included, waits for its target's window and
//     takes a token from one app-wide bucket filled at RateLimit per
//     second. A 429 lowers the rate (×0.8, to a tenth at least), which
//     then recovers by 5 % of RateLimit per second (limiter.go).
//   - In the player model (Config.Parked set), a tag change that finds no
//     device of its user parks the tags in a durable store; a link or
//     record of the user carries them, and a tag change carries them
//     beneath its own; once OneSignal took them they are cleared. Calls
//     about one user hold its lock meanwhile (apply.go, parkedstore.go).
//
// A request's outcome is the outcome of every message that contributed to
// it (apply.go):
//
//   - transient errors (network, timeouts, 429, 5xx): retried without end,
//     honouring Retry-After; the request waits in the scheduler's queue,
//     ahead of what arrived for its target since, and its worker serves
//     other targets meanwhile;
//   - a tag change parked in the player model: done once the store holds
//     the tags;
//   - the message's own fault (not an event, a row the mapping cannot
//     express, more tags than TagLimit, another 4xx): the original message, and for a refused
//     request every message that contributed to it, goes to the
//     dead-letter topic with the reason in its headers (without its value
//     when it is larger than that topic takes); once Kafka holds it the
//     message is done. Without a dead-letter topic the sink stops
//     instead, like Kafka Connect's errors.tolerance=none (deadletter.go);
//   - wrong credentials (401, 403), or a base URL that is not the API's
//     (a redirect): the sink stops with nothing committed past the
//     request's messages. It never drains a topic into the dead-letter
//     topic.
package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
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

// OneSignal applies operations, in either API generation; each call is one
// attempt. Errors say whether they are retryable (Retryable() bool), may
// carry the server's Retry-After (RetryAfterDuration() time.Duration) and
// HTTP status (HTTPStatus() int), stop the sink when Fatal() bool says so,
// and tell with NoDevice() bool that a tag change found no device of its
// user (the player model).
//
// tags given with a link or a record are the user's parked tags, which
// only the player model has (see Config.Parked). previousExternalID is the
// owner an unlink takes the device from, "" when the change did not say;
// identity verification needs it.
type OneSignal interface {
	SetTags(ctx context.Context, externalID string, tags map[string]string) error
	LinkSubscription(ctx context.Context, subscriptionID, externalID string, tags map[string]string) error
	UnlinkSubscription(ctx context.Context, subscriptionID, previousExternalID string) error
	// AddRecord gives the user an email ("email") or SMS ("sms") record.
	AddRecord(ctx context.Context, externalID, channel, identifier string, tags map[string]string) error
}

// ParkedTags keeps, durably, the tags of users that no device carries yet,
// for the player model: OneSignal's edit tags by external user id reaches
// only devices that carry the id, so tags written before a user's first
// device is linked would otherwise be lost. Get and Put are called with
// the user's lock held; Get's map must not be changed.
type ParkedTags interface {
	Get(externalID string) map[string]string
	// Put stores tags for the user, or forgets the user when tags is
	// empty, returning once the store holds it durably.
	Put(ctx context.Context, externalID string, tags map[string]string) error
}

// noDeviceError is a tag change that found no device of its user.
type noDeviceError interface {
	error
	NoDevice() bool
}

// fatalError is an API error that stops the sink for good, such as wrong
// credentials.
type fatalError interface {
	error
	Fatal() bool
}

// statusError is an API error that knows its HTTP status.
type statusError interface {
	error
	HTTPStatus() int
}

// refusalError is an error that can say which credential OneSignal
// refused, naming the app and the fix; "" when it refused none.
type refusalError interface {
	error
	Refusal() string
}

// MessageWriter writes messages, returning once Kafka acknowledged them.
type MessageWriter interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Config tunes the sink. Zero values mean the defaults.
type Config struct {
	// Concurrency is how many requests may be in flight at once, each to
	// a different target; default 32.
	Concurrency int
	// RateLimit is the app-wide request rate, in requests per second;
	// default 900, below OneSignal's 1,000.
	RateLimit float64
	// MaxInFlight is how many messages may be fetched and not yet done;
	// default 10,000.
	MaxInFlight int
	// Memory is how many Kafka keys (for replays) and targets (for
	// requests that change nothing) are remembered; default 100,000 each.
	Memory int

	CommitInterval time.Duration // how often offsets are committed; default 1s
	Retry          retry.Policy  // backoff for transient API errors
	// DeadLetters writes rejected messages to DeadLetterTopic; nil stops
	// the sink at the first rejected message instead.
	DeadLetters     MessageWriter
	DeadLetterTopic string
	// Name is reported in dead letters' headers; default "onesignal-cdc".
	Name string
	// Clock times the per-target window, the retry backoff and the rate
	// limit; default the system clock. Commits use the wall clock.
	Clock Clock
	// TagLimit is the most tags a request may give a user
	// (onesignal.tag_limit); a request over it is dead-lettered. Default 0:
	// not checked.
	TagLimit int
	// Parked holds tags that reached no device, in the player model; nil
	// in the user model, where a tag change creates the user.
	Parked ParkedTags
	// DeadLettered, if set, is told of each message once the dead-letter
	// topic holds it, for the status page. It is called from the sink's
	// workers, at times from several at once, and must not block.
	DeadLettered func(DeadLetter)
}

// Sink is the Kafka → OneSignal half of the pipeline.
type Sink struct {
	cfg     Config
	r       MessageReader
	api     OneSignal
	mapping *transform.Mapping
	log     *zap.Logger
	offsets *checkpoint.Offsets
	slots   chan struct{} // one per message fetched and not done
	replays replays
	sched   *scheduler
	limiter *limiter
	users   keyedMutex // per external ID, while parked tags are read and written
	stats   counters
	// deadLetterMu is held shared while a dead letter is written, and
	// alone while one Kafka refused as too large is tried again by itself.
	deadLetterMu sync.RWMutex
}

// New returns a sink reading r and writing api. Its Run may be called once.
func New(cfg Config, r MessageReader, api OneSignal, mapping *transform.Mapping, log *zap.Logger) *Sink {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 32
	}
	if cfg.RateLimit <= 0 {
		cfg.RateLimit = 900
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 10000
	}
	if cfg.Memory <= 0 {
		cfg.Memory = 100000
	}
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = time.Second
	}
	if cfg.Name == "" {
		cfg.Name = "onesignal-cdc"
	}
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	return &Sink{
		cfg: cfg, r: r, api: api, mapping: mapping, log: log.Named("sink"),
		offsets: checkpoint.NewOffsets(),
		slots:   make(chan struct{}, cfg.MaxInFlight),
		replays: replays{keys: newLRU[string, seen](cfg.Memory)},
		sched:   newScheduler(cfg.Clock, cfg.Memory),
		limiter: newLimiter(cfg.Clock, cfg.RateLimit),
	}
}

// Run consumes until ctx ends (nil) or the sink must stop (the error).
// Either way it cancels the requests in flight, without marking their
// messages done, and commits what is done before returning.
func (s *Sink) Run(ctx context.Context) error {
	parent := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	ready := make(chan *target)
	var wg sync.WaitGroup
	wg.Go(func() { s.sched.dispatch(ctx, ready) })
	for range s.cfg.Concurrency {
		wg.Go(func() { s.work(ctx, cancel, ready) })
	}
	wg.Go(func() { s.commitLoop(ctx) })

	cancel(s.fetch(ctx))
	wg.Wait()
	s.commit(context.Background()) // what finished before the stop

	// The cause is the sink's own only if the parent did not pass it on:
	// a daemon stopping because another component failed stops the sink
	// cleanly, and the other failure is not the sink's to report.
	if cause := context.Cause(ctx); !errors.Is(cause, context.Canceled) && !errors.Is(cause, context.Cause(parent)) {
		return cause
	}
	return nil
}

// retriableFetch reports whether a fetch error is one a broker answers
// during a disk or leadership hiccup, or a network fault: kafka-go hands
// the Kafka errors it has no case for (KAFKA_STORAGE_ERROR,
// UNKNOWN_SERVER_ERROR, …) to FetchMessage's caller, and the reader
// carries on after them.
func retriableFetch(err error) bool {
	var ke kafka.Error
	if errors.As(err, &ke) {
		return ke.Temporary() || ke == kafka.Unknown
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) // not io.EOF: a closed reader
}

// fetch reads messages while fewer than MaxInFlight are not done, and
// schedules their operations.
func (s *Sink) fetch(ctx context.Context) error {
	for {
		select {
		case s.slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		var msg kafka.Message
		err := s.cfg.Retry.Do(ctx, func() error {
			var err error
			msg, err = s.r.FetchMessage(ctx)
			if err != nil && ctx.Err() == nil && retriableFetch(err) {
				return retry.Transient(err)
			}
			return err
		}, func(err error, wait time.Duration) {
			s.log.Warn("fetch from kafka failed; retrying", zap.Error(err), zap.Duration("wait", wait))
		})
		if err != nil {
			<-s.slots
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("fetch from kafka: %w", err)
		}
		s.stats.fetched.Add(1)
		if !s.offsets.Continues(msg.Topic, msg.Partition, msg.Offset) {
			s.sched.forgetEffects()
		}
		done := s.offsets.Track(msg.Topic, msg.Partition, msg.Offset)
		m := &fetched{msg: msg, progress: &progress{done: func() {
			done()
			s.stats.done.Add(1)
			<-s.slots
		}}}
		if err := s.admit(ctx, m); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// admit decodes and transforms m, and hands its operations to the
// scheduler; m is done at once when it has none.
func (s *Sink) admit(ctx context.Context, m *fetched) error {
	ev, err := event.Decode(m.msg.Value)
	if errors.Is(err, event.ErrTombstone) {
		m.finish()
		return nil
	}
	if err != nil {
		return s.rejectMessage(ctx, m, &rejected{stage: "decode", err: fmt.Errorf("message %s: %w", m.where(), err)})
	}
	if s.replays.skip(m, ev) {
		s.stats.replays.Add(1)
		return nil
	}
	if ev.Op == event.OpTruncate {
		s.log.Warn("the source table was truncated; OneSignal keeps its users and tags",
			zap.String("topic", m.msg.Topic), zap.Int("partition", m.msg.Partition), zap.Int64("offset", m.msg.Offset),
			zap.String("table", ev.Source.Schema+"."+ev.Source.Table))
	}
	ops, err := s.mapping.Transform(ev)
	if err != nil {
		return s.rejectMessage(ctx, m, &rejected{stage: "transform", err: fmt.Errorf("message %s: %w", m.where(), err)})
	}
	if len(ops) == 0 {
		m.finish()
		return nil
	}
	m.open = len(ops) // before the first operation is shared
	for _, op := range ops {
		s.sched.submit(op, m)
	}
	// (The order of one message's operations across targets does not
	// matter: each sets a state of its own target.)
	s.stats.changes.Add(int64(len(ops)))
	return nil
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
