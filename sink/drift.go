package sink

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/reconcile"
	"github.com/onesignal-cdc/onesignal-cdc/retry"
	"github.com/onesignal-cdc/onesignal-cdc/sink/desired"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// Continuous mode (issue 16): every DriftConfig.Period, the sweeper of
// each member reads one export of OneSignal and compares what it holds of
// the targets of the member's partitions of the targets topic with their
// desired states, the ones the target stage keeps in the local store:
// what the sink would send, not what the rows say now (that is
// `onesignal-cdc reconcile`'s). Drift is counted by kind, and with Repair
// each drifted target is sent its desired state again through the
// scheduler (scheduler.repair), as a repair record would have it: its window,
// the rate limit, retries and dead letters, under a limiter of the
// sweep's own that keeps the repairs within Share of the member's part of
// the rate limit.
//
// An export is a picture of some moment during the sweep, so a target
// the sink wrote while the sweep ran, or still has to write, is left out
// of the comparison (Skipped): its picture may predate the write. Only
// mapped tags are compared (reconcile.Compare).
//
// What the export holds of the member's targets waits in the local store
// (heldPrefix) until the desired states are scanned, so memory is bounded
// by the store's cache, not by the number of users. A rebalance ends the
// sweep with its generation; the next generation sweeps again from the
// start.

// DriftConfig is continuous mode's. A zero Period: no sweeps.
type DriftConfig struct {
	// Period is how often a sweep starts, counted from the start of the
	// one before; the first starts once the first generation restored
	// its partitions.
	Period time.Duration
	// Share is the share of this member's part of the rate limit that the
	// repairs take; default 0.05.
	Share float64
	// Repair sends each drifted target its desired state again.
	Repair bool
	// RateLimit is the group's rate limit (onesignal.rate_limit); default
	// the Limiter's, else 900.
	RateLimit float64
	// Users and Players start the users export (user model) and the
	// players export; Players is read in the user model only when the
	// mapping has devices.
	Users, Players func(ctx context.Context) (*onesignal.Export, error)
	// Poll, when not zero, is how each export waits for its file
	// (onesignal.DefaultExportPoll otherwise).
	Poll onesignal.ExportPoll
	// Retry is the schedule between exports refused or broken off
	// (another export running in the account, a download that broke);
	// default retry.ExportStart. The server's Retry-After wins.
	Retry retry.Policy
	// Examples is how many examples of each kind of drift a sweep keeps;
	// default 5.
	Examples int
}

// DriftStats is what continuous mode found.
type DriftStats struct {
	Enabled bool
	Repair  bool
	Sweeps  int64 // sweeps completed
	Failed  int64 // sweeps that failed (an export refused for good, say)
	// Running says a sweep runs now, Progress how far it got (0 to 1: the
	// export is the first half, the comparison the second).
	Running  bool
	Progress float64
	// Started is when the running or last sweep started, Completed when
	// the last completed.
	Started, Completed time.Time
	// Detected and Repaired count drift by kind over every sweep: found,
	// and sent the desired state again.
	Detected, Repaired map[reconcile.Kind]int64
	// Last is the last completed sweep's report.
	Last *SweepReport
	// LastError is why the last sweep failed; "" when it did not.
	LastError string
	// Budget is the repairs' rate now, in targets per second.
	Budget float64
}

// SweepReport is one sweep's outcome.
type SweepReport struct {
	Started, Completed time.Time
	Users, Devices     int // compared
	// Skipped counts targets the sink was writing, or wrote, while the
	// sweep ran: the export may predate the write.
	Skipped int
	Records int // export records read of this member's targets
	Counts  map[reconcile.Kind]int
	// Examples are the first few drifts of each kind.
	Examples []reconcile.Drift
	// Ignored counts, by tag, the targets carrying a tag the mapping does
	// not name (at most maxIgnoredTags tags; the rest under "…").
	Ignored  map[string]int
	Repaired int // targets sent their desired state again
}

// maxIgnoredTags bounds the distinct tags a report names as ignored.
const maxIgnoredTags = 100

// sweeper runs the sweeps of one sink process.
type sweeper struct {
	s       *Sink
	cfg     DriftConfig
	limiter *Limiter
	now     chan struct{} // SweepNow

	mu    sync.Mutex
	stats DriftStats
}

func newSweeper(s *Sink, cfg DriftConfig) *sweeper {
	if cfg.Share <= 0 {
		cfg.Share = 0.05
	}
	if cfg.RateLimit <= 0 {
		cfg.RateLimit = 900
		if s.cfg.Limiter != nil {
			_, cfg.RateLimit = s.cfg.Limiter.Share()
		}
	}
	if cfg.Retry == (retry.Policy{}) {
		cfg.Retry = retry.ExportStart
	}
	if cfg.Examples <= 0 {
		cfg.Examples = 5
	}
	return &sweeper{s: s, cfg: cfg, limiter: NewLimiter(s.cfg.Clock, cfg.RateLimit*cfg.Share), now: make(chan struct{}, 1),
		stats: DriftStats{Enabled: true, Repair: cfg.Repair, Detected: map[reconcile.Kind]int64{}, Repaired: map[reconcile.Kind]int64{}}}
}

// SweepNow starts a sweep at once, or once the running one ended, when
// continuous mode is on.
func (s *Sink) SweepNow() {
	if s.sweeper == nil {
		return
	}
	select {
	case s.sweeper.now <- struct{}{}:
	default:
	}
}

// Run sweeps every Period until ctx ends; it always returns nil once ctx
// ended: a failed sweep is logged, counted and tried again next period.
func (w *sweeper) Run(ctx context.Context) error {
	var next time.Time // the first sweep: as soon as a generation is ready
	for {
		if wait := next.Sub(w.s.cfg.Clock.Now()); !next.IsZero() && wait > 0 {
			t := w.s.cfg.Clock.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-w.now:
			case <-t.C():
			}
			t.Stop()
		}
		g, err := w.s.waitGeneration(ctx)
		if err != nil {
			return nil
		}
		started := w.s.cfg.Clock.Now()
		rep, err := w.sweep(g)
		switch {
		case ctx.Err() != nil:
			w.finish(nil, nil)
			return nil
		case g.ctx.Err() != nil:
			// A rebalance: this member's partitions changed. Sweep the
			// new ones from the start.
			w.finish(nil, nil)
			w.s.log.Info("drift sweep abandoned: the group rebalanced; sweeping the new partitions")
			continue
		case err != nil:
			w.finish(nil, err)
			w.s.log.Warn("drift sweep failed; trying again next period", zap.Error(err), zap.Duration("period", w.cfg.Period))
		default:
			w.finish(rep, nil)
			w.s.log.Info("drift sweep completed", zap.Int("users", rep.Users), zap.Int("devices", rep.Devices),
				zap.Int("skipped", rep.Skipped), zap.Any("drift", rep.Counts), zap.Int("repaired", rep.Repaired),
				zap.Duration("took", rep.Completed.Sub(rep.Started)))
		}
		next = started.Add(w.cfg.Period)
	}
}

// finish records a sweep's end: rep when it completed, err when it
// failed, neither when it was abandoned.
func (w *sweeper) finish(rep *SweepReport, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stats.Running = false
	switch {
	case rep != nil:
		w.stats.Sweeps++
		w.stats.Progress = 1
		w.stats.Completed = rep.Completed
		w.stats.Last = rep
		w.stats.LastError = ""
	case err != nil:
		w.stats.Failed++
		w.stats.LastError = err.Error()
	}
}

func (w *sweeper) progress(p float64) {
	w.mu.Lock()
	w.stats.Progress = min(max(p, 0), 1)
	w.mu.Unlock()
}

// Stats returns what the sweeps found so far.
func (w *sweeper) Stats() DriftStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.stats
	st.Detected, st.Repaired = maps.Clone(st.Detected), maps.Clone(st.Repaired)
	st.Budget = w.limiter.currentRate()
	return st
}

// waitGeneration returns the generation running, waiting for one; an
// error when ctx ended first.
func (s *Sink) waitGeneration(ctx context.Context) (*generation, error) {
	for {
		s.gen.Lock()
		g, changed := s.gen.generation, s.gen.changed
		s.gen.Unlock()
		if g != nil && g.ctx.Err() == nil {
			return g, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-changed:
		}
	}
}

// setGeneration makes g the generation running (nil: none), waking
// waitGeneration.
func (s *Sink) setGeneration(g *generation) {
	s.gen.Lock()
	defer s.gen.Unlock()
	s.gen.generation = g
	close(s.gen.changed)
	s.gen.changed = make(chan struct{})
}

// sweep is one sweep of g's partitions of the targets topic. It returns
// early, with the generation's error, when g ends.
func (w *sweeper) sweep(g *generation) (*SweepReport, error) {
	s := w.s
	ctx := g.ctx
	select {
	case <-g.restored:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	w.limiter.SetShare(g.share)
	rep := &SweepReport{Started: s.cfg.Clock.Now(), Counts: map[reconcile.Kind]int{}, Ignored: map[string]int{}}
	w.mu.Lock()
	w.stats.Running, w.stats.Progress, w.stats.Started = true, 0, rep.Started
	w.mu.Unlock()

	var partitions []int
	for _, a := range g.gen.Assigned {
		if a.Topic == s.cfg.TargetsTopic {
			partitions = append(partitions, a.Partition)
		}
	}
	slices.Sort(partitions)
	if len(partitions) == 0 {
		// More members than partitions: nothing of this member's to
		// compare, so no export either.
		rep.Completed = s.cfg.Clock.Now()
		return rep, nil
	}
	mine := w.ownership(g, partitions)

	// The sink's writes from now on may be newer than the export.
	g.sched.watchWrites(true)
	defer g.sched.watchWrites(false)
	if err := s.cfg.Store.DeletePrefix(heldPrefix); err != nil {
		return nil, err
	}
	defer s.cfg.Store.DeletePrefix(heldPrefix) //nolint:errcheck // a cache; the next sweep deletes it again

	wanted, err := w.countTargets(partitions)
	if err != nil {
		return nil, err
	}
	// The export holds every target of the app; this member's share of
	// them is about its share of the partitions.
	expected := float64(wanted) / max(g.share, 1e-9)
	if err := w.readExports(ctx, mine, expected, rep); err != nil {
		return nil, err
	}
	if err := w.compare(ctx, g, partitions, wanted, rep); err != nil {
		return nil, err
	}
	rep.Completed = s.cfg.Clock.Now()
	return rep, nil
}

// ownership returns whether a target is one of this member's: its record
// goes to one of partitions (every target when the partition count is
// not known).
func (w *sweeper) ownership(g *generation, partitions []int) func(transform.Target) bool {
	n := g.gen.Partitions[w.s.cfg.TargetsTopic]
	if n <= 0 {
		return func(transform.Target) bool { return true }
	}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	held := map[int]bool{}
	for _, p := range partitions {
		held[p] = true
	}
	return func(t transform.Target) bool {
		return held[broker.KeyPrefixBalancer{}.Balance(kafka.Message{Key: []byte(t.Key())}, all...)]
	}
}

// countTargets counts the users and devices whose desired state the
// partitions hold, for the progress.
func (w *sweeper) countTargets(partitions []int) (int, error) {
	n := 0
	for _, p := range partitions {
		err := w.s.cfg.Store.Scan(statePrefix(p), func(k, _ []byte) (bool, error) {
			if t, ok := transform.ParseTarget(string(k[len(statePrefix(p)):])); ok && sweptTarget(t) {
				n++
			}
			return true, nil
		})
		if err != nil {
			return 0, err
		}
	}
	return n, nil
}

// sweptTarget says whether the sweep compares t: users and devices, not
// the targets that send nothing themselves.
func sweptTarget(t transform.Target) bool { return !t.Row && !t.Held && !t.Record }

// held is what an export holds of a user or device.
type held struct {
	ExternalID string            `json:"e,omitempty"`
	Tags       map[string]string `json:"t,omitempty"`
}

// The local store's keys of what the export holds: heldPrefix, then 'u'
// and a user's external id (user model), 'v' and a device id, or, in the
// player model, 'm', the length of the device's external id, the id and
// the device id (the tags a user's device carries).
var heldPrefix = []byte{'d', 0}

func heldKey(kind byte, id string) []byte {
	return append(append(append([]byte(nil), heldPrefix...), kind), id...)
}

func heldMemberKey(ext, device string) []byte {
	b := append(append([]byte(nil), heldPrefix...), 'm')
	b = binary.AppendUvarint(b, uint64(len(ext)))
	return append(append(b, ext...), device...)
}

// readExports reads the model's exports into the local store, keeping
// the records of this member's targets.
func (w *sweeper) readExports(ctx context.Context, mine func(transform.Target) bool, expected float64, rep *SweepReport) error {
	s := w.s
	player := s.cfg.Model == ModelPlayer
	batch := s.cfg.Store.NewBatch()
	read := 0
	put := func(key []byte, h held) error {
		b, err := json.Marshal(h)
		if err != nil {
			return err
		}
		batch.Set(key, b)
		rep.Records++
		if batch.Len() >= 1000 {
			return batch.Commit()
		}
		return nil
	}
	seen := func() {
		read++
		if read%1000 == 0 {
			w.progress(0.5 * min(1, float64(read)/max(expected, 1)))
		}
	}
	var runs []func() error
	if !player && w.cfg.Users != nil {
		runs = append(runs, func() error {
			return w.export(ctx, "users", w.cfg.Users, func(r onesignal.ExportRecord) error {
				seen()
				if r.ExternalID == "" || !mine(transform.User(r.ExternalID)) {
					return nil
				}
				return put(heldKey('u', r.ExternalID), held{Tags: r.Tags})
			})
		})
	}
	if (player || s.devices) && w.cfg.Players != nil {
		runs = append(runs, func() error {
			return w.export(ctx, "players", w.cfg.Players, func(r onesignal.ExportRecord) error {
				seen()
				h := held{ExternalID: r.ExternalID}
				if player {
					h.Tags = r.Tags
					if r.ExternalID != "" && mine(transform.User(r.ExternalID)) {
						if err := put(heldMemberKey(r.ExternalID, r.ID), h); err != nil {
							return err
						}
					}
				}
				if r.ID == "" || !mine(transform.Device(r.ID)) {
					return nil
				}
				return put(heldKey('v', r.ID), h)
			})
		})
	}
	for _, run := range runs {
		if err := run(); err != nil {
			return err
		}
	}
	if err := batch.Commit(); err != nil {
		return fmt.Errorf("keep the export's records: %w", err)
	}
	w.progress(0.5)
	return nil
}

// export starts one export and reads it through, starting again after a
// refusal worth repeating (another export of the account running: a 429
// with its Retry-After) or a download that broke off.
func (w *sweeper) export(ctx context.Context, what string, start func(context.Context) (*onesignal.Export, error), fn func(onesignal.ExportRecord) error) error {
	var failed error // fn's own: the store's
	err := w.cfg.Retry.Do(ctx, func() error {
		x, err := start(ctx)
		if err != nil {
			return fmt.Errorf("start the %s export: %w", what, err)
		}
		if w.cfg.Poll != (onesignal.ExportPoll{}) {
			x.Poll = w.cfg.Poll
		}
		err = x.Records(ctx, func(r onesignal.ExportRecord) error {
			if err := fn(r); err != nil {
				failed = err
				return err
			}
			return nil
		})
		if err != nil && failed == nil {
			return fmt.Errorf("read the %s export: %w", what, err)
		}
		return err
	}, func(err error, wait time.Duration) {
		w.s.log.Info("drift sweep: export not available yet; asking again", zap.String("export", what), zap.Error(err), zap.Duration("wait", wait))
	})
	if failed != nil {
		return fmt.Errorf("keep the %s export's records: %w", what, failed)
	}
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// compare scans the desired states of partitions and compares each user
// and device with what the export held, repairing the drifted ones when
// configured.
func (w *sweeper) compare(ctx context.Context, g *generation, partitions []int, wanted int, rep *SweepReport) error {
	s := w.s
	player := s.cfg.Model == ModelPlayer
	per := map[reconcile.Kind]int{}
	scanned := 0
	for _, p := range partitions {
		prefix := statePrefix(p)
		err := s.cfg.Store.Scan(prefix, func(k, v []byte) (bool, error) {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			t, ok := transform.ParseTarget(string(k[len(prefix):]))
			if !ok || !sweptTarget(t) {
				return true, nil
			}
			scanned++
			if scanned%1000 == 0 {
				w.progress(0.5 + 0.5*float64(scanned)/max(float64(wanted), 1))
			}
			st, err := desired.DecodeState(v)
			if err != nil {
				return false, fmt.Errorf("read the state of %s: %w", t, err)
			}
			if len(st.Contributions) == 0 {
				return true, nil // no row gave it a desired state
			}
			if g.sched.writing(t) {
				rep.Skipped++
				return true, nil
			}
			r, err := w.compareOne(t, st, player, g.sched.writing)
			if err != nil {
				return false, err
			}
			if t.Device {
				rep.Devices++
			} else {
				rep.Users++
			}
			for tag, n := range r.Ignored {
				if _, known := rep.Ignored[tag]; !known && len(rep.Ignored) >= maxIgnoredTags {
					tag = "…"
				}
				rep.Ignored[tag] += n
			}
			if len(r.Drift) == 0 {
				return true, nil
			}
			w.mu.Lock()
			for _, d := range r.Drift {
				rep.Counts[d.Kind]++
				w.stats.Detected[d.Kind]++
				if per[d.Kind] < w.cfg.Examples {
					per[d.Kind]++
					rep.Examples = append(rep.Examples, d)
				}
			}
			w.mu.Unlock()
			if !w.cfg.Repair {
				return true, nil
			}
			if err := w.limiter.Wait(ctx); err != nil {
				return false, err
			}
			g.sched.repair(t, p, true)
			rep.Repaired++
			w.mu.Lock()
			for _, d := range r.Drift {
				w.stats.Repaired[d.Kind]++
			}
			w.mu.Unlock()
			return true, nil
		})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("compare partition %d: %w", p, err)
		}
	}
	slices.SortFunc(rep.Examples, func(a, b reconcile.Drift) int {
		switch {
		case a.Kind != b.Kind:
			return compareStrings(string(a.Kind), string(b.Kind))
		case a.ExternalID != b.ExternalID:
			return compareStrings(a.ExternalID, b.ExternalID)
		}
		return compareStrings(a.DeviceID+"\x00"+a.Tag, b.DeviceID+"\x00"+b.Tag)
	})
	return nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// compareOne compares one target's desired state with what the export
// held of it; writing says which devices the sink is writing (player
// model: left out of their owner's comparison).
func (w *sweeper) compareOne(t transform.Target, st *desired.State, player bool, writing func(transform.Target) bool) (reconcile.Report, error) {
	s := w.s
	want := reconcile.Want{Users: map[string]desired.User{}, Devices: map[string]desired.Device{}}
	have := reconcile.Have{Users: map[string]reconcile.User{}, Devices: map[string]reconcile.Device{}, PlayerModel: player}
	get := func(key []byte) (held, bool, error) {
		b, ok, err := s.cfg.Store.Get(key)
		if err != nil || !ok {
			return held{}, false, err
		}
		var h held
		if err := json.Unmarshal(b, &h); err != nil {
			return held{}, false, fmt.Errorf("read what the export held: %w", err)
		}
		return h, true, nil
	}
	switch {
	case t.Device:
		d := st.Device()
		want.Devices[t.ID] = d
		h, ok, err := get(heldKey('v', t.ID))
		if err != nil {
			return reconcile.Report{}, err
		}
		if ok {
			have.Devices[t.ID] = reconcile.Device{ExternalID: h.ExternalID, Tags: h.Tags}
		}
		// Player model: a linked device's tags are its owner's, compared
		// by the member that holds the owner; an unlinked one is to carry
		// none, compared here.
		have.PlayerModel = player && d.Owner == ""
	case player:
		// The tags on the devices that are the user's both in the desired
		// state and in OneSignal; a device elsewhere is its own drift.
		u := st.User()
		want.Users[t.ID] = u
		for _, dev := range st.Devices() {
			if writing(transform.Device(dev)) {
				continue // linked just now: the export may show it before
			}
			h, ok, err := get(heldMemberKey(t.ID, dev))
			if err != nil {
				return reconcile.Report{}, err
			}
			if ok {
				want.Devices[dev] = desired.Device{Owner: t.ID}
				have.Devices[dev] = reconcile.Device{ExternalID: t.ID, Tags: h.Tags}
			}
		}
	default:
		want.Users[t.ID] = st.User()
		h, ok, err := get(heldKey('u', t.ID))
		if err != nil {
			return reconcile.Report{}, err
		}
		if ok {
			have.Users[t.ID] = reconcile.User{Tags: h.Tags}
		}
	}
	return reconcile.Compare(want, have, s.mapping.NamesTag), nil
}

// watchWrites starts (on) or stops noting the targets OneSignal accepts a
// request for, for writing.
func (s *scheduler) watchWrites(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.written = nil
	if on {
		s.written = map[uint64]struct{}{}
	}
}

// noteWritten notes that OneSignal accepted a request for t while a sweep
// watches. The caller holds mu.
func (s *scheduler) noteWritten(t transform.Target) {
	if s.written != nil {
		s.written[targetHash(t)] = struct{}{}
	}
}

// writing says whether the sink has t in hand (messages not done, a
// request queued or in flight) or OneSignal accepted a request for it
// since watchWrites: what an export shows of it may be older.
func (s *scheduler) writing(t transform.Target) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, active := s.active[t]; active {
		return true
	}
	_, written := s.written[targetHash(t)]
	return written
}

// targetHash is t's key hashed: a sweep notes the targets written as
// 8 bytes each (a collision only leaves a target out of one sweep).
func targetHash(t transform.Target) uint64 {
	h := fnv.New64a()
	h.Write([]byte(t.Key()))
	return h.Sum64()
}
