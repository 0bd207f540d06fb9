// Package atomicfile writes a file so that readers, and the file system
// after a crash, see either the old contents or the whole new ones: a
// temporary file in the same directory is written, fsynced and renamed
// over the target, and then the directory is fsynced so that the rename
// itself is durable. It imports only the standard library, so the hv can
// use it too.
package atomicfile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Write creates path with exactly perm (the umask does not apply) from
// what write puts into the temporary file. On any error the temporary
// file is removed and path is untouched. Errors name path but no package,
// as the os package's do; callers add their own.
func Write(path string, perm fs.FileMode, write func(f *os.File) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm.Perm()); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err = write(f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	// The rename is durable only once the directory is. A failure here
	// leaves a complete file, so it is reported but nothing is removed;
	// a directory this process cannot open it cannot sync either.
	d, derr := os.Open(dir)
	if derr != nil {
		return nil
	}
	defer d.Close()
	if serr := d.Sync(); serr != nil {
		return fmt.Errorf("%s: sync directory: %w", path, serr)
	}
	return nil
}

// WriteFile is Write for contents already in memory, like os.WriteFile.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return Write(path, perm, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}
