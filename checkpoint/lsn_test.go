package checkpoint

import (
	"sync"
	"testing"

	"github.com/jackc/pglogrepl"
)

func TestLSNTrackerConfirmsACommitOnlyOnceAllItsEventsAreAcknowledged(t *testing.T) {
	tr := NewLSNTracker(100)
	x := tr.Begin()
	x.Add()
	x.Add()
	tr.Commit(x, 200)
	if got := tr.Confirmed(); got != 100 {
		t.Fatalf("confirmed %s with two events unacknowledged, want 100", got)
	}
	x.Ack()
	if got := tr.Confirmed(); got != 100 {
		t.Fatalf("confirmed %s with one event unacknowledged, want 100", got)
	}
	x.Ack()
	if got := tr.Confirmed(); got != 200 {
		t.Fatalf("confirmed %s, want the commit LSN 200", got)
	}
}

func TestLSNTrackerDoesNotConfirmAnOpenTransaction(t *testing.T) {
	tr := NewLSNTracker(100)
	x := tr.Begin()
	x.Add()
	x.Ack() // the event is in Kafka, but the transaction may still have more
	if got := tr.Confirmed(); got != 100 {
		t.Fatalf("confirmed %s before the commit was seen, want 100", got)
	}
	tr.Commit(x, 150)
	if got := tr.Confirmed(); got != 150 {
		t.Fatalf("confirmed %s, want 150", got)
	}
}

func TestLSNTrackerNeverSkipsAnUnacknowledgedEarlierTransaction(t *testing.T) {
	tr := NewLSNTracker(100)
	first, second := tr.Begin(), tr.Begin()
	first.Add()
	tr.Commit(first, 200)
	second.Add()
	tr.Commit(second, 300)
	second.Ack() // acknowledged out of order
	if got := tr.Confirmed(); got != 100 {
		t.Fatalf("confirmed %s while the first transaction is unacknowledged, want 100", got)
	}
	first.Ack()
	if got := tr.Confirmed(); got != 300 {
		t.Fatalf("confirmed %s, want 300 once both are in", got)
	}
	if n := tr.InFlight(); n != 0 {
		t.Fatalf("%d transactions still in flight, want 0", n)
	}
}

func TestLSNTrackerConfirmsAnEmptyTransactionAtItsCommit(t *testing.T) {
	tr := NewLSNTracker(100)
	tr.Commit(tr.Begin(), 120)
	if got := tr.Confirmed(); got != 120 {
		t.Fatalf("confirmed %s, want 120", got)
	}
}

func TestLSNTrackerNeverMovesBackwards(t *testing.T) {
	tr := NewLSNTracker(500)
	tr.Commit(tr.Begin(), 400) // a transaction Postgres resent from before the confirmed point
	if got := tr.Confirmed(); got != 500 {
		t.Fatalf("confirmed %s, want it to stay at 500", got)
	}
}

func TestLSNTrackerUnderConcurrentAcknowledgements(t *testing.T) {
	tr := NewLSNTracker(0)
	const txns, events = 200, 20
	var wg sync.WaitGroup
	for i := 1; i <= txns; i++ {
		x := tr.Begin()
		for range events {
			x.Add()
			wg.Go(x.Ack)
		}
		tr.Commit(x, pglogrepl.LSN(i*10))
	}
	wg.Wait()
	if got := tr.Confirmed(); got != txns*10 {
		t.Fatalf("confirmed %s, want %d", got, txns*10)
	}
}

func TestLSNTrackerPanicsOnMoreAcksThanEvents(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic on an acknowledgement without an event")
		}
	}()
	tr := NewLSNTracker(0)
	tr.Begin().Ack()
}

func TestLSNTrackerAdvancesToTheServersWALEndOnlyWhenIdle(t *testing.T) {
	tr := NewLSNTracker(100)
	x := tr.Begin()
	x.Add()
	if tr.AdvanceIdle(500) || tr.Confirmed() != 100 {
		t.Fatalf("advanced to %s with a transaction in flight", tr.Confirmed())
	}
	tr.Commit(x, 200)
	x.Ack()
	if !tr.AdvanceIdle(500) || tr.Confirmed() != 500 {
		t.Fatalf("confirmed %s when idle, want the WAL end 500", tr.Confirmed())
	}
	if tr.AdvanceIdle(400) || tr.Confirmed() != 500 {
		t.Fatalf("moved back to %s", tr.Confirmed())
	}
}
