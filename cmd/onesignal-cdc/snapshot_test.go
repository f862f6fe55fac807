package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/broker"
	"github.com/onesignal-cdc/onesignal-cdc/connector"
)

// With the embedded broker on disk, the connector's state is in its data
// directory, and a reset after a lost slot is written there; in memory
// there is no state to reset.
func TestSnapshotResetWritesToTheEmbeddedBrokersDataDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	config := func(dataDir string) string {
		return writeFile(t, "postgres: {dsn: \"postgres://nobody@127.0.0.1:9/none\", slot: lost}\n"+
			"kafka: {brokers: [embedded], embedded_data_dir: "+dataDir+", topic_prefix: cdc}\n"+
			"mapping:\n  users: {table: public.users, external_id: external_id}\n")
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"snapshot", "--reset", "--config", config(dir)}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), `creates slot "lost"`) {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	b, err := broker.StartEmbeddedIn("127.0.0.1:0", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	store, err := broker.OpenStateStore(t.Context(), b.Brokers(), "cdc.connector-state")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	data, err := store.Load(t.Context(), "lost")
	var st connector.State
	if err != nil || json.Unmarshal(data, &st) != nil || !st.Reset {
		t.Errorf("the state in the data directory: %s, %v; want a reset", data, err)
	}

	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"snapshot", "--reset", "--config", config(`""`)}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "nothing to reset") {
		t.Errorf("in memory: exit %d, stderr %q", code, stderr.String())
	}
}
