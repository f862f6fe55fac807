package broker_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
)

// The group tests use the broker's shortest session timeout (kfake, like
// Kafka, refuses less than 6 s) and the default heartbeat of 1 s.
const testSessionTimeout = 6 * time.Second

// memberEnv makes the test binary a group member that prints its
// generations, for the test that kills a member with SIGKILL.
const memberEnv = "BROKER_TEST_GROUP_MEMBER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(memberEnv); spec != "" {
		os.Exit(runMemberProcess(spec))
	}
	os.Exit(m.Run())
}

// runMemberProcess joins the group named in spec ("brokers group topic")
// and prints "gen <id> <partitions>" for each generation.
func runMemberProcess(spec string) int {
	f := strings.Fields(spec)
	cfg := broker.GroupConfig{ID: f[1], Topics: []string{f[2]}, SessionTimeout: testSessionTimeout}
	err := broker.Plain(strings.Split(f[0], ",")).RunGroup(context.Background(), cfg, func(ctx context.Context, gen *broker.Generation) error {
		fmt.Printf("gen %d %s\n", gen.ID, partitionList(gen))
		<-ctx.Done()
		return nil
	})
	fmt.Fprintln(os.Stderr, err)
	return 1
}

func partitionList(gen *broker.Generation) string {
	var ps []string
	for _, a := range gen.Assigned {
		ps = append(ps, strconv.Itoa(a.Partition))
	}
	return strings.Join(ps, ",")
}

// member is one RunGroup in the test process.
type member struct {
	gens   chan *broker.Generation
	cancel context.CancelFunc
	done   chan error
}

// join starts a member whose handler reports each generation and holds it
// until it ends; handle, when not nil, runs after the report instead.
func join(t *testing.T, c broker.Cluster, cfg broker.GroupConfig, handle func(context.Context, *broker.Generation) error) *member {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{gens: make(chan *broker.Generation, 100), cancel: cancel, done: make(chan error, 1)}
	go func() {
		m.done <- c.RunGroup(ctx, cfg, func(ctx context.Context, gen *broker.Generation) error {
			m.gens <- gen
			if handle != nil {
				return handle(ctx, gen)
			}
			<-ctx.Done()
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-m.done; err != nil {
			t.Errorf("RunGroup: %v", err)
		}
	})
	return m
}

// next returns the member's first generation from now on with want
// partitions, failing the test after timeout.
func (m *member) next(t *testing.T, want int, timeout time.Duration) *broker.Generation {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case gen := <-m.gens:
			if len(gen.Assigned) == want {
				return gen
			}
		case err := <-m.done:
			t.Fatalf("RunGroup returned %v while waiting for %d partitions", err, want)
		case <-deadline:
			t.Fatalf("no generation with %d partitions within %s", want, timeout)
		}
	}
}

// groupOnTopic creates a 6-partition topic on a fresh broker and returns
// the cluster and a group config that reads it.
func groupOnTopic(t *testing.T) (broker.Cluster, broker.GroupConfig) {
	t.Helper()
	b := kafkatest.Start(t)
	c := broker.Plain(b.Brokers())
	if err := c.EnsureTopics(t.Context(), 6, "events"); err != nil {
		t.Fatal(err)
	}
	return c, broker.GroupConfig{ID: "sink", Topics: []string{"events"}, SessionTimeout: testSessionTimeout}
}

func partitions(gen *broker.Generation) []int {
	var ps []int
	for _, a := range gen.Assigned {
		ps = append(ps, a.Partition)
	}
	return ps
}

// shared waits until a and b are in one generation with three partitions
// each and returns their generations.
func shared(t *testing.T, a, b *member) (*broker.Generation, *broker.Generation) {
	t.Helper()
	ga, gb := a.next(t, 3, 20*time.Second), b.next(t, 3, 20*time.Second)
	for ga.ID != gb.ID {
		if ga.ID < gb.ID {
			ga = a.next(t, 3, 20*time.Second)
		} else {
			gb = b.next(t, 3, 20*time.Second)
		}
	}
	return ga, gb
}

func TestTwoMembersShareSixPartitionsHalfEach(t *testing.T) {
	t.Parallel()
	c, cfg := groupOnTopic(t)
	a := join(t, c, cfg, nil)
	first := a.next(t, 6, 20*time.Second)
	if first.Members != 1 {
		t.Errorf("alone, the member counts %d members", first.Members)
	}
	start := time.Now()
	b := join(t, c, cfg, nil)
	ga, gb := shared(t, a, b)
	t.Logf("a second member had its half %s after it started", time.Since(start).Round(10*time.Millisecond))

	seen := map[int]bool{}
	for _, gen := range []*broker.Generation{ga, gb} {
		if gen.Members != 2 {
			t.Errorf("member %s counts %d members, want 2", gen.MemberID, gen.Members)
		}
		for _, as := range gen.Assigned {
			if seen[as.Partition] {
				t.Errorf("partition %d assigned twice: %v and %v", as.Partition, partitions(ga), partitions(gb))
			}
			seen[as.Partition] = true
			if as.Topic != "events" || as.Committed != kafka.FirstOffset {
				t.Errorf("assignment %+v, want events from the first offset", as)
			}
		}
	}
	if len(seen) != 6 {
		t.Errorf("assigned %v and %v, want all six partitions", partitions(ga), partitions(gb))
	}
}

func TestEveryMemberSeesTheWholeGroupWithEachMembersPartitions(t *testing.T) {
	t.Parallel()
	c, cfg := groupOnTopic(t)
	a := join(t, c, cfg, nil)
	a.next(t, 6, 20*time.Second)
	b := join(t, c, cfg, nil)
	ga, gb := shared(t, a, b)
	own := func(gen *broker.Generation) []broker.TopicPartition {
		var tps []broker.TopicPartition
		for _, as := range gen.Assigned {
			tps = append(tps, broker.TopicPartition{Topic: as.Topic, Partition: as.Partition})
		}
		return tps
	}
	for _, gen := range []*broker.Generation{ga, gb} {
		if len(gen.Group) != 2 {
			t.Fatalf("member %s sees the group as %+v, want both members", gen.MemberID, gen.Group)
		}
		for _, m := range gen.Group {
			want := own(ga)
			if m.ID == gb.MemberID {
				want = own(gb)
			} else if m.ID != ga.MemberID {
				t.Errorf("member %s sees a member %q that is neither", gen.MemberID, m.ID)
			}
			if !slices.Equal(m.Assigned, want) {
				t.Errorf("member %s sees %s holding %v, which holds %v", gen.MemberID, m.ID, m.Assigned, want)
			}
			if m.ClientID == "" || m.Host == "" || strings.HasPrefix(m.Host, "/") {
				t.Errorf("member %+v: want its client id and host", m)
			}
		}
	}
}

func TestAMemberThatLeavesHandsItsPartitionsToTheOtherAtOnce(t *testing.T) {
	t.Parallel()
	c, cfg := groupOnTopic(t)
	a := join(t, c, cfg, nil)
	a.next(t, 6, 20*time.Second)
	b := join(t, c, cfg, nil)
	shared(t, a, b)

	start := time.Now()
	b.cancel()
	if err := <-b.done; err != nil {
		t.Fatalf("RunGroup of the member that left: %v", err)
	}
	b.done <- nil // for the cleanup
	left := time.Since(start)
	a.next(t, 6, 10*time.Second)
	took := time.Since(start)
	t.Logf("the leaving member's RunGroup returned in %s; the other member had all partitions %s after the cancel",
		left.Round(10*time.Millisecond), took.Round(10*time.Millisecond))
	// One heartbeat interval (1 s) to learn of the rebalance, then a join:
	// well under the 6 s session timeout.
	if took > 3*time.Second {
		t.Errorf("handover took %s, want it within one heartbeat and a join", took)
	}
}

func TestAKilledMemberHandsItsPartitionsOverWhenItsSessionTimesOut(t *testing.T) {
	t.Parallel()
	c, cfg := groupOnTopic(t)
	a := join(t, c, cfg, nil)
	a.next(t, 6, 20*time.Second)

	child := exec.Command(os.Args[0])
	child.Env = append(os.Environ(), memberEnv+"="+strings.Join(c.Brokers, ",")+" "+cfg.ID+" "+cfg.Topics[0])
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	lines := make(chan string, 100)
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			lines <- s.Text()
		}
	}()
	deadline := time.After(20 * time.Second)
	for half := false; !half; {
		select {
		case l := <-lines:
			f := strings.Fields(l)
			half = len(f) == 3 && len(strings.Split(f[2], ",")) == 3
		case <-deadline:
			t.Fatal("the member process never had half of the partitions")
		}
	}
	a.next(t, 3, 20*time.Second)

	// SIGKILL: the kernel closes its connections; it sends no LeaveGroup.
	start := time.Now()
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	a.next(t, 6, 20*time.Second)
	took := time.Since(start)
	t.Logf("after SIGKILL the other member had all partitions in %s (session timeout %s)", took.Round(10*time.Millisecond), testSessionTimeout)
	// The session timer restarted at the killed member's last heartbeat,
	// at most a heartbeat interval before the kill.
	if took < testSessionTimeout-1500*time.Millisecond || took > testSessionTimeout+4*time.Second {
		t.Errorf("handover after SIGKILL took %s, want about the session timeout %s", took, testSessionTimeout)
	}
}

func TestCommittedOffsetsAreWhereTheNextGenerationStarts(t *testing.T) {
	t.Parallel()
	c, cfg := groupOnTopic(t)
	p := func(n int) broker.TopicPartition { return broker.TopicPartition{Topic: "events", Partition: n} }
	windDown := make(chan error, 1)
	var once sync.Once
	a := join(t, c, cfg, func(ctx context.Context, gen *broker.Generation) error {
		if len(gen.Assigned) == 6 {
			if err := gen.Commit(ctx, map[broker.TopicPartition]int64{p(0): 5, p(3): 7}); err != nil {
				return err
			}
		}
		<-ctx.Done()
		if len(gen.Assigned) == 6 {
			// Stopping for a rebalance: the last commit still lands.
			once.Do(func() {
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				defer cancel()
				windDown <- gen.Commit(cctx, map[broker.TopicPartition]int64{p(4): 9})
			})
		}
		return nil
	})
	a.next(t, 6, 20*time.Second)
	b := join(t, c, cfg, nil)
	ga, gb := shared(t, a, b)
	if err := <-windDown; err != nil {
		t.Fatalf("commit while the generation ended: %v", err)
	}

	want := map[int]int64{0: 5, 3: 7, 4: 9}
	for _, gen := range []*broker.Generation{ga, gb} {
		for _, as := range gen.Assigned {
			w, ok := want[as.Partition]
			if !ok {
				w = kafka.FirstOffset
			}
			if as.Committed != w {
				t.Errorf("partition %d starts from %d, want %d", as.Partition, as.Committed, w)
			}
		}
	}
	other := gb.Assigned[0]
	err := ga.Commit(t.Context(), map[broker.TopicPartition]int64{p(other.Partition): 1})
	if err == nil || !strings.Contains(err.Error(), "not assigned to this member") {
		t.Errorf("committing another member's partition gave %v", err)
	}
}

func TestPreviousNamesThePartitionsHeldInTheGenerationBefore(t *testing.T) {
	t.Parallel()
	c, cfg := groupOnTopic(t)
	a := join(t, c, cfg, nil)
	alone := a.next(t, 6, 20*time.Second)
	if len(alone.Previous) != 0 {
		t.Errorf("a first generation has Previous %v", alone.Previous)
	}
	b := join(t, c, cfg, nil)
	ga, gb := shared(t, a, b)
	if ga.ID != alone.ID+1 {
		t.Fatalf("generations %d then %d: the test expects one rebalance", alone.ID, ga.ID)
	}
	if !maps.Equal(ga.Previous, set(ga)) {
		t.Errorf("the member that held all partitions has Previous %v, want its half %v", ga.Previous, partitions(ga))
	}
	if len(gb.Previous) != 0 {
		t.Errorf("the member that just joined has Previous %v", gb.Previous)
	}

	b.cancel()
	again := a.next(t, 6, 10*time.Second)
	if again.ID != ga.ID+1 {
		t.Fatalf("generations %d then %d: the test expects one rebalance", ga.ID, again.ID)
	}
	if !maps.Equal(again.Previous, set(ga)) {
		t.Errorf("after the other member left, Previous is %v, want the half it held %v", again.Previous, partitions(ga))
	}
}

func set(gen *broker.Generation) map[broker.TopicPartition]bool {
	s := map[broker.TopicPartition]bool{}
	for _, a := range gen.Assigned {
		s[broker.TopicPartition{Topic: a.Topic, Partition: a.Partition}] = true
	}
	return s
}

// holding is the time a handler held a partition, until it had stopped.
type holding struct {
	member     string
	gen        int32
	start, end time.Time
}

func TestAGenerationsWorkEndsBeforeAnyMemberStartsTheNext(t *testing.T) {
	t.Parallel()
	c, cfg := groupOnTopic(t)
	var mu sync.Mutex
	held := map[int][]holding{}
	// The handler keeps "writing" for 300 ms after its context ends, as a
	// sink finishing its in-flight requests would.
	handle := func(name string) func(context.Context, *broker.Generation) error {
		return func(ctx context.Context, gen *broker.Generation) error {
			start := time.Now()
			<-ctx.Done()
			<-time.After(300 * time.Millisecond)
			end := time.Now()
			mu.Lock()
			defer mu.Unlock()
			for _, p := range partitions(gen) {
				held[p] = append(held[p], holding{name, gen.ID, start, end})
			}
			return nil
		}
	}
	a := join(t, c, cfg, handle("a"))
	a.next(t, 6, 20*time.Second)
	b := join(t, c, cfg, handle("b"))
	shared(t, a, b)
	b.cancel()
	a.next(t, 6, 10*time.Second)
	a.cancel()
	<-a.done
	a.done <- nil

	mu.Lock()
	defer mu.Unlock()
	for p, hs := range held {
		slices.SortFunc(hs, func(x, y holding) int { return x.start.Compare(y.start) })
		if len(hs) < 2 {
			t.Errorf("partition %d changed hands %d times, want at least 2", p, len(hs)-1)
		}
		for i := 1; i < len(hs); i++ {
			if hs[i].start.Before(hs[i-1].end) {
				t.Errorf("partition %d: %s started generation %d %s before %s stopped generation %d",
					p, hs[i].member, hs[i].gen, hs[i-1].end.Sub(hs[i].start), hs[i-1].member, hs[i-1].gen)
			}
		}
	}
}

func TestRunGroupLeavesTheGroupAndReturnsTheHandlersError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	for _, tc := range []struct {
		name   string
		handle func(context.Context, *broker.Generation) error
		want   string
	}{
		{"an error", func(context.Context, *broker.Generation) error { return boom }, "boom"},
		{"a return before the generation ended", func(context.Context, *broker.Generation) error { return nil }, "returned before its generation ended"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, cfg := groupOnTopic(t)
			a := join(t, c, cfg, nil)
			a.next(t, 6, 20*time.Second)
			failNow := make(chan struct{})
			bdone := make(chan error, 1)
			go func() {
				bdone <- c.RunGroup(t.Context(), cfg, func(ctx context.Context, gen *broker.Generation) error {
					select {
					case <-failNow:
						return tc.handle(ctx, gen)
					case <-ctx.Done():
						return nil
					}
				})
			}()
			shared := a.next(t, 3, 20*time.Second)
			start := time.Now()
			close(failNow)
			if err := <-bdone; err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("RunGroup returned %v, want %q", err, tc.want)
			}
			a.next(t, 6, 10*time.Second)
			t.Logf("after generation %d's handler failed, the other member had all partitions in %s", shared.ID, time.Since(start).Round(10*time.Millisecond))
		})
	}
}

func TestRunGroupStopsWhenTheBrokerRefusesTheSessionTimeout(t *testing.T) {
	t.Parallel()
	c, cfg := groupOnTopic(t)
	cfg.SessionTimeout = 3 * time.Second
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	err := c.RunGroup(ctx, cfg, func(ctx context.Context, _ *broker.Generation) error {
		t.Error("a generation began")
		<-ctx.Done()
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "refuses a session timeout of 3s") {
		t.Fatalf("RunGroup returned %v", err)
	}
}

func TestRunGroupRefusesAHeartbeatTooCloseToTheSessionTimeout(t *testing.T) {
	err := broker.Plain([]string{"127.0.0.1:1"}).RunGroup(t.Context(), broker.GroupConfig{ID: "g", Topics: []string{"t"}, SessionTimeout: 6 * time.Second, HeartbeatInterval: 3 * time.Second},
		func(context.Context, *broker.Generation) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "at most a third of the session timeout") {
		t.Fatalf("RunGroup returned %v", err)
	}
}

func TestAPartitionReaderRestoresAChangelogPartitionUpToItsEnd(t *testing.T) {
	t.Parallel()
	b := kafkatest.Start(t)
	c := broker.Plain(b.Brokers())
	ctx := t.Context()
	if err := c.EnsureCompactedTopic(ctx, "rows", 3); err != nil {
		t.Fatal(err)
	}
	w := c.NewWriter(10)
	w.Balancer = broker.MessagePartition{}
	defer w.Close()
	for i := range 10 {
		if err := w.WriteMessages(ctx, kafka.Message{Topic: "rows", Partition: 1, Key: fmt.Appendf(nil, "k%d", i%4), Value: fmt.Appendf(nil, "%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	end, err := c.EndOffset(ctx, "rows", 1)
	if err != nil || end != 10 {
		t.Fatalf("end offset %d, %v; want 10", end, err)
	}
	if end, err := c.EndOffset(ctx, "rows", 2); err != nil || end != 0 {
		t.Fatalf("end offset of an empty partition %d, %v; want 0", end, err)
	}

	r := c.PartitionReader("rows", 1, kafka.FirstOffset, nil)
	defer r.Close()
	state := map[string]string{}
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		state[string(m.Key)] = string(m.Value)
		if m.Offset+1 >= end {
			break
		}
	}
	if want := map[string]string{"k0": "8", "k1": "9", "k2": "6", "k3": "7"}; !maps.Equal(state, want) {
		t.Errorf("restored %v, want %v", state, want)
	}

	from := c.PartitionReader("rows", 1, 7, nil)
	defer from.Close()
	if m, err := from.FetchMessage(ctx); err != nil || m.Offset != 7 || string(m.Value) != "7" {
		t.Errorf("reading from offset 7 gave offset %d %q, %v", m.Offset, m.Value, err)
	}
}
