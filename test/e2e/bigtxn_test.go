package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/internal/daemontest"
	"github.com/onesignal-cdc/onesignal-cdc/internal/kafkatest"
)

// TestAMillionRowTransactionStreamsWithBoundedMemory commits one
// transaction of 1,000,000 rows and checks that the connector process
// streams all of it while its resident memory stays far below the
// transaction's size (the events alone are about 300 MB).
func TestAMillionRowTransactionStreamsWithBoundedMemory(t *testing.T) {
	t.Parallel()
	st := daemontest.NewStack(t, daemontest.StackOptions{})
	db, kafka := st.DB, st.Kafka
	db.Exec(t, schema)
	connector := daemontest.Start(t, daemontest.Connector, daemontest.WriteConfig(t, baseConfig(st)))
	daemontest.WaitForSlot(t, db, db.Name)

	const rows = 1_000_000
	db.Exec(t, `INSERT INTO users SELECT 'big-' || i, 'free', i, 'DE' FROM generate_series(1, $1) i`, rows)
	// Counted by the partitions' end offsets: reading a million records
	// back cost this test more CPU than the connector streaming them.
	var n int64
	for deadline := time.Now().Add(8 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if n = kafkatest.MessagesIn(t, kafka.Brokers(), "cdc.public.users"); n >= rows {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Kafka holds %d of the transaction's %d events after 8 minutes", n, rows)
		}
	}
	peak := peakRSS(t, connector.Pid())
	t.Logf("%d events; the connector's peak RSS was %d MB (race detector on)", n, peak>>20)
	// The race detector multiplies memory; the bound is still a fraction
	// of what holding the transaction would take.
	if peak > 300<<20 {
		t.Errorf("peak RSS %d MB: the connector holds the transaction in memory", peak>>20)
	}
}

// peakRSS reads a process's high-water resident set size (VmHWM).
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}
