package helmchart

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/onesignal-cdc/onesignal-cdc/tools/internal/daemon"
	"github.com/onesignal-cdc/onesignal-cdc/tools/internal/metricnames"
)

func TestChartRendersValidKubernetesObjects(t *testing.T) {
	for _, tc := range []struct {
		name                        string
		files                       []string
		deployments, services, pdbs int
		secrets, monitors, rules    int
	}{
		{"with the minimal values", []string{minimalValues}, 2, 2, 0, 1, 0, 0},
		{"with the production values", []string{productionValues}, 2, 2, 1, 0, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRender(t, releaseName, values(t, tc.files))
			r.checkNamesAndLabels(t)
			counts := map[string][2]int{
				"Deployments":     {len(r.Deployments), tc.deployments},
				"Services":        {len(r.Services), tc.services},
				"PDBs":            {len(r.PDBs), tc.pdbs},
				"Secrets":         {len(r.Secrets), tc.secrets},
				"ConfigMaps":      {len(r.ConfigMaps), 1},
				"ServiceAccounts": {len(r.ServiceAccounts), 1},
				"ServiceMonitors": {len(r.ServiceMonitors), tc.monitors},
				"PrometheusRules": {len(r.PrometheusRules), tc.rules},
			}
			for kind, c := range counts {
				if c[0] != c[1] {
					t.Errorf("%d %s rendered, want %d", c[0], kind, c[1])
				}
			}
			if r.Notes == "" {
				t.Error("NOTES.txt renders empty")
			}
		})
	}
}

func TestConnectorIsASingletonThatStopsBeforeItsSuccessorStarts(t *testing.T) {
	for _, files := range [][]string{{minimalValues}, {productionValues}} {
		r := mustRender(t, releaseName, values(t, files))
		c := r.Deployments["connector"]
		if c == nil {
			t.Fatalf("%s: no connector Deployment", files[0])
		}
		if c.Spec.Replicas == nil || *c.Spec.Replicas != 1 {
			t.Errorf("%s: connector replicas = %v, want exactly 1", files[0], c.Spec.Replicas)
		}
		if c.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			t.Errorf("%s: connector strategy = %q, want Recreate: a rolling update would wait forever for a pod that cannot get the slot", files[0], c.Spec.Strategy.Type)
		}
		if got := c.Spec.Template.Spec.Containers[0].Args; len(got) == 0 || got[0] != "connector" {
			t.Errorf("%s: connector args = %q, want the connector subcommand", files[0], got)
		}
	}
}

func TestConnectorHasNoReplicasSetting(t *testing.T) {
	_, err := renderChart(t, releaseName, values(t, []string{minimalValues}, map[string]any{
		"connector": map[string]any{"replicas": 2},
	}))
	if err == nil || !strings.Contains(err.Error(), "replicas") {
		t.Fatalf("rendering with connector.replicas: 2 gave %v, want the schema to refuse the key", err)
	}
}

func TestSinkScalesAsADeploymentWithADisruptionBudget(t *testing.T) {
	r := mustRender(t, releaseName, values(t, []string{productionValues}))
	s := r.Deployments["sink"]
	if s == nil {
		t.Fatal("no sink Deployment")
	}
	if s.Spec.Replicas == nil || *s.Spec.Replicas != 3 {
		t.Errorf("sink replicas = %v, want the 3 of the values", s.Spec.Replicas)
	}
	if s.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType {
		t.Errorf("sink strategy = %q, want RollingUpdate", s.Spec.Strategy.Type)
	}
	if got := s.Spec.Template.Spec.Containers[0].Args; len(got) == 0 || got[0] != "sink" {
		t.Errorf("sink args = %q, want the sink subcommand", got)
	}
	if len(r.PDBs) != 1 || !selects(r.PDBs[0].Spec.Selector.MatchLabels, s.Spec.Template.Labels) {
		t.Errorf("want one PodDisruptionBudget selecting the sink's pods, got %d", len(r.PDBs))
	}
	for _, d := range r.Deployments {
		if !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
			t.Errorf("%s: selector %v does not match its pods' labels %v", d.Name, d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
		}
	}
	if selects(r.Deployments["connector"].Spec.Selector.MatchLabels, s.Spec.Template.Labels) {
		t.Error("the connector's selector also matches the sink's pods")
	}
}

func TestPodsMeetTheRestrictedPodSecurityStandard(t *testing.T) {
	r := mustRender(t, releaseName, values(t, []string{productionValues}))
	for name, d := range r.Deployments {
		pod := d.Spec.Template.Spec
		if pod.SecurityContext == nil {
			t.Fatalf("%s: no pod securityContext", name)
		}
		if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			t.Errorf("%s: the service account token is mounted; the daemon never calls the Kubernetes API", name)
		}
		if pod.HostNetwork || pod.HostPID || pod.HostIPC {
			t.Errorf("%s: shares a host namespace", name)
		}
		for _, v := range pod.Volumes {
			if v.HostPath != nil {
				t.Errorf("%s: volume %s is a hostPath", name, v.Name)
			}
		}
		for _, c := range append(pod.InitContainers, pod.Containers...) {
			sc := c.SecurityContext
			if sc == nil {
				t.Fatalf("%s/%s: no securityContext", name, c.Name)
			}
			if !isTrue(sc.RunAsNonRoot) && !isTrue(pod.SecurityContext.RunAsNonRoot) {
				t.Errorf("%s/%s: runAsNonRoot is not true", name, c.Name)
			}
			if uid := firstNonNil(sc.RunAsUser, pod.SecurityContext.RunAsUser); uid != nil && *uid == 0 {
				t.Errorf("%s/%s: runs as UID 0", name, c.Name)
			}
			if !isTrue(sc.ReadOnlyRootFilesystem) {
				t.Errorf("%s/%s: readOnlyRootFilesystem is not true", name, c.Name)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s/%s: allowPrivilegeEscalation is not false", name, c.Name)
			}
			if isTrue(sc.Privileged) {
				t.Errorf("%s/%s: privileged", name, c.Name)
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
				t.Errorf("%s/%s: capabilities %+v, want drop [ALL] and nothing added", name, c.Name, sc.Capabilities)
			}
			seccomp := sc.SeccompProfile
			if seccomp == nil {
				seccomp = pod.SecurityContext.SeccompProfile
			}
			if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s/%s: seccompProfile %+v, want RuntimeDefault", name, c.Name, seccomp)
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("%s/%s: resources %+v, want CPU and memory requests and a memory limit", name, c.Name, c.Resources)
			}
		}
	}
}

func TestProbesUseLivezAndReadyzOnTheOpsPort(t *testing.T) {
	r := mustRender(t, releaseName, values(t, []string{minimalValues}))
	for name, d := range r.Deployments {
		c := d.Spec.Template.Spec.Containers[0]
		for _, p := range []struct {
			kind  string
			probe *corev1.Probe
			path  string
		}{{"liveness", c.LivenessProbe, "/livez"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				t.Errorf("%s: no HTTP %s probe", name, p.kind)
				continue
			}
			if p.probe.HTTPGet.Path != p.path {
				t.Errorf("%s: %s probe path %q, want %q", name, p.kind, p.probe.HTTPGet.Path, p.path)
			}
			if port := containerPort(c, p.probe.HTTPGet.Port); port != 9090 {
				t.Errorf("%s: %s probe port %s is container port %d, want the ops port 9090", name, p.kind, p.probe.HTTPGet.Port.String(), port)
			}
		}
		if got := env(c, "ONESIGNAL_CDC_OPS_LISTEN"); got != ":9090" {
			t.Errorf("%s: ONESIGNAL_CDC_OPS_LISTEN = %q, want \":9090\" so the daemon serves where the probes look", name, got)
		}
	}
}

func TestSecretsReachThePodsAsFilesAndNeverTheConfigMap(t *testing.T) {
	vals := values(t, []string{minimalValues})
	creds := vals["credentials"].(map[string]any)
	dsn, apiKey := creds["postgresDSN"].(string), creds["onesignalAPIKey"].(string)
	r := mustRender(t, releaseName, vals)

	if len(r.ConfigMaps) != 1 {
		t.Fatalf("%d ConfigMaps, want 1", len(r.ConfigMaps))
	}
	cfg := r.ConfigMaps[0].Data["config.yaml"]
	for _, secret := range []string{dsn, apiKey, "secret@"} {
		if strings.Contains(cfg, secret) {
			t.Errorf("the ConfigMap holds a secret (%q):\n%s", secret, cfg)
		}
	}
	if len(r.Secrets) != 1 {
		t.Fatalf("%d Secrets, want 1", len(r.Secrets))
	}
	sec := r.Secrets[0]
	if got := string(sec.Data["postgres-dsn"]); got != dsn {
		t.Errorf("Secret postgres-dsn = %q, want the DSN of the values", got)
	}
	if got := string(sec.Data["onesignal-api-key"]); got != apiKey {
		t.Errorf("Secret onesignal-api-key = %q, want the API key of the values", got)
	}

	// Each component gets the one secret it needs, as a file named by the
	// daemon's *_FILE variable.
	for _, tc := range []struct {
		component, env, key, otherEnv string
	}{
		{"connector", "ONESIGNAL_CDC_POSTGRES_DSN_FILE", "postgres-dsn", "ONESIGNAL_CDC_ONESIGNAL_API_KEY_FILE"},
		{"sink", "ONESIGNAL_CDC_ONESIGNAL_API_KEY_FILE", "onesignal-api-key", "ONESIGNAL_CDC_POSTGRES_DSN_FILE"},
	} {
		pod := r.Deployments[tc.component].Spec.Template.Spec
		c := pod.Containers[0]
		path := env(c, tc.env)
		if path == "" {
			t.Errorf("%s: %s is not set", tc.component, tc.env)
			continue
		}
		if env(c, tc.otherEnv) != "" {
			t.Errorf("%s: %s is set, but the %s does not need that secret", tc.component, tc.otherEnv, tc.component)
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				t.Errorf("%s: env %s comes from a Secret; secrets are mounted as files", tc.component, e.Name)
			}
		}
		if key := secretKeyAt(t, pod, c, path); key != tc.key {
			t.Errorf("%s: %s = %s holds Secret key %q, want %q", tc.component, tc.env, path, key, tc.key)
		}
	}
}

func TestKafkaCredentialsAndCertificatesReachBothComponentsAsFiles(t *testing.T) {
	r := mustRender(t, releaseName, values(t, []string{productionValues}, map[string]any{
		"kafkaTLS": map[string]any{"certKey": "tls.crt", "keyKey": "tls.key"},
	}))
	var cfg struct {
		Kafka struct {
			TLS  map[string]any `json:"tls"`
			SASL map[string]any `json:"sasl"`
		} `json:"kafka"`
	}
	if err := yaml.Unmarshal([]byte(r.ConfigMaps[0].Data["config.yaml"]), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Kafka.TLS["enabled"] != true {
		t.Errorf("kafka.tls %v: kafkaTLS does not turn TLS on", cfg.Kafka.TLS)
	}
	if _, ok := cfg.Kafka.SASL["password"]; ok {
		t.Error("the ConfigMap holds the Kafka SASL password")
	}
	for _, name := range []string{"connector", "sink"} {
		pod := r.Deployments[name].Spec.Template.Spec
		c := pod.Containers[0]
		path := env(c, "ONESIGNAL_CDC_KAFKA_SASL_PASSWORD_FILE")
		if secret, key := mountedSecret(pod, c, path); secret != "onesignal-cdc-credentials" || key != "kafka-sasl-password" {
			t.Errorf("%s: $ONESIGNAL_CDC_KAFKA_SASL_PASSWORD_FILE = %q holds %s/%s, want onesignal-cdc-credentials/kafka-sasl-password", name, path, secret, key)
		}
		for file, want := range map[string]string{"ca_file": "ca.crt", "cert_file": "tls.crt", "key_file": "tls.key"} {
			path, _ := cfg.Kafka.TLS[file].(string)
			if secret, key := mountedSecret(pod, c, path); secret != "kafka-ca" || key != want {
				t.Errorf("%s: kafka.tls.%s = %q holds %s/%s, want kafka-ca/%s", name, file, path, secret, key, want)
			}
		}
	}
}

func TestAnExistingSecretReplacesTheChartsOwn(t *testing.T) {
	r := mustRender(t, releaseName, values(t, []string{minimalValues}, map[string]any{
		"credentials": map[string]any{
			"existingSecret": "managed-elsewhere", "postgresDSNKey": "dsn", "onesignalAPIKeyKey": "key",
			"postgresDSN": "", "onesignalAPIKey": "",
		},
	}))
	if len(r.Secrets) != 0 {
		t.Errorf("the chart rendered %d Secrets beside the existing one", len(r.Secrets))
	}
	for name, want := range map[string]string{"connector": "dsn", "sink": "key"} {
		pod := r.Deployments[name].Spec.Template.Spec
		for _, v := range pod.Volumes {
			if v.Secret == nil {
				continue
			}
			if v.Secret.SecretName != "managed-elsewhere" {
				t.Errorf("%s mounts Secret %q, want managed-elsewhere", name, v.Secret.SecretName)
			}
			if len(v.Secret.Items) != 1 || v.Secret.Items[0].Key != want {
				t.Errorf("%s mounts items %+v, want only key %q", name, v.Secret.Items, want)
			}
		}
	}
}

// The daemon's own strict parser checks the configuration the pods get:
// the files the chart mounts into the connector and the sink (ConfigMap,
// Secret items, Kafka TLS files) are laid out under a temporary root, the
// paths in the configuration and the environment are moved under it, and
// onesignal-cdc validate must accept the result.
func TestPodsGetAConfigurationTheDaemonAccepts(t *testing.T) {
	bin := daemon.Build(t)
	for _, tc := range []struct {
		name     string
		files    []string
		override map[string]any
	}{
		{"minimal", []string{minimalValues}, nil},
		{"production", []string{productionValues}, nil},
		{"mutual TLS", []string{productionValues}, map[string]any{
			"kafkaTLS": map[string]any{"certKey": "tls.crt", "keyKey": "tls.key"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var overrides []map[string]any
			if tc.override != nil {
				overrides = append(overrides, tc.override)
			}
			r := mustRender(t, releaseName, values(t, tc.files, overrides...))
			root := t.TempDir()
			env := r.materialize(t, root)
			out, ok := daemon.Validate(t, bin, filepath.Join(root, "etc/onesignal-cdc/config.yaml"), env...)
			if !ok {
				t.Errorf("onesignal-cdc validate refuses what the pods get:\n%s", out)
			}
		})
	}
}

func TestConfigChangesRollThePods(t *testing.T) {
	before := mustRender(t, releaseName, values(t, []string{minimalValues}))
	after := mustRender(t, releaseName, values(t, []string{minimalValues}, map[string]any{
		"config": map[string]any{"log": map[string]any{"level": "debug"}},
	}))
	for name, d := range before.Deployments {
		a, b := d.Spec.Template.Annotations["checksum/config"], after.Deployments[name].Spec.Template.Annotations["checksum/config"]
		if a == "" || a == b {
			t.Errorf("%s: checksum/config %q → %q: a config change would not restart the pods", name, a, b)
		}
	}
}

func TestChartRefusesToRenderWithoutWhatItCannotGuess(t *testing.T) {
	_, err := renderChart(t, releaseName, values(t, nil))
	if err == nil {
		t.Fatal("the chart rendered with its defaults alone, which name no Kafka, app, tables or credentials")
	}
	for _, want := range []string{"config.kafka.brokers", "config.onesignal.app_id", "config.mapping", "credentials.postgresDSN", "credentials.onesignalAPIKey"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not name %s:\n%v", want, err)
		}
	}
}

func TestChartRefusesSecretsInTheConfigMapAndTheEmbeddedBroker(t *testing.T) {
	for _, tc := range []struct {
		name     string
		override map[string]any
		want     string
	}{
		{"a DSN in the config", map[string]any{"config": map[string]any{"postgres": map[string]any{"dsn": "postgres://u:pw@db/app"}}}, "move it to credentials.postgresDSN"},
		{"an API key in the config", map[string]any{"config": map[string]any{"onesignal": map[string]any{"api_key": "k"}}}, "move it to credentials.onesignalAPIKey"},
		{"the embedded broker", map[string]any{"config": map[string]any{"kafka": map[string]any{"brokers": []any{"embedded"}}}}, "list real Kafka brokers"},
		{"an ops section", map[string]any{"config": map[string]any{"ops": map[string]any{"listen": ":8080"}}}, "from opsPort"},
		{"a Kafka password in the config", map[string]any{"config": map[string]any{"kafka": map[string]any{"sasl": map[string]any{"mechanism": "PLAIN", "username": "u", "password": "pw"}}}}, "move it to credentials.kafkaSASLPassword"},
		{"SASL without a password", map[string]any{"config": map[string]any{"kafka": map[string]any{"sasl": map[string]any{"mechanism": "PLAIN", "username": "u"}}}}, "credentials.kafkaSASLPassword is empty"},
		{"a client certificate without its key", map[string]any{"kafkaTLS": map[string]any{"secretName": "tls", "certKey": "tls.crt"}}, "set both (mutual TLS) or neither"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := renderChart(t, releaseName, values(t, []string{minimalValues}, tc.override))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestValuesSchemaRejectsBadValues(t *testing.T) {
	for _, tc := range []struct {
		name     string
		override map[string]any
		want     string // in the error
	}{
		{"replicas as a word", map[string]any{"sink": map[string]any{"replicas": "two"}}, "replicas"},
		{"a negative replica count", map[string]any{"sink": map[string]any{"replicas": -1}}, "replicas"},
		{"an unknown top-level key", map[string]any{"replicaCount": 2}, "replicaCount"},
		{"a misspelt config section", map[string]any{"config": map[string]any{"postgress": map[string]any{}}}, "postgress"},
		{"an unknown config key", map[string]any{"config": map[string]any{"kafka": map[string]any{"broker": []any{"k:9092"}}}}, "broker"},
		{"an unknown snapshot mode", map[string]any{"config": map[string]any{"postgres": map[string]any{"snapshot": "sometimes"}}}, "snapshot"},
		{"a rate limit above OneSignal's", map[string]any{"config": map[string]any{"onesignal": map[string]any{"rate_limit": 5000}}}, "rate_limit"},
		{"a duration without a unit", map[string]any{"config": map[string]any{"postgres": map[string]any{"status_interval": "10"}}}, "status_interval"},
		{"a port out of range", map[string]any{"opsPort": 70000}, "opsPort"},
		{"an alert window in words", map[string]any{"metrics": map[string]any{"prometheusRule": map[string]any{"downFor": "five minutes"}}}, "downFor"},
		{"a pull policy in lower case", map[string]any{"image": map[string]any{"pullPolicy": "always"}}, "pullPolicy"},
		{"an unknown SASL mechanism", map[string]any{"config": map[string]any{"kafka": map[string]any{"sasl": map[string]any{"mechanism": "GSSAPI"}}}}, "mechanism"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := renderChart(t, releaseName, values(t, []string{minimalValues}, tc.override))
			if err == nil {
				t.Fatal("rendered; want the schema to refuse the values")
			}
			if !strings.Contains(err.Error(), "schema") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a schema error naming %q", err, tc.want)
			}
		})
	}
}

// The schema lists the daemon's configuration keys (so that helm install
// catches a misspelt one); this keeps the two in step. The mapping is left
// whole (the schema takes any object and the daemon checks it), and so is
// ops, which the chart sets from opsPort.
func TestValuesSchemaKnowsEveryConfigKey(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties struct {
			Config schemaNode `json:"config"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatalf("values.schema.json: %v", err)
	}
	wholes := []string{"mapping.", "ops."}
	daemonKeys := slices.DeleteFunc(daemon.ConfigKeys(t), func(k string) bool {
		return slices.ContainsFunc(wholes, func(p string) bool { return strings.HasPrefix(k, p) })
	})
	inSchema := schema.Properties.Config.keys("")
	for _, k := range daemonKeys {
		if !slices.Contains(inSchema, k) {
			t.Errorf("the daemon reads config key %s, which deploy/helm/onesignal-cdc/values.schema.json does not list under properties.config: add it, or helm install refuses it", k)
		}
	}
	for _, k := range inSchema {
		if !slices.Contains(daemonKeys, k) {
			t.Errorf("values.schema.json lists config key %s, which the daemon does not read: remove it", k)
		}
	}
}

// schemaNode is as much of a JSON schema as the config's keys need.
type schemaNode struct {
	Properties map[string]schemaNode `json:"properties"`
}

// keys lists the dotted paths of the node's properties, down to those
// without properties of their own.
func (n schemaNode) keys(prefix string) []string {
	var out []string
	for name, p := range n.Properties {
		out = append(out, prefix+name)
		out = append(out, p.keys(prefix+name+".")...)
	}
	slices.Sort(out)
	return out
}

func TestServiceMonitorScrapesTheOpsPortOfEveryComponent(t *testing.T) {
	r := mustRender(t, releaseName, values(t, []string{productionValues}))
	if len(r.ServiceMonitors) != 1 {
		t.Fatalf("%d ServiceMonitors, want 1", len(r.ServiceMonitors))
	}
	sm := r.ServiceMonitors[0]
	if sm.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("ServiceMonitor labels %v lack the values' release label", sm.Labels)
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "ops" || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("endpoints %+v, want port ops, path /metrics", sm.Spec.Endpoints)
	}
	for name, svc := range r.Services {
		if !selects(sm.Spec.Selector.MatchLabels, svc.Labels) {
			t.Errorf("the ServiceMonitor does not select the %s Service", name)
		}
		if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "ops" || svc.Spec.Ports[0].Port != 9090 {
			t.Errorf("%s Service ports %+v, want ops 9090", name, svc.Spec.Ports)
		}
		pods := r.Deployments[name].Spec.Template
		if !selects(svc.Spec.Selector, pods.Labels) {
			t.Errorf("%s Service selector %v does not match its pods %v", name, svc.Spec.Selector, pods.Labels)
		}
		if containerPort(pods.Spec.Containers[0], svc.Spec.Ports[0].TargetPort) != 9090 {
			t.Errorf("%s Service targets %s, not the container's ops port", name, svc.Spec.Ports[0].TargetPort.String())
		}
	}
}

func TestPrometheusRuleAlertsOnLagDownComponentsAndDeadLetters(t *testing.T) {
	r := mustRender(t, releaseName, values(t, []string{productionValues}))
	if len(r.PrometheusRules) != 1 {
		t.Fatalf("%d PrometheusRules, want 1", len(r.PrometheusRules))
	}
	alerts := map[string]struct{ expr, for_ string }{}
	for _, g := range r.PrometheusRules[0].Spec.Groups {
		for _, rule := range g.Rules {
			expr := rule.Expr.String()
			var for_ string
			if rule.For != nil {
				for_ = string(*rule.For)
			}
			alerts[rule.Alert] = struct{ expr, for_ string }{expr, for_}
			if rule.Labels["severity"] == "" || rule.Annotations["summary"] == "" || rule.Labels["team"] != "data-platform" {
				t.Errorf("%s: labels %v, annotations %v: want a severity, a summary and the additional labels", rule.Alert, rule.Labels, rule.Annotations)
			}
			if !strings.Contains(expr, `namespace="data"`) {
				t.Errorf("%s: %s does not keep to the release's namespace", rule.Alert, expr)
			}
			if !strings.Contains(expr, "onesignal_cdc_") {
				continue // up{…}: the scrape itself
			}
			for _, p := range metricnames.Problems(expr) {
				t.Errorf("%s: %s", rule.Alert, p)
			}
		}
	}
	for name, want := range map[string]struct{ in, for_ string }{
		"OneSignalCDCReplicationSlotLag":   {"onesignal_cdc_replication_slot_lag_bytes{namespace=\"data\", job=\"cdc-onesignal-cdc-connector\"}) > 1073741824", "10m"},
		"OneSignalCDCRetainedWALHigh":      {"onesignal_cdc_replication_slot_retained_wal_bytes", "10m"},
		"OneSignalCDCConnectorDown":        {`absent(onesignal_cdc_component_up{component="connector"`, "5m"},
		"OneSignalCDCSinkDown":             {`onesignal_cdc_component_up{component="sink"`, "5m"},
		"OneSignalCDCSinkConsumerLag":      {`max by (topic, partition) (onesignal_cdc_sink_consumer_lag_messages{namespace="data", job="cdc-onesignal-cdc-sink"}) > 100000`, "15m"},
		"OneSignalCDCOneSignalUnreachable": {`max by (pod) (onesignal_cdc_sink_onesignal_unreachable_seconds{namespace="data", job="cdc-onesignal-cdc-sink"}) > 0`, "5m"},
		"OneSignalCDCDeadLetters":          {`increase(onesignal_cdc_sink_dead_lettered_total{namespace="data", job="cdc-onesignal-cdc-sink"}[15m])) > 0`, ""},
		"OneSignalCDCMetricsDown":          {`up{namespace="data", job=~"cdc-onesignal-cdc-connector|cdc-onesignal-cdc-sink"} == 0`, "5m"},
	} {
		got, ok := alerts[name]
		if !ok {
			t.Errorf("no %s alert", name)
			continue
		}
		if !strings.Contains(got.expr, want.in) || got.for_ != want.for_ {
			t.Errorf("%s: expr %s for %q, want one containing %s for %q", name, got.expr, got.for_, want.in, want.for_)
		}
	}
}

func TestLongReleaseNamesStayWithinKubernetesLimits(t *testing.T) {
	r := mustRender(t, strings.Repeat("a", 53), values(t, []string{productionValues}))
	r.checkNamesAndLabels(t)
	if _, ok := r.Deployments["connector"]; !ok {
		t.Fatal("no connector")
	}
	if !strings.HasSuffix(r.Deployments["connector"].Name, "-connector") || !strings.HasSuffix(r.Deployments["sink"].Name, "-sink") {
		t.Errorf("names %q and %q lost their component suffix", r.Deployments["connector"].Name, r.Deployments["sink"].Name)
	}
}

// helm lint --strict: any warning fails.
func TestHelmLintStrictFindsNothing(t *testing.T) {
	for _, files := range [][]string{{minimalValues}, {productionValues}} {
		kv := kubeVersion
		result := lint.AllWithKubeVersion(chartDir, values(t, files), namespace, &kv)
		for _, msg := range result.Messages {
			if msg.Severity >= support.WarningSev {
				t.Errorf("%s: %s", files[0], msg.Error())
			}
		}
	}
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func isTrue(b *bool) bool { return b != nil && *b }

func firstNonNil[T any](ps ...*T) *T {
	for _, p := range ps {
		if p != nil {
			return p
		}
	}
	return nil
}

func env(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func containerPort(c corev1.Container, port intstr.IntOrString) int32 {
	if port.Type == intstr.Int {
		return port.IntVal
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return p.ContainerPort
		}
	}
	return 0
}

// secretKeyAt returns the Secret key mounted at path in container c.
func secretKeyAt(t *testing.T, pod corev1.PodSpec, c corev1.Container, path string) string {
	t.Helper()
	_, key := mountedSecret(pod, c, path)
	if key == "" {
		t.Errorf("nothing mounts a Secret key at %s", path)
	}
	return key
}

// mountedSecret returns the Secret and key mounted at path in container c.
func mountedSecret(pod corev1.PodSpec, c corev1.Container, path string) (secret, key string) {
	for _, m := range c.VolumeMounts {
		rel, err := filepath.Rel(m.MountPath, path)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			for _, item := range v.Secret.Items {
				if item.Path == rel {
					return v.Secret.SecretName, item.Key
				}
			}
		}
	}
	return "", ""
}
