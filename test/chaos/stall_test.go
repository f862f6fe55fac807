package chaos

import (
	"testing"
	"time"
)

// writes is an activity of two partitions: targets/0 written at 9, 10, 11
// and 13 s (noted out of order, as handlers running side by side note
// them), targets/1 at 2, 12 and 30 s.
func writes() *activity {
	a := newActivity([]string{"targets/1", "targets/0"})
	for _, w := range []struct {
		partition string
		at        float64
	}{{"targets/0", 9}, {"targets/0", 10}, {"targets/0", 13}, {"targets/0", 11}, {"targets/1", 2}, {"targets/1", 12}, {"targets/1", 30}} {
		a.add(w.partition, seconds(w.at))
	}
	a.sort()
	return a
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func TestAStallIsTheLongestTimeOnePartitionWentWithoutAWriteInItsWindow(t *testing.T) {
	for _, c := range []struct {
		name      string
		from, to  float64
		stall     float64
		partition string
	}{
		{"a write before the signal does not count", 10, 12, 2, "targets/1"},
		{"the time from the signal to a partition's first write counts", 3, 12.5, 9, "targets/1"},
		{"the longest time between two writes counts", 2, 12.5, 10, "targets/1"},
		{"the time from the last write to the end of the window counts, and a write at the end is outside it", 11.5, 30, 18, "targets/1"},
		{"a partition with no write in the window stalls all of it", 12.5, 13.5, 1, "targets/1"},
		{"the partition that stalled longest is named", 1.5, 9.2, 7.5, "targets/0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			stall, partition := writes().stall(seconds(c.from), seconds(c.to))
			if stall != seconds(c.stall) || partition != c.partition {
				t.Errorf("the stall from %gs to %gs is %s on %s, want %gs on %s", c.from, c.to, stall, partition, c.stall, c.partition)
			}
		})
	}
}

func TestAPartitionWithNoWriteStallsItsWholeWindow(t *testing.T) {
	a := newActivity([]string{"users/0", "users/1"})
	a.add("users/0", seconds(5))
	a.sort()
	if stall, partition := a.stall(0, seconds(10)); stall != seconds(10) || partition != "users/1" {
		t.Errorf("the stall is %s on %s, want 10s on users/1, which had no write", stall, partition)
	}
}

func TestTheFirstWriteAfterAMomentIsTheEarliestOfAnyPartition(t *testing.T) {
	a := writes()
	for _, c := range []struct {
		from  float64
		first float64
		found bool
	}{{10, 10, true}, {11.5, 12, true}, {13.5, 30, true}, {31, 0, false}} {
		if first, found := a.first(seconds(c.from)); first != seconds(c.first) || found != c.found {
			t.Errorf("the first write at or after %gs is %s (%t), want %gs (%t)", c.from, first, found, c.first, c.found)
		}
	}
}
