package kv_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onesignal-cdc/onesignal-cdc/sink/kv"
)

func openDisk(t *testing.T, dir string) kv.Store {
	t.Helper()
	s, err := kv.OpenDisk(dir, kv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestOpenDiskCreatesAMissingDirectoryForItsUserOnly(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state", "kv")
	s := openDisk(t, dir)
	set(t, s, "a", "1")
	fi, err := os.Stat(dir)
	must(t, err)
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("the directory has mode %v, want 0700", perm)
	}
}

func TestOpenDiskAcceptsAnEmptyDirectory(t *testing.T) {
	t.Parallel()
	s := openDisk(t, t.TempDir())
	set(t, s, "a", "1")
	wantValue(t, s, "a", "1")
}

func TestOpenDiskAcceptsAFileSystemRootAndLeavesItsLostAndFound(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lost := filepath.Join(dir, "lost+found", "inode-42")
	must(t, os.MkdirAll(filepath.Dir(lost), 0o700))
	must(t, os.WriteFile(lost, []byte("x"), 0o600))
	for range 2 { // the second open wipes
		s, err := kv.OpenDisk(dir, kv.Options{})
		must(t, err)
		must(t, s.Close())
	}
	if _, err := os.Stat(lost); err != nil {
		t.Errorf("lost+found was touched: %v", err)
	}
}

func TestOpenDiskRefusesAnEmptyPath(t *testing.T) {
	t.Parallel()
	_, err := kv.OpenDisk("", kv.Options{})
	if err == nil || !strings.Contains(err.Error(), "set sink.state_dir") {
		t.Errorf("OpenDisk(\"\") returned %v, want an error naming the setting", err)
	}
}

func TestOpenDiskWipesWhatThePreviousStoreLeft(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := kv.OpenDisk(dir, kv.Options{})
	must(t, err)
	set(t, s, "a", "1")
	must(t, s.Close())
	// Whatever else is in a directory of the store's goes too.
	must(t, os.WriteFile(filepath.Join(dir, "left-over"), []byte("x"), 0o600))
	must(t, os.Mkdir(filepath.Join(dir, "sub"), 0o700))

	s = openDisk(t, dir)
	wantAbsent(t, s, "a")
	wantKeys(t, s, "")
	for _, name := range []string{"left-over", "sub"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Errorf("%s survived the wipe (%v)", name, err)
		}
	}
}

func TestOpenDiskRefusesADirectoryHoldingFilesItDidNotCreate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	precious := filepath.Join(dir, "precious.txt")
	must(t, os.WriteFile(precious, []byte("keep me"), 0o600))

	s, err := kv.OpenDisk(dir, kv.Options{})
	if err == nil {
		s.Close()
		t.Fatal("OpenDisk opened a directory holding someone else's file")
	}
	for _, want := range []string{"kv: open " + dir + ": ", "did not create", "sink.state_dir"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error %q does not say %q", err, want)
		}
	}
	if b, err := os.ReadFile(precious); err != nil || string(b) != "keep me" {
		t.Errorf("the file was touched: %q, %v", b, err)
	}
}

func TestOpenDiskRefusesADirectoryAnotherStoreHolds(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := openDisk(t, dir)
	set(t, first, "a", "1")

	second, err := kv.OpenDisk(dir, kv.Options{})
	if err == nil {
		second.Close()
		t.Fatal("OpenDisk opened a directory another store holds")
	}
	if !strings.Contains(err.Error(), "another store is using the directory") {
		t.Errorf("the error %q does not say another store holds the directory", err)
	}
	wantValue(t, first, "a", "1") // not wiped

	must(t, first.Close())
	openDisk(t, dir) // free again
}

func TestOpenDiskRefusesNegativeSizes(t *testing.T) {
	t.Parallel()
	for _, opt := range []kv.Options{{CacheBytes: -1}, {MemtableBytes: -1}} {
		s, err := kv.OpenDisk(t.TempDir(), opt)
		if err == nil {
			s.Close()
			t.Errorf("OpenDisk accepted %+v", opt)
			continue
		}
		if !strings.Contains(err.Error(), "negative") {
			t.Errorf("the error %q does not say what is wrong", err)
		}
	}
}
