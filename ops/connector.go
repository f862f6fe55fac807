package ops

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onesignal-cdc/onesignal-cdc/connector"
	"github.com/onesignal-cdc/onesignal-cdc/event"
)

// SlotReader reads the replication slot's state; *connector.SlotReader is
// one.
type SlotReader interface {
	Read(ctx context.Context) (connector.SlotStats, error)
	Close()
}

// ConnectorConfig describes the connector this process runs.
type ConnectorConfig struct {
	Slot   string
	Tables []string // "schema.table": their snapshot_rows_total series start at 0
	// Slots reads the slot for slot_lag_bytes and retained_wal_bytes; nil
	// leaves them out. The server closes it when Run returns.
	Slots SlotReader
}

// ConnectorMonitor turns what the connector reports into metrics and the
// connector's health. It is the connector's connector.Observer.
type ConnectorMonitor struct {
	s     *Server
	cfg   ConnectorConfig
	comp  *component
	slots SlotReader

	events        *prometheus.CounterVec
	produce       prometheus.Histogram
	produceErrors prometheus.Counter
	snapshotRows  *prometheus.CounterVec
	confirmedLSN  prometheus.Gauge

	events64 atomic.Int64 // events_total summed over ops, for the status page's rate

	mu        sync.Mutex
	status    connector.Status
	source    time.Time // every transaction committed before it is in Kafka
	committed time.Time // the newest commit Kafka acknowledged
	caughtUp  time.Time // the last keepalive that found nothing in flight
	confirmed uint64
	wrote     bool // a Kafka write went through since the last failure
	kafkaErr  bool // the last Kafka write failed

	slotMu   sync.Mutex // serializes slot reads
	slot     connector.SlotStats
	slotErr  error
	slotRead time.Time // of the last attempt
}

var _ connector.Observer = (*ConnectorMonitor)(nil)

// Connector registers the connector's metrics and health component and
// returns the observer to hand to connector.Config.
func (s *Server) Connector(cfg ConnectorConfig) *ConnectorMonitor {
	m := &ConnectorMonitor{
		s:     s,
		cfg:   cfg,
		slots: cfg.Slots,
		comp:  s.addComponent("connector", "starting", "not started yet"),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "connector", Name: "events_total",
			Help: "Row change events Kafka acknowledged, by op: c insert, u update, d delete, r snapshot row, t truncate.",
		}, []string{"op"}),
		produce: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "kafka", Name: "produce_duration_seconds",
			Help:    "Duration of one produce call of the connector (a batch of events, acks=all), failed ones included.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		produceErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "kafka", Name: "produce_errors_total",
			Help: "Produce calls of the connector that failed; each is retried whole.",
		}),
		snapshotRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "snapshot_rows_total",
			Help: "Snapshot rows (initial or requested) Kafka acknowledged, by table.",
		}, []string{"table"}),
		confirmedLSN: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "connector", Name: "confirmed_lsn_bytes",
			Help: "The LSN last reported to Postgres as flushed, as a byte position in the WAL.",
		}),
	}
	for _, op := range []event.Op{event.OpCreate, event.OpUpdate, event.OpDelete, event.OpSnapshot, event.OpTruncate} {
		m.events.WithLabelValues(string(op))
	}
	for _, t := range cfg.Tables {
		m.snapshotRows.WithLabelValues(t)
	}
	s.reg.MustRegister(m.events, m.produce, m.produceErrors, m.snapshotRows, m.confirmedLSN, connectorCollector{m})
	s.mu.Lock()
	s.conn = m
	s.mu.Unlock()
	return m
}

// Observer is m as a connector.Observer, or nil on a nil monitor (no ops
// server), for connector.Config.Observer.
func (m *ConnectorMonitor) Observer() connector.Observer {
	if m == nil {
		return nil
	}
	return m
}

// StatusChanged implements connector.Observer.
func (m *ConnectorMonitor) StatusChanged(st connector.Status, err error) {
	m.mu.Lock()
	m.status = st
	m.kafkaErr, m.wrote = false, false
	m.mu.Unlock()
	// A new session, or none: its writes will tell. Cleared after the new
	// base state is set, so a stop is not logged as a moment up first.
	defer m.comp.raise("kafka", "")
	if st == connector.Stopped {
		m.comp.stop(err)
		return
	}
	if err != nil {
		m.comp.recordError(err.Error())
	}
	switch {
	case st == connector.Streaming:
		m.comp.set(true, "streaming", "")
	case st == connector.Connecting && err == nil:
		m.comp.set(false, "connecting", "connecting to PostgreSQL")
	case st == connector.Connecting:
		m.comp.set(false, "reconnecting", "replication interrupted: "+err.Error())
	case st == connector.Standby:
		m.comp.set(false, "standby", fmt.Sprintf("another process streams from slot %q; this one takes over when it stops", m.cfg.Slot))
	}
}

// Produced implements connector.Observer.
func (m *ConnectorMonitor) Produced(w connector.Write) {
	m.produce.Observe(w.Duration.Seconds())
	if w.Err != nil {
		m.produceErrors.Inc()
		m.comp.recordError("kafka write: " + w.Err.Error())
		m.mu.Lock()
		m.kafkaErr = true
		m.mu.Unlock()
		m.comp.raise("kafka", "Kafka writes failing: "+w.Err.Error())
		return
	}
	for op, n := range w.Events {
		m.events.WithLabelValues(string(op)).Add(float64(n))
		m.events64.Add(int64(n))
	}
	for table, n := range w.SnapshotRows {
		m.snapshotRows.WithLabelValues(table).Add(float64(n))
	}
	m.mu.Lock()
	if w.Committed.After(m.source) {
		m.source = w.Committed
	}
	if w.Committed.After(m.committed) {
		m.committed = w.Committed
	}
	wasFailing := m.kafkaErr
	m.kafkaErr, m.wrote = false, true
	m.mu.Unlock()
	if wasFailing {
		m.comp.raise("kafka", "")
	}
}

// Confirmed implements connector.Observer.
func (m *ConnectorMonitor) Confirmed(p connector.Position) {
	m.confirmedLSN.Set(float64(p.Confirmed))
	m.mu.Lock()
	m.confirmed = uint64(p.Confirmed)
	if p.CaughtUp.After(m.source) {
		m.source = p.CaughtUp
	}
	if p.CaughtUp.After(m.caughtUp) {
		m.caughtUp = p.CaughtUp
	}
	m.mu.Unlock()
}

// idle reports whether the connector is idle and caught up: the last
// keepalive that found nothing in flight came after the newest commit
// Kafka acknowledged. age is how long ago that keepalive was sent.
func (m *ConnectorMonitor) idle(now time.Time) (age time.Duration, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.caughtUp.IsZero() || !m.caughtUp.After(m.committed) {
		return 0, false
	}
	return max(now.Sub(m.caughtUp), 0), true
}

// sourceLag is now minus the time before which every committed
// transaction is in Kafka; ok is false until that time is known.
func (m *ConnectorMonitor) sourceLag(now time.Time) (lag time.Duration, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.source.IsZero() {
		return 0, false
	}
	return max(now.Sub(m.source), 0), true
}

// kafkaState is what the connector knows of Kafka: "down" after a failed
// write, "up" after one went through, else "".
func (m *ConnectorMonitor) kafkaState() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.kafkaErr:
		return "down"
	case m.wrote:
		return "up"
	}
	return ""
}

func (m *ConnectorMonitor) eventsTotal() float64 { return float64(m.events64.Load()) }

// slotReadTimeout bounds one read of the slot, so a hung Postgres slows a
// scrape by at most this much.
const slotReadTimeout = 3 * time.Second

// refreshSlot reads the slot unless the last read is younger than maxAge.
func (m *ConnectorMonitor) refreshSlot(ctx context.Context, maxAge time.Duration) {
	if m.slots == nil {
		return
	}
	m.slotMu.Lock()
	defer m.slotMu.Unlock()
	if maxAge > 0 && time.Since(m.slotRead) < maxAge {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, slotReadTimeout)
	defer cancel()
	st, err := m.slots.Read(rctx)
	m.slotRead = time.Now()
	if err != nil && ctx.Err() != nil {
		return // the scrape went away or the server stops: no news
	}
	m.slot, m.slotErr = st, err
	if err != nil {
		m.comp.recordError(err.Error())
	}
}

// slotState returns the last read of the slot.
func (m *ConnectorMonitor) slotState() (connector.SlotStats, error, time.Time) {
	m.slotMu.Lock()
	defer m.slotMu.Unlock()
	return m.slot, m.slotErr, m.slotRead
}

// connectorCollector exports the gauges that are read when scraped.
type connectorCollector struct{ m *ConnectorMonitor }

var (
	slotLagDesc = prometheus.NewDesc(namespace+"_replication_slot_lag_bytes",
		"WAL written since the slot's confirmed_flush_lsn: pg_current_wal_lsn() − confirmed_flush_lsn. Absent while the slot cannot be read.",
		[]string{"slot"}, nil)
	slotRetainedDesc = prometheus.NewDesc(namespace+"_replication_slot_retained_wal_bytes",
		"WAL the server keeps for the slot: pg_current_wal_lsn() − restart_lsn. Absent while the slot cannot be read.",
		[]string{"slot"}, nil)
	sourceLagDesc = prometheus.NewDesc(namespace+"_source_lag_seconds",
		"Now minus the commit time of the newest transaction whose events Kafka acknowledged (or of the last keepalive that found the connector idle and caught up). Absent until known.",
		nil, nil)
)

func (c connectorCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- slotLagDesc
	ch <- slotRetainedDesc
	ch <- sourceLagDesc
}

func (c connectorCollector) Collect(ch chan<- prometheus.Metric) {
	if st, err, _ := c.m.slotState(); err == nil && st.Exists {
		if st.LagBytes >= 0 {
			ch <- prometheus.MustNewConstMetric(slotLagDesc, prometheus.GaugeValue, float64(st.LagBytes), st.Slot)
		}
		if st.RetainedBytes >= 0 {
			ch <- prometheus.MustNewConstMetric(slotRetainedDesc, prometheus.GaugeValue, float64(st.RetainedBytes), st.Slot)
		}
	}
	if lag, ok := c.m.sourceLag(time.Now()); ok {
		ch <- prometheus.MustNewConstMetric(sourceLagDesc, prometheus.GaugeValue, lag.Seconds())
	}
}
