package sinkmem

import (
	"strings"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/sink"
)

func result(peak int64) *Result {
	t := sink.TopicsFor(prefix)
	return &Result{
		opts: Options{Users: 1000}, took: 10 * time.Second, peakRSS: peak,
		topicBytes: map[string]int64{t.Targets: 300 << 20, t.Rows: 200 << 20},
		samples: []sample{
			{at: time.Second, events: 100, rss: 50 << 20},
			{at: 2 * time.Second, events: 300, rss: 60 << 20},
			{at: 3 * time.Second, events: 800, rss: 70 << 20},
			{at: 4 * time.Second, events: 1000, rss: 80 << 20},
			{at: 5 * time.Second, events: 1000, rss: 75 << 20},
		},
	}
}

func TestTheRowJudgesThePeakRSSAgainstTwoHundredMiB(t *testing.T) {
	for _, c := range []struct {
		peak    int64
		verdict string
	}{
		{200 << 20, "met"},
		{238 << 20, "**missed** by 38 MiB"},
	} {
		row := result(c.peak).Row()
		if row.Verdict != c.verdict {
			t.Errorf("peak %d MiB: verdict %q, want %q", c.peak>>20, row.Verdict, c.verdict)
		}
		if !strings.Contains(row.Baseline, "**500 MiB**") || !strings.Contains(row.Measured, "100 events/s") {
			t.Errorf("row = %+v", row)
		}
	}
}

func TestTheTrajectoryGivesTheRSSAtEachQuarterOfTheEvents(t *testing.T) {
	got := result(0).trajectory()
	want := "2.00 s: 300, 60 MiB; 3.00 s: 800, 70 MiB; 4.00 s: 1,000, 80 MiB; 5.00 s: all, targets committed, 75 MiB"
	if got != want {
		t.Errorf("trajectory = %q, want %q", got, want)
	}
}
