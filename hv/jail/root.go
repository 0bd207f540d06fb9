package jail

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// The jailer step: as Firecracker's jailer does before it execs
// Firecracker, the hv started by xl (as root, in new mount, PID, IPC, UTS
// and network namespaces, in its cgroup) leaves the host's file system
// for a private root and drops to a uid and gid of its own, before it
// parses a byte of its kernel or initramfs. Unlike Firecracker's jail,
// the hv's holds no kernel, initramfs, disk or /dev/kvm: cmd/hv opens
// those first and keeps the descriptors, so the uid needs no access to
// them and a bent hv cannot open them again. What remains is the one
// directory where the hv creates its sockets, logs and exit file.

// Root is the private root Enter builds.
type Root struct {
	// Dir is an existing, empty directory of the host: the jail's tmpfs
	// is mounted there, in the hv's own mount namespace only.
	Dir string
	// Binds are host directories bound read-write into the jail at their
	// own paths (nosuid, nodev, noexec): the hv's sockets, logs and exit
	// file, which xl reaches at those paths from outside.
	Binds []string
}

// Enter moves the calling process into r (if r.Dir is set) and then to
// uid and gid (if uid >= 0). Errors name the layer: "jail: root: ..." or
// "jail: uid: ...". The process must run as root; for the root, in a
// mount namespace of its own, or the mounts would be the host's: Enter
// refuses to start otherwise.
func Enter(r Root, uid, gid int) error {
	if r.Dir != "" {
		if err := enterRoot(r); err != nil {
			return fmt.Errorf("jail: root: %w", err)
		}
	}
	if uid >= 0 {
		if err := dropTo(uid, gid); err != nil {
			return fmt.Errorf("jail: uid: %w", err)
		}
	}
	return nil
}

// OwnMountNS reports whether the calling process is in another mount
// namespace than the host's init (pid 1 of the /proc mounted here).
// Where that one cannot be read (a sandbox that hides its init), being
// pid 1 of a PID namespace of its own stands in: xl creates the mount and
// PID namespaces together.
func OwnMountNS() (bool, error) {
	var self, host unix.Stat_t
	if err := unix.Stat("/proc/self/ns/mnt", &self); err != nil {
		return false, err
	}
	if err := unix.Stat("/proc/1/ns/mnt", &host); err != nil {
		if errors.Is(err, unix.EACCES) {
			return os.Getpid() == 1, nil
		}
		return false, err
	}
	return self.Ino != host.Ino || self.Dev != host.Dev, nil
}

// jailFlags are every mount's in the jail: nothing there is executed,
// no device node opens, no set-id bit counts.
const jailFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

func enterRoot(r Root) error {
	own, err := OwnMountNS()
	if err != nil {
		return fmt.Errorf("cannot tell my mount namespace from the host's: %w", err)
	}
	if !own {
		return errors.New("the hv is in the host's mount namespace; its private root needs one of its own (xl starts it so)")
	}
	// Nothing mounted from here on propagates to the host, and nothing
	// the host mounts later appears here.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	if err := unix.Mount("xeno-jail", r.Dir, "tmpfs", jailFlags, "mode=0755,size=64k,nr_inodes=256"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", r.Dir, err)
	}
	for _, b := range r.Binds {
		if !filepath.IsAbs(b) {
			return fmt.Errorf("bind %s: not an absolute path", b)
		}
		dst := filepath.Join(r.Dir, b)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return fmt.Errorf("bind %s: %w", b, err)
		}
		if err := unix.Mount(b, dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s: %w", b, err)
		}
		if err := unix.Mount("", dst, "", unix.MS_BIND|unix.MS_REMOUNT|jailFlags, ""); err != nil {
			return fmt.Errorf("bind %s: remount nosuid,nodev,noexec: %w", b, err)
		}
	}
	// The tmpfs itself (its directories leading to the binds) is
	// read-only: the hv writes only in the bound directories.
	if err := unix.Mount("", r.Dir, "", unix.MS_REMOUNT|unix.MS_RDONLY|jailFlags, ""); err != nil {
		return fmt.Errorf("remount %s read-only: %w", r.Dir, err)
	}
	if err := unix.Chdir(r.Dir); err != nil {
		return fmt.Errorf("chdir %s: %w", r.Dir, err)
	}
	// pivot_root(".", ".") stacks the old root on the new one; detaching
	// it leaves the jail the only file system this namespace has.
	perr := unix.PivotRoot(".", ".")
	switch {
	case perr == nil:
		if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
			return fmt.Errorf("detach the old root: %w", err)
		}
	case errors.Is(perr, unix.EINVAL):
		// The host's root is the initramfs (rootfs), which cannot be
		// pivoted away (the lab's is). As switch_root does: move the
		// jail over / and chroot into it. The old root stays under
		// it, out of reach: leaving a chroot needs CAP_SYS_CHROOT and
		// the chroot syscall, which the hv gives up.
		if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("pivot_root: %v; move the jail over /: %w", perr, err)
		}
		if err := unix.Chroot("."); err != nil {
			return fmt.Errorf("chroot: %w", err)
		}
	default:
		return fmt.Errorf("pivot_root: %w", perr)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	return nil
}

// dropTo leaves root for uid and gid with no supplementary groups. The
// bounding set is emptied first, while the process still has
// CAP_SETPCAP; the change of uid then clears every other set.
func dropTo(uid, gid int) error {
	if uid == 0 || gid == 0 {
		return fmt.Errorf("uid %d, gid %d: the hv's must not be root's", uid, gid)
	}
	last, err := lastCap()
	if err != nil {
		return err
	}
	for c := 0; c <= last; c++ {
		if err := allThreads(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	// syscall's Set* change every thread's credentials, as Linux keeps
	// them per thread.
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return fmt.Errorf("setresgid %d: %w", gid, err)
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return fmt.Errorf("setresuid %d: %w", uid, err)
	}
	if os.Getuid() != uid || os.Geteuid() != uid || os.Getgid() != gid {
		return fmt.Errorf("still uid %d/%d gid %d after the change to %d/%d", os.Getuid(), os.Geteuid(), os.Getgid(), uid, gid)
	}
	return nil
}
