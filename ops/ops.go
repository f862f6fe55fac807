// Package ops is the daemon's operations HTTP server: Prometheus metrics
// (/metrics), liveness (/livez), readiness (/readyz), a status page (/
// and /status.json) that draws the pipeline with the state of each part,
// and the sink's view of one target (/debug/target, for explain).
//
// It watches, and never steers: the connector reports to it through the
// connector.Observer it implements, the sink is read through its Stats and
// the HTTP transport of the OneSignal client, and Postgres is asked about
// the replication slot on a connection of its own. Nothing it shows
// carries a secret: known secret values, and passwords in URLs or libpq
// strings, are replaced by "[redacted]" before an error is kept.
//
// Readiness is about this process only: it is ready when every component
// it runs is up (the connector streaming and its Kafka writes going
// through; the sink consuming, Kafka reachable and its OneSignal
// credentials accepted). A component can be up and degraded: a sink that
// has not reached OneSignal for DefaultUnreachableAfter keeps its place
// and waits, and /readyz says so while it stays ready. Liveness checks
// nothing but that the server answers.
package ops

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/onesignal-cdc/onesignal-cdc/secret"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// namespace prefixes every metric: onesignal_cdc_….
const namespace = "onesignal_cdc"

// Config is what the ops server needs.
type Config struct {
	// Listen is the host:port to serve on (config key ops.listen);
	// "127.0.0.1:0" picks a free port, which Addr reports.
	Listen string
	// Version is the build's version, for build_info and the status page.
	Version string
	// Registry receives every metric. Nil: a new registry of the server's
	// own; the process-wide default registry is never used.
	Registry *prometheus.Registry
	// Mapping and TopicPrefix describe, on the status page, where each
	// table's changes go.
	Mapping     *transform.Mapping
	TopicPrefix string
	// Secrets are values never to show (the API key, the DSN's password).
	Secrets []secret.Value
	// EmbeddedKafka says Kafka is the embedded development broker, which
	// the status page says beside its state.
	EmbeddedKafka bool
}

// Server is the ops HTTP server. Its Run may be called once.
type Server struct {
	cfg     Config
	log     *zap.Logger
	reg     *prometheus.Registry
	redact  redactor
	started time.Time
	rates   *rates

	mu         sync.Mutex
	components []*component
	ln         net.Listener
	conn       *ConnectorMonitor // nil when this process runs no connector
	sink       *SinkMonitor      // nil when it runs no sink
}

// New returns a server with the build_info, Go runtime and process
// metrics registered. Add what the process runs with Connector and Sink
// before Run.
func New(cfg Config, log *zap.Logger) *Server {
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &Server{cfg: cfg, log: log.Named("ops"), reg: reg, redact: newRedactor(cfg.Secrets), started: time.Now(), rates: newRates()}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help: "Always 1; the labels say which build of onesignal-cdc runs.",
	}, []string{"version", "goversion"})
	build.WithLabelValues(cfg.Version, runtime.Version()).Set(1)
	reg.MustRegister(build, upCollector{s},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return s
}

// Registry is where the server's metrics are registered.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// addComponent registers a component that /readyz speaks for.
func (s *Server) addComponent(name, state, reason string) *component {
	c := newComponent(name, state, reason, s.redact.clean, s.logChange)
	c.degradedChange = s.logDegraded
	s.mu.Lock()
	s.components = append(s.components, c)
	s.mu.Unlock()
	return c
}

// logChange logs each change between up and down once, so the log tells
// an outage's start and end without repeating every retry, and every
// stop: a clean one (shutting down, or because another component failed)
// at info, one on an error at error level with the error.
func (s *Server) logChange(name string, up bool, why string, stopped, failed bool) {
	switch {
	case stopped && failed:
		s.log.Error("component stopped on an error", zap.String("component", name), zap.String("reason", why))
	case stopped:
		s.log.Info("component stopped", zap.String("component", name))
	case up:
		s.log.Info("component up", zap.String("component", name))
	default:
		s.log.Warn("component down", zap.String("component", name), zap.String("reason", why))
	}
}

// logDegraded logs each degradation once when it is raised and once when
// it clears.
func (s *Server) logDegraded(name, reason string) {
	if reason == "" {
		s.log.Info("component no longer degraded", zap.String("component", name))
		return
	}
	s.log.Warn("component degraded", zap.String("component", name), zap.String("reason", reason))
}

func (s *Server) componentList() []*component {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*component(nil), s.components...)
}

// Listen binds the listen address, so that a taken port fails the start
// of the daemon rather than a goroutine later. Run calls it if needed.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("ops.listen %q: %w: choose a free port, or \"\" to turn the ops server off", s.cfg.Listen, err)
	}
	s.ln = ln
	s.log.Info("ops server listening: /metrics, /livez, /readyz and the status page at /", zap.String("address", ln.Addr().String()))
	return nil
}

// Addr is the address the server listens on, once Listen returned.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// shutdownTimeout bounds how long a stop waits for requests in progress.
const shutdownTimeout = 5 * time.Second

// Run serves until ctx ends, then shuts down gracefully. Beside serving,
// it reads the replication slot every slotInterval and samples the
// counters the status page shows as rates.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          zap.NewStdLog(s.log),
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	bg, stop := context.WithCancel(ctx)
	defer stop()
	// The sink's first poll and sample are cheap and in memory: taken
	// before serving, the first scrape already has them. The slot is
	// read in the background, as it asks PostgreSQL.
	s.pollSink()
	s.sample()
	wg.Go(func() { s.watch(bg) })

	served := make(chan error, 1)
	go func() { served <- srv.Serve(s.ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("ops server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("ops server: %w", err)
	}
	if conn, _ := s.monitors(); conn != nil && conn.slots != nil {
		conn.slots.Close()
	}
	return nil
}

// Polling intervals of watch.
const (
	slotInterval   = 10 * time.Second
	sinkInterval   = 2 * time.Second
	sampleInterval = 5 * time.Second
)

// watch reads the slot, polls the Kafka reader and samples the rates
// until ctx ends.
func (s *Server) watch(ctx context.Context) {
	slotTick := time.NewTicker(slotInterval)
	defer slotTick.Stop()
	sinkTick := time.NewTicker(sinkInterval)
	defer sinkTick.Stop()
	sampleTick := time.NewTicker(sampleInterval)
	defer sampleTick.Stop()
	s.refreshSlot(ctx, 0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-slotTick.C:
			s.refreshSlot(ctx, 0)
		case <-sinkTick.C:
			s.pollSink()
		case <-sampleTick.C:
			s.sample()
		}
	}
}

// monitors returns what this process runs: nil for what it does not.
func (s *Server) monitors() (*ConnectorMonitor, *SinkMonitor) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn, s.sink
}

func (s *Server) refreshSlot(ctx context.Context, maxAge time.Duration) {
	if conn, _ := s.monitors(); conn != nil {
		conn.refreshSlot(ctx, maxAge)
	}
}

func (s *Server) pollSink() {
	if _, snk := s.monitors(); snk != nil {
		snk.poll()
	}
}

func (s *Server) sample() {
	s.rates.add(time.Now(), s.currentEvents(), s.currentRequests())
}

// Handler serves /metrics, /livez, /readyz, /status.json, the status
// page at / and /debug/target.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	metrics := promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{ErrorLog: zap.NewStdLog(s.log), Registry: s.reg})
	mux.Handle("GET /metrics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.refreshSlot(r.Context(), onScrapeMaxAge)
		metrics.ServeHTTP(w, r)
	}))
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.serveReady)
	mux.HandleFunc("GET /status.json", s.serveStatusJSON)
	mux.HandleFunc("GET /debug/target", s.serveTarget)
	mux.HandleFunc("GET /{$}", s.serveStatusPage)
	return mux
}

// onScrapeMaxAge: a scrape or a status page view reads the slot again when
// the last read is older than this, so Postgres sees at most one query a
// second however often the ops server is asked.
const onScrapeMaxAge = time.Second

// serveReady answers 200 when every component is up, else 503 with one
// line per component that is down, saying why. A degraded component is
// up (its line says "degraded"): a sink that cannot reach OneSignal keeps
// its place and waits, which neither a restart nor taking the pod out of
// service would help, while a failing readiness probe would hold up
// rolling updates and, under the PodDisruptionBudget, node drains.
func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	s.refreshDegraded()
	var down, degraded []string
	for _, c := range s.componentList() {
		st := c.status()
		if !st.Up {
			down = append(down, st.Name+": "+strings.Join(st.Problems, "; "))
		}
		for _, d := range st.Degraded {
			degraded = append(degraded, st.Name+" (degraded): "+d)
		}
	}
	switch {
	case len(down) > 0:
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, strings.Join(append(down, degraded...), "\n"))
	case len(degraded) > 0:
		fmt.Fprintln(w, "ok, degraded:\n"+strings.Join(degraded, "\n"))
	default:
		fmt.Fprintln(w, "ok")
	}
}

// refreshDegraded brings the degradations that grow with time (how long
// OneSignal has been unreachable) up to now.
func (s *Server) refreshDegraded() {
	if _, snk := s.monitors(); snk != nil {
		snk.refreshOutage()
	}
}

// upCollector exports component_up for every component.
type upCollector struct{ s *Server }

var upDesc = prometheus.NewDesc(namespace+"_component_up",
	"1 while the component is up (connector: streaming, its Kafka writes going through; sink: consuming, Kafka reachable, OneSignal credentials accepted), else 0.",
	[]string{"component"}, nil)

func (u upCollector) Describe(ch chan<- *prometheus.Desc) { ch <- upDesc }

func (u upCollector) Collect(ch chan<- prometheus.Metric) {
	for _, c := range u.s.componentList() {
		v := 0.0
		if c.isUp() {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, v, c.name)
	}
}
