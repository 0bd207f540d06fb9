package jail

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Lockdown confines the whole process: it empties the capability
// bounding, ambient, effective, permitted and inheritable sets, sets
// no_new_privs, and installs the Process filter on every thread. Call it
// once everything the hv needs is open (/dev/kvm, disks, sockets) and
// before the first guest instruction. The hv keeps no capability: after
// opening /dev/kvm and its files, nothing it does needs one.
//
// Capabilities and no_new_privs belong to each thread in Linux, so they
// are set on every thread (syscall.AllThreadsSyscall), which works only
// in a binary built without cgo, as the hv is.
func Lockdown() error {
	if err := DropCapabilities(); err != nil {
		return err
	}
	if err := allThreads(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil {
		return fmt.Errorf("jail: no_new_privs: %w", err)
	}
	return Install(Process(), true)
}

// EnterVCPU narrows the calling thread to the VCPU allowlist. The
// caller must have locked its goroutine to the thread for good
// (runtime.LockOSThread without unlock): the filter stays on the thread,
// and Go then never runs another goroutine there and ends the thread
// with the goroutine.
func EnterVCPU() error { return Install(VCPU(), false) }

// DropCapabilities empties every capability set of every thread.
func DropCapabilities() error {
	last, err := lastCap()
	if err != nil {
		return err
	}
	// Dropping from the bounding set needs CAP_SETPCAP; an hv started
	// without it (by an unprivileged user) has nothing there to use.
	var hdr unix.CapUserHeader
	hdr.Version = unix.LINUX_CAPABILITY_VERSION_3
	var have [2]unix.CapUserData
	if err := unix.Capget(&hdr, &have[0]); err != nil {
		return fmt.Errorf("jail: capget: %w", err)
	}
	if have[0].Effective&(1<<unix.CAP_SETPCAP) != 0 {
		for c := 0; c <= last; c++ {
			if err := allThreads(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); err != nil {
				return fmt.Errorf("jail: drop capability %d from the bounding set: %w", c, err)
			}
		}
	}
	if err := allThreads(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("jail: clear ambient capabilities: %w", err)
	}
	hdr = unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3} // Pid 0: each thread itself
	var none [2]unix.CapUserData
	err = allThreads(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&none[0])), 0)
	runtime.KeepAlive(&hdr)
	runtime.KeepAlive(&none)
	if err != nil {
		return fmt.Errorf("jail: capset: %w", err)
	}
	return nil
}

// lastCap is the highest capability the running kernel knows.
func lastCap() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return unix.CAP_LAST_CAP, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("jail: /proc/sys/kernel/cap_last_cap: %w", err)
	}
	return n, nil
}

func allThreads(trap, a1, a2, a3 uintptr) error {
	_, _, e := syscall.AllThreadsSyscall(trap, a1, a2, a3)
	if e != 0 {
		return e
	}
	return nil
}
