package ops

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/onesignal-cdc/onesignal-cdc/sink"
)

// Status is what the status page shows, and /status.json serves.
type Status struct {
	Version   string    `json:"version"`
	GoVersion string    `json:"go_version"`
	Started   time.Time `json:"started"`
	Now       time.Time `json:"now"`
	Ready     bool      `json:"ready"`
	// Degraded: ready, but a component is held back (Components say
	// which, and why).
	Degraded bool `json:"degraded"`
	// Pipeline is the picture: PostgreSQL, connector, Kafka, sink,
	// OneSignal, each with a state.
	Pipeline   []Stage           `json:"pipeline"`
	Components []ComponentStatus `json:"components"`
	Connector  *ConnectorView    `json:"connector,omitempty"` // nil: not run by this process
	Sink       *SinkView         `json:"sink,omitempty"`      // nil: not run by this process
	Errors     []ErrorEvent      `json:"last_errors"`         // every component's, newest first
	Mapping    []MappingRow      `json:"mapping"`
}

// Stage states, which colour the pipeline's boxes.
const (
	StageUp      = "up"
	StageWarn    = "warn"    // working, but held back (OneSignal answered 429)
	StageDown    = "down"    // failing
	StageUnknown = "unknown" // nothing known yet
	StageOff     = "off"     // not watched by this process
)

// Stage is one box of the pipeline picture.
type Stage struct {
	Name  string `json:"name"`
	State string `json:"state"` // one of the Stage* constants
	Note  string `json:"note"`  // a few words under the name
}

// ConnectorView is the connector's figures.
type ConnectorView struct {
	Slot             string   `json:"slot"`
	SlotActive       bool     `json:"slot_active"`
	SlotWALStatus    string   `json:"slot_wal_status,omitempty"`
	SlotLagBytes     *int64   `json:"slot_lag_bytes"`       // nil: unknown
	RetainedWALBytes *int64   `json:"retained_wal_bytes"`   // nil: unknown
	SlotError        string   `json:"slot_error,omitempty"` // why the slot could not be read
	SourceLagSeconds *float64 `json:"source_lag_seconds"`   // nil: unknown
	// Idle: caught up, with no event in the last minute; the source lag
	// is then the age of the last heartbeat (the server's keepalive that
	// found nothing in flight), not a delay.
	Idle                bool     `json:"idle"`
	HeartbeatAgeSeconds *float64 `json:"heartbeat_age_seconds,omitempty"` // set when Idle
	ConfirmedLSN        string   `json:"confirmed_lsn,omitempty"`         // as Postgres writes LSNs
	EventsPerSecond     float64  `json:"events_per_second"`               // over the last minute
	Events              float64  `json:"events"`                          // since start
}

// SinkView is the sink's figures.
type SinkView struct {
	RequestsPerSecond float64 `json:"requests_per_second"` // over the last minute
	Requests          float64 `json:"requests"`
	Applied           float64 `json:"applied"`
	Skipped           float64 `json:"skipped"`
	DeadLettered      float64 `json:"dead_lettered"`
	Retries           float64 `json:"retries"`
	InFlight          float64 `json:"in_flight"`
	// ConsumerLag is the committed-offset lag of the partitions this
	// member holds, summed; Partitions has each.
	ConsumerLag *float64         `json:"consumer_lag"`
	Partitions  []PartitionState `json:"partitions"`
	// The consumer group as this member sees it: its generation, how many
	// members it has (0: not known), and this member's share of
	// onesignal.rate_limit (GroupRateLimit).
	Generation     int32   `json:"generation"`
	Members        int     `json:"members"`
	RateShare      float64 `json:"rate_share"`
	GroupRateLimit float64 `json:"group_rate_limit"`
	RateLimit      float64 `json:"rate_limit"` // this member's requests/s now
	// Group is every member of the generation with its partitions and its
	// share of the rate limit, as the coordinator described the group
	// when the generation began; empty when that is not known. The lag
	// of another member's partitions is on that member's page and
	// metrics.
	Group []GroupMember `json:"group"`
	// RateLimitNote says why the rate is what it is: onesignal.rate_limit,
	// or lowered after OneSignal's 429s (RateLimitSlowDowns of them).
	RateLimitNote      string  `json:"rate_limit_note"`
	RateLimitSlowDowns float64 `json:"rate_limit_slow_downs"`
	LastAPIStatus      string  `json:"last_api_status,omitempty"`
	// OneSignalUnreachable is set once OneSignal has failed every request
	// for the threshold (one minute): since when, and the last error.
	OneSignalUnreachable *OneSignalOutage `json:"onesignal_unreachable,omitempty"`
	// LastDeadLetters are the last dead letters, newest first, with why.
	LastDeadLetters []DeadLetterEvent `json:"last_dead_letters"`
	// Drift is continuous mode's (sink.drift); nil when it is off.
	Drift *DriftView `json:"drift,omitempty"`
}

// DriftView is what continuous mode's sweeps found.
type DriftView struct {
	Repair bool `json:"repair"` // sink.drift.repair
	// RepairRate is the most repairs a second this member sends:
	// sink.drift.share of its part of onesignal.rate_limit.
	RepairRate float64 `json:"repair_rate"`
	Running    bool    `json:"running"` // a sweep runs now
	Progress   float64 `json:"progress"`
	// Sweeps and Failed count the sweeps completed and failed.
	Sweeps int64 `json:"sweeps"`
	Failed int64 `json:"failed"`
	// LastCompleted is when the last sweep completed, LastStarted when it
	// started (nil before the first); LastError why the last one failed.
	LastStarted   *time.Time `json:"last_started,omitempty"`
	LastCompleted *time.Time `json:"last_completed,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	// The last completed sweep: the users and devices it compared, those
	// it left out because the sink was writing them, its drift by kind,
	// examples, the targets it repaired, and the tags it ignored (the
	// mapping does not name them) with how many targets carry each.
	Users       int            `json:"users"`
	Devices     int            `json:"devices"`
	Skipped     int            `json:"skipped"`
	Counts      map[string]int `json:"counts"`
	Examples    []DriftExample `json:"examples"`
	Repaired    int            `json:"repaired"`
	IgnoredTags map[string]int `json:"ignored_tags"`
	// DetectedTotal and RepairedTotal count by kind over every sweep.
	DetectedTotal map[string]int64 `json:"detected_total"`
	RepairedTotal map[string]int64 `json:"repaired_total"`
}

// DriftExample is one difference a sweep found.
type DriftExample struct {
	Kind       string `json:"kind"`
	ExternalID string `json:"external_id,omitempty"`
	DeviceID   string `json:"device_id,omitempty"`
	Tag        string `json:"tag,omitempty"`
	Want       string `json:"want,omitempty"`
	Have       string `json:"have,omitempty"`
}

// keepDriftExamples is how many examples the status page shows.
const keepDriftExamples = 20

func (m *SinkMonitor) driftView(d sink.DriftStats) *DriftView {
	if !d.Enabled {
		return nil
	}
	v := &DriftView{Repair: d.Repair, RepairRate: d.Budget, Running: d.Running, Progress: d.Progress, Sweeps: d.Sweeps, Failed: d.Failed,
		LastError: m.s.redact.clean(d.LastError), Counts: map[string]int{}, Examples: []DriftExample{}, IgnoredTags: map[string]int{},
		DetectedTotal: map[string]int64{}, RepairedTotal: map[string]int64{}}
	for k, n := range d.Detected {
		v.DetectedTotal[string(k)] = n
	}
	for k, n := range d.Repaired {
		v.RepairedTotal[string(k)] = n
	}
	if r := d.Last; r != nil {
		started, completed := r.Started, r.Completed
		v.LastStarted, v.LastCompleted = &started, &completed
		v.Users, v.Devices, v.Skipped, v.Repaired = r.Users, r.Devices, r.Skipped, r.Repaired
		for k, n := range r.Counts {
			v.Counts[string(k)] = n
		}
		for _, x := range r.Examples[:min(len(r.Examples), keepDriftExamples)] {
			v.Examples = append(v.Examples, DriftExample{Kind: string(x.Kind), ExternalID: x.ExternalID, DeviceID: x.DeviceID, Tag: x.Tag,
				Want: m.s.redact.clean(x.Want), Have: m.s.redact.clean(x.Have)})
		}
		maps.Copy(v.IgnoredTags, r.Ignored)
	}
	return v
}

// GroupMember is a member of the sink's consumer group.
type GroupMember struct {
	ID string `json:"id"` // the coordinator's name for it
	// Name is the host in its Kafka client id (the pod's name on
	// Kubernetes), or the client id when it names none.
	Name       string            `json:"name"`
	Host       string            `json:"host"` // the address it connects from
	This       bool              `json:"this"` // the member this page is served by
	Partitions []TopicPartitions `json:"partitions"`
	RateShare  float64           `json:"rate_share"`
}

// TopicPartitions are partitions of one topic.
type TopicPartitions struct {
	Topic      string `json:"topic"`
	Partitions []int  `json:"partitions"`
}

// memberName is the host in a kafka-go client id,
// "program@host (github.com/segmentio/kafka-go)", or the id itself.
func memberName(clientID string) string {
	_, rest, ok := strings.Cut(clientID, "@")
	if !ok {
		return clientID
	}
	host, _, _ := strings.Cut(rest, " ")
	if host == "" {
		return clientID
	}
	return host
}

// PartitionState is a partition this member holds, with the group's
// committed offset and its lag behind the partition's end.
type PartitionState struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	Committed int64  `json:"committed"` // -2: none committed
	End       int64  `json:"end"`
	Lag       int64  `json:"lag"`
}

// MappingRow is one mapped table: where its changes go and what they
// become in OneSignal.
type MappingRow struct {
	Table string   `json:"table"`
	Topic string   `json:"topic"`
	Role  string   `json:"role"` // "users" or "devices"
	Maps  []string `json:"maps"` // "external_id ← external_id", "tag level ← score", "email record ← email", …
}

// Status gathers the status now.
func (s *Server) Status() Status {
	s.refreshDegraded()
	now := time.Now()
	st := Status{Version: s.cfg.Version, GoVersion: runtime.Version(), Started: s.started, Now: now, Ready: true, Mapping: s.mapping()}
	for _, c := range s.componentList() {
		cs := c.status()
		st.Ready = st.Ready && cs.Up
		st.Degraded = st.Degraded || len(cs.Degraded) > 0
		st.Components = append(st.Components, cs)
		st.Errors = append(st.Errors, cs.LastErrors...)
	}
	slices.SortFunc(st.Errors, func(a, b ErrorEvent) int { return b.Time.Compare(a.Time) })
	eventsRate, requestsRate := s.rates.perSecond(now, s.currentEvents(), s.currentRequests())
	conn, snk := s.monitors()
	if conn != nil {
		st.Connector = conn.statusView(now, eventsRate)
	}
	if snk != nil {
		st.Sink = snk.statusView(now, requestsRate)
	}
	st.Pipeline = s.pipeline(st)
	return st
}

func (s *Server) currentEvents() float64 {
	if conn, _ := s.monitors(); conn != nil {
		return conn.eventsTotal()
	}
	return 0
}

func (s *Server) currentRequests() float64 {
	if _, snk := s.monitors(); snk != nil {
		return snk.requestsTotal()
	}
	return 0
}

func (m *ConnectorMonitor) statusView(now time.Time, rate float64) *ConnectorView {
	v := &ConnectorView{Slot: m.cfg.Slot, EventsPerSecond: rate, Events: m.eventsTotal()}
	slot, err, read := m.slotState()
	switch {
	case err != nil:
		v.SlotError = m.s.redact.clean(err.Error())
	case !read.IsZero() && !slot.Exists:
		v.SlotError = fmt.Sprintf("slot %q does not exist (yet)", m.cfg.Slot)
	case slot.Exists:
		v.SlotActive, v.SlotWALStatus = slot.Active, slot.WALStatus
		if slot.LagBytes >= 0 {
			v.SlotLagBytes = &slot.LagBytes
		}
		if slot.RetainedBytes >= 0 {
			v.RetainedWALBytes = &slot.RetainedBytes
		}
	}
	if lag, ok := m.sourceLag(now); ok {
		secs := lag.Seconds()
		v.SourceLagSeconds = &secs
	}
	if age, ok := m.idle(now); ok && rate == 0 {
		secs := age.Seconds()
		v.Idle, v.HeartbeatAgeSeconds = true, &secs
	}
	m.mu.Lock()
	if m.confirmed != 0 {
		v.ConfirmedLSN = fmt.Sprintf("%X/%X", m.confirmed>>32, uint32(m.confirmed))
	}
	m.mu.Unlock()
	return v
}

func (m *SinkMonitor) statusView(now time.Time, rate float64) *SinkView {
	sv := m.view()
	v := &SinkView{RequestsPerSecond: rate, Requests: m.requestsTotal(), Applied: sv.applied, Skipped: sv.skipped,
		DeadLettered: sv.deadLetters, InFlight: sv.inFlight, RateLimit: sv.rate, RateLimitSlowDowns: sv.slowDowns}
	v.Retries = sv.retries
	if sv.lagKnown {
		var total float64
		for _, l := range sv.lags {
			total += float64(l.Lag)
			v.Partitions = append(v.Partitions, PartitionState{Topic: l.Topic, Partition: l.Partition, Committed: l.Committed, End: l.End, Lag: l.Lag})
		}
		v.ConsumerLag = &total
	}
	v.Generation, v.Members, v.RateShare, v.GroupRateLimit = sv.generation, sv.members, sv.share, sv.limit
	for _, m := range sv.group {
		gm := GroupMember{ID: m.ID, Name: memberName(m.ClientID), Host: m.Host, This: m.This, RateShare: m.Share}
		for _, topic := range slices.Sorted(maps.Keys(m.Assigned)) {
			gm.Partitions = append(gm.Partitions, TopicPartitions{Topic: topic, Partitions: m.Assigned[topic]})
		}
		v.Group = append(v.Group, gm)
	}
	v.RateLimitNote = rateLimitNote(sv.rate, m.cfg.RateLimit, sv.slowDowns)
	v.LastAPIStatus, _ = m.apiLast()
	if o, ok := m.outage(now); ok {
		v.OneSignalUnreachable = &o
	}
	v.LastDeadLetters = m.lastDeadLetters()
	v.Drift = m.driftView(sv.drift)
	return v
}

// rateLimitNote says why the limiter's rate is what it is, given the
// configured one (0: unknown) and how many 429s lowered it.
func rateLimitNote(rate, configured, slowDowns float64) string {
	times := fmt.Sprintf("%.0f 429s", slowDowns)
	if slowDowns == 1 {
		times = "one 429"
	}
	switch {
	case slowDowns == 0:
		return "onesignal.rate_limit; OneSignal sent no 429 so far"
	case configured > 0 && rate < configured:
		return fmt.Sprintf("lowered after %s from OneSignal; climbing back to %.0f/s", times, configured)
	case configured > 0:
		return "onesignal.rate_limit again, after " + times + " from OneSignal"
	}
	return "lowered for a while after each of " + times + " from OneSignal"
}

// pipeline colours the five boxes from what the monitors know.
func (s *Server) pipeline(st Status) []Stage {
	comp := func(name string) Stage {
		for _, c := range st.Components {
			if c.Name == name {
				if c.Up && len(c.Degraded) > 0 {
					return Stage{Name: name, State: StageWarn, Note: c.State + " · degraded"}
				}
				if c.Up {
					return Stage{Name: name, State: StageUp, Note: c.State}
				}
				return Stage{Name: name, State: StageDown, Note: c.State}
			}
		}
		return Stage{Name: name, State: StageOff, Note: "not in this process"}
	}
	pg := Stage{Name: "PostgreSQL", State: StageOff, Note: "not watched by this process"}
	if c := st.Connector; c != nil {
		switch {
		case c.SlotError != "":
			pg.State, pg.Note = StageDown, "slot not readable"
		case c.SlotLagBytes != nil:
			pg.State, pg.Note = StageUp, "slot "+c.Slot
		default:
			pg.State, pg.Note = StageUnknown, "slot "+c.Slot
		}
	}
	kafka := Stage{Name: "Kafka", State: StageUnknown, Note: "no traffic yet"}
	var kafkaStates []string
	conn, snk := s.monitors()
	if conn != nil {
		kafkaStates = append(kafkaStates, conn.kafkaState())
	}
	if snk != nil {
		kafkaStates = append(kafkaStates, snk.kafkaState())
	}
	switch {
	case slices.Contains(kafkaStates, "down"):
		kafka.State, kafka.Note = StageDown, "failing"
	case slices.Contains(kafkaStates, "up"):
		kafka.State, kafka.Note = StageUp, "reachable"
	}
	if s.cfg.EmbeddedKafka {
		kafka.Note += " · embedded broker, development only"
	}
	api := Stage{Name: "OneSignal", State: StageOff, Note: "not called by this process"}
	if snk != nil {
		status, _ := snk.apiLast()
		switch {
		case st.Sink != nil && st.Sink.OneSignalUnreachable != nil:
			o := st.Sink.OneSignalUnreachable
			api.State, api.Note = StageDown, "failing every request for "+humanSeconds(o.Seconds)
		case status == "":
			api.State, api.Note = StageUnknown, "no request yet"
		case status == "401" || status == "403":
			api.State, api.Note = StageDown, "credentials refused ("+status+")"
		case status == "429":
			api.State, api.Note = StageWarn, "rate limited (429)"
		case status == "error" || strings.HasPrefix(status, "5"):
			api.State, api.Note = StageDown, "last answer: "+status
		default:
			api.State, api.Note = StageUp, "last answer: "+status
		}
	}
	return []Stage{pg, comp("connector"), kafka, comp("sink"), api}
}

// mapping describes config's mapping for the status page.
func (s *Server) mapping() []MappingRow {
	m := s.cfg.Mapping
	if m == nil {
		return nil
	}
	topic := func(table string) string { return s.cfg.TopicPrefix + "." + table }
	var rows []MappingRow
	if u := m.Users; u != nil {
		r := MappingRow{Table: u.Table, Topic: topic(u.Table), Role: "users", Maps: []string{"external_id ← " + u.ExternalID}}
		cols := make([]string, 0, len(u.Tags))
		for col := range u.Tags {
			cols = append(cols, col)
		}
		slices.Sort(cols)
		for _, col := range cols {
			tag := u.Tags[col]
			if tag == "" {
				tag = col
			}
			entry := "tag " + tag + " ← " + col
			if conv := u.Convert[col]; conv != "" {
				entry += " (" + conv + ")"
			}
			r.Maps = append(r.Maps, entry)
		}
		if u.Email != "" {
			r.Maps = append(r.Maps, "email record ← "+u.Email)
		}
		if u.Phone != "" {
			r.Maps = append(r.Maps, "SMS record ← "+u.Phone)
		}
		rows = append(rows, r)
	}
	if d := m.Devices; d != nil {
		rows = append(rows, MappingRow{Table: d.Table, Topic: topic(d.Table), Role: "devices",
			Maps: []string{"device ← " + d.DeviceID, "owner external_id ← " + d.ExternalID}})
	}
	return rows
}

func (s *Server) serveStatusJSON(w http.ResponseWriter, r *http.Request) {
	s.refreshSlot(r.Context(), onScrapeMaxAge)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(s.Status()) //nolint:errcheck // the client went away
}

//go:embed status.html
var statusHTML string

var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"bytes":    humanBytes,
	"seconds":  humanSeconds,
	"rate":     func(v float64) string { return fmt.Sprintf("%.1f/s", v) },
	"count":    func(v float64) string { return fmt.Sprintf("%.0f", v) },
	"clock":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
	"since":    func(now, t time.Time) string { return humanSeconds(now.Sub(t).Seconds()) },
	"deref64":  func(p *int64) int64 { return *p },
	"derefF":   func(p *float64) float64 { return *p },
	"derefT":   func(p *time.Time) time.Time { return *p },
	"notLast":  func(i, n int) bool { return i < n-1 },
	"percent":  func(v float64) string { return fmt.Sprintf("%.0f %%", v*100) },
	"joinWith": strings.Join,
	"ints": func(ns []int) string {
		parts := make([]string, len(ns))
		for i, n := range ns {
			parts[i] = strconv.Itoa(n)
		}
		return strings.Join(parts, ", ")
	},
	"times": func(a, b float64) float64 { return a * b },
}).Parse(statusHTML))

func (s *Server) serveStatusPage(w http.ResponseWriter, r *http.Request) {
	s.refreshSlot(r.Context(), onScrapeMaxAge)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := statusPage.Execute(w, s.Status()); err != nil {
		s.log.Debug("status page not written in full", zap.Error(err))
	}
}

// humanBytes writes n in binary units: "512 B", "1.5 MiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, exp := float64(n)/unit, 0
	for v >= unit && exp < 4 {
		v /= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTP"[exp])
}

// humanSeconds writes a duration in seconds the way a person reads it.
func humanSeconds(secs float64) string {
	switch {
	case secs < 10:
		return fmt.Sprintf("%.1f s", secs)
	case secs < 120:
		return fmt.Sprintf("%.0f s", secs)
	case secs < 7200:
		return fmt.Sprintf("%.0f min", secs/60)
	case secs < 172800:
		return fmt.Sprintf("%.1f h", secs/3600)
	}
	return fmt.Sprintf("%.1f d", secs/86400)
}

// rates keeps samples of the events and requests counters for a little
// over a minute, so the status page can show per-second rates over the
// last minute.
type rates struct {
	mu      sync.Mutex
	samples []rateSample // oldest first
}

type rateSample struct {
	at               time.Time
	events, requests float64
}

const rateWindow = time.Minute

func newRates() *rates { return &rates{} }

func (r *rates) add(at time.Time, events, requests float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.samples = append(r.samples, rateSample{at, events, requests})
	// Keep one sample at least a window old, to measure over a full minute.
	for len(r.samples) > 2 && at.Sub(r.samples[1].at) >= rateWindow {
		r.samples = r.samples[1:]
	}
}

// perSecond is the rate from the oldest sample within about a minute of
// now to the values now; 0 until a sample is a second old.
func (r *rates) perSecond(now time.Time, events, requests float64) (float64, float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.samples {
		if now.Sub(s.at) > rateWindow+sampleInterval {
			continue
		}
		dt := now.Sub(s.at).Seconds()
		if dt < 1 {
			return 0, 0
		}
		return max(events-s.events, 0) / dt, max(requests-s.requests, 0) / dt
	}
	return 0, 0
}
