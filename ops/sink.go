package ops

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/onesignal-cdc/onesignal-cdc/reconcile"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// SinkConfig describes the sink this process runs.
type SinkConfig struct {
	// BaseURL is OneSignal's base URL; a path prefix in it is left out of
	// the endpoint templates of onesignal_requests_total.
	BaseURL string
	// RateLimit is onesignal.rate_limit, the rate the status page tells
	// a lowered rate from; 0 when unknown.
	RateLimit float64
	// UnreachableAfter is how long OneSignal must have failed every
	// request before /readyz and the status page report it; 0 is
	// DefaultUnreachableAfter.
	UnreachableAfter time.Duration
}

// DefaultUnreachableAfter is how long OneSignal must have answered every
// request with a failure (no answer, 429 or 5xx) before /readyz and the
// status page report it: past a blip or a burst of 429s, and within the
// first minutes of an outage. Alerts read
// onesignal_cdc_sink_onesignal_unreachable_seconds, with a threshold of
// their own.
const DefaultUnreachableAfter = time.Minute

// Runner is a component of the daemon.
type Runner interface {
	Run(ctx context.Context) error
}

// SinkMonitor turns the sink's counters, its Kafka reader's and its
// OneSignal traffic into metrics and the sink's health.
type SinkMonitor struct {
	s      *Server
	cfg    SinkConfig
	comp   *component
	prefix string // of OneSignal's paths, from the base URL
	host   string // OneSignal's, from the base URL

	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	requests64 atomic.Int64

	mu     sync.Mutex
	stats  func() sink.Stats
	reader func() kafka.ReaderStats
	// lagOf reads the committed-offset lag of the partitions the member
	// holds; lags is its last answer, read by poll.
	lagOf    func(ctx context.Context) []sink.PartitionLag
	lags     []sink.PartitionLag
	lagKnown bool
	// inspect reads what the sink knows of one target, for /debug/target.
	inspect func(transform.Target) sink.TargetView
	fetched int64
	applied float64 // applied messages so far: never reported lower
	// Errors the Kafka reader logged: how many since the last poll, the
	// newest, and how many polls in a row saw some.
	kafkaErrs   int
	kafkaErr    string
	kafkaStreak int
	api         apiState          // OneSignal's last answer
	dead        []DeadLetterEvent // the last dead letters, oldest first
	// failingSince is when the first of OneSignal's answers since its
	// last good one failed (no answer, 429 or 5xx), zero while it
	// answers; lastFailure is the newest of them.
	failingSince time.Time
	lastFailure  apiFailure
}

// apiFailure is a request OneSignal failed.
type apiFailure struct {
	endpoint string
	status   string // "error": no answer
	err      string // why no answer came
}

// keepDeadLetters is how many of the last dead letters the status page
// shows.
const keepDeadLetters = 10

// DeadLetterEvent is a message the sink wrote to the dead-letter topic,
// for the status page.
type DeadLetterEvent struct {
	Time       time.Time `json:"time"`
	Topic      string    `json:"topic"` // where the message came from
	Partition  int       `json:"partition"`
	Offset     int64     `json:"offset"`
	Stage      string    `json:"stage"` // decode, transform or onesignal
	Reason     string    `json:"reason"`
	HTTPStatus int       `json:"http_status,omitempty"` // OneSignal's answer, for the onesignal stage
}

// apiState is what the last OneSignal answer says about OneSignal.
type apiState struct {
	status string // the endpoint's HTTP status, or "error"
	at     time.Time
}

// Sink registers the sink's metrics and health component. Watch must be
// called once the sink and its reader exist.
func (s *Server) Sink(cfg SinkConfig) *SinkMonitor {
	m := &SinkMonitor{
		s:    s,
		cfg:  cfg,
		comp: s.addComponent("sink", "starting", "not started yet"),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "onesignal_requests_total",
			Help: `Requests sent to OneSignal, by endpoint (a route template such as "PATCH /apps/{app_id}/users/by/external_id/{id}") and HTTP status ("error" when no answer came).`,
		}, []string{"endpoint", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "onesignal_request_duration_seconds",
			Help:    "Time from sending a request to OneSignal to its answer's headers, by endpoint.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"endpoint"}),
	}
	m.host = "api.onesignal.com"
	if u, err := url.Parse(cfg.BaseURL); err == nil {
		m.prefix = strings.TrimRight(u.EscapedPath(), "/")
		if u.Host != "" {
			m.host = u.Host
		}
	}
	if m.cfg.UnreachableAfter <= 0 {
		m.cfg.UnreachableAfter = DefaultUnreachableAfter
	}
	s.reg.MustRegister(m.requests, m.duration, sinkCollector{m})
	s.mu.Lock()
	s.sink = m
	s.mu.Unlock()
	return m
}

// Watch reads the sink's counters (Sink.Stats) and its Kafka reader's
// (Reader.Stats). The monitor becomes the only caller of the reader's
// Stats, which resets kafka-go's counters at each call. On a nil monitor
// (no ops server) it does nothing.
func (m *SinkMonitor) Watch(stats func() sink.Stats, reader func() kafka.ReaderStats) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stats, m.reader = stats, reader
}

// WatchLag reads the committed-offset lag of the member's partitions with
// lag (Sink.Lag) at each poll, for onesignal_cdc_sink_consumer_lag_messages
// and the status page. On a nil monitor it does nothing.
func (m *SinkMonitor) WatchLag(lag func(ctx context.Context) []sink.PartitionLag) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lagOf = lag
}

// lagTimeout bounds one poll's reading of the partitions' ends.
const lagTimeout = 2 * time.Second

// DeadLettered returns the function for sink.Config.DeadLettered: it
// keeps the last keepDeadLetters dead letters, their reasons without
// secrets, for the status page. On a nil monitor it returns nil.
func (m *SinkMonitor) DeadLettered() func(sink.DeadLetter) {
	if m == nil {
		return nil
	}
	return func(d sink.DeadLetter) {
		ev := DeadLetterEvent{Time: time.Now(), Topic: d.Topic, Partition: d.Partition, Offset: d.Offset,
			Stage: d.Stage, Reason: m.s.redact.clean(d.Reason), HTTPStatus: d.Status}
		m.mu.Lock()
		defer m.mu.Unlock()
		m.dead = append(m.dead, ev)
		if len(m.dead) > keepDeadLetters {
			m.dead = slices.Delete(m.dead, 0, len(m.dead)-keepDeadLetters)
		}
	}
}

// lastDeadLetters returns the last dead letters, newest first.
func (m *SinkMonitor) lastDeadLetters() []DeadLetterEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]DeadLetterEvent, len(m.dead))
	for i, d := range m.dead {
		out[len(m.dead)-1-i] = d
	}
	return out
}

// Wrap returns r, run as the sink: up while it runs, down with its error
// once it returned. On a nil monitor it returns r.
func (m *SinkMonitor) Wrap(r Runner) Runner {
	if m == nil {
		return r
	}
	return runnerFunc(func(ctx context.Context) error {
		m.comp.set(true, "consuming", "")
		err := r.Run(ctx)
		m.comp.stop(err)
		return err
	})
}

type runnerFunc func(ctx context.Context) error

func (f runnerFunc) Run(ctx context.Context) error { return f(ctx) }

// KafkaErrorLogger is for kafka.ReaderConfig.ErrorLogger. The errors the
// reader logs (no coordinator, a failed join, dial or fetch) are weighed
// at each poll: a poll is failing when they are at least half as many as
// the fetches the reader attempted since the last one (or it attempted
// none). kafkaDownAfter failing polls in a row mark Kafka as unreachable
// for the sink, until a poll finds the reader fetching without error. A
// few fetch timeouts among many fetches, which kafka-go logs and retries
// at once when the machine is busy, neither count nor show on the status
// page. On a nil monitor it returns nil: kafka-go logs nowhere.
func (m *SinkMonitor) KafkaErrorLogger() kafka.Logger {
	if m == nil {
		return nil
	}
	return kafka.LoggerFunc(func(format string, args ...any) {
		msg := strings.TrimSpace(fmt.Sprintf(format, args...))
		m.mu.Lock()
		m.kafkaErrs++
		m.kafkaErr = msg
		m.mu.Unlock()
	})
}

// kafkaDownAfter is how many failing polls in a row make Kafka count as
// down: 2 polls, 2 to 4 seconds of errors.
const kafkaDownAfter = 2

// poll reads the committed-offset lag and the Kafka reader's stats:
// whether it kept failing or fetched without an error since the last
// poll.
func (m *SinkMonitor) poll() {
	m.mu.Lock()
	reader, stats, lagOf := m.reader, m.stats, m.lagOf
	m.mu.Unlock()
	if lagOf != nil {
		ctx, cancel := context.WithTimeout(context.Background(), lagTimeout)
		lags := lagOf(ctx)
		cancel()
		var total int64
		for _, l := range lags {
			total += l.Lag
		}
		held := -1 // partitions held, when known
		if stats != nil {
			held = 0
			for _, n := range stats().Assigned {
				held += n
			}
		}
		m.mu.Lock()
		m.lags, m.lagKnown = lags, lags != nil // nil: between generations, nothing held
		if lags != nil && len(lags) == held && total == 0 {
			// Every change of the partitions held is applied (each
			// partition's end was read: Kafka is reachable), so nothing
			// waits for OneSignal: the failures were of targets that moved
			// to another member, which reports them.
			m.failingSince = time.Time{}
		}
		m.mu.Unlock()
	}
	m.refreshOutage()
	if reader == nil {
		return
	}
	rs := reader()
	var fetched int64
	if stats != nil {
		fetched = stats().Fetched
	}
	m.mu.Lock()
	errs := max(int64(m.kafkaErrs), rs.Errors)
	failing := errs > 0 && (rs.Fetches == 0 || 2*errs >= rs.Fetches)
	progress := !failing && (rs.Fetches > 0 || rs.Messages > 0 || fetched > m.fetched)
	if failing {
		m.kafkaStreak++
	} else {
		m.kafkaStreak = 0
	}
	down, why := m.kafkaStreak >= kafkaDownAfter, m.kafkaErr
	m.kafkaErrs, m.fetched = 0, fetched
	m.mu.Unlock()
	if failing && why != "" {
		m.comp.recordError("kafka: " + why)
	}
	switch {
	case down:
		if why == "" {
			why = fmt.Sprintf("the reader counted %d errors", rs.Errors)
		}
		m.comp.raise("kafka", "Kafka unreachable or failing: "+why)
	case progress:
		m.comp.raise("kafka", "")
	}
}

// observe records one OneSignal request, and what its answer (or err,
// when none came) says about the credentials and OneSignal's health.
func (m *SinkMonitor) observe(endpoint, status string, code int, d time.Duration, err error) {
	m.requests.WithLabelValues(endpoint, status).Inc()
	m.duration.WithLabelValues(endpoint).Observe(d.Seconds())
	m.requests64.Add(1)
	now := time.Now()
	failed := code == 0 || code == http.StatusTooManyRequests || code >= 500
	m.mu.Lock()
	m.api = apiState{status: status, at: now}
	switch {
	case !failed:
		m.failingSince = time.Time{}
	case m.failingSince.IsZero():
		m.failingSince = now
	}
	if failed {
		m.lastFailure = apiFailure{endpoint: endpoint, status: status}
		if err != nil {
			m.lastFailure.err = err.Error()
		}
	}
	m.mu.Unlock()
	if !failed {
		m.refreshOutage() // the report clears with the first good answer
	}
	switch {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		m.comp.recordError(fmt.Sprintf("onesignal: %s answered %d", endpoint, code))
		m.comp.raise("credentials", fmt.Sprintf("OneSignal refused the credentials (HTTP %d on %s): check onesignal.app_id and onesignal.api_key", code, endpoint))
	case code >= 200 && code < 300, code == http.StatusNotFound:
		m.comp.raise("credentials", "")
	}
	switch {
	case code == 0 && err != nil:
		m.comp.recordError(fmt.Sprintf("onesignal: no answer to %s: %v (retried)", endpoint, err))
	case failed:
		m.comp.recordError(fmt.Sprintf("onesignal: %s answered %s (retried)", endpoint, status))
	}
}

// OneSignalOutage is a stretch of time in which OneSignal answered every
// request of this member with a failure: no answer, 429 or 5xx.
type OneSignalOutage struct {
	Since     time.Time `json:"since"` // the first failure after its last other answer
	Seconds   float64   `json:"seconds"`
	LastError string    `json:"last_error"`
	// Reason is what /readyz says: how long, why, the fix, and that
	// nothing is lost.
	Reason string `json:"reason"`
}

// outage returns OneSignal's outage as of now, and whether it has lasted
// UnreachableAfter: zero and false while OneSignal answers.
func (m *SinkMonitor) outage(now time.Time) (OneSignalOutage, bool) {
	m.mu.Lock()
	since, f := m.failingSince, m.lastFailure
	m.mu.Unlock()
	if since.IsZero() {
		return OneSignalOutage{}, false
	}
	d := max(now.Sub(since), 0)
	o := OneSignalOutage{Since: since, Seconds: d.Seconds()}
	var what, fix string
	switch {
	case f.status == "error":
		o.LastError = "no answer to " + f.endpoint
		if f.err != "" {
			o.LastError += ": " + f.err
		}
		what = "OneSignal unreachable"
		fix = "check the network path to " + m.host + " (DNS, egress rules, HTTPS_PROXY)"
	case f.status == "429":
		o.LastError = f.endpoint + " answered 429 Too Many Requests"
		what = "OneSignal answering 429 Too Many Requests to every request"
		fix = "another client may be using the app's rate limit, or onesignal.rate_limit is above the app's"
	default:
		o.LastError = f.endpoint + " answered " + f.status
		what = "OneSignal failing every request with " + f.status
		fix = "an outage on OneSignal's side (https://status.onesignal.com), or a proxy in the way"
	}
	o.LastError = m.s.redact.clean(o.LastError)
	o.Reason = fmt.Sprintf("%s for %s (last: %s): %s; nothing is lost: the sink keeps its place and catches up at the rate limit once OneSignal answers",
		what, outageDuration(d), o.LastError, fix)
	return o, d >= m.cfg.UnreachableAfter
}

// outageDuration writes d to the second under an hour and to the minute
// past it: "4m12s", "2h13m"; to the tenth under a minute.
func outageDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
}

// refreshOutage reports OneSignal's outage as the sink's degradation
// once it has lasted UnreachableAfter, with how long it has lasted so
// far, and clears it once OneSignal answers.
func (m *SinkMonitor) refreshOutage() {
	if o, ok := m.outage(time.Now()); ok {
		m.comp.degrade("onesignal", o.Reason)
		return
	}
	m.comp.degrade("onesignal", "")
}

func (m *SinkMonitor) requestsTotal() float64 { return float64(m.requests64.Load()) }

// apiLast is OneSignal's last answer: its status ("" before any) and when.
func (m *SinkMonitor) apiLast() (string, time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.api.status, m.api.at
}

// kafkaState is what the sink knows of Kafka: "down" while a reader error
// is not cleared, "up" once it fetched, else "".
func (m *SinkMonitor) kafkaState() string {
	st := m.comp.status()
	for _, p := range st.Problems {
		if strings.HasPrefix(p, "Kafka") {
			return "down"
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fetched > 0 || m.lagKnown {
		return "up"
	}
	return ""
}

// sinkView is the sink's numbers, for the collector and the status page.
type sinkView struct {
	known                         bool
	applied, skipped, deadLetters float64
	retries                       float64
	waits                         float64
	waited                        time.Duration
	rate                          float64
	slowDowns                     float64
	inFlight                      float64
	lags                          []sink.PartitionLag
	lagKnown                      bool
	// The group, as this member sees it.
	share, limit float64
	generation   int32
	members      int
	assigned     map[string]int
	group        []sink.GroupMember
	drift        sink.DriftStats
}

// view reads the sink's counters. applied is done minus skipped minus
// dead-lettered, held from going down: a replay counts as skipped when
// fetched but as done only when the newer event it follows is done.
func (m *SinkMonitor) view() sinkView {
	m.mu.Lock()
	defer m.mu.Unlock()
	v := sinkView{lags: m.lags, lagKnown: m.lagKnown}
	if m.stats == nil {
		return v
	}
	st := m.stats()
	v.known = true
	v.skipped = float64(st.Replays)
	v.deadLetters = float64(st.DeadLettered)
	m.applied = max(m.applied, float64(st.Done-st.Replays-st.DeadLettered))
	v.applied = m.applied
	v.retries = float64(st.Retries)
	v.waits = float64(st.RateLimitWaits)
	v.waited = st.RateLimitWaited
	v.rate = st.Rate
	v.slowDowns = float64(st.SlowDowns)
	v.inFlight = float64(max(st.Fetched-st.Done, 0))
	v.share, v.limit = st.RateShare, st.RateLimit
	v.generation, v.members, v.assigned, v.group = st.Generation, st.Members, st.Assigned, st.Group
	v.drift = st.Drift
	return v
}

// sinkCollector exports the sink's counters and gauges, read when scraped.
type sinkCollector struct{ m *SinkMonitor }

func sinkDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(namespace+"_sink_"+name, help, labels, nil)
}

var (
	sinkMessagesDesc      = sinkDesc("messages_total", "Kafka messages the sink finished, by outcome: applied (OneSignal accepted every operation, or there was none to send), skipped (a replay or stale event), dead_lettered.", "outcome")
	sinkRetriesDesc       = sinkDesc("retries_total", "OneSignal API attempts that failed transiently (network, 429, 5xx) and were retried.")
	sinkDeadDesc          = sinkDesc("dead_lettered_total", "Messages written to the dead-letter topic.")
	sinkWaitsDesc         = sinkDesc("rate_limit_waits_total", "OneSignal API attempts that waited for the app-wide rate limiter.")
	sinkWaitSecondsDesc   = sinkDesc("rate_limit_wait_seconds_total", "Total time API attempts waited for the app-wide rate limiter.")
	sinkRateDesc          = sinkDesc("rate_limit_requests_per_second", "The rate limiter's current rate: onesignal.rate_limit, lowered for a while after a 429.")
	sinkConsumerLagDesc   = sinkDesc("consumer_lag_messages", "Messages between the consumer group's committed offset and the end of each partition this member holds (what kafka-consumer-groups shows as LAG).", "topic", "partition")
	sinkInFlightDesc      = sinkDesc("in_flight_messages", "Messages fetched from Kafka and not yet done.")
	sinkShareDesc         = sinkDesc("rate_limit_share", "This member's share of onesignal.rate_limit: the share of the targets topic's partitions it holds.")
	sinkMembersDesc       = sinkDesc("group_members", "Members of the sink's consumer group in this member's generation.")
	sinkAssignedDesc      = sinkDesc("assigned_partitions", "Partitions of each topic assigned to this member.", "topic")
	sinkUnreachableDesc   = sinkDesc("onesignal_unreachable_seconds", "How long OneSignal has answered every request of this member with a failure (no answer, 429 or 5xx), from the first failure after its last other answer; 0 while it answers. Nothing is committed past a change it has not accepted meanwhile.")
	sinkDriftDetectedDesc = sinkDesc("drift_detected_total", "Differences continuous mode's sweeps found between OneSignal and the sink's desired states, by kind (missing_user, wrong_tag, wrong_owner, …).", "kind")
	sinkDriftRepairedDesc = sinkDesc("drift_repaired_total", "Differences whose target a sweep sent its desired state again (sink.drift.repair), by kind.", "kind")
	sinkDriftSweepsDesc   = sinkDesc("drift_sweeps_total", "Sweeps of continuous mode that ended, by outcome: completed or failed.", "outcome")
	sinkDriftProgressDesc = sinkDesc("drift_sweep_progress", "How far the running sweep got, 0 to 1 (the export is the first half, the comparison the second); 1 between sweeps once one completed.")
	sinkDriftLastDesc     = sinkDesc("drift_last_sweep_timestamp_seconds", "When the last sweep completed, in seconds since the Unix epoch; 0 before the first.")
	sinkDriftIgnoredDesc  = sinkDesc("drift_ignored_tags", "Tags the mapping does not name (the SDKs' or the dashboard's) that the last sweep found on the targets it compared and left alone.")
	sinkCollectorMetrics  = []*prometheus.Desc{sinkMessagesDesc, sinkRetriesDesc, sinkDeadDesc, sinkWaitsDesc, sinkWaitSecondsDesc, sinkRateDesc, sinkConsumerLagDesc, sinkInFlightDesc, sinkShareDesc, sinkMembersDesc, sinkAssignedDesc, sinkUnreachableDesc,
		sinkDriftDetectedDesc, sinkDriftRepairedDesc, sinkDriftSweepsDesc, sinkDriftProgressDesc, sinkDriftLastDesc, sinkDriftIgnoredDesc}
)

func (c sinkCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range sinkCollectorMetrics {
		ch <- d
	}
}

func (c sinkCollector) Collect(ch chan<- prometheus.Metric) {
	o, _ := c.m.outage(time.Now())
	ch <- prometheus.MustNewConstMetric(sinkUnreachableDesc, prometheus.GaugeValue, o.Seconds)
	v := c.m.view()
	for _, l := range v.lags {
		ch <- prometheus.MustNewConstMetric(sinkConsumerLagDesc, prometheus.GaugeValue, float64(l.Lag), l.Topic, strconv.Itoa(l.Partition))
	}
	if !v.known {
		return
	}
	ch <- prometheus.MustNewConstMetric(sinkShareDesc, prometheus.GaugeValue, v.share)
	if v.members > 0 {
		ch <- prometheus.MustNewConstMetric(sinkMembersDesc, prometheus.GaugeValue, float64(v.members))
	}
	for topic, n := range v.assigned {
		ch <- prometheus.MustNewConstMetric(sinkAssignedDesc, prometheus.GaugeValue, float64(n), topic)
	}
	ch <- prometheus.MustNewConstMetric(sinkMessagesDesc, prometheus.CounterValue, v.applied, "applied")
	ch <- prometheus.MustNewConstMetric(sinkMessagesDesc, prometheus.CounterValue, v.skipped, "skipped")
	ch <- prometheus.MustNewConstMetric(sinkMessagesDesc, prometheus.CounterValue, v.deadLetters, "dead_lettered")
	ch <- prometheus.MustNewConstMetric(sinkRetriesDesc, prometheus.CounterValue, v.retries)
	ch <- prometheus.MustNewConstMetric(sinkDeadDesc, prometheus.CounterValue, v.deadLetters)
	ch <- prometheus.MustNewConstMetric(sinkWaitsDesc, prometheus.CounterValue, v.waits)
	ch <- prometheus.MustNewConstMetric(sinkWaitSecondsDesc, prometheus.CounterValue, v.waited.Seconds())
	ch <- prometheus.MustNewConstMetric(sinkRateDesc, prometheus.GaugeValue, v.rate)
	ch <- prometheus.MustNewConstMetric(sinkInFlightDesc, prometheus.GaugeValue, v.inFlight)
	if d := v.drift; d.Enabled {
		for _, k := range reconcile.Kinds {
			ch <- prometheus.MustNewConstMetric(sinkDriftDetectedDesc, prometheus.CounterValue, float64(d.Detected[k]), string(k))
			ch <- prometheus.MustNewConstMetric(sinkDriftRepairedDesc, prometheus.CounterValue, float64(d.Repaired[k]), string(k))
		}
		ch <- prometheus.MustNewConstMetric(sinkDriftSweepsDesc, prometheus.CounterValue, float64(d.Sweeps), "completed")
		ch <- prometheus.MustNewConstMetric(sinkDriftSweepsDesc, prometheus.CounterValue, float64(d.Failed), "failed")
		ch <- prometheus.MustNewConstMetric(sinkDriftProgressDesc, prometheus.GaugeValue, d.Progress)
		last := 0.0
		if !d.Completed.IsZero() {
			last = float64(d.Completed.UnixNano()) / 1e9
		}
		ch <- prometheus.MustNewConstMetric(sinkDriftLastDesc, prometheus.GaugeValue, last)
		ignored := 0
		if d.Last != nil {
			ignored = len(d.Last.Ignored)
		}
		ch <- prometheus.MustNewConstMetric(sinkDriftIgnoredDesc, prometheus.GaugeValue, float64(ignored))
	}
}
