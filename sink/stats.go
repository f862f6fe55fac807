package sink

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
)

// Stats counts what the sink did since New. The fields are meant to
// become metrics.
type Stats struct {
	Fetched       int64 // messages fetched (events and targets records)
	Done          int64 // messages done (applied, skipped or dead-lettered)
	Contributions int64 // contributions the row stage wrote to the targets topic
	Replays       int64 // events skipped as replayed or stale
	Unmapped      int64 // events that changed no mapped column
	// Unread counts deletes of rows that the initial snapshot running then
	// did not read (event.HeaderSnapshotting): nothing to do.
	Unread       int64
	Requests     int64 // request attempts sent to OneSignal, retries included
	Retries      int64 // attempts that failed for now and were queued again
	NoDevice     int64 // tag writes by external id that no device carried yet (player model)
	Stale        int64 // targets records older than the state, healed
	DeadLettered int64 // messages written to the dead-letter topic
	// Resumed counts targets whose backoff was cut short because an
	// outage of OneSignal ended.
	Resumed int64
	// Repairs counts repair records (onesignal-cdc reconcile --repair)
	// taken in, and RepairsUnknown those of targets the sink holds no
	// desired state for: nothing to send (re-snapshot their rows).
	Repairs, RepairsUnknown int64
	// RateLimitWaits is how many HTTP requests waited for the app-wide rate
	// limiter, and RateLimitWaited their total wait.
	RateLimitWaits  int64
	RateLimitWaited time.Duration
	SlowDowns       int64   // 429s that lowered the rate
	Rate            float64 // this member's rate limit now, in requests/s
	// RateShare is this member's share of the app-wide limit
	// (RateShare), and RateLimit that limit, onesignal.rate_limit.
	RateShare, RateLimit float64

	// The running generation of the group, zero between generations:
	// its number, how many members the group has (0: not known) and how
	// many partitions of each topic this member holds.
	Generation int32
	Members    int
	Assigned   map[string]int
	// Group is every member of the generation with its partitions and
	// its share of the rate limit, this one included; nil when the
	// coordinator's description of the group is not known.
	Group []GroupMember
	// Drift is continuous mode's (drift.go); Enabled false when it is
	// off.
	Drift DriftStats
}

// GroupMember is a member of the running generation, as this one sees it.
type GroupMember struct {
	ID       string
	ClientID string // kafka-go's names the program and the host (the pod)
	Host     string // the address it connects from
	This     bool   // this member
	// Assigned holds its partitions by topic, in order.
	Assigned map[string][]int
	Share    float64 // of onesignal.rate_limit (RateShare)
}

type counters struct {
	fetched, done, contributions, replays, unmapped, unread, requests, retries, noDevice, stale, deadLettered, resumed, repairs, repairsUnknown atomic.Int64
}

// Stats returns the counts so far. Fetched is read before Done, so
// Fetched−Done never overstates how many messages were in flight.
func (s *Sink) Stats() Stats {
	st := Stats{Fetched: s.stats.fetched.Load()}
	st.Done = s.stats.done.Load()
	st.Contributions = s.stats.contributions.Load()
	st.Replays = s.stats.replays.Load()
	st.Unread = s.stats.unread.Load()
	st.Unmapped = s.stats.unmapped.Load()
	st.Requests = s.stats.requests.Load()
	st.Retries = s.stats.retries.Load()
	st.NoDevice = s.stats.noDevice.Load()
	st.Stale = s.stats.stale.Load()
	st.DeadLettered = s.stats.deadLettered.Load()
	st.Resumed = s.stats.resumed.Load()
	st.Repairs = s.stats.repairs.Load()
	st.RepairsUnknown = s.stats.repairsUnknown.Load()
	if l := s.cfg.Limiter; l != nil {
		st.RateLimitWaits = l.waits.Load()
		st.RateLimitWaited = time.Duration(l.waited.Load())
		st.SlowDowns = l.slowDowns.Load()
		st.Rate = l.currentRate()
		st.RateShare, st.RateLimit = l.Share()
	}
	if s.sweeper != nil {
		st.Drift = s.sweeper.Stats()
	}
	s.gen.Lock()
	if g := s.gen.generation; g != nil {
		st.Generation, st.Members = g.gen.ID, g.gen.Members
		st.Assigned = make(map[string]int)
		for _, a := range g.gen.Assigned {
			st.Assigned[a.Topic]++
		}
		st.Group = groupMembers(g.gen, s.cfg.TargetsTopic)
	}
	s.gen.Unlock()
	return st
}

// groupMembers lists gen's members with their partitions and shares.
func groupMembers(gen *Generation, targetsTopic string) []GroupMember {
	if len(gen.Group) == 0 {
		return nil
	}
	out := make([]GroupMember, 0, len(gen.Group))
	for _, m := range gen.Group {
		gm := GroupMember{ID: m.ID, ClientID: m.ClientID, Host: m.Host, This: m.ID == gen.MemberID, Assigned: map[string][]int{}}
		held := 0
		for _, p := range m.Assigned {
			gm.Assigned[p.Topic] = append(gm.Assigned[p.Topic], p.Partition)
			if p.Topic == targetsTopic {
				held++
			}
		}
		for _, ps := range gm.Assigned {
			slices.Sort(ps)
		}
		gm.Share = shareOf(held, gen, targetsTopic)
		out = append(out, gm)
	}
	return out
}

// readers are the partition readers of the running generation, for
// ReaderStats.
type readers struct{ m sync.Map } // PartitionReader → struct{}

func (r *readers) add(pr PartitionReader)    { r.m.Store(pr, struct{}{}) }
func (r *readers) remove(pr PartitionReader) { r.m.Delete(pr) }

// ReaderStats reports the sink's fetching as one kafka-go reader reports
// its own, for the ops monitor: the sums of its partition readers' stats
// since the last call (kafka-go resets them at each call), their lag
// behind the partitions' high watermarks included.
func (s *Sink) ReaderStats() kafka.ReaderStats {
	var st kafka.ReaderStats
	s.readers.m.Range(func(k, _ any) bool {
		r, ok := k.(interface{ Stats() kafka.ReaderStats })
		if !ok {
			return true
		}
		rs := r.Stats()
		st.Fetches += rs.Fetches
		st.Messages += rs.Messages
		st.Errors += rs.Errors
		st.Lag += rs.Lag
		return true
	})
	return st
}
