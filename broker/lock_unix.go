//go:build unix

package broker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDir takes an exclusive lock on dir for this process: two brokers
// writing one directory would corrupt it. The lock goes with the process,
// however it ends.
func lockDir(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, "onesignal-cdc.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("embedded broker data directory: %w: choose a writable kafka.embedded_data_dir", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("the embedded broker's data directory %s is in use by another onesignal-cdc process: stop it first, or give each process its own kafka.embedded_data_dir", dir)
		}
		return nil, fmt.Errorf("lock the embedded broker's data directory %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}
