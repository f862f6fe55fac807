// Package helmchart checks deploy/helm/onesignal-cdc offline: Helm's own
// engine renders it, and every object it renders is decoded strictly into
// its Kubernetes API type, so a misspelt or misplaced field fails here
// instead of in a cluster.
package helmchart

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

var chartDir = filepath.Join("..", "..", "deploy", "helm", "onesignal-cdc")

// The value files the tests render with, as a person would pass them with -f.
var (
	minimalValues    = filepath.Join(chartDir, "ci", "minimal-values.yaml")
	productionValues = filepath.Join(chartDir, "ci", "production-values.yaml")
)

const (
	releaseName = "cdc"
	namespace   = "data"
)

// kubeVersion is the cluster version the chart is rendered for; Helm's own
// default (1.20) is older than anything still supported.
var kubeVersion = chartutil.KubeVersion{Version: "v1.33.0", Major: "1", Minor: "33"}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load the chart: %v", err)
	}
	return ch
}

// values reads value files and --set style overrides, later ones winning,
// as helm install -f a.yaml -f b.yaml does.
func values(t *testing.T, files []string, overrides ...map[string]any) map[string]any {
	t.Helper()
	vals := map[string]any{}
	for _, f := range files {
		v, err := chartutil.ReadValuesFile(f)
		if err != nil {
			t.Fatalf("read %s: %v", f, err)
		}
		vals = merge(vals, v.AsMap())
	}
	for _, o := range overrides {
		vals = merge(vals, o)
	}
	return vals
}

// merge lays src over dst, table by table.
func merge(dst, src map[string]any) map[string]any {
	out := maps.Clone(dst)
	for k, v := range src {
		if sv, ok := v.(map[string]any); ok {
			if dv, ok := out[k].(map[string]any); ok {
				out[k] = merge(dv, sv)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// renderChart renders the chart as helm template would, schema validation
// included, and returns the manifests by template name.
func renderChart(t *testing.T, release string, vals map[string]any) (map[string]string, error) {
	t.Helper()
	ch := loadChart(t)
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = kubeVersion
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{
		Name: release, Namespace: namespace, Revision: 1, IsInstall: true,
	}, caps)
	if err != nil {
		return nil, err
	}
	return engine.Engine{Strict: true}.Render(ch, rv)
}

// rendered is everything one install creates, decoded.
type rendered struct {
	Deployments     map[string]*appsv1.Deployment // by app.kubernetes.io/component
	ConfigMaps      []*corev1.ConfigMap
	Secrets         []*corev1.Secret
	Services        map[string]*corev1.Service // by component
	ServiceAccounts []*corev1.ServiceAccount
	PDBs            []*policyv1.PodDisruptionBudget
	ServiceMonitors []*monitoringv1.ServiceMonitor
	PrometheusRules []*monitoringv1.PrometheusRule
	Notes           string
	all             []metav1.Object
}

// newObject returns an empty object of the API type of apiVersion and
// kind; every kind the chart renders must be listed here.
func newObject(apiVersion, kind string) (any, bool) {
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, true
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, true
	case "v1 Secret":
		return &corev1.Secret{}, true
	case "v1 Service":
		return &corev1.Service{}, true
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}, true
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}, true
	case "monitoring.coreos.com/v1 PrometheusRule":
		return &monitoringv1.PrometheusRule{}, true
	}
	return nil, false
}

// mustRender renders the chart and decodes every object strictly:
// an unknown or misplaced field, a wrong type or a duplicate key fails.
func mustRender(t *testing.T, release string, vals map[string]any) *rendered {
	t.Helper()
	files, err := renderChart(t, release, vals)
	if err != nil {
		t.Fatalf("render the chart: %v", err)
	}
	r := &rendered{
		Deployments: map[string]*appsv1.Deployment{},
		Services:    map[string]*corev1.Service{},
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		content := files[name]
		if strings.HasSuffix(name, "NOTES.txt") {
			r.Notes = content
			continue
		}
		for _, doc := range releaseutil.SplitManifests(content) {
			if isBlank(doc) {
				continue
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s: not YAML: %v\n%s", name, err, doc)
			}
			obj, ok := newObject(tm.APIVersion, tm.Kind)
			if !ok {
				t.Fatalf("%s renders a %s %s, which this test does not know: add its API type to newObject", name, tm.APIVersion, tm.Kind)
			}
			if err := decodeStrict(doc, obj); err != nil {
				t.Fatalf("%s: the %s does not decode strictly into its API type: %v\n%s", name, tm.Kind, err, doc)
			}
			r.add(t, obj)
		}
	}
	return r
}

// decodeStrict decodes as the API server does with strict field
// validation: field names match case-sensitively, and an unknown or
// duplicate field is an error.
func decodeStrict(doc string, obj any) error {
	js, err := yaml.YAMLToJSONStrict([]byte(doc))
	if err != nil {
		return err
	}
	strictErrs, err := sigsjson.UnmarshalStrict(js, obj)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

func isBlank(doc string) bool {
	for line := range strings.SplitSeq(doc, "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

func (r *rendered) add(t *testing.T, obj any) {
	t.Helper()
	switch o := obj.(type) {
	case *appsv1.Deployment:
		r.Deployments[component(t, o)] = o
	case *corev1.ConfigMap:
		r.ConfigMaps = append(r.ConfigMaps, o)
	case *corev1.Secret:
		r.Secrets = append(r.Secrets, o)
	case *corev1.Service:
		r.Services[component(t, o)] = o
	case *corev1.ServiceAccount:
		r.ServiceAccounts = append(r.ServiceAccounts, o)
	case *policyv1.PodDisruptionBudget:
		r.PDBs = append(r.PDBs, o)
	case *monitoringv1.ServiceMonitor:
		r.ServiceMonitors = append(r.ServiceMonitors, o)
	case *monitoringv1.PrometheusRule:
		r.PrometheusRules = append(r.PrometheusRules, o)
	}
	r.all = append(r.all, obj.(metav1.Object))
}

func component(t *testing.T, o metav1.Object) string {
	t.Helper()
	c := o.GetLabels()["app.kubernetes.io/component"]
	if c == "" {
		t.Fatalf("%s has no app.kubernetes.io/component label", o.GetName())
	}
	return c
}

// checkNamesAndLabels applies the API server's own rules for names and labels.
func (r *rendered) checkNamesAndLabels(t *testing.T) {
	t.Helper()
	seen := map[string]bool{}
	for _, o := range r.all {
		kind := fmt.Sprintf("%T", o)
		if seen[kind+"/"+o.GetName()] {
			t.Errorf("two %s objects are named %q", kind, o.GetName())
		}
		seen[kind+"/"+o.GetName()] = true
		nameErrs := validation.IsDNS1123Subdomain(o.GetName())
		if _, ok := o.(*corev1.Service); ok {
			nameErrs = validation.IsDNS1035Label(o.GetName())
		}
		for _, e := range nameErrs {
			t.Errorf("%s name %q: %s", kind, o.GetName(), e)
		}
		for k, v := range o.GetLabels() {
			for _, e := range append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...) {
				t.Errorf("%s %s label %s=%q: %s", kind, o.GetName(), k, v, e)
			}
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
