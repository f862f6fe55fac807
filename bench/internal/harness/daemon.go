package harness

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// BuildDaemon builds onesignal-cdc from the repository at root into dir,
// for the benchmarks that run the daemon's binary, and says how long it
// took.
func BuildDaemon(ctx context.Context, root, dir string) (bin string, took time.Duration, err error) {
	bin = filepath.Join(dir, "onesignal-cdc")
	started := time.Now()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/onesignal-cdc")
	build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", 0, fmt.Errorf("build onesignal-cdc: %w", err)
	}
	return bin, time.Since(started), nil
}

// DirSize is the sum of the sizes of the regular files under dir. Files
// that vanish while it looks (a store compacting) are skipped.
func DirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		n += info.Size()
		return nil
	})
	return n, err
}
