package sink

import (
	"crypto/sha256"
	"fmt"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/sink/desired"
	"github.com/onesignal-cdc/onesignal-cdc/transform"
)

func TestAnIdleTargetsMemoComesBackAsItWasPut(t *testing.T) {
	t.Parallel()
	next := time.Unix(1700000000, 0)
	for _, m := range []memo{
		{partition: 2, next: next},
		{partition: 1, applied: map[string][sha256.Size]byte{"tags/0": {1}, "props": {2}}, records: map[transform.Record]bool{{Channel: "email", Identifier: "a@example.com"}: true}},
		{partition: 3, next: next, applied: map[string][sha256.Size]byte{"owner": {3}}, answered: map[string]bool{"p-1": true},
			sending: desired.Position{Commit: 5}, memberFor: desired.Position{Commit: 7, LSN: 8}, memberOf: "ada", carried: []string{"plan"}},
	} {
		idle := newIdleMemory(10)
		idle.put(transform.User("u"), m)
		if got, ok := idle.get(transform.User("u")); !ok || !reflect.DeepEqual(got, m) {
			t.Errorf("put %+v, got %+v", m, got)
		}
	}
}

// BenchmarkIdleTargetMemory reports the live heap one idle target's memo
// takes (bytes/target): the sink remembers Config.Memory (50,000) idle
// targets, and at the 770 bytes a memo with its maps once took, 100,000
// of them were 77 MB of live heap, about twice that in RSS. Now about 275.
// A benchmark, not a test: the heap is shared with whatever else runs.
//
//	go test -run '^$' -bench IdleTargetMemory -benchtime 1x ./sink
func BenchmarkIdleTargetMemory(b *testing.B) {
	const n = 50000
	for range b.N {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		idle := newIdleMemory(n)
		now := time.Now()
		for i := range n {
			idle.put(transform.User(fmt.Sprintf("user-%d", i)), memo{partition: 1, next: now, applied: map[string][sha256.Size]byte{"tags/0": {1}}})
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/n, "bytes/target")
		runtime.KeepAlive(idle)
	}
}
