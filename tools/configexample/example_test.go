// Package configexample keeps deploy/onesignal-cdc.example.yaml, the
// reference of every configuration key, in step with the daemon.
package configexample

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/onesignal-cdc/onesignal-cdc/tools/internal/daemon"
)

func examplePath(t *testing.T) string {
	return filepath.Join(daemon.Root(t), "deploy", "onesignal-cdc.example.yaml")
}

func TestExampleConfigListsEveryKey(t *testing.T) {
	raw, err := os.ReadFile(examplePath(t))
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("the example is not YAML: %v", err)
	}
	var inExample []string
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		if n.Kind == yaml.DocumentNode {
			walk(n.Content[0], prefix)
			return
		}
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := prefix + n.Content[i].Value
			inExample = append(inExample, key)
			walk(n.Content[i+1], key+".")
		}
	}
	walk(&doc, "")
	for _, k := range daemon.ConfigKeys(t) {
		if !slices.Contains(inExample, k) {
			t.Errorf("the daemon reads %s, which deploy/onesignal-cdc.example.yaml does not show: add it, with its default and what it does", k)
		}
	}
}

// The daemon's strict parser refuses any key it does not know, so this
// also catches a key the example lists and the daemon no longer reads.
func TestExampleConfigIsValid(t *testing.T) {
	out, ok := daemon.Validate(t, daemon.Build(t), examplePath(t), "ONESIGNAL_CDC_ONESIGNAL_API_KEY=example-key")
	if !ok {
		t.Fatalf("onesignal-cdc validate refuses the example:\n%s", out)
	}
}
