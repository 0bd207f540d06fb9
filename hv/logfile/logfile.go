// Package logfile is the hv's size-capped log file: hv.log and
// console.log. A guest decides how much the hv logs and prints, and these
// files live on the state directory's tmpfs, so each is capped: past Max
// bytes the file is renamed to PATH.1 (replacing the previous one) and a
// new PATH is started. At most 2×Max bytes are ever on disk per log.
package logfile

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Max is the cap of each of the hv's log files (docs/hv.md).
const Max = 1 << 20

// File is an append-only log of at most max bytes, with one rotated
// predecessor PATH.1. It is safe for concurrent use.
type File struct {
	path string
	max  int64

	mu     sync.Mutex
	f      *os.File
	size   int64
	stderr bool // the file is also fd 2, after every rotation
}

// Open opens path for appending, creating it with mode 0600. A file that
// already holds max bytes or more (left by an earlier run of the domain)
// is rotated on the first write.
func Open(path string, max int64) (*File, error) {
	l := &File{path: path, max: max}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *File) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("logfile: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("logfile: %w", err)
	}
	if l.stderr {
		if err := unix.Dup3(int(f.Fd()), 2, 0); err != nil {
			f.Close()
			return fmt.Errorf("logfile: %s as stderr: %w", l.path, err)
		}
	}
	if l.f != nil {
		l.f.Close()
	}
	l.f, l.size = f, fi.Size()
	return nil
}

// Stderr makes the log the process's fd 2 too, now and after every
// rotation, so that what the Go runtime writes there (a panic) lands in
// the current file rather than in a rotated or deleted one.
func (l *File) Stderr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stderr = true
	if err := unix.Dup3(int(l.f.Fd()), 2, 0); err != nil {
		return fmt.Errorf("logfile: %s as stderr: %w", l.path, err)
	}
	return nil
}

// Write appends p. A p that would take the file past its cap starts a new
// file first, so that lines stay whole; only a p longer than the cap
// itself is split.
func (l *File) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return 0, fmt.Errorf("logfile: %s: closed", l.path)
	}
	n := 0
	for len(p) > 0 {
		if l.size > 0 && l.size+int64(len(p)) > l.max {
			// The caller may be a vCPU thread, whose seccomp filter
			// allows no open, rename or truncate (hv/jail). A locked
			// thread runs no other goroutine, so this one runs on a
			// thread under the process-wide filter, which allows them.
			errc := make(chan error, 1)
			go func() { errc <- l.rotate() }()
			if err := <-errc; err != nil {
				return n, err
			}
		}
		chunk := p[:min(int64(len(p)), l.max)]
		m, err := l.f.Write(chunk)
		n += m
		l.size += int64(m)
		if err != nil {
			return n, fmt.Errorf("logfile: %w", err)
		}
		p = p[m:]
	}
	return n, nil
}

// rotate renames the file to PATH.1 and starts a new one. Where the
// rename fails the file is emptied instead: the cap holds either way.
func (l *File) rotate() error {
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		if terr := l.f.Truncate(0); terr != nil {
			return fmt.Errorf("logfile: %w (and truncating: %v)", err, terr)
		}
		l.size = 0
		return nil
	}
	return l.open()
}

// Close closes the file; later writes fail.
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
