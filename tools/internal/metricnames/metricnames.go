// Package metricnames holds the metric names the daemon exports, as agreed
// between its instrumentation and the artifacts that read them (the chart's
// alerts, the Grafana dashboard), so that a query can be checked against
// them without a running daemon.
package metricnames

import (
	"regexp"
	"slices"
	"strings"
)

// Kind is a metric's Prometheus type.
type Kind string

// The metric types used.
const (
	Counter   Kind = "counter"
	Gauge     Kind = "gauge"
	Histogram Kind = "histogram"
)

// Known are the daemon's metrics and their types.
var Known = map[string]Kind{
	"onesignal_cdc_build_info":                              Gauge,
	"onesignal_cdc_component_up":                            Gauge,
	"onesignal_cdc_replication_slot_lag_bytes":              Gauge,
	"onesignal_cdc_replication_slot_retained_wal_bytes":     Gauge,
	"onesignal_cdc_source_lag_seconds":                      Gauge,
	"onesignal_cdc_connector_events_total":                  Counter,
	"onesignal_cdc_connector_confirmed_lsn_bytes":           Gauge,
	"onesignal_cdc_kafka_produce_duration_seconds":          Histogram,
	"onesignal_cdc_kafka_produce_errors_total":              Counter,
	"onesignal_cdc_snapshot_rows_total":                     Counter,
	"onesignal_cdc_sink_messages_total":                     Counter,
	"onesignal_cdc_sink_retries_total":                      Counter,
	"onesignal_cdc_sink_dead_lettered_total":                Counter,
	"onesignal_cdc_onesignal_requests_total":                Counter,
	"onesignal_cdc_onesignal_request_duration_seconds":      Histogram,
	"onesignal_cdc_sink_rate_limit_waits_total":             Counter,
	"onesignal_cdc_sink_rate_limit_wait_seconds_total":      Counter,
	"onesignal_cdc_sink_rate_limit_requests_per_second":     Gauge,
	"onesignal_cdc_sink_consumer_lag_messages":              Gauge,
	"onesignal_cdc_sink_in_flight_messages":                 Gauge,
	"onesignal_cdc_sink_rate_limit_share":                   Gauge,
	"onesignal_cdc_sink_group_members":                      Gauge,
	"onesignal_cdc_sink_assigned_partitions":                Gauge,
	"onesignal_cdc_sink_onesignal_unreachable_seconds":      Gauge,
	"onesignal_cdc_sink_drift_detected_total":               Counter,
	"onesignal_cdc_sink_drift_repaired_total":               Counter,
	"onesignal_cdc_sink_drift_sweeps_total":                 Counter,
	"onesignal_cdc_sink_drift_sweep_progress":               Gauge,
	"onesignal_cdc_sink_drift_last_sweep_timestamp_seconds": Gauge,
	"onesignal_cdc_sink_drift_ignored_tags":                 Gauge,
}

var name = regexp.MustCompile(`\bonesignal_cdc_[a-zA-Z0-9_]+`)

// Problems lists what is wrong with the metrics a PromQL expression reads:
// names that are not exported, and histogram series used without their
// _bucket, _sum or _count suffix. An expression that reads none of the
// daemon's metrics is a problem too.
func Problems(expr string) []string {
	var problems []string
	found := name.FindAllString(expr, -1)
	if len(found) == 0 {
		return []string{"reads none of the daemon's metrics"}
	}
	for _, n := range found {
		if _, ok := Known[n]; ok {
			if Known[n] == Histogram {
				problems = append(problems, n+" is a histogram: read its _bucket, _sum or _count series")
			}
			continue
		}
		base, ok := histogramSeries(n)
		if !ok {
			problems = append(problems, n+" is not a metric the daemon exports")
			continue
		}
		if Known[base] != Histogram {
			problems = append(problems, n+": "+base+" is not a histogram")
		}
	}
	return slices.Compact(problems)
}

// histogramSeries returns the metric a _bucket, _sum or _count series belongs to.
func histogramSeries(series string) (string, bool) {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(series, suffix); ok {
			if _, known := Known[base]; known {
				return base, true
			}
		}
	}
	return "", false
}
