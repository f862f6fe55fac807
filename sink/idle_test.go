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

// TestTheSinksMemoryOfIdleTargetsCostsAFewHundredBytesEach: the sink
// remembers Config.Memory (100,000) idle targets; at the 770 bytes a memo
// with its maps took, that alone was 77 MB of live heap, about twice that
// in RSS, once a sink had applied 100,000 users.
func TestTheSinksMemoryOfIdleTargetsCostsAFewHundredBytesEach(t *testing.T) {
	const n = 50000
	runtime.GC()
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	idle := newIdleMemory(n)
	now := time.Now()
	for i := range n {
		idle.put(transform.User(fmt.Sprintf("user-%d", i)), memo{partition: 1, next: now, applied: map[string][sha256.Size]byte{"tags/0": {1}}})
	}
	runtime.GC()
	runtime.ReadMemStats(&b)
	per := (int64(b.HeapAlloc) - int64(a.HeapAlloc)) / n
	t.Logf("%d bytes per idle target", per)
	if per > 350 {
		t.Errorf("an idle user's memo costs %d bytes, want at most 350", per)
	}
	runtime.KeepAlive(idle)
}
