package sink

import (
	"sync/atomic"
	"time"
)

// Stats counts what the sink did since New. The fields are meant to
// become metrics.
type Stats struct {
	Fetched      int64 // messages fetched
	Done         int64 // messages done (applied, skipped or dead-lettered)
	Changes      int64 // operations the messages produced, once scheduled
	Replays      int64 // messages skipped as replayed or stale
	Requests     int64 // request attempts sent to OneSignal, retries included
	Retries      int64 // attempts that failed for now and were queued again
	Parked       int64 // tag changes kept for a device linked later (player model)
	Unchanged    int64 // merged requests not sent: same effect as the last applied
	DeadLettered int64 // messages written to the dead-letter topic
	// RateLimitWaits is how many attempts waited for the app-wide rate
	// limiter, and RateLimitWaited their total wait.
	RateLimitWaits  int64
	RateLimitWaited time.Duration
	SlowDowns       int64   // 429s that lowered the rate
	Rate            float64 // the rate limit now, in requests/s
}

type counters struct {
	fetched, done, changes, replays, requests, retries, parked, unchanged, deadLettered atomic.Int64
}

// Stats returns the counts so far. Fetched is read before Done, so
// Fetched−Done never overstates how many messages were in flight.
func (s *Sink) Stats() Stats {
	st := Stats{Fetched: s.stats.fetched.Load()}
	st.Done = s.stats.done.Load()
	st.Changes = s.stats.changes.Load()
	st.Replays = s.stats.replays.Load()
	st.Requests = s.stats.requests.Load()
	st.Retries = s.stats.retries.Load()
	st.Parked = s.stats.parked.Load()
	st.Unchanged = s.stats.unchanged.Load()
	st.DeadLettered = s.stats.deadLettered.Load()
	st.RateLimitWaits = s.limiter.waits.Load()
	st.RateLimitWaited = time.Duration(s.limiter.waited.Load())
	st.SlowDowns = s.limiter.slowDowns.Load()
	st.Rate = s.limiter.currentRate()
	return st
}
