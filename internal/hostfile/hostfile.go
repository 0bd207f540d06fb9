// Package hostfile opens the host files that a command line or an xl.cfg
// names: kernels, initramfs images, configs and disks. Whatever the path
// turns out to be, opening it must not block and reading it must not
// allocate without bound, so a FIFO, a character device such as
// /dev/zero, a file in /proc or /sys, or a file over its cap is refused
// before a byte is read. The hv and the toolstack both open through here,
// so that xl's checks and the hv's own agree.
package hostfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// Size caps, stated in docs/hv.md and docs/xl.md. An initramfs is also
// capped by the guest's RAM, which the caller passes as the limit.
const (
	// MaxKernel leaves room for an uncompressed vmlinux ELF: Debian's
	// bzImages are about 8 MiB and decompress to under 64 MiB.
	MaxKernel = 128 << 20
	// MaxInitrd is far beyond any initramfs xeno builds, and well below
	// the 2 GiB that a bzImage's initrd_addr_max usually allows.
	MaxInitrd = 1 << 30
	// MaxConfig is an xl.cfg; real ones are a few hundred bytes.
	MaxConfig = 1 << 20
)

// Errors for errors.Is; the messages that wrap them name the path and
// what it is.
var (
	ErrNotRegular = errors.New("not a regular file")
	ErrNotDisk    = errors.New("not a regular file or block device")
	ErrPseudo     = errors.New("a kernel interface, not a file")
	ErrTooLarge   = errors.New("over the limit")
)

// pseudoFS are the file systems whose "regular files" are kernel
// interfaces: /proc/self/mem or /proc/kcore can be opened read-write and
// read without end, and their st_size says nothing.
var pseudoFS = map[int64]string{
	unix.PROC_SUPER_MAGIC:    "proc",
	unix.SYSFS_MAGIC:         "sysfs",
	unix.DEBUGFS_MAGIC:       "debugfs",
	unix.TRACEFS_MAGIC:       "tracefs",
	unix.SECURITYFS_MAGIC:    "securityfs",
	unix.CGROUP_SUPER_MAGIC:  "cgroup",
	unix.CGROUP2_SUPER_MAGIC: "cgroup2",
	0x62656570:               "configfs", // CONFIGFS_MAGIC, not in x/sys/unix
	unix.BPF_FS_MAGIC:        "bpf",
	unix.EFIVARFS_MAGIC:      "efivarfs",
	unix.PSTOREFS_MAGIC:      "pstore",
}

// ReadRegular reads the regular file at path, refusing it before any
// read if it is anything else or larger than limit bytes.
func ReadRegular(path string, limit int64) ([]byte, error) {
	f, size, err := OpenRegular(path, limit)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return read(f, path, size, limit)
}

// ReadOpened reads f, a file that OpenRegular opened (the hv's jailer
// opens its kernel and initramfs before it drops to its own uid), with
// limit checked again: it may be lower than the one it was opened with.
func ReadOpened(f *os.File, limit int64) ([]byte, error) {
	path := f.Name()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, &fs.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Size > limit {
		return nil, fmt.Errorf("%s: %d bytes, %w of %s", path, st.Size, ErrTooLarge, sizeString(limit))
	}
	return read(f, path, st.Size, limit)
}

func read(f *os.File, path string, size, limit int64) ([]byte, error) {
	var b bytes.Buffer
	b.Grow(int(size))
	// The file may grow after the check: the limit still holds.
	if _, err := b.ReadFrom(io.LimitReader(f, limit+1)); err != nil {
		return nil, &fs.PathError{Op: "read", Path: path, Err: err}
	}
	if int64(b.Len()) > limit {
		return nil, fmt.Errorf("%s: grew while read, %w of %s", path, ErrTooLarge, sizeString(limit))
	}
	return b.Bytes(), nil
}

// OpenRegular opens the regular file at path for reading and returns it
// with its size, refusing it if it is anything else or larger than limit
// bytes.
func OpenRegular(path string, limit int64) (*os.File, int64, error) {
	f, st, err := open(path, unix.O_RDONLY, ErrNotRegular, unix.S_IFREG)
	if err != nil {
		return nil, 0, err
	}
	if st.Size > limit {
		f.Close()
		return nil, 0, fmt.Errorf("%s: %d bytes, %w of %s", path, st.Size, ErrTooLarge, sizeString(limit))
	}
	return f, st.Size, nil
}

// OpenDisk opens a disk image: a regular file or a block device, read-write
// unless readOnly.
func OpenDisk(path string, readOnly bool) (*os.File, error) {
	flag := unix.O_RDWR
	if readOnly {
		flag = unix.O_RDONLY
	}
	f, _, err := open(path, flag, ErrNotDisk, unix.S_IFREG, unix.S_IFBLK)
	return f, err
}

// open opens path if it is one of the file types in want and on no
// pseudo file system; notWant is the error otherwise.
func open(path string, flag int, notWant error, want ...uint32) (*os.File, *unix.Stat_t, error) {
	var st unix.Stat_t
	// Look first, so that a device never sees an open at all (opening
	// some has effects, e.g. a watchdog's); then check the opened fd,
	// which is what counts if the path changed in between.
	if err := unix.Stat(path, &st); err != nil {
		return nil, nil, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	if err := checkType(path, &st, notWant, want); err != nil {
		return nil, nil, err
	}
	// O_NONBLOCK: a FIFO swapped in after the stat must not block the
	// open. It is cleared again for the reads.
	fd, err := unix.Open(path, flag|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	fail := func(err error) (*os.File, *unix.Stat_t, error) {
		unix.Close(fd)
		return nil, nil, err
	}
	if err := unix.Fstat(fd, &st); err != nil {
		return fail(&fs.PathError{Op: "fstat", Path: path, Err: err})
	}
	if err := checkType(path, &st, notWant, want); err != nil {
		return fail(err)
	}
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return fail(&fs.PathError{Op: "fstatfs", Path: path, Err: err})
	}
	if name, ok := pseudoFS[int64(sfs.Type)]; ok {
		return fail(fmt.Errorf("%s: on %s: %w", path, name, ErrPseudo))
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		return fail(&fs.PathError{Op: "fcntl", Path: path, Err: err})
	}
	return os.NewFile(uintptr(fd), path), &st, nil
}

func checkType(path string, st *unix.Stat_t, notWant error, want []uint32) error {
	t := st.Mode & unix.S_IFMT
	for _, w := range want {
		if t == w {
			return nil
		}
	}
	return fmt.Errorf("%s: %s, %w", path, typeName(t), notWant)
}

func typeName(t uint32) string {
	switch t {
	case unix.S_IFREG:
		return "a regular file"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFLNK:
		return "a symbolic link"
	}
	return fmt.Sprintf("of file type %#o", t)
}

func sizeString(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}
