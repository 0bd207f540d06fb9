package builder

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A build writes its outputs into a staging directory OUT/.xeno-build-*
// and renames them into OUT at the end. The directory's owner file holds
// an flock for as long as the build runs, and the builder's pid for
// people to read: a later build removes every staging directory whose
// lock it can take (its build is gone: killed, even with SIGKILL, or
// crashed), and leaves those of builds still running.
const (
	stagePrefix = ".xeno-build-"
	stageOwner  = ".owner"
	// A staging directory with no owner file is one whose build died
	// between making the directory and locking it, or was made by an
	// older xeno that did not lock; it is stale once this old.
	stageGrace = time.Minute
)

// newStage makes a staging directory in out, owned by this process until
// release is called. It does not remove the directory.
func newStage(out string) (dir string, release func(), err error) {
	dir, err = os.MkdirTemp(out, stagePrefix)
	if err != nil {
		return "", nil, fmt.Errorf("builder: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, stageOwner), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("builder: %w", err)
	}
	// Blocking: a cleaner that locked the new file first finds it empty,
	// leaves it, and lets go.
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("builder: lock %s: %w", f.Name(), err)
	}
	if _, err := fmt.Fprintf(f, "%d\n", os.Getpid()); err != nil {
		f.Close()
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("builder: %w", err)
	}
	return dir, func() { f.Close() }, nil
}

// removeStale removes the staging directories in out whose build is gone,
// and returns them with the pid that owned each ("" if none is recorded).
func removeStale(out string) (removed map[string]string, err error) {
	ents, err := os.ReadDir(out)
	if err != nil {
		return nil, fmt.Errorf("builder: %w", err)
	}
	removed = map[string]string{}
	var errs []error
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), stagePrefix) {
			continue
		}
		dir := filepath.Join(out, e.Name())
		owner, stale, err := staleStage(dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if stale {
			removed[dir] = owner
		}
	}
	return removed, errors.Join(errs...)
}

// staleStage removes dir if its build is gone, holding its lock while it
// does, and says whether it did.
func staleStage(dir string) (owner string, removed bool, err error) {
	old := func() bool {
		st, err := os.Stat(dir)
		return err == nil && time.Since(st.ModTime()) >= stageGrace
	}
	f, err := os.OpenFile(filepath.Join(dir, stageOwner), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		if !old() {
			return "", false, nil
		}
		return "", true, removeAll(dir)
	}
	if err != nil {
		return "", false, fmt.Errorf("builder: %w", err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return "", false, nil // its build is running
		}
		return "", false, fmt.Errorf("builder: lock %s: %w", f.Name(), err)
	}
	b := make([]byte, 32)
	n, _ := f.Read(b)
	pid := strings.TrimSpace(string(b[:n]))
	if _, err := strconv.Atoi(pid); err != nil && !old() {
		// Empty: its build made the file and has not locked it yet.
		return "", false, nil
	}
	return pid, true, removeAll(dir)
}

func removeAll(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("builder: remove stale %s: %w", dir, err)
	}
	return nil
}
