package helmchart

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// podRoot is where the chart mounts everything it gives the daemon.
const podRoot = "/etc/onesignal-cdc/"

// materialize lays out under root the files the chart mounts into every
// component's container (ConfigMap keys, Secret items, with the chart's
// own Secret's content or stand-ins for a Secret managed elsewhere), with
// the paths inside the configuration moved under root, and returns the
// containers' environment with its paths moved likewise.
func (r *rendered) materialize(t *testing.T, root string) []string {
	t.Helper()
	move := func(s string) string { return strings.ReplaceAll(s, podRoot, filepath.Join(root, podRoot)+"/") }
	configMaps := map[string]*corev1.ConfigMap{}
	for _, cm := range r.ConfigMaps {
		configMaps[cm.Name] = cm
	}
	secrets := map[string]*corev1.Secret{}
	for _, s := range r.Secrets {
		secrets[s.Name] = s
	}
	var env []string
	for _, d := range r.Deployments {
		pod := d.Spec.Template.Spec
		c := pod.Containers[0]
		for _, e := range c.Env {
			env = append(env, e.Name+"="+move(e.Value))
		}
		for _, m := range c.VolumeMounts {
			var files map[string]string // path in the volume → content
			for _, v := range pod.Volumes {
				if v.Name != m.Name {
					continue
				}
				switch {
				case v.ConfigMap != nil:
					cm, ok := configMaps[v.ConfigMap.Name]
					if !ok {
						t.Fatalf("%s mounts ConfigMap %s, which the chart does not create", d.Name, v.ConfigMap.Name)
					}
					files = map[string]string{}
					for k, content := range cm.Data {
						files[k] = move(content)
					}
				case v.Secret != nil:
					files = map[string]string{}
					for _, item := range v.Secret.Items {
						files[item.Path] = secretContent(t, secrets[v.Secret.SecretName], item.Key)
					}
				case v.EmptyDir != nil:
					files = map[string]string{} // a directory of the pod's own, empty at start
					if err := os.MkdirAll(filepath.Join(root, m.MountPath), 0o700); err != nil {
						t.Fatal(err)
					}
				}
			}
			if files == nil {
				t.Fatalf("%s mounts volume %s, which it does not declare", d.Name, m.Name)
			}
			target := filepath.Join(root, m.MountPath)
			if m.SubPath != "" {
				content, ok := files[m.SubPath]
				if !ok {
					t.Fatalf("%s mounts %s of volume %s, which holds no such key", d.Name, m.SubPath, m.Name)
				}
				writeAt(t, target, content)
				continue
			}
			for path, content := range files {
				writeAt(t, filepath.Join(target, path), content)
			}
		}
	}
	return env
}

// secretContent is a Secret item's content: the chart's own Secret's, or
// for one managed elsewhere a stand-in that fits the key (a PEM
// certificate or key for TLS files).
func secretContent(t *testing.T, s *corev1.Secret, key string) string {
	t.Helper()
	if s != nil {
		v, ok := s.Data[key]
		if !ok {
			t.Fatalf("the chart mounts key %s of its Secret %s, which holds no such key", key, s.Name)
		}
		return string(v)
	}
	cert, privateKey := testCertificate()
	switch {
	case strings.HasSuffix(key, ".key"):
		return privateKey
	case strings.HasSuffix(key, ".crt"), strings.HasSuffix(key, ".pem"):
		return cert
	case strings.Contains(key, "dsn"):
		return "postgres://cdc:pw@db:5432/app\n"
	}
	return "stand-in-" + key + "\n"
}

// testCertificate is a self-signed certificate, usable as a CA and as a
// client certificate, and its key, both PEM; one pair for the whole run, so
// that every certificate file matches every key file.
var testCertificate = sync.OnceValues(func() (cert, key string) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "onesignal-cdc chart test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		panic(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
})

func writeAt(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, content)
}
