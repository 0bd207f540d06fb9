package images

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// AtomicWrite creates path through a temporary file in the same directory,
// so that a failed or interrupted write never leaves a truncated output
// where a good one used to be. The file gets exactly mode (the umask does
// not apply), is fsynced, renamed over path, and the directory is fsynced
// so the rename itself survives a crash.
func AtomicWrite(path string, mode fs.FileMode, write func(f *os.File) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("images: %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(mode.Perm()); err != nil {
		return fmt.Errorf("images: %s: %w", path, err)
	}
	if err = write(f); err != nil {
		return fmt.Errorf("images: %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("images: %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("images: %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("images: %s: %w", path, err)
	}
	// The rename is durable only once the directory is; a failure here
	// leaves a complete file, so it is reported but nothing is removed.
	d, derr := os.Open(dir)
	if derr != nil {
		return nil
	}
	defer d.Close()
	if serr := d.Sync(); serr != nil {
		return fmt.Errorf("images: %s: sync directory: %w", path, serr)
	}
	return nil
}
