package checkpoint

import (
	"reflect"
	"testing"
)

func TestOffsetsCommitOnlyTheContiguousFinishedPrefix(t *testing.T) {
	o := NewOffsets()
	d10 := o.Track("t", 0, 10)
	d11 := o.Track("t", 0, 11)
	d13 := o.Track("t", 0, 13) // offsets may have gaps
	d13()
	d11()
	if got := o.Committable(); len(got) != 0 {
		t.Fatalf("committable %v while offset 10 is unfinished, want nothing", got)
	}
	d10()
	want := []Position{{Topic: "t", Partition: 0, Offset: 13}}
	if got := o.Committable(); !reflect.DeepEqual(got, want) {
		t.Fatalf("committable %v, want %v", got, want)
	}
}

func TestOffsetsKeepAPositionUntilItsCommitSucceeds(t *testing.T) {
	o := NewOffsets()
	o.Track("t", 1, 5)()
	first := o.Committable()
	if again := o.Committable(); !reflect.DeepEqual(first, again) {
		t.Fatalf("a failed commit lost the position: %v then %v", first, again)
	}
	o.Committed(first)
	if got := o.Committable(); len(got) != 0 {
		t.Fatalf("committable %v after the commit, want nothing", got)
	}
}

func TestOffsetsTrackPartitionsIndependently(t *testing.T) {
	o := NewOffsets()
	o.Track("t", 0, 1)
	o.Track("t", 1, 7)()
	want := []Position{{Topic: "t", Partition: 1, Offset: 7}}
	if got := o.Committable(); !reflect.DeepEqual(got, want) {
		t.Fatalf("committable %v, want %v", got, want)
	}
}

func TestOffsetsForgetEverythingWhenThePartitionRewinds(t *testing.T) {
	o := NewOffsets()
	stale := o.Track("t", 0, 20)
	o.Track("t", 0, 21)
	d15 := o.Track("t", 0, 15) // rebalanced back to an earlier committed offset
	stale()                    // a late finish from before the rewind
	if got := o.Committable(); len(got) != 0 {
		t.Fatalf("committable %v from a stale acknowledgement, want nothing", got)
	}
	d15()
	want := []Position{{Topic: "t", Partition: 0, Offset: 15}}
	if got := o.Committable(); !reflect.DeepEqual(got, want) {
		t.Fatalf("committable %v, want %v", got, want)
	}
	if n := o.Pending(); n != 0 {
		t.Fatalf("%d pending, want 0", n)
	}
}

func TestOffsetsTellWhetherAnOffsetContinuesItsPartition(t *testing.T) {
	o := NewOffsets()
	if o.Continues("t", 0, 5) {
		t.Error("the first offset of a partition new to the consumer continues nothing")
	}
	o.Track("t", 0, 5)
	if !o.Continues("t", 0, 6) {
		t.Error("offset 6 after 5 does not continue")
	}
	if o.Continues("t", 0, 9) || o.Continues("t", 0, 3) {
		t.Error("a gap (the partition was away) or a rewind continues")
	}
}
