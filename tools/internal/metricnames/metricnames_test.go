package metricnames

import (
	"slices"
	"testing"
)

func TestProblems(t *testing.T) {
	for _, tc := range []struct {
		name, expr string
		want       []string
	}{
		{"accepts a known gauge", `max(onesignal_cdc_replication_slot_lag_bytes) > 1`, nil},
		{"accepts a histogram's bucket series", `histogram_quantile(0.99, sum by (le) (rate(onesignal_cdc_kafka_produce_duration_seconds_bucket[5m])))`, nil},
		{"rejects an unknown name", `rate(onesignal_cdc_sink_dead_letters_total[5m])`,
			[]string{"onesignal_cdc_sink_dead_letters_total is not a metric the daemon exports"}},
		{"rejects a histogram read as a plain series", `rate(onesignal_cdc_kafka_produce_duration_seconds[5m])`,
			[]string{"onesignal_cdc_kafka_produce_duration_seconds is a histogram: read its _bucket, _sum or _count series"}},
		{"rejects _bucket of a counter", `onesignal_cdc_sink_retries_total_bucket`, []string{"onesignal_cdc_sink_retries_total_bucket: onesignal_cdc_sink_retries_total is not a histogram"}},
		{"rejects an expression without the daemon's metrics", `up == 0`, []string{"reads none of the daemon's metrics"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Problems(tc.expr); !slices.Equal(got, tc.want) {
				t.Errorf("Problems(%q) = %q, want %q", tc.expr, got, tc.want)
			}
		})
	}
}
