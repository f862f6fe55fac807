// Package sink consumes change events from Kafka as a consumer group and
// brings OneSignal in step with the rows they come from, within
// OneSignal's limits of 1,000 writes per second per app and one per second
// per user or device.
//
// Its guarantee: OneSignal ends holding what the rows' last changes say,
// whatever order the partitions deliver them in, and a partition's offset
// is committed only up to a message before which every fetched message is
// done: OneSignal accepted a request carrying its effect, or the
// dead-letter topic holds it.
//
// The sink has two stages (docs/architecture.md):
//
//   - the row stage (rows.go) reads the event topics, keyed by row, and
//     writes each row's contributions to the targets it feeds to the
//     targets topic, keyed by target; its row index, in the local store
//     and a compacted changelog, remembers what each row fed;
//   - the target stage (targets.go) reads the targets topic, folds the
//     contributions into each target's state (package desired) and sends
//     each target's whole desired state (plan.go), one request per target
//     at a time, at most one a second, merged while it waits
//     (schedule.go), under the app-wide rate limit that the OneSignal
//     client takes a token of per HTTP request (limiter.go).
//
// A request's outcome is the outcome of every message that it covers
// (apply.go): transient errors are retried without end, honouring
// Retry-After, the request waiting in the scheduler's queue; a refusal
// (another 4xx, more tags than TagLimit) dead-letters the messages; wrong
// credentials (401, 403) or a base URL that redirects stop the sink with
// nothing committed past the request's messages.
package sink

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/checkpoint"
	"github.com/onesignal-cdc/onesignal-cdc/internal/errclass"
	"github.com/onesignal-cdc/onesignal-cdc/retry"
	"github.com/onesignal-cdc/onesignal-cdc/sink/kv"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// OneSignal applies desired states, in either API generation; each call is
// one attempt, and may make more than one HTTP request, each under the
// rate limit. Errors say whether they are retryable (Retryable() bool),
// may carry the server's Retry-After (RetryAfterDuration() time.Duration)
// and HTTP status (HTTPStatus() int), stop the sink when Fatal() bool says
// so, and tell with NoDevice() bool that a tag change by external id found
// no device carrying it (player model), which the sink counts as done.
type OneSignal interface {
	// SetUser writes the user's tags ("" deletes one, tags not named are
	// left alone), and in the user model its properties and aliases.
	// w.Create says the user is probably new: the user model then creates
	// it first, also when every tag is a deletion.
	SetUser(ctx context.Context, externalID string, w onesignal.UserWrite) error
	// AddRecord gives the user an email ("email") or SMS ("sms") record,
	// with the user's tags in the player model (nil in the user model).
	AddRecord(ctx context.Context, externalID, channel, identifier string, tags map[string]string) error
	// LinkDevice makes the device the user's, with the user's tags and
	// properties in the player model (none in the user model, where they
	// live on the user).
	LinkDevice(ctx context.Context, deviceID, externalID string, w onesignal.DeviceWrite) error
	// UnlinkSubscription takes the device from its user,
	// previousExternalID ("" when not known), clearing tags in the player
	// model.
	UnlinkSubscription(ctx context.Context, deviceID, previousExternalID string, tags map[string]string) error
	// DeleteUser deletes the user, with its subscriptions (user model;
	// OneSignal deletes asynchronously).
	DeleteUser(ctx context.Context, externalID string) error
}

// Writer writes messages, returning once Kafka acknowledged them.
type Writer interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// PartitionReader reads one partition in order.
type PartitionReader interface {
	FetchMessage(ctx context.Context) (kafka.Message, error)
	Close() error
}

// Kafka reads partitions outside the group: the changelogs, to restore
// state, and the partitions a generation assigns.
type Kafka interface {
	// Reader reads topic's partition from offset (kafka.FirstOffset: from
	// its first message).
	Reader(topic string, partition int, offset int64) PartitionReader
	// EndOffset is the offset the next message written to the partition
	// will have.
	EndOffset(ctx context.Context, topic string, partition int) (int64, error)
}

// Group is the consumer group the sink is a member of.
type Group interface {
	// Run joins the group and calls handle once per generation, with a
	// context that ends when the generation does; it returns when ctx
	// ends or the group fails. A member rejoins only after handle
	// returned.
	Run(ctx context.Context, handle func(ctx context.Context, gen *Generation) error) error
}

// Generation is one assignment of partitions to this member.
type Generation struct {
	ID       int32
	Assigned []Assignment
	// Previous holds the assigned partitions this member also held in the
	// generation before: no other member wrote for their targets since.
	Previous map[checkpoint.Partition]bool
	// Commit commits, per partition, the offset of the next message to
	// read.
	Commit func(ctx context.Context, offsets map[checkpoint.Partition]int64) error
	// Members is how many members the group has in this generation, 0
	// when not known.
	Members int
	// MemberID is this member's name in the group, and Group every
	// member with its partitions, this one included (nil when not known).
	MemberID string
	Group    []Member
	// Partitions holds how many partitions each of the group's topics
	// has; a topic is missing when that is not known.
	Partitions map[string]int
}

// Member is a member of the group in a generation, as the coordinator
// describes it.
type Member struct {
	ID       string
	ClientID string // kafka-go's names the program and the host (the pod)
	Host     string // the address it connects from
	Assigned []checkpoint.Partition
}

// RateShare is this member's share of the app-wide rate limit in gen: the
// share of the targets topic's partitions it holds, since every request
// serves a target of one of them. The members' shares add up to 1 (range
// assignment gives every partition to one member), so the group stays
// under the limit; a member whose partitions run dry leaves its share
// unused. Without the partition count it is 1/Members, and 1 without
// that.
func RateShare(gen *Generation, targetsTopic string) float64 {
	held := 0
	for _, a := range gen.Assigned {
		if a.Topic == targetsTopic {
			held++
		}
	}
	return shareOf(held, gen, targetsTopic)
}

// shareOf is the share of the rate limit of a member of gen that holds
// held partitions of the targets topic.
func shareOf(held int, gen *Generation, targetsTopic string) float64 {
	if n := gen.Partitions[targetsTopic]; n > 0 {
		return float64(held) / float64(n)
	}
	if held == 0 {
		return 0
	}
	if gen.Members > 0 {
		return 1 / float64(gen.Members)
	}
	return 1
}

// Assignment is a partition of this generation and its committed offset:
// the next message to read, or kafka.FirstOffset when none was committed.
type Assignment struct {
	Topic     string
	Partition int
	Committed int64
}

// The API models.
const (
	ModelUser   = "user"
	ModelPlayer = "player"
)

// Config is what the sink needs. Zero values mean the defaults.
type Config struct {
	// Model is ModelUser (default) or ModelPlayer.
	Model string
	// TargetsTopic and RowsTopic are the sink's compacted topics; the
	// targets topic is one of the group's topics, the rows topic is read
	// only to restore the row index.
	TargetsTopic, RowsTopic string
	// Targets writes to the targets topic, partitioning by the target
	// part of the key; Rows writes to the rows topic, to the partition a
	// message names.
	Targets, Rows Writer
	// Kafka reads partitions.
	Kafka Kafka
	// Store is the local store of the row index and the targets' states.
	Store kv.Store

	// Concurrency is how many requests may be in flight at once, each to
	// a different target; default 32.
	Concurrency int
	// MaxInFlight is how many messages each stage may hold fetched and not
	// yet done: the row stage's events, the target stage's records;
	// default 10,000.
	MaxInFlight int
	// Memory is how many idle targets the scheduler remembers (their
	// one-second windows, what was applied last); default 50,000: far
	// more than the targets written in a second at OneSignal's 1,000/s,
	// so no window is forgotten while it is open, and 14 MB of compact
	// memos. A target forgotten is only sent its state again if it comes
	// back unchanged.
	Memory int
	// RowBatch is the most events the row stage writes at once; default
	// 500.
	RowBatch int

	CommitInterval time.Duration // how often offsets are committed; default 1s
	Retry          retry.Policy  // backoff for transient API and Kafka errors; default retry.Sink
	// DeadLetters writes rejected messages to DeadLetterTopic; nil stops
	// the sink at the first rejected message instead.
	DeadLetters     Writer
	DeadLetterTopic string
	// Name is reported in dead letters' headers; default "onesignal-cdc".
	Name string
	// Clock times the per-target window and the retry backoff; default
	// the system clock. Commits use the wall clock.
	Clock Clock
	// TagLimit is the most tags a user may hold (onesignal.max_tags); a
	// desired state over it is dead-lettered. Default 0: not checked.
	TagLimit int
	// Limiter, when set, is the rate limiter the OneSignal client takes
	// tokens of; the sink only reports it.
	Limiter *Limiter
	// Drift is continuous mode (drift.go); a zero Period: off.
	Drift DriftConfig
	// DeadLettered, if set, is told of each message once the dead-letter
	// topic holds it, for the status page. It is called from the sink's
	// workers, at times from several at once, and must not block.
	DeadLettered func(DeadLetter)
}

// Sink is the Kafka → OneSignal half of the pipeline.
type Sink struct {
	cfg     Config
	group   Group
	api     OneSignal
	mapping *transform.Mapping
	log     *zap.Logger
	stats   counters
	readers readers
	// devices says the mapping has a devices table: in the player model,
	// a user without a device or record of its own is then not written
	// to (no device of its carries the tags).
	devices bool
	// records says the mapping gives users email or SMS records: in the
	// player model those are devices that carry the user's tags.
	records bool
	// deadLetterMu is held shared while a dead letter is written, and
	// alone while one Kafka refused as too large is tried again by itself.
	deadLetterMu sync.RWMutex
	// idle remembers targets between generations: their one-second
	// windows and what was applied last.
	idleMu sync.Mutex
	idle   *idleMemory
	// retryLog counts retried requests, logged every retryLogInterval.
	retryLog retryLog
	// gen is the generation running, for Stats.
	gen struct {
		sync.Mutex
		*generation
		changed chan struct{} // closed when generation changes
	}
	// sweeper is continuous mode's, nil when it is off.
	sweeper *sweeper
}

// New returns a sink of the group, writing api. Its Run may be called once.
func New(cfg Config, group Group, api OneSignal, mapping *transform.Mapping, log *zap.Logger) *Sink {
	if cfg.Model == "" {
		cfg.Model = ModelUser
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 32
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 10000
	}
	if cfg.Memory <= 0 {
		cfg.Memory = 50000
	}
	if cfg.RowBatch <= 0 {
		cfg.RowBatch = 500
	}
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = time.Second
	}
	if cfg.Retry == (retry.Policy{}) {
		cfg.Retry = retry.Sink
	}
	if cfg.Name == "" {
		cfg.Name = "onesignal-cdc"
	}
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	s := &Sink{
		cfg: cfg, group: group, api: api, mapping: mapping, log: log.Named("sink"),
		devices: mapping.Devices != nil,
		records: mapping.Users != nil && (mapping.Users.Email != "" || mapping.Users.Phone != ""),
		idle:    newIdleMemory(cfg.Memory),
	}
	s.gen.changed = make(chan struct{})
	if cfg.Drift.Period > 0 {
		s.sweeper = newSweeper(s, cfg.Drift)
	}
	return s
}

// Run consumes until ctx ends (nil) or the sink must stop (the error).
// Each generation, when it ends, cancels the requests in flight without
// marking their messages done, lets the Kafka writes in flight finish,
// and commits what is done.
func (s *Sink) Run(ctx context.Context) error {
	parent := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	logged := make(chan struct{})
	defer func() { cancel(nil); <-logged }() // the last retries' line
	go func() { defer close(logged); s.retryLog.run(ctx, s.log, retryLogInterval) }()
	if s.sweeper != nil {
		swept := make(chan struct{})
		defer func() { cancel(nil); <-swept }()
		go func() { defer close(swept); _ = s.sweeper.Run(ctx) }()
	}
	err := s.group.Run(ctx, func(gctx context.Context, gen *Generation) error {
		err := s.generation(gctx, gen)
		if err != nil {
			cancel(err) // a failure that must stop the sink, not only end the generation
		}
		return err
	})
	// The cause is the sink's own only if the parent did not pass it on:
	// a daemon stopping because another component failed stops the sink
	// cleanly, and the other failure is not the sink's to report.
	if parent.Err() != nil {
		return nil
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// generation is the sink's work in one generation of the group.
type generation struct {
	s       *Sink
	gen     *Generation
	offsets *checkpoint.Offsets
	// rowSlots and targetSlots hold one token per message of the row
	// stage and of the target stage fetched and not done (but for a
	// device waiting for its owner's tags, whose messages let go of
	// theirs: the owner's answer must get through): each stage has
	// MaxInFlight.
	rowSlots, targetSlots chan struct{}
	sched                 *scheduler
	emitter               *emitter
	// writeCtx ends writeGrace after the generation: Kafka writes use it.
	writeCtx context.Context
	// stop ends the generation, and the sink, with an error.
	stop context.CancelCauseFunc
	// share is this member's share of the rate limit (RateShare).
	share float64
	// ctx is the generation's: it ends with it. restored is closed once
	// every partition of the targets topic it assigns is restored.
	ctx      context.Context
	restored chan struct{}
	restore  sync.WaitGroup
	// committed is, per assigned partition, the group's committed offset
	// (the next message to read; kafka.FirstOffset for none), as this
	// member last committed it, for Lag.
	committedMu sync.Mutex
	committed   map[checkpoint.Partition]int64
}

// writeGrace is how long Kafka writes in flight may take to finish when a
// generation ends.
const writeGrace = 10 * time.Second

func (s *Sink) generation(parent context.Context, gen *Generation) error {
	ctx := parent
	g := &generation{s: s, gen: gen, offsets: checkpoint.NewOffsets(),
		rowSlots: make(chan struct{}, s.cfg.MaxInFlight), targetSlots: make(chan struct{}, s.cfg.MaxInFlight)}
	g.sched = newScheduler(s)
	g.committed = make(map[checkpoint.Partition]int64, len(gen.Assigned))
	for _, a := range gen.Assigned {
		g.committed[checkpoint.Partition{Topic: a.Topic, Partition: a.Partition}] = a.Committed
	}
	// What the memory says was applied to the targets of a partition that
	// another member held meanwhile may no longer be so.
	gained := map[int]bool{}
	for _, a := range gen.Assigned {
		if a.Topic == s.cfg.TargetsTopic && !gen.Previous[checkpoint.Partition{Topic: a.Topic, Partition: a.Partition}] {
			gained[a.Partition] = true
		}
	}
	s.forgetEffects(gained)
	g.share = RateShare(gen, s.cfg.TargetsTopic)
	if s.cfg.Limiter != nil {
		s.cfg.Limiter.SetShare(g.share)
	}
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	g.stop = stop
	g.ctx, g.restored = ctx, make(chan struct{})
	for _, a := range gen.Assigned {
		if a.Topic == s.cfg.TargetsTopic {
			g.restore.Add(1)
		}
	}
	go func() { g.restore.Wait(); close(g.restored) }()
	s.setGeneration(g)
	defer s.setGeneration(nil)
	// API calls end with the generation. Kafka writes in flight finish
	// first (for at most writeGrace), so that none lands after this member
	// rejoined the group, and what they finish is committed.
	apiCtx, cancelAPI := context.WithCancel(ctx)
	defer cancelAPI()
	writeCtx, cancelWrites := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWrites()
	stopGrace := context.AfterFunc(ctx, func() { time.AfterFunc(writeGrace, cancelWrites) })
	defer stopGrace()
	g.writeCtx = writeCtx
	g.emitter = newEmitter(g)

	var wg, consumers sync.WaitGroup
	emitted := make(chan struct{})
	go func() { defer close(emitted); g.emitter.run(writeCtx) }()
	ready := make(chan *target)
	wg.Go(func() { g.sched.dispatch(apiCtx, ready) })
	for range s.cfg.Concurrency {
		wg.Go(func() { g.work(apiCtx, stop, ready) })
	}
	wg.Go(func() { g.commitLoop(ctx) })
	for _, a := range gen.Assigned {
		consumers.Go(func() {
			var err error
			if a.Topic == s.cfg.TargetsTopic {
				err = g.consumeTargets(ctx, a)
			} else {
				err = g.consumeRows(ctx, a)
			}
			if err != nil && ctx.Err() == nil {
				stop(err)
			}
		})
	}
	s.log.Info("generation started", zap.Int32("generation", gen.ID), zap.Int("partitions", len(gen.Assigned)),
		zap.Int("members", gen.Members), zap.Float64("rate_share", g.share))
	<-ctx.Done()
	cancelAPI()
	wg.Wait()
	consumers.Wait()
	g.emitter.close()
	<-emitted
	g.commit(context.Background()) // what finished before the stop
	if parent.Err() != nil {
		return nil // the generation ended, or the sink is stopping
	}
	return context.Cause(ctx) // a failure of the generation's own
}

// fetch reads r's next message and tracks it once it has a token of
// slots (fewer than MaxInFlight of its stage's messages are not done); nil
// when ctx ended. Taking the token after the read, not before, keeps a
// partition that has nothing to read from holding one.
func (g *generation) fetch(ctx context.Context, r PartitionReader, slots chan struct{}) (*fetched, error) {
	msg, err := g.read(ctx, r)
	if err != nil || ctx.Err() != nil {
		return nil, err
	}
	return g.track(ctx, msg, slots), nil
}

// track takes a token of slots for msg, waiting for one, and starts
// tracking its offset; nil when ctx ended first (the message is read again
// by whoever gets its partition next).
func (g *generation) track(ctx context.Context, msg kafka.Message, slots chan struct{}) *fetched {
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		return nil
	}
	g.s.stats.fetched.Add(1)
	done := g.offsets.Track(msg.Topic, msg.Partition, msg.Offset)
	var once sync.Once
	p := &progress{unslot: func() { once.Do(func() { <-slots }) }}
	p.done = func() {
		done()
		g.s.stats.done.Add(1)
		p.unslot()
	}
	return &fetched{msg: msg, progress: p}
}

// read fetches r's next message, riding out the errors a broker answers
// during a disk or leadership hiccup and network faults.
func (g *generation) read(ctx context.Context, r PartitionReader) (kafka.Message, error) {
	return g.s.read(ctx, r)
}

// read fetches r's next message, riding out the errors a broker answers
// during a disk or leadership hiccup and network faults, for every reader
// of the sink's: the event topics, and the restores of its own topics.
// It returns no error when ctx ended.
func (s *Sink) read(ctx context.Context, r PartitionReader) (kafka.Message, error) {
	var msg kafka.Message
	err := s.cfg.Retry.Do(ctx, func() error {
		var err error
		msg, err = r.FetchMessage(ctx)
		if err != nil && ctx.Err() == nil && broker.Classify(err) == errclass.Retryable {
			// A broker's answer during a disk or leadership hiccup, or a
			// network fault: kafka-go hands the Kafka errors it has no
			// case for (KAFKA_STORAGE_ERROR, UNKNOWN_SERVER_ERROR, …) to
			// FetchMessage's caller, and the reader carries on after them.
			// What Kafka's classifier does not know (io.EOF: a closed
			// reader) stops the sink.
			return errclass.Mark(err, errclass.Retryable)
		}
		return err
	}, func(err error, wait time.Duration) {
		s.log.Warn("fetch from kafka failed; retrying", zap.Error(err), zap.Duration("wait", wait))
	})
	if err != nil {
		if ctx.Err() != nil {
			return msg, nil
		}
		return msg, fmt.Errorf("fetch from kafka: %w", err)
	}
	return msg, nil
}

func (g *generation) commitLoop(ctx context.Context) {
	t := time.NewTicker(g.s.cfg.CommitInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.commit(ctx)
		}
	}
}

// commit commits every partition's highest finished offset.
func (g *generation) commit(ctx context.Context) {
	ps := g.offsets.Committable()
	if len(ps) == 0 {
		return
	}
	offsets := make(map[checkpoint.Partition]int64, len(ps))
	for _, p := range ps {
		offsets[checkpoint.Partition{Topic: p.Topic, Partition: p.Partition}] = p.Offset + 1
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := g.gen.Commit(ctx, offsets); err != nil {
		g.s.log.Warn("offset commit failed; will retry", zap.Error(err))
		return
	}
	g.offsets.Committed(ps)
	g.committedMu.Lock()
	for p, off := range offsets {
		g.committed[p] = max(g.committed[p], off)
	}
	g.committedMu.Unlock()
}

// endOffsets is a Kafka that reads many partitions' ends in one request.
type endOffsets interface {
	EndOffsets(ctx context.Context, partitions []checkpoint.Partition) (map[checkpoint.Partition]int64, error)
}

// PartitionLag is how far the group's committed offset of a partition
// this member holds is behind the partition's end: what
// kafka-consumer-groups shows as LAG.
type PartitionLag struct {
	Topic     string
	Partition int
	End       int64 // the high watermark: the offset of the next message written
	// Committed is the group's committed offset, the next message to
	// read, or kafka.FirstOffset when none was committed (Lag then counts
	// from offset 0).
	Committed int64
	Lag       int64
}

// Lag returns the committed-offset lag of every partition this member
// holds, by topic then partition; nil between generations. A partition
// whose end cannot be read now is left out.
func (s *Sink) Lag(ctx context.Context) []PartitionLag {
	s.gen.Lock()
	g := s.gen.generation
	s.gen.Unlock()
	if g == nil {
		return nil
	}
	ends := make(map[checkpoint.Partition]int64, len(g.gen.Assigned))
	if many, ok := s.cfg.Kafka.(endOffsets); ok {
		parts := make([]checkpoint.Partition, len(g.gen.Assigned))
		for i, a := range g.gen.Assigned {
			parts[i] = checkpoint.Partition{Topic: a.Topic, Partition: a.Partition}
		}
		if got, err := many.EndOffsets(ctx, parts); err == nil {
			ends = got
		}
	} else {
		for _, a := range g.gen.Assigned {
			if end, err := s.cfg.Kafka.EndOffset(ctx, a.Topic, a.Partition); err == nil {
				ends[checkpoint.Partition{Topic: a.Topic, Partition: a.Partition}] = end
			}
		}
	}
	out := make([]PartitionLag, 0, len(g.gen.Assigned))
	g.committedMu.Lock()
	defer g.committedMu.Unlock()
	for _, a := range g.gen.Assigned {
		p := checkpoint.Partition{Topic: a.Topic, Partition: a.Partition}
		end, ok := ends[p]
		if !ok {
			continue
		}
		c := g.committed[p]
		out = append(out, PartitionLag{Topic: a.Topic, Partition: a.Partition, End: end, Committed: c, Lag: max(end-max(c, 0), 0)})
	}
	return out
}
