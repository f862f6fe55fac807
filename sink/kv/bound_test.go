package kv_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onesignal-cdc/onesignal-cdc/sink/kv"
)

// TestMemoryStaysBoundedWithTwoMillionKeys writes 2,000,000 keys of 39 bytes
// with 200-byte values into a disk store with the default Options (about
// 480 MB of state), reads them back in random order, and checks that the
// process's peak RSS and the Go heap stay under 150 MiB: memory is bounded
// by Options, not by the number of keys. It runs alone (not in parallel),
// since RSS is the whole process's.
func TestMemoryStaysBoundedWithTwoMillionKeys(t *testing.T) {
	// The whole size writes about 300 MiB and takes 20 s to a minute; with
	// -short or the race detector the same test runs on 64,000 keys.
	n, gets := 2_000_000, 500_000
	if raceEnabled || testing.Short() {
		n, gets = 64_000, 6_400
	}
	const (
		batch  = 5_000
		bound  = 150 << 20
		stride = 1_000_003 // a prime, so i*stride%n visits every id once, in no order
	)
	dir := t.TempDir()
	s, err := kv.OpenDisk(dir, kv.Options{})
	must(t, err)
	defer s.Close()

	peak := sample(t)
	var k, v []byte
	start, cpu := time.Now(), cpuTime(t)
	b := s.NewBatch()
	for i := range n {
		id := i * stride % n
		k, v = boundKey(k, id), boundValue(v, id)
		b.Set(k, v)
		if b.Len() == batch {
			must(t, b.Commit())
		}
	}
	must(t, b.Commit())
	wrote, wroteCPU := time.Since(start), cpuTime(t)-cpu

	start, cpu = time.Now(), cpuTime(t)
	rnd := rand.New(rand.NewPCG(1, 2))
	for range gets {
		id := rnd.IntN(n)
		got, ok, err := s.Get(boundKey(k, id))
		must(t, err)
		if v = boundValue(v, id); !ok || !bytes.Equal(got, v) {
			t.Fatalf("Get(%q) = %q, %v; want %q", boundKey(k, id), got, ok, v)
		}
	}
	read, readCPU := time.Since(start), cpuTime(t)-cpu

	start = time.Now()
	var scanned int
	must(t, s.Scan([]byte("rows/0012/"), func(_, _ []byte) (bool, error) {
		scanned++
		return true, nil
	}))
	if want := n / 64; scanned != want {
		t.Errorf("Scan of one partition visited %d keys, want %d", scanned, want)
	}
	scan := time.Since(start)

	p := peak()
	tables, size := onDisk(t, dir)
	t.Logf("on disk: %d tables, %.0f MiB", tables, mib(size))
	t.Logf("wrote %d keys in batches of %d: %s, %.0f records/s; %s of CPU, %.0f records per CPU-second",
		n, batch, wrote.Round(time.Millisecond), float64(n)/wrote.Seconds(), wroteCPU.Round(time.Millisecond), float64(n)/wroteCPU.Seconds())
	t.Logf("read %d random keys: %s, %.0f Gets/s; %s of CPU, %.0f Gets per CPU-second",
		gets, read.Round(time.Millisecond), float64(gets)/read.Seconds(), readCPU.Round(time.Millisecond), float64(gets)/readCPU.Seconds())
	t.Logf("scanned %d keys: %s", scanned, scan.Round(time.Millisecond))
	t.Logf("peak RSS (VmHWM) %.1f MiB; Go heap: peak live %.1f MiB, HeapSys %.1f MiB; peak open files %d; GOMAXPROCS %d",
		mib(p.rss), mib(p.heap), mib(p.heapSys), p.fds, runtime.GOMAXPROCS(0))
	if raceEnabled {
		t.Log("the race detector is on: its shadow memory counts in RSS, so RSS is checked only without -race")
	} else if p.rss >= bound {
		t.Errorf("peak RSS %.1f MiB, want under %d MiB", mib(p.rss), bound>>20)
	}
	if p.heap >= bound || p.heapSys >= bound {
		t.Errorf("Go heap peaked at %.1f MiB live, %.1f MiB from the OS; want under %d MiB", mib(p.heap), mib(p.heapSys), bound>>20)
	}
}

// boundKey is a row index key: a partition, a table, a primary key.
func boundKey(buf []byte, id int) []byte {
	return fmt.Appendf(buf[:0], "rows/%04d/public.users/%016d", id%64, id)
}

// boundValue is a 200-byte projection, part of it incompressible.
func boundValue(buf []byte, id int) []byte {
	buf = fmt.Appendf(buf[:0], `{"pos":"0/%08X","tags":{"plan":"p%d","city":"c%d"},"email":"u%d@example.com","h":"`, id*40, id%5, id%300, id)
	for x := uint64(id); len(buf) < 198; {
		x = x*6364136223846793005 + 1442695040888963407
		buf = strconv.AppendUint(buf, x>>40, 36)
	}
	return append(buf[:198], `"}`...)
}

type peaks struct {
	rss, heap, heapSys uint64
	fds                int
}

// sample watches the Go heap and the open files until the returned function
// is called, which returns the peaks (RSS from the kernel's VmHWM).
func sample(t *testing.T) func() peaks {
	var (
		p    peaks
		mu   sync.Mutex
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	m := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			metrics.Read(m)
			mu.Lock()
			p.heap = max(p.heap, m[0].Value.Uint64())
			if i%25 == 0 {
				p.fds = max(p.fds, openFiles(t))
			}
			mu.Unlock()
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	return func() peaks {
		close(done)
		wg.Wait()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		p.heapSys = ms.HeapSys - ms.HeapReleased
		p.rss = vmHWM(t)
		return p
	}
}

// onDisk counts the tables under dir and the bytes of all its files.
func onDisk(t *testing.T, dir string) (tables int, size uint64) {
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if strings.HasSuffix(path, ".sst") {
			tables++
		}
		size += uint64(fi.Size())
		return nil
	})
	must(t, err)
	return tables, size
}

func openFiles(t *testing.T) int {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

func vmHWM(t *testing.T) uint64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("/proc/self/status has no VmHWM")
	return 0
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
