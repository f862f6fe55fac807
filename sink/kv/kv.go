// Package kv is a placeholder of the sink's local store, replaced by the
// real package when its branch merges.
package kv

import (
	"bytes"
	"sort"
	"sync"
)

type Store interface {
	Get(key []byte) (value []byte, ok bool, err error)
	Set(key, value []byte) error
	Delete(key []byte) error
	DeletePrefix(prefix []byte) error
	Scan(prefix []byte, fn func(key, value []byte) (bool, error)) error
	NewBatch() Batch
	Close() error
}

type Batch interface {
	Set(key, value []byte)
	Delete(key []byte)
	Len() int
	Commit() error
}

type mem struct {
	mu sync.Mutex
	m  map[string][]byte
}

func NewMemory() Store { return &mem{m: map[string][]byte{}} }

func (s *mem) Get(k []byte) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[string(k)]
	return bytes.Clone(v), ok, nil
}
func (s *mem) Set(k, v []byte) error {
	s.mu.Lock()
	s.m[string(k)] = bytes.Clone(v)
	s.mu.Unlock()
	return nil
}
func (s *mem) Delete(k []byte) error { s.mu.Lock(); delete(s.m, string(k)); s.mu.Unlock(); return nil }
func (s *mem) DeletePrefix(p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.m {
		if bytes.HasPrefix([]byte(k), p) {
			delete(s.m, k)
		}
	}
	return nil
}
func (s *mem) Scan(p []byte, fn func(k, v []byte) (bool, error)) error {
	s.mu.Lock()
	var ks []string
	for k := range s.m {
		if bytes.HasPrefix([]byte(k), p) {
			ks = append(ks, k)
		}
	}
	s.mu.Unlock()
	sort.Strings(ks)
	for _, k := range ks {
		v, ok, _ := s.Get([]byte(k))
		if !ok {
			continue
		}
		if more, err := fn([]byte(k), v); err != nil || !more {
			return err
		}
	}
	return nil
}
func (s *mem) NewBatch() Batch { return &batch{s: s} }
func (s *mem) Close() error    { return nil }

type batch struct {
	s   *mem
	ops []func()
}

func (b *batch) Set(k, v []byte) {
	k, v = bytes.Clone(k), bytes.Clone(v)
	b.ops = append(b.ops, func() { b.s.m[string(k)] = v })
}
func (b *batch) Delete(k []byte) {
	k = bytes.Clone(k)
	b.ops = append(b.ops, func() { delete(b.s.m, string(k)) })
}
func (b *batch) Len() int { return len(b.ops) }
func (b *batch) Commit() error {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	for _, op := range b.ops {
		op()
	}
	b.ops = nil
	return nil
}

// Options size a disk store's caches.
type Options struct {
	CacheBytes    int64
	MemtableBytes int
}

// OpenDisk is a placeholder: it returns a memory store.
func OpenDisk(dir string, opt Options) (Store, error) { return NewMemory(), nil }
