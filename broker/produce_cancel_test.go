package broker_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// A write given up on (its context ends) leaves its request to the
// transport, which may still prepare and send it; the writer must not read
// the request again. The race detector sees it if it does.
func TestAWriteGivenUpOnLeavesItsRequestAlone(t *testing.T) {
	b, w := writerOn(t, "cdc.Sales.Contacts")
	c := b.Cluster()
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		c.SleepControl(func() { time.Sleep(20 * time.Millisecond) })
		return nil, nil, false
	})
	msgs := keyed("cdc.Sales.Contacts", 60)
	for round := range 30 {
		var wg sync.WaitGroup
		for i := range 6 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(t.Context(), time.Duration(round%5+i)*time.Millisecond)
				defer cancel()
				_ = w.WriteMessages(ctx, msgs[i*10:i*10+10]...)
			})
		}
		wg.Wait()
	}
	// The requests given up on are answered meanwhile; a write after them
	// goes through.
	if err := w.WriteMessages(t.Context(), msgs...); err != nil {
		t.Fatal(err)
	}
}
