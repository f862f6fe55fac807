package connbench

import (
	"os"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

func TestParseParallelismReadsAListAndRefusesWhatIsOutOfRange(t *testing.T) {
	got, err := ParseParallelism("1, 4,16")
	if err != nil || !slices.Equal(got, []int{1, 4, 16}) {
		t.Errorf("ParseParallelism(1, 4,16) = %v, %v", got, err)
	}
	for _, bad := range []string{"0", "65", "two", "1,,2", ""} {
		if _, err := ParseParallelism(bad); err == nil {
			t.Errorf("ParseParallelism(%q) took it", bad)
		}
	}
}

func TestTheCopyProducerMakesOneMessagePerLineKeyedByItsFirstColumn(t *testing.T) {
	out := make(chan []kafka.Message, 10)
	l := &lineSplitter{topic: "t", out: out}
	for _, part := range []string{"1\ta\tb\n2\tc", "\td\n", "3\te\n"} {
		if _, err := l.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	l.flush()
	close(out)
	var got []string
	for b := range out {
		for _, m := range b {
			got = append(got, string(m.Key)+"|"+string(m.Value))
		}
	}
	if want := []string{"1|1\ta\tb", "2|2\tc\td", "3|3\te"}; !slices.Equal(got, want) {
		t.Errorf("messages %q, want %q", got, want)
	}
}

func TestBackendCPUReadsThisProcesssCPUTime(t *testing.T) {
	if _, err := backendCPU(uint32(os.Getpid())); err != nil {
		t.Fatal(err)
	}
}

func TestTheCopyProducerPadsKeysAndValuesToTheSizesItIsGiven(t *testing.T) {
	out := make(chan []kafka.Message, 10)
	l := &lineSplitter{topic: "t", out: out, keyBytes: 5, valueBytes: 11}
	if _, err := l.Write([]byte("12\tab\n")); err != nil {
		t.Fatal(err)
	}
	l.flush()
	close(out)
	m := (<-out)[0]
	if string(m.Key) != "12121" || string(m.Value) != "12\tab12\tab1" {
		t.Errorf("key %q, value %q; want 12121 and 12\\tab12\\tab1", m.Key, m.Value)
	}
}

func TestTheSnapshotsMedianRoundIsTheMiddleOneByItsRatioToTheSameBytes(t *testing.T) {
	round := func(conn, sized time.Duration) snapshotRound {
		var r snapshotRound
		r.conn.elapsed, r.copySized.elapsed = conn, sized
		return r
	}
	// Ratios to the same bytes 0.5, 0.9, 0.7: the median is the third.
	rounds := []snapshotRound{round(2*time.Second, time.Second), round(time.Second, 900*time.Millisecond), round(time.Second, 700*time.Millisecond)}
	if got := medianRound(rounds, 1000); got != 2 {
		t.Errorf("medianRound = %d, want 2 (the ratio 0.7)", got)
	}
	if got := medianRound(rounds[:1], 1000); got != 0 {
		t.Errorf("medianRound of one round = %d", got)
	}
	if got := medianRound(rounds[:2], 1000); got != 0 {
		t.Errorf("medianRound of two rounds = %d, want the lower, 0", got)
	}
}
