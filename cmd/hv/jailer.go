package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/xeno-hv/xeno/hv/jail"
	"github.com/xeno-hv/xeno/hv/kvm"
	"github.com/xeno-hv/xeno/hv/snapshot"
	"github.com/xeno-hv/xeno/hv/vm"
	"github.com/xeno-hv/xeno/internal/hostfile"
	"golang.org/x/sys/unix"
)

// dirFlags is a repeatable flag of directories.
type dirFlags []string

func (d *dirFlags) String() string { return strings.Join(*d, ",") }
func (d *dirFlags) Set(s string) error {
	if !filepath.IsAbs(s) {
		return fmt.Errorf("%q is not an absolute path", s)
	}
	*d = append(*d, filepath.Clean(s))
	return nil
}

// jailSpec is the jailer step's command line (--jail-*): xl starts the
// hv as root in new namespaces with these, and the hv jails itself
// before it reads its kernel (docs/security.md). The only code that runs
// as root is flag parsing, the checks of the command line, the opens
// below and the mounts of jail.Enter.
type jailSpec struct {
	root     string
	dirs     []string
	uid, gid int
	paths    []string // the files the hv creates after the drop: each must be in dirs
	// rootOptional: where the root cannot be built, say so and go on
	// (xl create --allow-unjailed=root).
	rootOptional bool
	stderr       io.Writer
}

// opened holds the files the jailer opened for the hv: it reads and uses
// them after the drop instead of opening their paths, which the jail
// does not hold. A nil *opened opens paths as an unjailed hv does.
type opened struct {
	kvm            *os.File
	kernel, initrd *os.File
	disks          []*os.File
	snapshot       *os.File // --restore's file or stream
	snapPath       string
}

// enter opens the kernel or the snapshot, the initramfs, the disks (taking their locks:
// a holder is named from the host's /proc, still mounted here) and
// /dev/kvm, then enters the private root and drops to the uid.
func (j jailSpec) enter(kernel, initrd, restore string, disks []vm.Disk) (*opened, error) {
	if (j.uid >= 0) != (j.gid >= 0) {
		return nil, usageError{errors.New("--jail-uid and --jail-gid go together")}
	}
	if j.root != "" {
		for _, p := range j.paths {
			if p != "" && p != "stdio" && p != "pty" && !inDirs(p, j.dirs) {
				return nil, usageError{fmt.Errorf("--jail-root: %s is in no --jail-dir: the hv could not create it in its jail", p)}
			}
		}
	}
	o := &opened{}
	var err error
	if restore != "" {
		if o.snapshot, err = openSnapshot(restore); err != nil {
			return nil, err
		}
		o.snapPath = restore
	} else if o.kernel, _, err = hostfile.OpenRegular(kernel, hostfile.MaxKernel); err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	if initrd != "" {
		if o.initrd, _, err = hostfile.OpenRegular(initrd, hostfile.MaxInitrd); err != nil {
			return nil, fmt.Errorf("initrd: %w", err)
		}
	}
	for _, d := range disks {
		f, err := vm.OpenDisk(d)
		if err != nil {
			return nil, fmt.Errorf("disk: %w", err)
		}
		o.disks = append(o.disks, f)
	}
	if o.kvm, err = kvm.OpenDevice(); err != nil {
		return nil, err
	}
	if err := jail.Enter(jail.Root{Dir: j.root, Binds: j.dirs}, -1, -1); err != nil {
		if !j.rootOptional {
			return nil, err
		}
		fmt.Fprintf(j.stderr, "hv: %v: carrying on without a private root (--jail-root-optional)\n", err)
	}
	if err := jail.Enter(jail.Root{}, j.uid, j.gid); err != nil {
		return nil, err
	}
	return o, nil
}

// inDirs reports whether path is directly in one of dirs.
func inDirs(path string, dirs []string) bool {
	d := filepath.Dir(filepath.Clean(path))
	for _, x := range dirs {
		if d == x {
			return true
		}
	}
	return false
}

// read reads the kernel or initramfs at path: the jailer's open file if
// it opened that path, else the path.
func (o *opened) read(path string, limit int64) ([]byte, error) {
	if o != nil {
		for _, f := range []*os.File{o.kernel, o.initrd} {
			if f != nil && f.Name() == path {
				defer f.Close()
				return hostfile.ReadOpened(f, limit)
			}
		}
	}
	return hostfile.ReadRegular(path, limit)
}

// openSnapshot opens --restore's snapshot: fd=N, a stream on a
// descriptor the parent left open across exec (xl migrate-receive's
// pipe), or the path of a regular file.
func openSnapshot(restore string) (*os.File, error) {
	v, ok := strings.CutPrefix(restore, "fd=")
	if !ok {
		f, _, err := hostfile.OpenRegular(restore, snapshot.MaxSize)
		if err != nil {
			return nil, fmt.Errorf("--restore: %w", err)
		}
		return f, nil
	}
	fd, err := strconv.ParseUint(v, 10, 31)
	if err == nil && fd <= 2 {
		err = errors.New("is stdin, stdout or stderr")
	}
	if err != nil {
		return nil, usageError{fmt.Errorf("--restore %s: %w", restore, err)}
	}
	// Checked here, where a bad number is a clear error, rather than
	// as a read that fails later in the snapshot's reader.
	var st unix.Stat_t
	if err := unix.Fstat(int(fd), &st); err != nil {
		return nil, fmt.Errorf("--restore %s: %w", restore, err)
	}
	unix.CloseOnExec(int(fd))
	return os.NewFile(uintptr(fd), restore), nil
}

// snapshotFile is --restore's snapshot: the jailer's open file if it
// opened it, else opened now.
func (o *opened) snapshotFile(restore string) (*os.File, error) {
	if o != nil && o.snapshot != nil && o.snapPath == restore {
		return o.snapshot, nil
	}
	return openSnapshot(restore)
}

// kvmFile is the jailer's /dev/kvm, nil if none.
func (o *opened) kvmFile() *os.File {
	if o == nil {
		return nil
	}
	return o.kvm
}
