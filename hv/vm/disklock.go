package vm

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/xeno-hv/xeno/internal/hostfile"
)

// OpenDisk opens d's image and takes its lock (lockDisk).
func OpenDisk(d Disk) (*os.File, error) {
	f, err := hostfile.OpenDisk(d.Path, d.ReadOnly)
	if err != nil {
		return nil, err
	}
	if err := lockDisk(f, d.Path, d.ReadOnly); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// lockDisk takes the disk image's lock for as long as the hv holds f: a
// read-write disk is exclusive (flock LOCK_EX), a read-only one is shared
// (LOCK_SH), so two domains never write one image, nor one writes what
// another reads, while read-only sharing works. The lock goes with the
// process, whatever way it ends. A refusal names the holder.
func lockDisk(f *os.File, path string, ro bool) error {
	how := unix.LOCK_EX
	if ro {
		how = unix.LOCK_SH
	}
	err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	want := "read-write"
	if ro {
		want = "read-only"
	}
	return fmt.Errorf("%s cannot be opened %s: %s", path, want, lockHolder(f))
}

// lockHolder names who holds f's lock, from /proc/locks and the holder's
// command line: "in use read-write by domain NAME (hv pid N)".
func lockHolder(f *os.File) string {
	const unknown = "it is locked by another process"
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return unknown
	}
	locks, err := os.Open("/proc/locks")
	if err != nil {
		return unknown
	}
	defer locks.Close()
	pid, mode, ok := findFlock(bufio.NewScanner(locks), unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	if !ok {
		return unknown
	}
	use := "read-write"
	if mode == "READ" {
		use = "read-only"
	}
	who := fmt.Sprintf("process %d", pid)
	if cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil {
		if name := flagValue(strings.Split(string(cmd), "\x00"), "name"); name != "" {
			who = fmt.Sprintf("domain %s (hv pid %d)", name, pid)
		}
	}
	return fmt.Sprintf("in use %s by %s", use, who)
}

// findFlock finds the first held (not waiting) FLOCK lock on the file
// major:minor:ino in /proc/locks lines, e.g.
// "1: FLOCK  ADVISORY  WRITE 2697 fe:00:9977941 0 EOF".
func findFlock(sc *bufio.Scanner, major, minor uint32, ino uint64) (pid int, mode string, ok bool) {
	want := fmt.Sprintf("%02x:%02x:%d", major, minor, ino)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 || f[1] != "FLOCK" || f[5] != want {
			continue // also "->" lines: waiters, not holders
		}
		if pid, err := strconv.Atoi(f[4]); err == nil {
			return pid, f[3], true
		}
	}
	return 0, "", false
}

// flagValue returns the value of flag name in a Go flag command line
// (-name V, --name V, -name=V, --name=V), "" if absent.
func flagValue(args []string, name string) string {
	for i, arg := range args {
		a := strings.TrimPrefix(strings.TrimPrefix(arg, "-"), "-")
		if a == arg {
			continue // not a flag
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}
