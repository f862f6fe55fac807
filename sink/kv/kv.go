// Package kv is the sink's local key-value store: a cache, on local disk or
// in memory, of state whose durable copy is in Kafka's compacted topics (the
// row index, <topic_prefix>.sink-rows, and the targets topic,
// <topic_prefix>.sink-targets; see docs/architecture.md).
//
// Nothing here is a source of truth. When a partition is assigned, the sink
// reads its changelog partition from Kafka into the store, so a store that
// lost its last writes in a crash is simply rebuilt. That is why the disk
// store writes no write-ahead log, never calls fsync, and wipes its
// directory at every start: durability would cost latency and buy nothing.
//
// Memory stays bounded by Options, not by the number of keys: the disk store
// keeps its data in files read through a fixed-size block cache (no memory
// mapping), with fixed-size memtables and a bounded number of open files.
package kv

import (
	"errors"
	"fmt"
)

// Store is a sorted key-value store. Keys are ordered bytewise. Safe for
// concurrent use, except Close: call it once every other call returned;
// any call after it fails.
//
// A Store copies the keys and values passed to it: callers may reuse their
// buffers once a call returns.
type Store interface {
	// Get returns the value of key. ok is false when the key is absent. The
	// value is the caller's to keep and modify.
	Get(key []byte) (value []byte, ok bool, err error)
	// Set sets key to value, replacing any previous value.
	Set(key, value []byte) error
	// Delete removes key. Deleting an absent key is no error.
	Delete(key []byte) error
	// DeletePrefix removes every key that starts with prefix (every key for
	// an empty prefix).
	DeletePrefix(prefix []byte) error
	// Scan calls fn for every key with the prefix, in key order, until fn
	// returns false or an error; that error is Scan's. It sees the store as
	// it was when Scan began, so fn may write to the store. key and value
	// are valid only until fn returns: copy what you keep.
	Scan(prefix []byte, fn func(key, value []byte) (bool, error)) error
	// NewBatch returns an empty batch of writes to apply at once, the way a
	// restore writes the hundreds of thousands of records it reads.
	NewBatch() Batch
	// Close releases the store. For the disk store, its files stay on disk
	// until the next OpenDisk of the directory wipes them.
	Close() error
}

// Batch collects writes in memory, applied to its store by Commit all at
// once: none of them is visible before, all of them after. It copies what is
// passed to it, so its memory grows with its writes: commit every few
// thousand (see Len). A Batch is for one goroutine at a time.
type Batch interface {
	// Set adds the setting of key to value.
	Set(key, value []byte)
	// Delete adds the removal of key.
	Delete(key []byte)
	// Len is the number of writes added since the batch was made or last
	// committed.
	Len() int
	// Commit applies the writes in the order they were added, then empties
	// the batch, which may be used again. When it fails, none is applied and
	// the batch is left as it was.
	Commit() error
}

// Options sizes the disk store's memory. A zero field takes its default.
type Options struct {
	// CacheBytes is the size of the cache of blocks read from disk (default
	// 16 MiB: the targets are read in no order a cache could follow, and
	// the operating system's page cache holds the files as well).
	CacheBytes int64
	// MemtableBytes is the size of one memtable, where writes wait before
	// they are written to disk (default 8 MiB). Up to two are held at once,
	// plus any batch bigger than half of one while it is being written out.
	MemtableBytes int
}

// Defaults of Options.
const (
	DefaultCacheBytes    = 16 << 20
	DefaultMemtableBytes = 8 << 20
)

func (o Options) withDefaults() (Options, error) {
	if o.CacheBytes < 0 {
		return o, fmt.Errorf("the cache size %d is negative: use a size in bytes, or 0 for the default (%d)", o.CacheBytes, DefaultCacheBytes)
	}
	if o.MemtableBytes < 0 {
		return o, fmt.Errorf("the memtable size %d is negative: use a size in bytes, or 0 for the default (%d)", o.MemtableBytes, DefaultMemtableBytes)
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = DefaultCacheBytes
	}
	if o.MemtableBytes == 0 {
		o.MemtableBytes = DefaultMemtableBytes
	}
	return o, nil
}

var errClosed = errors.New("the store is closed")

// prefixEnd returns the smallest key greater than every key with the
// prefix, or nil when there is none (an empty prefix, or one of 0xff bytes
// only).
func prefixEnd(prefix []byte) []byte {
	for i := len(prefix) - 1; i >= 0; i-- {
		if prefix[i] != 0xff {
			end := make([]byte, i+1)
			copy(end, prefix)
			end[i]++
			return end
		}
	}
	return nil
}
