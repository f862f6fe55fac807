package kv

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"
	"github.com/cockroachdb/pebble/vfs"
)

// markerName is the file that says a directory is this store's to wipe. It is
// also the lock that keeps two stores, in this process or another, out of
// one directory: the second would wipe the first's files.
const markerName = "ONESIGNAL_CDC_CACHE_WIPED_AT_EVERY_START"

// dbName is the subdirectory that holds pebble's files.
const dbName = "pebble"

// maxOpenFiles bounds pebble's open files, most of them tables kept open by
// its table cache (2,000,000 keys of 240 bytes make about 160 tables); past
// it, the least recently used table is closed, and opened again when read.
const maxOpenFiles = 256

// scanChunk is how many bytes of keys and values Scan reads per iterator.
// It closes the iterator before it calls fn, so memtables flushed while fn
// writes are freed instead of being pinned for the whole scan.
const scanChunk = 64 << 10

// OpenDisk opens the store in dir, a cache on local disk (pebble): it first
// wipes whatever a previous OpenDisk left there, since the state is rebuilt
// from Kafka at every start. It writes no write-ahead log and never syncs.
//
// dir may be missing (it is created, mode 0700) or empty. A directory that
// holds anything else but this store's files is refused, lest a wrong
// setting (state_dir: /) wipe files that are not the store's.
func OpenDisk(dir string, opt Options) (Store, error) {
	s, err := openDisk(dir, opt)
	if err != nil {
		return nil, fmt.Errorf("kv: open %s: %w", dir, err)
	}
	return s, nil
}

func openDisk(dir string, opt Options) (*disk, error) {
	opt, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	lock, err := claim(dir)
	if err != nil {
		return nil, err
	}
	cache := pebble.NewCache(opt.CacheBytes)
	defer cache.Unref() // the DB holds its own reference
	o := &pebble.Options{
		Cache:                       cache,
		MemTableSize:                uint64(opt.MemtableBytes),
		MemTableStopWritesThreshold: 2,
		MaxOpenFiles:                maxOpenFiles,
		DisableWAL:                  true,
		FS:                          noSyncFS{vfs.Default},
		FormatMajorVersion:          pebble.FormatNewest,
		ErrorIfExists:               true, // claim emptied the directory
	}
	o.Levels = make([]pebble.LevelOptions, 7)
	for i := range o.Levels {
		// Most Gets are for keys that exist, but a row the sink never saw
		// and a target's first contribution are misses: a filter answers
		// them without reading a block.
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(filepath.Join(dir, dbName), o)
	if err != nil {
		lock.Close()
		return nil, err
	}
	return &disk{db: db, lock: lock}, nil
}

// claim makes dir this store's, empty but for the marker, and locks it.
func claim(dir string) (io.Closer, error) {
	if dir == "" {
		return nil, errors.New("no directory given: set sink.state_dir")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	// A file system's root holds lost+found; it is neither ours nor in the way.
	entries = slices.DeleteFunc(entries, func(e os.DirEntry) bool { return e.Name() == "lost+found" })
	ours := len(entries) == 0 || slices.ContainsFunc(entries, func(e os.DirEntry) bool { return e.Name() == markerName })
	if !ours {
		return nil, errors.New("the directory holds files this store did not create, and the store wipes its directory at every start: set sink.state_dir to an empty or missing directory of its own")
	}
	lock, err := vfs.Default.Lock(filepath.Join(dir, markerName))
	if err != nil {
		return nil, fmt.Errorf("another store is using the directory (does another sink have the same sink.state_dir?): give each its own: %w", err)
	}
	// The marker stays, so a wipe cut short by a crash is finished next time.
	for _, e := range entries {
		if e.Name() == markerName {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			lock.Close()
			return nil, fmt.Errorf("wipe the previous cache: %w", err)
		}
	}
	return lock, nil
}

type disk struct {
	db     *pebble.DB
	lock   io.Closer
	closed atomic.Bool // pebble panics when used after Close
}

func (s *disk) Get(key []byte) ([]byte, bool, error) {
	if s.closed.Load() {
		return nil, false, fmt.Errorf("kv: get: %w", errClosed)
	}
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("kv: get: %w", err)
	}
	v = append([]byte{}, v...) // pebble's copy lives until closer.Close
	if err := closer.Close(); err != nil {
		return nil, false, fmt.Errorf("kv: get: %w", err)
	}
	return v, true, nil
}

func (s *disk) Set(key, value []byte) error {
	if s.closed.Load() {
		return fmt.Errorf("kv: set: %w", errClosed)
	}
	if err := s.db.Set(key, value, pebble.NoSync); err != nil {
		return fmt.Errorf("kv: set: %w", err)
	}
	return nil
}

func (s *disk) Delete(key []byte) error {
	if s.closed.Load() {
		return fmt.Errorf("kv: delete: %w", errClosed)
	}
	if err := s.db.Delete(key, pebble.NoSync); err != nil {
		return fmt.Errorf("kv: delete: %w", err)
	}
	return nil
}

func (s *disk) DeletePrefix(prefix []byte) error {
	if s.closed.Load() {
		return fmt.Errorf("kv: delete a prefix: %w", errClosed)
	}
	if err := s.deletePrefix(prefix); err != nil {
		return fmt.Errorf("kv: delete a prefix: %w", err)
	}
	return nil
}

func (s *disk) deletePrefix(prefix []byte) error {
	if end := prefixEnd(prefix); end != nil {
		return s.db.DeleteRange(prefix, end, pebble.NoSync)
	}
	// No key bounds the prefix from above: delete up to the last key, and it.
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix})
	if err != nil {
		return err
	}
	var last []byte
	if it.Last() {
		last = append(last, it.Key()...)
	}
	if err := it.Close(); err != nil || last == nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(prefix, last, nil); err != nil {
		return err
	}
	if err := b.Delete(last, nil); err != nil {
		return err
	}
	return b.Commit(pebble.NoSync)
}

func (s *disk) Scan(prefix []byte, fn func(key, value []byte) (bool, error)) error {
	if s.closed.Load() {
		return fmt.Errorf("kv: scan: %w", errClosed)
	}
	// The snapshot keeps the store as it was, so fn may write; unlike an
	// iterator held open, it pins no memtable.
	snap := s.db.NewSnapshot()
	defer snap.Close()
	c := chunk{lower: prefix, upper: prefixEnd(prefix)}
	for {
		more, err := c.read(snap)
		if err != nil {
			return fmt.Errorf("kv: scan: %w", err)
		}
		for _, e := range c.entries {
			if ok, err := fn(c.buf[e.start:e.key:e.key], c.buf[e.key:e.value:e.value]); !ok || err != nil {
				return err
			}
		}
		if !more {
			return nil
		}
		last := c.entries[len(c.entries)-1]
		c.lower = append(append(c.lower[:0:0], c.buf[last.start:last.key]...), 0) // the first key after last
	}
}

// chunk is a part of a scan: keys and values copied out of an iterator, so
// the iterator can be closed before they are handed to fn.
type chunk struct {
	lower, upper []byte // the iterator's bounds
	buf          []byte // keys and values, back to back
	entries      []chunkEntry
}

// chunkEntry locates one key and its value in chunk.buf: the key is
// buf[start:key], the value buf[key:value].
type chunkEntry struct{ start, key, value int }

// read replaces the chunk's entries with the next ones from lower on, about
// scanChunk bytes of them, and says whether there may be more.
func (c *chunk) read(snap *pebble.Snapshot) (more bool, err error) {
	c.buf, c.entries = c.buf[:0], c.entries[:0]
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: c.lower, UpperBound: c.upper})
	if err != nil {
		return false, err
	}
	for valid := it.First(); valid; valid = it.Next() {
		if len(c.buf) >= scanChunk {
			more = true
			break
		}
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return false, err
		}
		e := chunkEntry{start: len(c.buf)}
		c.buf = append(c.buf, it.Key()...)
		e.key = len(c.buf)
		c.buf = append(c.buf, v...)
		e.value = len(c.buf)
		c.entries = append(c.entries, e)
	}
	return more, it.Close()
}

func (s *disk) NewBatch() Batch {
	return &diskBatch{s: s, b: s.db.NewBatch()}
}

func (s *disk) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return fmt.Errorf("kv: close: %w", errClosed)
	}
	err := s.db.Close()
	if lerr := s.lock.Close(); err == nil {
		err = lerr
	}
	if err != nil {
		return fmt.Errorf("kv: close: %w", err)
	}
	return nil
}

type diskBatch struct {
	s *disk
	b *pebble.Batch
}

// Pebble's batch copies keys and values, and fails only for a batch of
// 4 GiB or more (it panics), so Set and Delete have no error to return.

func (b *diskBatch) Set(key, value []byte) { _ = b.b.Set(key, value, nil) }
func (b *diskBatch) Delete(key []byte)     { _ = b.b.Delete(key, nil) }
func (b *diskBatch) Len() int              { return int(b.b.Count()) }

func (b *diskBatch) Commit() error {
	if b.s.closed.Load() {
		return fmt.Errorf("kv: commit a batch: %w", errClosed)
	}
	if b.b.Empty() {
		return nil
	}
	if err := b.b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("kv: commit a batch: %w", err)
	}
	b.b.Reset()
	return nil
}

// noSyncFS is the local file system minus every sync: the store is a cache,
// rebuilt from Kafka at every start, so waiting for the disk buys nothing.
type noSyncFS struct{ vfs.FS }

func (fs noSyncFS) Create(name string) (vfs.File, error) {
	return noSync(fs.FS.Create(name))
}

func (fs noSyncFS) OpenReadWrite(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	return noSync(fs.FS.OpenReadWrite(name, opts...))
}

func (fs noSyncFS) OpenDir(name string) (vfs.File, error) {
	return noSync(fs.FS.OpenDir(name))
}

func (fs noSyncFS) ReuseForWrite(oldname, newname string) (vfs.File, error) {
	return noSync(fs.FS.ReuseForWrite(oldname, newname))
}

func noSync(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return noSyncFile{f}, nil
}

type noSyncFile struct{ vfs.File }

func (noSyncFile) Sync() error                { return nil }
func (noSyncFile) SyncData() error            { return nil }
func (noSyncFile) SyncTo(int64) (bool, error) { return false, nil }
