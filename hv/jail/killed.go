package jail

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A forbidden syscall ends the hv with SECCOMP_RET_KILL_PROCESS: the
// kernel kills every thread at once with SIGSYS, so no hv code runs in
// a state an attacker may have bent, and the parent sees it in the wait
// status. (Firecracker traps SIGSYS in-process instead; Go's runtime owns
// the signal handlers, and a handler would run on the compromised
// process.) The kernel's audit record (type 1326, AUDIT_SECCOMP) names
// the syscall; without auditd it is printed to the kernel log, which the
// parent reads here.

// KilledBySeccomp reports whether a child's wait status is a death by
// SIGSYS, which for the hv means its seccomp filter.
func KilledBySeccomp(ws syscall.WaitStatus) bool {
	return ws.Signaled() && ws.Signal() == syscall.SIGSYS
}

// Explain describes the seccomp death of process pid: "hv killed by
// seccomp (SIGSYS), syscall N", the number taken from the kernel log
// when it has the record (reading it needs root; the record can come a
// little after the death, so Explain waits up to wait for it).
func Explain(pid int, wait time.Duration) string {
	const what = "hv killed by seccomp (SIGSYS)"
	deadline := time.Now().Add(wait)
	for {
		nr, err := loggedSyscall(pid)
		if err == nil {
			return fmt.Sprintf("%s, syscall %d", what, nr)
		}
		if !errors.Is(err, errNotLogged) || time.Now().After(deadline) {
			return what + ": a syscall outside its allowlist (the kernel log's audit type=1326 record names it)"
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var errNotLogged = errors.New("no audit record yet")

// loggedSyscall finds the AUDIT_SECCOMP record of pid in /dev/kmsg:
// `audit: type=1326 audit(...): ... pid=PID ... syscall=N ...`.
func loggedSyscall(pid int) (int, error) {
	// A raw descriptor: os.File.Fd would make it blocking, and the
	// read past the last record must return EAGAIN, not wait.
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("/dev/kmsg: %w", err)
	}
	defer unix.Close(fd)
	wantPid := "pid=" + strconv.Itoa(pid)
	// Each read returns one record; EAGAIN ends the buffer. The last
	// record wins: an earlier one may be of a process that had the pid.
	buf := make([]byte, 8192)
	found := -1
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR || err == unix.EPIPE { // EPIPE: records were overwritten meanwhile
			continue
		}
		if err != nil || n == 0 {
			break
		}
		if nr, ok := parseAudit(string(buf[:n]), wantPid); ok {
			found = nr
		}
	}
	if found < 0 {
		return 0, errNotLogged
	}
	return found, nil
}

// parseAudit returns the syscall of an AUDIT_SECCOMP record of wantPid.
func parseAudit(rec, wantPid string) (int, bool) {
	if !strings.Contains(rec, "type=1326") {
		return 0, false
	}
	var pidOK bool
	nr := -1
	sc := bufio.NewScanner(strings.NewReader(rec))
	sc.Split(bufio.ScanWords)
	for sc.Scan() {
		w := sc.Text()
		if w == wantPid {
			pidOK = true
		}
		if v, ok := strings.CutPrefix(w, "syscall="); ok {
			if n, err := strconv.Atoi(v); err == nil {
				nr = n
			}
		}
	}
	return nr, pidOK && nr >= 0
}
