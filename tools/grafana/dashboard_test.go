// Package grafana checks deploy/grafana/onesignal-cdc.json: it parses as a
// dashboard, every query reads metrics the daemon exports (the names agreed
// in tools/internal/metricnames), and it shows what an operator needs.
package grafana

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/tools/internal/daemon"
	"github.com/onesignal-cdc/onesignal-cdc/tools/internal/metricnames"
)

type dashboard struct {
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Definition string          `json:"definition"`
			Query      json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(daemon.Root(t), "deploy", "grafana", "onesignal-cdc.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	if d.Title == "" || d.UID == "" || d.SchemaVersion == 0 || len(d.Panels) == 0 {
		t.Fatalf("not a Grafana dashboard: title %q, uid %q, schemaVersion %d, %d panels", d.Title, d.UID, d.SchemaVersion, len(d.Panels))
	}
	return d
}

// flat lists every panel, those inside collapsed rows included.
func (d dashboard) flat() []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// The daemon's metric names, as agreed with its instrumentation
// (tools/internal/metricnames); a renamed or misspelt metric would leave a
// panel empty without any error.
func TestGrafanaDashboardUsesKnownMetrics(t *testing.T) {
	d := loadDashboard(t)
	queries := 0
	for _, p := range d.flat() {
		for _, target := range p.Targets {
			queries++
			for _, problem := range metricnames.Problems(target.Expr) {
				t.Errorf("panel %q, query %s: %s", p.Title, target.RefID, problem)
			}
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		for _, problem := range metricnames.Problems(v.Definition + string(v.Query)) {
			t.Errorf("variable $%s: %s", v.Name, problem)
		}
	}
	if queries == 0 {
		t.Fatal("the dashboard has no queries")
	}
}

func TestGrafanaDashboardShowsWhatAnOperatorNeeds(t *testing.T) {
	d := loadDashboard(t)
	var exprs []string
	for _, p := range d.flat() {
		for _, target := range p.Targets {
			exprs = append(exprs, target.Expr)
		}
	}
	all := strings.Join(exprs, "\n")
	for what, metric := range map[string]string{
		"slot lag":                 "onesignal_cdc_replication_slot_lag_bytes",
		"retained WAL":             "onesignal_cdc_replication_slot_retained_wal_bytes",
		"source lag":               "onesignal_cdc_source_lag_seconds",
		"events by op":             "sum by (op) (rate(onesignal_cdc_connector_events_total",
		"produce latency p99":      "histogram_quantile(0.99, sum by (le) (rate(onesignal_cdc_kafka_produce_duration_seconds_bucket",
		"sink outcomes":            "sum by (outcome) (rate(onesignal_cdc_sink_messages_total",
		"requests by status":       "sum by (status) (rate(onesignal_cdc_onesignal_requests_total",
		"request latency p99":      "histogram_quantile(0.99, sum by (le, endpoint) (rate(onesignal_cdc_onesignal_request_duration_seconds_bucket",
		"rate-limiter waits":       "onesignal_cdc_sink_rate_limit_waits_total",
		"consumer lag":             "onesignal_cdc_sink_consumer_lag_messages",
		"dead letters":             "onesignal_cdc_sink_dead_lettered_total",
		"components up/down":       "onesignal_cdc_component_up",
		"the version that is live": "onesignal_cdc_build_info",
	} {
		if !strings.Contains(all, metric) {
			t.Errorf("no panel shows %s (%s)", what, metric)
		}
	}
}

var selector = regexp.MustCompile(`onesignal_cdc_[a-z0-9_]+(\{[^}]*\})?`)

func TestGrafanaDashboardPanelsAreWellFormed(t *testing.T) {
	d := loadDashboard(t)
	var ids []int
	for _, p := range d.flat() {
		ids = append(ids, p.ID)
		if p.GridPos == nil || (p.Type != "row" && (p.GridPos.W == 0 || p.GridPos.H == 0)) {
			t.Errorf("panel %q has no size", p.Title)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use the $datasource variable", p.Title)
		}
		for _, target := range p.Targets {
			// Every series is narrowed to the chosen namespace and job, so
			// two installs on one Prometheus do not add up.
			for _, m := range selector.FindAllStringSubmatch(target.Expr, -1) {
				if !strings.Contains(m[1], `namespace=~"$namespace"`) || !strings.Contains(m[1], `job=~"$job"`) {
					t.Errorf("panel %q: %s is not filtered by $namespace and $job", p.Title, m[0])
				}
			}
		}
	}
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	if len(slices.Compact(sorted)) != len(ids) {
		t.Errorf("panel ids repeat: %v", ids)
	}
}
