package daemontest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/onesignal-cdc/onesignal-cdc/config"
	"github.com/onesignal-cdc/onesignal-cdc/secret"
)

// MarshalConfig is c as a configuration file, every setting written out.
// Start from config.Default() (or Stack.Config), as the daemon does: a
// setting left at its zero value is written as that value.
//
// The secrets are written as they are: secret.Value never prints, so the
// YAML encoder alone would write "[redacted]".
func MarshalConfig(c config.Config) ([]byte, error) {
	var doc yaml.Node
	if err := doc.Encode(c); err != nil {
		return nil, fmt.Errorf("daemontest: marshal the configuration: %w", err)
	}
	for _, s := range []struct {
		value secret.Value
		path  []string
	}{
		{c.Postgres.DSN, []string{"postgres", "dsn"}},
		{c.OneSignal.APIKey, []string{"onesignal", "api_key"}},
		{c.Kafka.SASL.Password, []string{"kafka", "sasl", "password"}},
	} {
		n := valueAt(&doc, s.path...)
		if n == nil {
			return nil, fmt.Errorf("daemontest: the configuration has no %v", s.path)
		}
		n.Kind, n.Tag, n.Style, n.Value = yaml.ScalarNode, "!!str", yaml.DoubleQuotedStyle, s.value.Reveal()
	}
	return yaml.Marshal(&doc)
}

// valueAt is the value of the mapping n at the keys path, nil when there
// is none.
func valueAt(n *yaml.Node, path ...string) *yaml.Node {
	for _, key := range path {
		var next *yaml.Node
		for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				next = n.Content[i+1]
				break
			}
		}
		if next == nil {
			return nil
		}
		n = next
	}
	return n
}

// WriteConfig writes c (see MarshalConfig) to a new file of the test and
// returns its path.
func WriteConfig(t testing.TB, c config.Config) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := WriteConfigFile(path, c); err != nil {
		t.Fatal(err)
	}
	return path
}

// WriteConfigFile writes c (see MarshalConfig) to path, readable by its
// owner only, as a file holding secrets should be.
func WriteConfigFile(path string, c config.Config) error {
	b, err := MarshalConfig(c)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}
