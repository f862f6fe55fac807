package kv_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/sink/kv"
)

// stores are the implementations that must behave alike.
var stores = []struct {
	name string
	open func(t *testing.T) kv.Store
}{
	{"memory", func(*testing.T) kv.Store { return kv.NewMemory() }},
	{"disk", func(t *testing.T) kv.Store {
		// Small enough that the larger cases reach the files on disk.
		s, err := kv.OpenDisk(t.TempDir(), kv.Options{CacheBytes: 1 << 20, MemtableBytes: 256 << 10})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
}

// conformance is what every Store does, one sentence each.
var conformance = []struct {
	name string
	test func(t *testing.T, s kv.Store)
}{
	{"a key that was set is found with its value", func(t *testing.T, s kv.Store) {
		set(t, s, "a", "1")
		wantValue(t, s, "a", "1")
	}},
	{"a key never set is not found", func(t *testing.T, s kv.Store) {
		set(t, s, "a", "1")
		wantAbsent(t, s, "b")
		wantAbsent(t, s, "")
	}},
	{"setting a key again replaces its value", func(t *testing.T, s kv.Store) {
		set(t, s, "a", "1")
		set(t, s, "a", "2")
		wantValue(t, s, "a", "2")
	}},
	{"an empty value is a value", func(t *testing.T, s kv.Store) {
		set(t, s, "a", "")
		wantValue(t, s, "a", "")
	}},
	{"a deleted key is gone", func(t *testing.T, s kv.Store) {
		set(t, s, "a", "1")
		set(t, s, "b", "2")
		must(t, s.Delete([]byte("a")))
		wantAbsent(t, s, "a")
		wantValue(t, s, "b", "2")
		wantKeys(t, s, "", "b")
	}},
	{"deleting a missing key is no error", func(t *testing.T, s kv.Store) {
		must(t, s.Delete([]byte("a")))
	}},
	{"DeletePrefix removes only that prefix", func(t *testing.T, s kv.Store) {
		fill(t, s, "a", "aa", "ab", "ab\x00", "abc", "ab\xff\xff", "ac", "b")
		must(t, s.DeletePrefix([]byte("ab")))
		wantKeys(t, s, "", "a", "aa", "ac", "b")
	}},
	{"DeletePrefix of 0xff bytes reaches the last key", func(t *testing.T, s kv.Store) {
		fill(t, s, "a", "\xfe\xff", "\xff", "\xff\x00", "\xff\xff", "\xff\xff\xff")
		must(t, s.DeletePrefix([]byte("\xff")))
		wantKeys(t, s, "", "a", "\xfe\xff")
		must(t, s.DeletePrefix([]byte("\xff"))) // nothing left with it
		wantKeys(t, s, "", "a", "\xfe\xff")
	}},
	{"DeletePrefix with an empty prefix removes every key", func(t *testing.T, s kv.Store) {
		fill(t, s, "", "a", "b\xff")
		must(t, s.DeletePrefix(nil))
		wantKeys(t, s, "")
		set(t, s, "c", "3")
		wantValue(t, s, "c", "3")
	}},
	{"a key set after DeletePrefix is found", func(t *testing.T, s kv.Store) {
		fill(t, s, "p1", "p2")
		must(t, s.DeletePrefix([]byte("p")))
		set(t, s, "p1", "again")
		wantValue(t, s, "p1", "again")
		wantKeys(t, s, "p", "p1")
	}},
	{"Scan visits only the prefix, in key order", func(t *testing.T, s kv.Store) {
		fill(t, s, "b", "ab\x00", "abc", "a", "ab", "ac", "ab\xff")
		wantKeys(t, s, "ab", "ab", "ab\x00", "abc", "ab\xff")
		wantKeys(t, s, "z")
	}},
	{"Scan hands out each key's value", func(t *testing.T, s kv.Store) {
		set(t, s, "k1", "one")
		set(t, s, "k2", "two")
		var got []string
		must(t, s.Scan([]byte("k"), func(k, v []byte) (bool, error) {
			got = append(got, string(k)+"="+string(v))
			return true, nil
		}))
		if want := []string{"k1=one", "k2=two"}; !slices.Equal(got, want) {
			t.Errorf("Scan visited %q, want %q", got, want)
		}
	}},
	{"Scan with an empty prefix visits every key", func(t *testing.T, s kv.Store) {
		fill(t, s, "b", "", "a", "\xff")
		wantKeys(t, s, "", "", "a", "b", "\xff")
	}},
	{"Scan stops when fn returns false", func(t *testing.T, s kv.Store) {
		fill(t, s, "a", "b", "c")
		var got []string
		must(t, s.Scan(nil, func(k, _ []byte) (bool, error) {
			got = append(got, string(k))
			return len(got) < 2, nil
		}))
		if want := []string{"a", "b"}; !slices.Equal(got, want) {
			t.Errorf("Scan visited %q, want %q", got, want)
		}
	}},
	{"Scan stops at fn's error and returns it", func(t *testing.T, s kv.Store) {
		fill(t, s, "a", "b", "c")
		stop := errors.New("stop here")
		var got []string
		err := s.Scan(nil, func(k, _ []byte) (bool, error) {
			got = append(got, string(k))
			return true, stop
		})
		if !errors.Is(err, stop) {
			t.Errorf("Scan returned %v, want fn's error", err)
		}
		if want := []string{"a"}; !slices.Equal(got, want) {
			t.Errorf("Scan visited %q, want %q", got, want)
		}
	}},
	{"Scan sees the store as it was when it began, so fn may write to it", func(t *testing.T, s kv.Store) {
		// Enough keys for the disk store to read them in several chunks.
		const n = 3000
		value := bytes.Repeat([]byte("v"), 64)
		b := s.NewBatch()
		for i := range n {
			b.Set(key(i), value)
		}
		must(t, b.Commit())
		var visited int
		must(t, s.Scan([]byte("k"), func(k, v []byte) (bool, error) {
			if want := key(visited); !bytes.Equal(k, want) || !bytes.Equal(v, value) {
				return false, fmt.Errorf("Scan visited %q=%q, want %q=%q", k, v, want, value)
			}
			visited++
			// Delete the next key, add one after this one.
			if err := s.Delete(key(visited)); err != nil {
				return false, err
			}
			return true, s.Set(append(k, 'x'), []byte("added"))
		}))
		if visited != n {
			t.Errorf("Scan visited %d keys, want %d", visited, n)
		}
		wantValue(t, s, string(key(0)), string(value))
		wantAbsent(t, s, string(key(1)))
		wantAbsent(t, s, string(key(n-1)))
		wantValue(t, s, string(key(n-1))+"x", "added")
	}},
	{"a batch's writes are visible after Commit, not before", func(t *testing.T, s kv.Store) {
		set(t, s, "gone", "1")
		b := s.NewBatch()
		b.Set([]byte("a"), []byte("1"))
		b.Delete([]byte("gone"))
		wantAbsent(t, s, "a")
		wantValue(t, s, "gone", "1")
		wantKeys(t, s, "", "gone")
		must(t, b.Commit())
		wantValue(t, s, "a", "1")
		wantAbsent(t, s, "gone")
	}},
	{"a batch applies its writes in the order they were added", func(t *testing.T, s kv.Store) {
		b := s.NewBatch()
		b.Set([]byte("a"), []byte("1"))
		b.Delete([]byte("a"))
		b.Delete([]byte("b"))
		b.Set([]byte("b"), []byte("1"))
		b.Set([]byte("b"), []byte("2"))
		must(t, b.Commit())
		wantAbsent(t, s, "a")
		wantValue(t, s, "b", "2")
	}},
	{"Len counts a batch's writes, and a committed batch is empty and reusable", func(t *testing.T, s kv.Store) {
		b := s.NewBatch()
		if n := b.Len(); n != 0 {
			t.Errorf("a new batch has Len %d, want 0", n)
		}
		must(t, b.Commit()) // an empty batch commits
		b.Set([]byte("a"), []byte("1"))
		b.Set([]byte("a"), []byte("2"))
		b.Delete([]byte("b"))
		if n := b.Len(); n != 3 {
			t.Errorf("a batch of 3 writes has Len %d, want 3", n)
		}
		must(t, b.Commit())
		if n := b.Len(); n != 0 {
			t.Errorf("a committed batch has Len %d, want 0", n)
		}
		b.Set([]byte("c"), []byte("3"))
		must(t, b.Commit())
		must(t, b.Commit()) // again, with nothing in it
		wantKeys(t, s, "", "a", "c")
	}},
	{"values returned are copies the caller may keep", func(t *testing.T, s kv.Store) {
		set(t, s, "a", "1")
		v, _, err := s.Get([]byte("a"))
		must(t, err)
		set(t, s, "a", "2")
		if string(v) != "1" {
			t.Errorf("a value got before a Set reads %q, want 1", v)
		}
		v[0] = 'x'
		wantValue(t, s, "a", "2")
	}},
	{"the store keeps no slice passed to it", func(t *testing.T, s kv.Store) {
		k, v := []byte("a"), []byte("1")
		must(t, s.Set(k, v))
		k[0], v[0] = 'b', '2'
		wantValue(t, s, "a", "1")
		b := s.NewBatch()
		k, v = []byte("c"), []byte("3")
		b.Set(k, v)
		k[0], v[0] = 'd', '4'
		must(t, b.Commit())
		wantValue(t, s, "c", "3")
		wantKeys(t, s, "", "a", "c")
	}},
	{"more keys than a memtable holds are all found, and scanned in order", func(t *testing.T, s kv.Store) {
		const n = 20000
		value := func(i int) []byte { return fmt.Appendf(bytes.Repeat([]byte("v"), 100), "%d", i) }
		b := s.NewBatch()
		for i := range n {
			b.Set(key(i), value(i))
			if b.Len() == 1000 {
				must(t, b.Commit())
			}
		}
		must(t, b.Commit())
		for i := 0; i < n; i += 7 {
			wantValue(t, s, string(key(i)), string(value(i)))
		}
		must(t, s.DeletePrefix(key(1000)[:5])) // k0001*: keys 1000 to 1999
		i := 0
		must(t, s.Scan([]byte("k"), func(k, v []byte) (bool, error) {
			if i == 1000 {
				i = 2000
			}
			if !bytes.Equal(k, key(i)) || !bytes.Equal(v, value(i)) {
				return false, fmt.Errorf("Scan visited %q, want %q", k, key(i))
			}
			i++
			return true, nil
		}))
		if i != n {
			t.Errorf("Scan ended before %q, want it to end at %q", key(i), key(n))
		}
	}},
	{"every call after Close fails", func(t *testing.T, s kv.Store) {
		set(t, s, "a", "1")
		b := s.NewBatch()
		b.Set([]byte("b"), []byte("2"))
		must(t, s.Close())
		k := []byte("a")
		_, _, err := s.Get(k)
		errs := []error{
			err,
			s.Set(k, k),
			s.Delete(k),
			s.DeletePrefix(k),
			s.Scan(k, func(_, _ []byte) (bool, error) { return true, nil }),
			b.Commit(),
			s.Close(),
		}
		for i, err := range errs {
			if err == nil {
				t.Errorf("call %d after Close returned no error", i)
			}
		}
	}},
	{"concurrent calls are safe", func(t *testing.T, s kv.Store) {
		// Run with -race. Each writer owns its keys, so it can check them.
		const writers, rounds = 4, 300
		var wg sync.WaitGroup
		errs := make(chan error, writers+1)
		for w := range writers {
			wg.Go(func() {
				for i := range rounds {
					k, v := fmt.Appendf(nil, "w%d/%d", w, i%50), fmt.Appendf(nil, "%d", i)
					if err := s.Set(k, v); err != nil {
						errs <- err
						return
					}
					got, ok, err := s.Get(k)
					if err != nil || !ok || !bytes.Equal(got, v) {
						errs <- fmt.Errorf("writer %d read %q=%q, %v, %v after writing %q", w, k, got, ok, err, v)
						return
					}
					if i%10 == 0 {
						b := s.NewBatch()
						b.Set(fmt.Appendf(nil, "w%d/b", w), v)
						b.Delete(fmt.Appendf(nil, "w%d/%d", w, (i+1)%50))
						if err := b.Commit(); err != nil {
							errs <- err
							return
						}
					}
					if i%100 == 99 {
						if err := s.DeletePrefix(fmt.Appendf(nil, "w%d/", w)); err != nil {
							errs <- err
							return
						}
					}
				}
			})
		}
		wg.Go(func() {
			for range rounds / 10 {
				err := s.Scan([]byte("w"), func(k, _ []byte) (bool, error) {
					if k[0] != 'w' {
						return false, fmt.Errorf("Scan of w visited %q", k)
					}
					return true, nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}},
}

func TestEveryStoreConforms(t *testing.T) {
	t.Parallel()
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range conformance {
				t.Run(c.name, func(t *testing.T) {
					s := st.open(t)
					t.Cleanup(func() { _ = s.Close() }) // the Close test closes it first
					c.test(t, s)
				})
			}
		})
	}
}

func key(i int) []byte { return fmt.Appendf(nil, "k%07d", i) }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func set(t *testing.T, s kv.Store, k, v string) {
	t.Helper()
	must(t, s.Set([]byte(k), []byte(v)))
}

// fill sets each key to itself.
func fill(t *testing.T, s kv.Store, keys ...string) {
	t.Helper()
	for _, k := range keys {
		set(t, s, k, k)
	}
}

func wantValue(t *testing.T, s kv.Store, k, want string) {
	t.Helper()
	v, ok, err := s.Get([]byte(k))
	must(t, err)
	if !ok || string(v) != want {
		t.Errorf("Get(%q) = %q, %v; want %q, true", k, v, ok, want)
	}
}

func wantAbsent(t *testing.T, s kv.Store, k string) {
	t.Helper()
	v, ok, err := s.Get([]byte(k))
	must(t, err)
	if ok {
		t.Errorf("Get(%q) = %q, true; want it absent", k, v)
	}
}

// wantKeys checks that a Scan of prefix visits the keys, in that order.
func wantKeys(t *testing.T, s kv.Store, prefix string, keys ...string) {
	t.Helper()
	var got []string
	must(t, s.Scan([]byte(prefix), func(k, _ []byte) (bool, error) {
		got = append(got, string(k))
		return true, nil
	}))
	if !slices.Equal(got, keys) {
		t.Errorf("Scan(%q) visited %q, want %q", prefix, got, keys)
	}
}
