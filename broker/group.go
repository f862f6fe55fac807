package broker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/internal/errclass"
	"github.com/onesignal-cdc/onesignal-cdc/retry"
)

// GroupConfig is how a member joins a consumer group. The zero durations
// take the defaults below, chosen for pods on Kubernetes: a pod that is
// stopped (a rolling update, a scale-down, a drained node) gets SIGTERM and
// leaves the group at once, so its partitions move within about one
// HeartbeatInterval; a pod that dies without leaving (OOM kill, a lost
// node) holds its partitions until SessionTimeout passes.
type GroupConfig struct {
	ID     string   // the consumer group
	Topics []string // every member of the group must subscribe to the same topics
	// SessionTimeout is how long the coordinator waits for a heartbeat
	// before it takes a member's partitions away: the failover time after
	// a crash. Default 6 s, the least brokers accept by default (their
	// group.min.session.timeout.ms), so that a crashed member's partitions
	// move within 10 s (the session, a heartbeat to learn of the
	// rebalance, the rejoin and the restore): a Go process has no
	// multi-second GC pauses to ride out (Kafka 3.0 raised its default to
	// 45 s for the JVM's), and eleven missed heartbeats tolerate CPU
	// throttling under a pod's CPU limit.
	SessionTimeout time.Duration
	// HeartbeatInterval is how often the member heartbeats. kafka-go
	// learns that the group is rebalancing only from a heartbeat's answer,
	// so this is also how long a member may take to notice that another
	// one left or joined. Default 500 ms: a heartbeat is one small request.
	HeartbeatInterval time.Duration
	// RebalanceTimeout is how long the coordinator waits, in a rebalance,
	// for every member to end its generation and rejoin; a member slower
	// than that is dropped from the group. It bounds how long a generation
	// handler may take to stop. Default 30 s, Kubernetes' default
	// terminationGracePeriodSeconds: a handler that stops within the grace
	// period of a SIGTERM also stops within a rebalance.
	RebalanceTimeout time.Duration
	// ErrorLogger receives kafka-go's reports of failed joins, heartbeats
	// and connections, which it retries on its own; nil discards them.
	ErrorLogger kafka.Logger
}

// The defaults of GroupConfig's durations.
const (
	DefaultSessionTimeout    = 6 * time.Second
	DefaultHeartbeatInterval = 500 * time.Millisecond
	DefaultRebalanceTimeout  = 30 * time.Second
)

func (cfg GroupConfig) withDefaults() (GroupConfig, error) {
	cfg.SessionTimeout = cmp.Or(cfg.SessionTimeout, DefaultSessionTimeout)
	cfg.HeartbeatInterval = cmp.Or(cfg.HeartbeatInterval, DefaultHeartbeatInterval)
	cfg.RebalanceTimeout = cmp.Or(cfg.RebalanceTimeout, DefaultRebalanceTimeout)
	var errs []error
	if cfg.ID == "" {
		errs = append(errs, errors.New("the consumer group has no name: set one"))
	}
	if len(cfg.Topics) == 0 {
		errs = append(errs, fmt.Errorf("consumer group %q has no topics to read", cfg.ID))
	}
	if cfg.HeartbeatInterval*3 > cfg.SessionTimeout {
		errs = append(errs, fmt.Errorf("consumer group %q: the heartbeat interval (%s) must be at most a third of the session timeout (%s), or one late heartbeat ends the session", cfg.ID, cfg.HeartbeatInterval, cfg.SessionTimeout))
	}
	return cfg, errors.Join(errs...)
}

// TopicPartition names one partition of a topic.
type TopicPartition struct {
	Topic     string
	Partition int
}

// Assignment is a partition given to this member, with the group's
// committed offset for it: the next offset to read, or kafka.FirstOffset
// when the group has committed none.
type Assignment struct {
	Topic     string
	Partition int
	Committed int64
}

// Generation is one assignment of partitions to this member. It holds
// from the moment the handler gets it until the group rebalances (or the
// member leaves), when the handler's context ends.
type Generation struct {
	ID       int32  // the group's generation, one more at each rebalance
	MemberID string // this member's, as the coordinator named it
	// Assigned are this member's partitions, by topic then partition. It
	// may be empty: a group with more members than partitions leaves some
	// idle.
	Assigned []Assignment
	// Members is how many members the group has in this generation, as the
	// coordinator describes the group once this member has its
	// assignment, or 0 when that description failed or already belongs to
	// a rebalance under way (the generation is then about to end).
	// kafka-go itself tells only the leader how many members there are.
	Members int
	// Group is every member of the group with its partitions, this one
	// included, from the same description as Members; nil when Members is
	// 0. The assignments hold for the whole generation: they change only
	// in a rebalance, which ends it.
	Group []Member
	// Previous holds the partitions of Assigned that this member also held
	// in generation ID-1. No other member held them since, so what the
	// handler built for them then is still valid; any other partition must
	// be rebuilt from Kafka, even one held in an earlier generation.
	Previous map[TopicPartition]bool

	group    string
	assigned map[TopicPartition]bool
	kg       *kafka.Generation
}

// Member is one member of the group, as the coordinator describes it.
type Member struct {
	ID string // the coordinator's name for it; this member's is MemberID
	// ClientID is the name the member gives its connections; kafka-go's
	// is "program@host (github.com/segmentio/kafka-go)", the host being
	// the pod's name on Kubernetes.
	ClientID string
	Host     string           // the address it connects from, as the coordinator sees it
	Assigned []TopicPartition // by topic, then partition
}

// Commit commits offsets for this generation: per partition, the next
// offset to read. Every partition must be one of Assigned. Safe for
// concurrent use, and usable while the handler stops, after its context
// ended (give Commit a context of its own then): the coordinator accepts
// a generation's commits until the member rejoins, and refuses them after
// another member took over, so a commit never lands on a partition that
// changed hands. When ctx ends first, Commit returns ctx's error and the
// request may still land in this generation.
func (g *Generation) Commit(ctx context.Context, offsets map[TopicPartition]int64) error {
	if len(offsets) == 0 {
		return nil
	}
	byTopic := make(map[string]map[int]int64)
	for tp, off := range offsets {
		if !g.assigned[tp] {
			return fmt.Errorf("commit offset %d of %s partition %d: the partition is not assigned to this member in generation %d", off, tp.Topic, tp.Partition, g.ID)
		}
		if byTopic[tp.Topic] == nil {
			byTopic[tp.Topic] = make(map[int]int64)
		}
		byTopic[tp.Topic][tp.Partition] = off
	}
	done := make(chan error, 1)
	go func() { done <- g.kg.CommitOffsets(byTopic) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("commit offsets of consumer group %q: %w", g.group, err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ErrGenerationEnded is the cause (context.Cause) of a handler's context
// when its generation ended.
var ErrGenerationEnded = errors.New("the consumer group's generation ended")

// errReturnedEarly is RunGroup's error for a handler that broke its
// contract.
var errReturnedEarly = errors.New("the consumer group's handler returned before its generation ended")

// RunGroup joins the consumer group and calls handle once per generation,
// one generation at a time, with a context that ends when the generation
// does. handle must return only when everything it started has stopped: the
// member rejoins the group, and so lets any other member take the
// partitions, only after handle returned. That is the sink's fence; see
// "What the sink does not fence" in docs/architecture.md for its limit. A
// handler that takes longer than cfg.RebalanceTimeout to stop, or a process
// frozen beyond cfg.SessionTimeout, is dropped from the group, and its
// partitions go to others while it still runs.
//
// handle returns nil (or its context's error) once its context ended; any
// other error, or a return before the context ended, ends RunGroup with
// that error, after the member left the group.
//
// RunGroup returns nil when ctx ends, once handle returned and the member
// left the group (so its partitions move at once instead of after the
// session timeout), or an error the group cannot get past (the broker
// refuses the group, its session timeout or the credentials). Errors it can
// get past (a broker or the coordinator unreachable, a rebalance during the
// join) it retries without end, reporting them to cfg.ErrorLogger.
//
// Partitions are assigned by range: with topics of equal partition
// counts, one member gets the same partition numbers of every topic.
func (c Cluster) RunGroup(ctx context.Context, cfg GroupConfig, handle func(ctx context.Context, gen *Generation) error) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:      cfg.ID,
		Brokers: c.Brokers,
		Dialer:  c.Dialer(),
		Topics:  cfg.Topics,
		// Range, and only range: the sink needs partition p of every event
		// topic in one member, with the row index's partition p.
		GroupBalancers:    []kafka.GroupBalancer{kafka.RangeGroupBalancer{}},
		HeartbeatInterval: cfg.HeartbeatInterval,
		SessionTimeout:    cfg.SessionTimeout,
		RebalanceTimeout:  cfg.RebalanceTimeout,
		JoinGroupBackoff:  retry.JoinGroup,
		StartOffset:       kafka.FirstOffset,
		ErrorLogger:       cfg.ErrorLogger,
	})
	if err != nil {
		return fmt.Errorf("consumer group %q: %w", cfg.ID, err)
	}
	transport := c.Transport()
	defer transport.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(c.Brokers...), Timeout: 5 * time.Second, Transport: transport}

	var last *Generation
	for {
		kg, err := cg.Next(ctx)
		if ctx.Err() != nil {
			cg.Close()
			return nil
		}
		if err != nil {
			if fatal := fatalGroupError(cfg, err); fatal != nil {
				cg.Close()
				return fatal
			}
			continue // kafka-go logged it and joins again
		}
		gen := newGeneration(cfg.ID, kg, last)
		gen.Members, gen.Group = members(ctx, client, cfg.ID, kg.MemberID)
		last = gen

		result := make(chan error, 1)
		kg.Start(func(gctx context.Context) {
			if gctx.Err() != nil {
				// The generation ended before it began; kafka-go may not
				// wait for this function then, so handle must not run.
				result <- nil
				return
			}
			hctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
			stop := context.AfterFunc(gctx, func() { cancel(ErrGenerationEnded) })
			err := handle(hctx, gen)
			ended := !stop() || hctx.Err() != nil // stop is false once the generation ended
			cancel(nil)
			if ended && (err == nil || errors.Is(err, context.Canceled)) {
				result <- nil
				return
			}
			if err == nil {
				err = errReturnedEarly
			}
			result <- err
			// Hold the generation until RunGroup closed the group: kafka-go
			// would otherwise join the next one before it learns to leave.
			<-gctx.Done()
		})
		select {
		case err := <-result:
			if err != nil {
				cg.Close()
				return err
			}
		case <-ctx.Done():
			// Close ends the generation, waits for handle and leaves.
			cg.Close()
			return <-result
		}
	}
}

func newGeneration(group string, kg *kafka.Generation, last *Generation) *Generation {
	gen := &Generation{
		ID: kg.ID, MemberID: kg.MemberID,
		Previous: make(map[TopicPartition]bool),
		group:    group, assigned: make(map[TopicPartition]bool), kg: kg,
	}
	for topic, parts := range kg.Assignments {
		for _, p := range parts {
			tp := TopicPartition{topic, p.ID}
			gen.Assigned = append(gen.Assigned, Assignment{Topic: topic, Partition: p.ID, Committed: p.Offset})
			gen.assigned[tp] = true
			if last != nil && last.ID == kg.ID-1 && last.assigned[tp] {
				gen.Previous[tp] = true
			}
		}
	}
	slices.SortFunc(gen.Assigned, func(a, b Assignment) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	return gen
}

// members counts the group's members, and lists them with their
// partitions, as the coordinator describes the group, when the group is
// stable and counts this member: it is then the generation this member
// just joined. Otherwise it returns 0 and nil.
func members(ctx context.Context, client *kafka.Client, group, memberID string) (int, []Member) {
	resp, err := client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil || len(resp.Groups) != 1 || resp.Groups[0].Error != nil || resp.Groups[0].GroupState != "Stable" {
		return 0, nil
	}
	g := resp.Groups[0]
	if !slices.ContainsFunc(g.Members, func(m kafka.DescribeGroupsResponseMember) bool { return m.MemberID == memberID }) {
		return 0, nil
	}
	out := make([]Member, 0, len(g.Members))
	for _, m := range g.Members {
		mem := Member{ID: m.MemberID, ClientID: m.ClientID, Host: strings.TrimPrefix(m.ClientHost, "/")}
		for _, t := range m.MemberAssignments.Topics {
			for _, p := range t.Partitions {
				mem.Assigned = append(mem.Assigned, TopicPartition{Topic: t.Topic, Partition: p})
			}
		}
		slices.SortFunc(mem.Assigned, compareTopicPartitions)
		out = append(out, mem)
	}
	slices.SortFunc(out, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	return len(out), out
}

func compareTopicPartitions(a, b TopicPartition) int {
	return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
}

// fatalGroupError returns the error RunGroup stops with when err, from a
// join, is one that joining again cannot get past (Classify says Fatal);
// nil otherwise.
func fatalGroupError(cfg GroupConfig, err error) error {
	if Classify(err) != errclass.Fatal {
		return nil // a connection failure, a rebalance: kafka-go tries again
	}
	code, _ := errors.AsType[kafka.Error](err)
	switch code {
	case kafka.InvalidSessionTimeout:
		return fmt.Errorf("join consumer group %q: the broker refuses a session timeout of %s: it must lie between the broker's group.min.session.timeout.ms and group.max.session.timeout.ms (6 s and 30 min by default): %w", cfg.ID, cfg.SessionTimeout, err)
	case kafka.GroupAuthorizationFailed:
		return fmt.Errorf("join consumer group %q: the broker refuses this user the group: grant it Read on the group: %w", cfg.ID, err)
	case kafka.TopicAuthorizationFailed:
		return fmt.Errorf("join consumer group %q: the broker refuses this user one of the topics %v: grant it Read and Describe on them: %w", cfg.ID, cfg.Topics, err)
	case kafka.InconsistentGroupProtocol:
		return fmt.Errorf("join consumer group %q: the group's other members assign partitions in a way this member does not (range): give this sink a group of its own: %w", cfg.ID, err)
	}
	return fmt.Errorf("join consumer group %q: %w", cfg.ID, err)
}

// PartitionReader reads one partition from offset from (an offset, or
// kafka.FirstOffset or kafka.LastOffset), outside any group: for a
// handler's fetch loops and for restoring a compacted changelog partition.
// It fetches ahead in the background; close it when done. An offset below
// the partition's first (deleted by retention) reads from the first.
//
// To restore a partition up to its end, take its EndOffset first and read
// until a message's offset+1 reaches it (nothing to read when the end is
// not above the first offset): compaction never removes a partition's last
// record, since Kafka never cleans the segment it is appending to.
//
// errs, when not nil, receives the errors the reader retries on its own
// (a broker unreachable): FetchMessage does not return them.
func (c Cluster) PartitionReader(topic string, partition int, from int64, errs kafka.Logger) *kafka.Reader {
	r := c.NewReader(kafka.ReaderConfig{
		Topic: topic, Partition: partition,
		MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 500 * time.Millisecond,
		ErrorLogger: errs,
	})
	_ = r.SetOffset(from) // fails only for a group's or a closed reader
	return r
}

// EndOffset returns a partition's high watermark: the offset its next
// record will get, so the partition holds records below it.
func (c Cluster) EndOffset(ctx context.Context, topic string, partition int) (int64, error) {
	transport := c.Transport()
	defer transport.CloseIdleConnections() // each call's own: none left behind
	client := &kafka.Client{Addr: kafka.TCP(c.Brokers...), Timeout: 10 * time.Second, Transport: transport}
	resp, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{
		Topics: map[string][]kafka.OffsetRequest{topic: {kafka.LastOffsetOf(partition)}},
	})
	if err != nil {
		return 0, fmt.Errorf("read the end offset of %s partition %d: %w", topic, partition, unprefixed(err))
	}
	for _, p := range resp.Topics[topic] {
		if p.Partition != partition {
			continue
		}
		if p.Error != nil {
			return 0, fmt.Errorf("read the end offset of %s partition %d: %w", topic, partition, p.Error)
		}
		return p.LastOffset, nil
	}
	return 0, fmt.Errorf("read the end offset of %s partition %d: the broker did not answer for it", topic, partition)
}

// EndOffsets returns the high watermarks of partitions in one request,
// closing its connections after: for a caller that asks every few
// seconds. A partition the broker did not answer for is left out.
func (c Cluster) EndOffsets(ctx context.Context, partitions []TopicPartition) (map[TopicPartition]int64, error) {
	transport := c.Transport()
	defer transport.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(c.Brokers...), Timeout: 10 * time.Second, Transport: transport}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, tp := range partitions {
		req.Topics[tp.Topic] = append(req.Topics[tp.Topic], kafka.LastOffsetOf(tp.Partition))
	}
	resp, err := client.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("read the end offsets of %d partitions: %w", len(partitions), unprefixed(err))
	}
	out := make(map[TopicPartition]int64, len(partitions))
	for topic, ps := range resp.Topics {
		for _, p := range ps {
			if p.Error == nil {
				out[TopicPartition{topic, p.Partition}] = p.LastOffset
			}
		}
	}
	return out, nil
}
