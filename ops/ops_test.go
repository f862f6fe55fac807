package ops_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/onesignal-cdc/onesignal-cdc/connector"
	"github.com/onesignal-cdc/onesignal-cdc/emulator"
	"github.com/onesignal-cdc/onesignal-cdc/event"
	"github.com/onesignal-cdc/onesignal-cdc/ops"
	"github.com/onesignal-cdc/onesignal-cdc/reconcile"
	"github.com/onesignal-cdc/onesignal-cdc/sink"
	"github.com/onesignal-cdc/onesignal-cdc/sink/onesignal"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

// agreedMetrics are the names docs/metrics.md lists, which the Helm
// chart's alerts and the Grafana dashboard use.
var agreedMetrics = []string{
	"onesignal_cdc_build_info",
	"onesignal_cdc_component_up",
	"onesignal_cdc_replication_slot_lag_bytes",
	"onesignal_cdc_replication_slot_retained_wal_bytes",
	"onesignal_cdc_source_lag_seconds",
	"onesignal_cdc_connector_events_total",
	"onesignal_cdc_connector_confirmed_lsn_bytes",
	"onesignal_cdc_kafka_produce_duration_seconds",
	"onesignal_cdc_kafka_produce_errors_total",
	"onesignal_cdc_snapshot_rows_total",
	"onesignal_cdc_sink_messages_total",
	"onesignal_cdc_sink_retries_total",
	"onesignal_cdc_sink_dead_lettered_total",
	"onesignal_cdc_onesignal_requests_total",
	"onesignal_cdc_onesignal_request_duration_seconds",
	"onesignal_cdc_sink_rate_limit_waits_total",
	"onesignal_cdc_sink_rate_limit_wait_seconds_total",
	"onesignal_cdc_sink_rate_limit_requests_per_second",
	"onesignal_cdc_sink_consumer_lag_messages",
	"onesignal_cdc_sink_in_flight_messages",
	"onesignal_cdc_sink_rate_limit_share",
	"onesignal_cdc_sink_group_members",
	"onesignal_cdc_sink_assigned_partitions",
	"onesignal_cdc_sink_onesignal_unreachable_seconds",
	"onesignal_cdc_sink_drift_detected_total",
	"onesignal_cdc_sink_drift_repaired_total",
	"onesignal_cdc_sink_drift_sweeps_total",
	"onesignal_cdc_sink_drift_sweep_progress",
	"onesignal_cdc_sink_drift_last_sweep_timestamp_seconds",
	"onesignal_cdc_sink_drift_ignored_tags",
}

// busyDrift is what busyPipeline's sink says its sweeps found.
var busyDrift = sink.DriftStats{Enabled: true, Repair: true, Sweeps: 2, Progress: 1, Budget: 22.5,
	Started: time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC), Completed: time.Date(2026, 1, 2, 3, 9, 0, 0, time.UTC),
	Detected: map[reconcile.Kind]int64{reconcile.WrongTag: 3, reconcile.MissingUser: 1}, Repaired: map[reconcile.Kind]int64{reconcile.WrongTag: 3},
	Last: &sink.SweepReport{Started: time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC), Completed: time.Date(2026, 1, 2, 3, 9, 0, 0, time.UTC),
		Users: 10, Devices: 4, Counts: map[reconcile.Kind]int{reconcile.WrongTag: 2},
		Examples: []reconcile.Drift{{Kind: reconcile.WrongTag, ExternalID: "team/ops 7%?Müller", Tag: "plan", Want: "pro", Have: "hacked"}},
		Ignored:  map[string]int{"sdk_version": 7}, Repaired: 2}}

// fixedSlot is a SlotReader that reports the same slot every time.
type fixedSlot struct {
	st  connector.SlotStats
	err error
}

func (f fixedSlot) Read(context.Context) (connector.SlotStats, error) { return f.st, f.err }
func (f fixedSlot) Close()                                            {}

var mapping = &transform.Mapping{
	Users: &transform.UsersMapping{Table: "public.users", ExternalID: "external_id", Tags: map[string]string{"plan": "", "score": "level", "signed_up": "signup"},
		Convert: map[string]string{"signed_up": transform.ConvertUnixSeconds}, Email: "email"},
	Devices: &transform.DevicesMapping{Table: "public.devices", DeviceID: "player_id", ExternalID: "user_external_id"},
}

// started runs a server on a free port until the test ends, and returns
// it with its base URL.
func started(t *testing.T, srv *ops.Server) string {
	t.Helper()
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return "http://" + srv.Addr()
}

func newServer(t *testing.T) *ops.Server {
	return ops.New(ops.Config{Listen: "127.0.0.1:0", Version: "v1.2.3-test", Mapping: mapping, TopicPrefix: "cdc",
		Secrets: []onesignal.Secret{"s3cret-key", "pg-password"}}, zap.NewNop())
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// busyPipeline is a server whose connector and sink reported some work.
func busyPipeline(t *testing.T) (*ops.Server, *ops.ConnectorMonitor, *ops.SinkMonitor) {
	srv := newServer(t)
	conn := srv.Connector(ops.ConnectorConfig{Slot: "cdc_slot", Tables: mapping.Tables(),
		Slots: fixedSlot{st: connector.SlotStats{Slot: "cdc_slot", Exists: true, Active: true, WALStatus: "reserved", LagBytes: 123456, RetainedBytes: 4 << 20}}})
	conn.StatusChanged(connector.Streaming, nil)
	conn.Produced(connector.Write{Duration: 3 * time.Millisecond, Events: map[event.Op]int{event.OpCreate: 2, event.OpSnapshot: 5},
		SnapshotRows: map[string]int{"public.users": 5}, Committed: time.Now().Add(-2 * time.Second)})
	conn.Produced(connector.Write{Duration: 10 * time.Second, Err: errors.New("kafka: request timed out")})
	conn.Produced(connector.Write{Duration: time.Millisecond, Events: map[event.Op]int{event.OpUpdate: 1}})
	conn.Confirmed(connector.Position{Confirmed: 0x16B3748})
	snk := srv.Sink(ops.SinkConfig{BaseURL: "https://api.onesignal.com"})
	snk.Watch(func() sink.Stats {
		return sink.Stats{Fetched: 12, Done: 10, Replays: 2, DeadLettered: 1, Retries: 4, RateLimitWaits: 3, RateLimitWaited: 1500 * time.Millisecond, Rate: 720,
			RateShare: 0.5, RateLimit: 900, Generation: 3, Members: 2, Assigned: map[string]int{"cdc.public.users": 2, "cdc.sink-targets": 2},
			Group: []sink.GroupMember{
				{ID: "onesignal-cdc@sink-7f9c-a (github.com/segmentio/kafka-go)-0b1e", ClientID: "onesignal-cdc@sink-7f9c-a (github.com/segmentio/kafka-go)", Host: "10.0.3.7",
					This: true, Assigned: map[string][]int{"cdc.sink-targets": {0, 1}, "cdc.public.users": {0, 1}}, Share: 0.5},
				{ID: "onesignal-cdc@sink-7f9c-b (github.com/segmentio/kafka-go)-4c2d", ClientID: "onesignal-cdc@sink-7f9c-b (github.com/segmentio/kafka-go)", Host: "10.0.3.8",
					Assigned: map[string][]int{"cdc.public.users": {2, 3}, "cdc.sink-targets": {2, 3}}, Share: 0.5},
			},
			Drift: busyDrift}
	}, func() kafka.ReaderStats { return kafka.ReaderStats{Fetches: 4, Lag: 7} })
	snk.WatchLag(func(context.Context) []sink.PartitionLag {
		return []sink.PartitionLag{
			{Topic: "cdc.public.users", Partition: 0, End: 100, Committed: 58, Lag: 42},
			{Topic: "cdc.sink-targets", Partition: 1, End: 9, Committed: kafka.FirstOffset, Lag: 9},
		}
	})
	return srv, conn, snk
}

func TestMetricsAreLintCleanAndNamedAsAgreed(t *testing.T) {
	srv, _, snk := busyPipeline(t)
	_, url := emulator.NewTestServer(t, emulator.Config{AppID: "app-1", APIKey: "s3cret-key"})
	api, err := onesignal.New(onesignal.Config{BaseURL: url, AppID: "app-1", APIKey: "s3cret-key", HTTPClient: snk.HTTPClient()})
	if err != nil {
		t.Fatal(err)
	}
	if err := api.SetTags(t.Context(), "ada", map[string]string{"plan": "pro"}, false); err != nil {
		t.Fatal(err)
	}
	base := started(t, srv)
	get(t, base+"/metrics") // lets the watcher poll once more

	families, err := srv.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	have := map[string]*dto.MetricFamily{}
	for _, f := range families {
		have[f.GetName()] = f
	}
	for _, name := range agreedMetrics {
		if have[name] == nil {
			t.Errorf("metric %s is missing", name)
		}
	}
	for name := range have {
		if strings.HasPrefix(name, "onesignal_cdc_") && !contains(agreedMetrics, name) {
			t.Errorf("metric %s is not among the agreed names (add it to docs/metrics.md and notes first)", name)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestMetricsCarryWhatTheComponentsReported(t *testing.T) {
	srv, _, _ := busyPipeline(t)
	base := started(t, srv)
	_, body := get(t, base+"/metrics")
	for _, want := range []string{
		`onesignal_cdc_connector_events_total{op="c"} 2`,
		`onesignal_cdc_connector_events_total{op="u"} 1`,
		`onesignal_cdc_connector_events_total{op="d"} 0`,
		`onesignal_cdc_connector_events_total{op="r"} 5`,
		`onesignal_cdc_snapshot_rows_total{table="public.users"} 5`,
		`onesignal_cdc_snapshot_rows_total{table="public.devices"} 0`,
		`onesignal_cdc_kafka_produce_errors_total 1`,
		`onesignal_cdc_kafka_produce_duration_seconds_count 3`,
		`onesignal_cdc_connector_confirmed_lsn_bytes 2.380372e+07`,
		`onesignal_cdc_replication_slot_lag_bytes{slot="cdc_slot"} 123456`,
		`onesignal_cdc_replication_slot_retained_wal_bytes{slot="cdc_slot"} 4.194304e+06`,
		`onesignal_cdc_sink_messages_total{outcome="applied"} 7`,
		`onesignal_cdc_sink_messages_total{outcome="skipped"} 2`,
		`onesignal_cdc_sink_messages_total{outcome="dead_lettered"} 1`,
		`onesignal_cdc_sink_dead_lettered_total 1`,
		`onesignal_cdc_sink_retries_total 4`,
		`onesignal_cdc_sink_in_flight_messages 2`,
		`onesignal_cdc_sink_consumer_lag_messages{partition="0",topic="cdc.public.users"} 42`,
		`onesignal_cdc_sink_consumer_lag_messages{partition="1",topic="cdc.sink-targets"} 9`,
		`onesignal_cdc_sink_rate_limit_share 0.5`,
		`onesignal_cdc_sink_group_members 2`,
		`onesignal_cdc_sink_assigned_partitions{topic="cdc.sink-targets"} 2`,
		`onesignal_cdc_sink_rate_limit_waits_total 3`,
		`onesignal_cdc_sink_rate_limit_wait_seconds_total 1.5`,
		`onesignal_cdc_sink_rate_limit_requests_per_second 720`,
		`onesignal_cdc_build_info{goversion="go`,
		`onesignal_cdc_component_up{component="connector"} 1`,
	} {
		if !strings.Contains(body, want+"\n") && !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// The source lag counts from the newest acknowledged commit, two
	// seconds before the test began.
	if !strings.Contains(body, "onesignal_cdc_source_lag_seconds 2.") && !strings.Contains(body, "onesignal_cdc_source_lag_seconds 3.") {
		t.Errorf("source lag is not about 2 s:\n%s", grep(body, "source_lag"))
	}
}

func grep(body, s string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestLivezAnswersWhateverTheComponentsDo(t *testing.T) {
	srv := newServer(t)
	conn := srv.Connector(ops.ConnectorConfig{Slot: "cdc_slot"})
	conn.StatusChanged(connector.Stopped, errors.New("boom"))
	base := started(t, srv)
	if code, body := get(t, base+"/livez"); code != 200 || body != "ok\n" {
		t.Errorf("/livez: %d %q, want 200 ok", code, body)
	}
}

func TestReadyzNamesWhatIsDown(t *testing.T) {
	srv := newServer(t)
	conn := srv.Connector(ops.ConnectorConfig{Slot: "cdc_slot"})
	snk := srv.Sink(ops.SinkConfig{})
	base := started(t, srv)

	expect := func(when string, code int, parts ...string) {
		t.Helper()
		got, body := get(t, base+"/readyz")
		if got != code {
			t.Errorf("%s: /readyz %d, want %d (%q)", when, got, code, body)
		}
		for _, p := range parts {
			if !strings.Contains(body, p) {
				t.Errorf("%s: /readyz body %q lacks %q", when, body, p)
			}
		}
	}
	expect("before anything runs", 503, "connector: not started yet", "sink: not started yet")

	conn.StatusChanged(connector.Connecting, nil)
	stop := make(chan struct{})
	ran := make(chan error, 1)
	go func() {
		ran <- snk.Wrap(runnerFunc(func(ctx context.Context) error { <-stop; return errors.New("fetch from kafka: broken") })).Run(t.Context())
	}()
	expect("while the connector connects", 503, "connector: connecting to PostgreSQL")

	conn.StatusChanged(connector.Streaming, nil)
	waitFor(t, "the sink to run", func() bool { code, _ := get(t, base+"/readyz"); return code == 200 })
	expect("while both run", 200, "ok")

	conn.Produced(connector.Write{Err: errors.New("kafka: broker not available")})
	expect("while Kafka refuses writes", 503, "connector: Kafka writes failing: kafka: broker not available")
	conn.Produced(connector.Write{Events: map[event.Op]int{event.OpCreate: 1}})
	expect("once a write went through", 200)

	conn.StatusChanged(connector.Connecting, errors.New("receive from walsender: connection reset by peer"))
	expect("while reconnecting", 503, "connector: replication interrupted: receive from walsender: connection reset by peer")
	conn.StatusChanged(connector.Standby, errors.New("replication slot is active"))
	expect("as a standby", 503, `connector: another process streams from slot "cdc_slot"`)
	conn.StatusChanged(connector.Streaming, nil)

	close(stop)
	<-ran
	expect("after the sink stopped", 503, "sink: stopped: fetch from kafka: broken")
	if strings.Contains(mustGet(t, base+"/readyz"), "connector") {
		t.Errorf("/readyz names the connector, which is up")
	}
}

type runnerFunc func(ctx context.Context) error

func (f runnerFunc) Run(ctx context.Context) error { return f(ctx) }

func mustGet(t *testing.T, url string) string {
	_, body := get(t, url)
	return body
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestErrorsNeverShowASecret(t *testing.T) {
	srv := newServer(t)
	conn := srv.Connector(ops.ConnectorConfig{Slot: "cdc_slot"})
	conn.StatusChanged(connector.Connecting, errors.New(`connect to postgres://cdc:pg-password@db:5432/app failed`))
	conn.StatusChanged(connector.Connecting, errors.New(`cannot parse "host=db user=cdc password='it''s s3cret' dbname=app"`))
	conn.StatusChanged(connector.Connecting, errors.New(`oops: postgres://cdc:other-pass@db/app`))
	conn.StatusChanged(connector.Stopped, errors.New(`onesignal said: bad key s3cret-key`))
	base := started(t, srv)
	for _, path := range []string{"/", "/status.json", "/readyz"} {
		_, body := get(t, base+path)
		for _, secret := range []string{"pg-password", "s3cret", "other-pass"} {
			if strings.Contains(body, secret) {
				t.Errorf("%s shows %q:\n%s", path, secret, body)
			}
		}
	}
	if body := mustGet(t, base+"/status.json"); !strings.Contains(body, "postgres://cdc:[redacted]@db/app") {
		t.Errorf("/status.json does not show the DSN with its password redacted:\n%s", body)
	}
}

func TestOneSignalRequestsAreCountedByEndpointAndStatus(t *testing.T) {
	emu, url := emulator.NewTestServer(t, emulator.Config{AppID: "app-1", APIKey: "s3cret-key"})
	srv := newServer(t)
	snk := srv.Sink(ops.SinkConfig{BaseURL: url})
	api, err := onesignal.New(onesignal.Config{BaseURL: url, AppID: "app-1", APIKey: "s3cret-key", HTTPClient: snk.HTTPClient()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	// A new user: 404 to the update, 201 to the create.
	if err := api.SetTags(ctx, "ada", map[string]string{"plan": "pro"}, false); err != nil {
		t.Fatal(err)
	}
	if err := api.SetTags(ctx, "ada", map[string]string{"plan": "free"}, false); err != nil {
		t.Fatal(err)
	}
	if err := api.CheckCredentials(ctx); err != nil {
		t.Fatal(err)
	}
	if err := emu.SetFaults(emulator.Faults{Status: map[int]float64{429: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := api.SetTags(ctx, "ada", map[string]string{"plan": "team"}, false); err == nil {
		t.Fatal("SetTags succeeded against a 429")
	}
	if err := emu.SetFaults(emulator.Faults{}); err != nil {
		t.Fatal(err)
	}
	base := started(t, srv)
	body := mustGet(t, base+"/metrics")
	const update = `endpoint="PATCH /apps/{app_id}/users/by/external_id/{id}"`
	for _, want := range []string{
		`onesignal_cdc_onesignal_requests_total{` + update + `,status="202"} 1`,
		`onesignal_cdc_onesignal_requests_total{` + update + `,status="404"} 1`,
		`onesignal_cdc_onesignal_requests_total{` + update + `,status="429"} 1`,
		`onesignal_cdc_onesignal_requests_total{endpoint="POST /apps/{app_id}/users",status="201"} 1`,
		`onesignal_cdc_onesignal_requests_total{endpoint="GET /apps/{app_id}/users/by/external_id/{id}",status="404"} 1`,
		`onesignal_cdc_onesignal_request_duration_seconds_count{` + update + `} 3`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %s; it has:\n%s", want, grep(body, "onesignal_requests_total"))
		}
	}
	if lines := grep(body, "onesignal_request"); strings.Contains(lines, "ada") || strings.Contains(lines, "app-1") || strings.Contains(lines, "credentials-check") {
		t.Errorf("an id made it into a label:\n%s", lines)
	}
	if st := srv.Status(); st.Pipeline[4].State != ops.StageWarn {
		t.Errorf("after a 429, OneSignal's box is %q, want warn", st.Pipeline[4].State)
	}
	if err := api.SetTags(ctx, "ada", map[string]string{"plan": "team"}, false); err != nil {
		t.Fatal(err)
	}
	if st := srv.Status(); st.Pipeline[4].State != ops.StageUp {
		t.Errorf("after a 429 and a success, OneSignal's box is %q, want up", st.Pipeline[4].State)
	}
}

func TestRefusedCredentialsMarkTheSinkDownUntilOneSignalAcceptsThem(t *testing.T) {
	_, url := emulator.NewTestServer(t, emulator.Config{AppID: "app-1", APIKey: "right-key"})
	srv := newServer(t)
	snk := srv.Sink(ops.SinkConfig{BaseURL: url})
	stop := make(chan struct{})
	defer close(stop)
	go snk.Wrap(runnerFunc(func(context.Context) error { <-stop; return nil })).Run(t.Context()) //nolint:errcheck
	base := started(t, srv)
	waitFor(t, "the sink to be up", func() bool { code, _ := get(t, base+"/readyz"); return code == 200 })

	wrong, _ := onesignal.New(onesignal.Config{BaseURL: url, AppID: "app-1", APIKey: "wrong-key", HTTPClient: snk.HTTPClient()})
	if err := wrong.SetTags(t.Context(), "ada", map[string]string{"plan": "pro"}, false); err == nil {
		t.Fatal("a wrong key was accepted")
	}
	code, body := get(t, base+"/readyz")
	if code != 503 || !strings.Contains(body, "sink: OneSignal refused the credentials (HTTP 403 on PATCH /apps/{app_id}/users/by/external_id/{id})") {
		t.Errorf("after a 403: /readyz %d %q", code, body)
	}
	if st := srv.Status(); st.Pipeline[4].State != ops.StageDown {
		t.Errorf("after a 403, OneSignal's box is %q, want down", st.Pipeline[4].State)
	}

	right, _ := onesignal.New(onesignal.Config{BaseURL: url, AppID: "app-1", APIKey: "right-key", HTTPClient: snk.HTTPClient()})
	if err := right.SetTags(t.Context(), "ada", map[string]string{"plan": "pro"}, false); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, base+"/readyz"); code != 200 {
		t.Errorf("after OneSignal accepted a request: /readyz %d %q", code, body)
	}
}

func TestEndpointTemplatesKeepIDsOutOfLabels(t *testing.T) {
	for _, tc := range []struct{ method, path, want string }{
		{"PATCH", "/apps/5f3c/users/by/external_id/ada", "PATCH /apps/{app_id}/users/by/external_id/{id}"},
		{"PATCH", "/apps/5f3c/users/by/external_id/users", "PATCH /apps/{app_id}/users/by/external_id/{id}"},
		{"GET", "/apps/5f3c/users/by/onesignal_id/1b2c/identity", "GET /apps/{app_id}/users/by/onesignal_id/{id}/identity"},
		{"GET", "/apps/5f3c/users/by/crm_id/77", "GET /apps/{app_id}/users/by/{alias_label}/{id}"},
		{"POST", "/apps/5f3c/users", "POST /apps/{app_id}/users"},
		{"PATCH", "/apps/5f3c/subscriptions/8d1e/owner", "PATCH /apps/{app_id}/subscriptions/{id}/owner"},
		{"PUT", "/players/8c2f", "PUT /players/{id}"},
		{"POST", "/players", "POST /players"},
		{"PUT", "/api/v1/players/8c2f", "PUT /api/v1/players/{id}"},
		{"PUT", "/apps/5f3c/users/ada", "PUT /apps/{app_id}/users/{id}"},
		{"PUT", "/apps/5f3c/users/a%2Fb", "PUT /apps/{app_id}/users/{id}"},
		{"GET", "/", "GET /"},
	} {
		if got := ops.Endpoint(tc.method, tc.path); got != tc.want {
			t.Errorf("Endpoint(%s %s) = %q, want %q", tc.method, tc.path, got, tc.want)
		}
	}
}

func TestStatusJSONDescribesTheMapping(t *testing.T) {
	srv, _, _ := busyPipeline(t)
	var st ops.Status
	if err := json.Unmarshal([]byte(mustGet(t, started(t, srv)+"/status.json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Mapping) != 2 {
		t.Fatalf("mapping rows: %+v", st.Mapping)
	}
	users, devices := st.Mapping[0], st.Mapping[1]
	if users.Table != "public.users" || users.Topic != "cdc.public.users" || strings.Join(users.Maps, "; ") != "external_id ← external_id; tag plan ← plan; tag level ← score; tag signup ← signed_up (unix_seconds); email record ← email" {
		t.Errorf("users row: %+v", users)
	}
	if devices.Table != "public.devices" || devices.Topic != "cdc.public.devices" || strings.Join(devices.Maps, "; ") != "device ← player_id; owner external_id ← user_external_id" {
		t.Errorf("devices row: %+v", devices)
	}
	if st.Sink == nil || st.Sink.DeadLettered != 1 || st.Connector == nil || st.Connector.SlotLagBytes == nil || *st.Connector.SlotLagBytes != 123456 {
		t.Errorf("figures: connector %+v sink %+v", st.Connector, st.Sink)
	}
	if st.Ready {
		t.Errorf("ready, though the sink has not started")
	}
}

func TestStatusShowsTheLastTenDeadLettersWithTheirReasons(t *testing.T) {
	srv, _, snk := busyPipeline(t)
	dead := snk.DeadLettered()
	for i := range 12 {
		dead(sink.DeadLetter{Topic: "cdc.public.devices", Partition: 1, Offset: int64(100 + i), Stage: "onesignal", Status: 400,
			Reason: fmt.Sprintf("message cdc.public.devices/1@%d: link device d%d to ada: HTTP 400: No user with this id found (key s3cret-key)", 100+i, i)})
	}
	dead(sink.DeadLetter{Topic: "cdc.public.users", Offset: 7, Stage: "transform", Reason: `message cdc.public.users/0@7: column "score": not a number`})
	base := started(t, srv)

	var st ops.Status
	if err := json.Unmarshal([]byte(mustGet(t, base+"/status.json")), &st); err != nil {
		t.Fatal(err)
	}
	got := st.Sink.LastDeadLetters
	if len(got) != 10 {
		t.Fatalf("/status.json lists %d dead letters, want the last 10", len(got))
	}
	if got[0].Topic != "cdc.public.users" || got[0].Offset != 7 || got[0].Stage != "transform" || got[0].HTTPStatus != 0 || got[0].Time.IsZero() {
		t.Errorf("newest dead letter: %+v", got[0])
	}
	if got[1].Offset != 111 || got[1].HTTPStatus != 400 || got[9].Offset != 103 {
		t.Errorf("not the last ten, newest first: second %+v, last %+v", got[1], got[9])
	}
	if strings.Contains(got[1].Reason, "s3cret") || !strings.Contains(got[1].Reason, "No user with this id found") {
		t.Errorf("reason %q: want OneSignal's words and no secret", got[1].Reason)
	}

	page := mustGet(t, base+"/")
	for _, want := range []string{
		`<table id="dead-letters">`,
		`<td>cdc.public.devices/1@111</td><td>onesignal</td><td>400</td><td class="msg">message cdc.public.devices/1@111: link device d11 to ada: HTTP 400: No user with this id found (key [redacted])</td>`,
		`<td>cdc.public.users/0@7</td><td>transform</td><td>–</td>`,
		`last: <a href="#dead-letters">transform, cdc.public.users/0@7</a>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the status page lacks %s", want)
		}
	}
	if n := strings.Count(page, `<tr class="dead-letter">`); n != 10 {
		t.Errorf("the status page shows %d dead letters, want 10", n)
	}
}

func TestAStatusPageWithoutDeadLettersSaysSo(t *testing.T) {
	srv := newServer(t)
	srv.Sink(ops.SinkConfig{})
	page := mustGet(t, started(t, srv)+"/")
	if !strings.Contains(page, `<p id="dead-letters" class="muted">None since the start.</p>`) {
		t.Errorf("the page does not say there is no dead letter:\n%s", page)
	}
	if !strings.Contains(mustGet(t, "http://"+srv.Addr()+"/status.json"), `"last_dead_letters": []`) {
		t.Errorf("/status.json does not list an empty last_dead_letters")
	}
}

func TestCleanStopsLogAtInfoAndAFailureNamesItsComponent(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	srv := ops.New(ops.Config{Listen: "127.0.0.1:0"}, zap.New(core))
	conn := srv.Connector(ops.ConnectorConfig{Slot: "cdc_slot"})
	snk := srv.Sink(ops.SinkConfig{})
	stop := make(chan struct{})
	ran := make(chan error, 1)
	go func() {
		ran <- snk.Wrap(runnerFunc(func(context.Context) error { <-stop; return nil })).Run(t.Context())
	}()
	waitFor(t, "the sink to be up", func() bool { return logs.FilterMessage("component up").Len() == 1 })

	// A wrong password: the connector fails before it was ever up, and the
	// daemon then stops the sink, which did nothing wrong.
	conn.StatusChanged(connector.Connecting, nil)
	conn.StatusChanged(connector.Stopped, errors.New(`connect: password authentication failed for user "cdc"`))
	close(stop)
	<-ran

	failed := logs.FilterMessage("component stopped on an error").AllUntimed()
	if len(failed) != 1 || failed[0].Level != zap.ErrorLevel || failed[0].ContextMap()["component"] != "connector" ||
		!strings.Contains(failed[0].ContextMap()["reason"].(string), "password authentication failed") {
		t.Errorf("the connector's failure is logged as %+v, want one error naming the connector and the reason", failed)
	}
	stopped := logs.FilterMessage("component stopped").AllUntimed()
	if len(stopped) != 1 || stopped[0].Level != zap.InfoLevel || stopped[0].ContextMap()["component"] != "sink" {
		t.Errorf("the sink's clean stop is logged as %+v, want one info line naming the sink", stopped)
	}
	if down := logs.FilterMessage("component down").AllUntimed(); len(down) != 0 {
		t.Errorf("a stop is logged as a component going down: %+v", down)
	}

	// A clean stop of the connector after streaming is an info line too.
	conn.StatusChanged(connector.Streaming, nil)
	conn.StatusChanged(connector.Stopped, nil)
	if got := logs.FilterMessage("component stopped").FilterField(zap.String("component", "connector")).AllUntimed(); len(got) != 1 || got[0].Level != zap.InfoLevel {
		t.Errorf("the connector's clean stop is logged as %+v", got)
	}
	if down := logs.FilterMessage("component down").AllUntimed(); len(down) != 0 {
		t.Errorf("a clean stop is logged as a component going down: %+v", down)
	}
}

func TestAnIdleDatabaseShowsAsIdleWithTheHeartbeatsAge(t *testing.T) {
	srv := newServer(t)
	conn := srv.Connector(ops.ConnectorConfig{Slot: "cdc_slot"})
	conn.StatusChanged(connector.Streaming, nil)
	conn.Produced(connector.Write{Events: map[event.Op]int{event.OpCreate: 1}, Committed: time.Now().Add(-time.Hour)})
	conn.Confirmed(connector.Position{Confirmed: 0x16B3748, CaughtUp: time.Now().Add(-4 * time.Second)})

	st := srv.Status()
	if c := st.Connector; !c.Idle || c.HeartbeatAgeSeconds == nil || *c.HeartbeatAgeSeconds < 3.5 || *c.HeartbeatAgeSeconds > 10 {
		t.Fatalf("caught up an hour after the last commit: idle %v, heartbeat age %v; want idle, about 4 s", c.Idle, c.HeartbeatAgeSeconds)
	}
	page := mustGet(t, started(t, srv)+"/")
	flat := strings.Join(strings.Fields(page), " ")
	if !strings.Contains(flat, `<h3>Source lag</h3> <div class="value">idle</div> <div class="sub">caught up; no change to stream · last heartbeat 4.`) {
		t.Errorf("the source lag card does not say idle with the heartbeat's age:\n%s", grep(page, "Source lag"))
	}

	// A commit after the last heartbeat: a lag again, not idle.
	conn.Produced(connector.Write{Events: map[event.Op]int{event.OpUpdate: 1}, Committed: time.Now().Add(-time.Second)})
	if c := srv.Status().Connector; c.Idle || c.SourceLagSeconds == nil {
		t.Errorf("after a newer commit: idle %v, lag %v; want a lag", c.Idle, c.SourceLagSeconds)
	}
}

func TestTheRateLimitSaysLoweredOnlyAfterA429(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rate      float64
		slowDowns int64
		want      string
	}{
		{"no 429", 900, 0, "onesignal.rate_limit; OneSignal sent no 429 so far"},
		{"lowered", 720, 1, "lowered after one 429 from OneSignal; climbing back to 900/s"},
		{"recovered", 900, 3, "onesignal.rate_limit again, after 3 429s from OneSignal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			snk := srv.Sink(ops.SinkConfig{RateLimit: 900})
			snk.Watch(func() sink.Stats { return sink.Stats{Rate: tc.rate, SlowDowns: tc.slowDowns} }, func() kafka.ReaderStats { return kafka.ReaderStats{} })
			if got := srv.Status().Sink.RateLimitNote; got != tc.want {
				t.Errorf("note %q, want %q", got, tc.want)
			}
			if page := mustGet(t, started(t, srv)+"/"); !strings.Contains(page, "now: "+tc.want) {
				t.Errorf("the rate-limit card does not say %q:\n%s", tc.want, grep(page, "now:"))
			}
		})
	}
}

func TestTheEmbeddedBrokerShowsAsDevelopmentOnly(t *testing.T) {
	for _, embedded := range []bool{true, false} {
		srv := ops.New(ops.Config{Listen: "127.0.0.1:0", EmbeddedKafka: embedded}, zap.NewNop())
		conn := srv.Connector(ops.ConnectorConfig{Slot: "cdc_slot"})
		conn.Produced(connector.Write{Events: map[event.Op]int{event.OpCreate: 1}})
		kafkaStage := srv.Status().Pipeline[2]
		if kafkaStage.Name != "Kafka" || !strings.HasPrefix(kafkaStage.Note, "reachable") ||
			strings.Contains(kafkaStage.Note, "development only") != embedded {
			t.Errorf("embedded %v: Kafka's box says %q", embedded, kafkaStage.Note)
		}
	}
}

func TestErrorsOnThePageLeaveOutGoMethodNames(t *testing.T) {
	srv := newServer(t)
	conn := srv.Connector(ops.ConnectorConfig{Slot: "cdc_slot"})
	conn.StatusChanged(connector.Connecting, errors.New("create topic: kafka.(*Client).Metadata: dial tcp 127.0.0.1:9092: connect: connection refused"))
	base := started(t, srv)
	for _, path := range []string{"/", "/status.json", "/readyz"} {
		body := mustGet(t, base+path)
		if strings.Contains(body, "(*Client)") || !strings.Contains(body, "create topic: dial tcp 127.0.0.1:9092: connect: connection refused") {
			t.Errorf("%s shows the error with Go's method name, or not at all:\n%s", path, grep(body, "dial tcp"))
		}
	}
}

func TestTheStatusPageShowsTheGroupsMembersTheirPartitionsAndSharesAndThisMembersLag(t *testing.T) {
	srv, _, _ := busyPipeline(t)
	base := started(t, srv)
	get(t, base+"/metrics") // the watcher polls the lag
	var st ops.Status
	if err := json.Unmarshal([]byte(mustGet(t, base+"/status.json")), &st); err != nil {
		t.Fatal(err)
	}
	s := st.Sink
	if s == nil || s.Members != 2 || s.Generation != 3 || s.RateShare != 0.5 || s.GroupRateLimit != 900 {
		t.Fatalf("sink %+v: want 2 members, generation 3, half of 900/s", s)
	}
	want := []ops.PartitionState{
		{Topic: "cdc.public.users", Partition: 0, Committed: 58, End: 100, Lag: 42},
		{Topic: "cdc.sink-targets", Partition: 1, Committed: -2, End: 9, Lag: 9},
	}
	if !reflect.DeepEqual(s.Partitions, want) || s.ConsumerLag == nil || *s.ConsumerLag != 51 {
		t.Errorf("partitions %+v, lag %v; want %+v, 51", s.Partitions, s.ConsumerLag, want)
	}
	wantGroup := []ops.GroupMember{
		{ID: "onesignal-cdc@sink-7f9c-a (github.com/segmentio/kafka-go)-0b1e", Name: "sink-7f9c-a", Host: "10.0.3.7", This: true, RateShare: 0.5,
			Partitions: []ops.TopicPartitions{{Topic: "cdc.public.users", Partitions: []int{0, 1}}, {Topic: "cdc.sink-targets", Partitions: []int{0, 1}}}},
		{ID: "onesignal-cdc@sink-7f9c-b (github.com/segmentio/kafka-go)-4c2d", Name: "sink-7f9c-b", Host: "10.0.3.8", RateShare: 0.5,
			Partitions: []ops.TopicPartitions{{Topic: "cdc.public.users", Partitions: []int{2, 3}}, {Topic: "cdc.sink-targets", Partitions: []int{2, 3}}}},
	}
	if !reflect.DeepEqual(s.Group, wantGroup) {
		t.Errorf("group %+v, want %+v", s.Group, wantGroup)
	}
	page := mustGet(t, base+"/")
	for _, want := range []string{"2 members", "50 % of 900/s for the group", "<td>cdc.sink-targets</td><td>1</td><td>none</td><td>9</td><td>9</td>",
		`<td>sink-7f9c-a <span class="muted">(this member)</span></td><td>10.0.3.7</td>`,
		"<td>sink-7f9c-b</td><td>10.0.3.8</td>\n    <td>cdc.public.users: 2, 3<br>cdc.sink-targets: 2, 3</td>\n    <td>50 % · 450/s</td>"} {
		if !strings.Contains(page, want) {
			t.Errorf("the status page lacks %q", want)
		}
	}
}

func TestTheStatusPageAndMetricsShowWhatTheDriftSweepsFound(t *testing.T) {
	srv, _, _ := busyPipeline(t)
	base := started(t, srv)
	var st ops.Status
	if err := json.Unmarshal([]byte(mustGet(t, base+"/status.json")), &st); err != nil {
		t.Fatal(err)
	}
	d := st.Sink.Drift
	if d == nil {
		t.Fatal("status.json has no drift section")
	}
	if d.Sweeps != 2 || !d.Repair || d.Users != 10 || d.Devices != 4 || d.Repaired != 2 || d.LastCompleted == nil ||
		!reflect.DeepEqual(d.Counts, map[string]int{"wrong_tag": 2}) || !reflect.DeepEqual(d.IgnoredTags, map[string]int{"sdk_version": 7}) ||
		d.DetectedTotal["missing_user"] != 1 || d.RepairedTotal["wrong_tag"] != 3 {
		t.Errorf("drift %+v", d)
	}
	wantEx := []ops.DriftExample{{Kind: "wrong_tag", ExternalID: "team/ops 7%?Müller", Tag: "plan", Want: "pro", Have: "hacked"}}
	if !reflect.DeepEqual(d.Examples, wantEx) {
		t.Errorf("examples %+v, want %+v", d.Examples, wantEx)
	}
	page := mustGet(t, base+"/")
	for _, want := range []string{"<h2>Drift</h2>", "Continuous mode, repairing at up to 22.5/s", "10 users and 4 devices compared",
		"<td>wrong_tag</td><td>2</td><td>3</td><td>3</td>", "<td>team/ops 7%?Müller</td>", "sdk_version (7)"} {
		if !strings.Contains(page, want) {
			t.Errorf("the status page lacks %q", want)
		}
	}
	_, metrics := get(t, base+"/metrics")
	for _, want := range []string{
		`onesignal_cdc_sink_drift_detected_total{kind="wrong_tag"} 3`,
		`onesignal_cdc_sink_drift_detected_total{kind="missing_user"} 1`,
		`onesignal_cdc_sink_drift_detected_total{kind="wrong_owner"} 0`,
		`onesignal_cdc_sink_drift_repaired_total{kind="wrong_tag"} 3`,
		`onesignal_cdc_sink_drift_sweeps_total{outcome="completed"} 2`,
		`onesignal_cdc_sink_drift_sweep_progress 1`,
		`onesignal_cdc_sink_drift_last_sweep_timestamp_seconds 1.76732334e+09`,
		`onesignal_cdc_sink_drift_ignored_tags 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("the metrics lack %q", want)
		}
	}
}
