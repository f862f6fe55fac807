package kv

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// NewMemory returns a store held in memory, for tests and tiny deployments:
// all of it is in RAM, a new key costs time in proportion to the number of
// keys, and Scan copies what it visits before the first call of fn.
func NewMemory() Store {
	return &memory{}
}

type memory struct {
	mu      sync.RWMutex
	entries []memEntry // sorted by key
	closed  bool
}

type memEntry struct {
	key   string
	value []byte // never modified: replaced whole
}

func cmpEntry(e memEntry, key string) int { return strings.Compare(e.key, key) }

// search returns where key is or would be.
func (m *memory) search(key []byte) (int, bool) {
	return slices.BinarySearchFunc(m.entries, string(key), cmpEntry)
}

// prefixRange returns the entries with the prefix: entries[lo:hi].
func (m *memory) prefixRange(prefix []byte) (lo, hi int) {
	lo, _ = m.search(prefix)
	hi = len(m.entries)
	if end := prefixEnd(prefix); end != nil {
		hi, _ = m.search(end)
	}
	return lo, hi
}

func (m *memory) Get(key []byte) ([]byte, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, false, fmt.Errorf("kv: get: %w", errClosed)
	}
	i, ok := m.search(key)
	if !ok {
		return nil, false, nil
	}
	return append([]byte{}, m.entries[i].value...), true, nil
}

func (m *memory) Set(key, value []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("kv: set: %w", errClosed)
	}
	m.set(key, append([]byte{}, value...))
	return nil
}

// set takes value for its own.
func (m *memory) set(key, value []byte) {
	i, ok := m.search(key)
	if ok {
		m.entries[i].value = value
		return
	}
	m.entries = slices.Insert(m.entries, i, memEntry{key: string(key), value: value})
}

func (m *memory) Delete(key []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("kv: delete: %w", errClosed)
	}
	m.delete(key)
	return nil
}

func (m *memory) delete(key []byte) {
	if i, ok := m.search(key); ok {
		m.entries = slices.Delete(m.entries, i, i+1)
	}
}

func (m *memory) DeletePrefix(prefix []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("kv: delete a prefix: %w", errClosed)
	}
	lo, hi := m.prefixRange(prefix)
	m.entries = slices.Delete(m.entries, lo, hi)
	return nil
}

func (m *memory) Scan(prefix []byte, fn func(key, value []byte) (bool, error)) error {
	m.mu.RLock()
	if m.closed {
		m.mu.RUnlock()
		return fmt.Errorf("kv: scan: %w", errClosed)
	}
	// A copy, so that fn may write; values are never modified in place, so
	// sharing them is a copy too.
	lo, hi := m.prefixRange(prefix)
	snap := slices.Clone(m.entries[lo:hi])
	m.mu.RUnlock()
	var buf []byte
	for _, e := range snap {
		// fn gets scratch copies, overwritten by the next entry, as on disk:
		// a caller that keeps them without copying breaks in tests too.
		buf = append(append(buf[:0], e.key...), e.value...)
		key, value := buf[:len(e.key):len(e.key)], buf[len(e.key):len(buf):len(buf)]
		ok, err := fn(key, value)
		clear(buf)
		if !ok || err != nil {
			return err
		}
	}
	return nil
}

func (m *memory) NewBatch() Batch { return &memBatch{m: m} }

func (m *memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("kv: close: %w", errClosed)
	}
	m.closed, m.entries = true, nil
	return nil
}

type memBatch struct {
	m   *memory
	ops []memOp
}

type memOp struct {
	key, value []byte
	delete     bool
}

func (b *memBatch) Set(key, value []byte) {
	b.ops = append(b.ops, memOp{key: bytes.Clone(key), value: append([]byte{}, value...)})
}

func (b *memBatch) Delete(key []byte) {
	b.ops = append(b.ops, memOp{key: bytes.Clone(key), delete: true})
}

func (b *memBatch) Len() int { return len(b.ops) }

func (b *memBatch) Commit() error {
	m := b.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("kv: commit a batch: %w", errClosed)
	}
	for _, op := range b.ops {
		if op.delete {
			m.delete(op.key)
		} else {
			m.set(op.key, op.value)
		}
	}
	b.ops = nil
	return nil
}
