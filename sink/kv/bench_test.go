package kv_test

import (
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/sink/kv"
)

// The benchmarks use the disk store with the default Options and the keys
// and values of TestMemoryStaysBoundedWithTwoMillionKeys. Each also reports
// cpu-ns/op, the process's CPU time (pebble's flushes and compactions
// included) per op, which a busy machine changes less than ns/op.

func benchStore(b *testing.B) kv.Store {
	s, err := kv.OpenDisk(b.TempDir(), kv.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// reportCPU reports cpu-ns/op from now until the benchmark ends.
func reportCPU(b *testing.B) {
	start := cpuTime(b)
	b.Cleanup(func() {
		b.ReportMetric(float64((cpuTime(b)-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
	})
}

// cpuTime is the process's user and system CPU time.
func cpuTime(tb testing.TB) time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

func BenchmarkDiskSet(b *testing.B) {
	s := benchStore(b)
	var k, v []byte
	i := 0
	reportCPU(b)
	for b.Loop() {
		k, v = boundKey(k, i*1_000_003%(1<<30)), boundValue(v, i)
		if err := s.Set(k, v); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkDiskGetHit reads keys that exist, 100,000 of them, which fit in
// the block cache once read.
func BenchmarkDiskGetHit(b *testing.B) {
	const n = 100_000
	s := benchStore(b)
	var k, v []byte
	batch := s.NewBatch()
	for i := range n {
		k, v = boundKey(k, i), boundValue(v, i)
		batch.Set(k, v)
	}
	if err := batch.Commit(); err != nil {
		b.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	reportCPU(b)
	for b.Loop() {
		if _, ok, err := s.Get(boundKey(k, rnd.IntN(n))); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkDiskBatchCommit writes records in batches of 1,000, the way a
// restore does; one op is one record.
func BenchmarkDiskBatchCommit(b *testing.B) {
	s := benchStore(b)
	var k, v []byte
	batch := s.NewBatch()
	i := 0
	reportCPU(b)
	for b.Loop() {
		k, v = boundKey(k, i*1_000_003%(1<<30)), boundValue(v, i)
		batch.Set(k, v)
		if batch.Len() == 1000 {
			if err := batch.Commit(); err != nil {
				b.Fatal(err)
			}
		}
		i++
	}
	if err := batch.Commit(); err != nil {
		b.Fatal(err)
	}
}
