package jail

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/logfile"
	"golang.org/x/sys/unix"
)

// The filters are tested for real in a child process (this test binary
// run again with jailChild set): a filter cannot be taken off again.
const jailChild = "XENO_JAIL_TEST_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(rootChild); spec != "" {
		os.Exit(enterChild(spec))
	}
	if mode := os.Getenv(jailChild); mode != "" {
		os.Exit(child(mode))
	}
	os.Exit(m.Run())
}

// child locks itself down and then does what mode says; it prints lines
// the parent checks, and is killed with SIGSYS where the filter works.
func child(mode string) int {
	if err := Lockdown(); err != nil {
		fmt.Println("lockdown:", err)
		return 3
	}
	status, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(status), "\n") {
		for _, k := range []string{"Seccomp:", "NoNewPrivs:", "CapEff:", "CapPrm:", "CapBnd:"} {
			if strings.HasPrefix(l, k) {
				fmt.Println(strings.Join(strings.Fields(l), " "))
			}
		}
	}
	switch mode {
	case "allowed":
		// A goroutine on another thread, a new thread (GC, timers),
		// files: what the control and I/O goroutines do.
		done := make(chan error)
		go func() {
			_, err := os.ReadFile("/proc/self/stat")
			done <- err
		}()
		time.Sleep(10 * time.Millisecond)
		runtime.GC()
		fmt.Println("read:", <-done)
	case "forbidden":
		// mount is in no list: the process dies before it runs.
		unix.Syscall6(unix.SYS_MOUNT, 0, 0, 0, 0, 0, 0)
		fmt.Println("survived mount")
	case "vcpu-open":
		// openat is allowed in the process, not on a vCPU thread.
		runtime.LockOSThread()
		if err := EnterVCPU(); err != nil {
			fmt.Println("enter:", err)
			return 3
		}
		fmt.Println("vcpu entered")
		unix.Syscall6(unix.SYS_OPENAT, 0, 0, 0, 0, 0, 0)
		fmt.Println("survived openat")
	case "vcpu-other":
		// A vCPU thread's filter stays on its thread: another goroutine
		// still opens files after the vCPU goroutine has ended.
		done := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			if err := EnterVCPU(); err != nil {
				fmt.Println("enter:", err)
			}
			_, _, e := unix.Syscall(unix.SYS_IOCTL, 0, 0xae00, 0) // KVM_GET_API_VERSION on stdin: ENOTTY, not a kill
			fmt.Println("kvm ioctl:", e)
			close(done)
		}()
		<-done
		for range 20 {
			go func() { _, _ = os.ReadFile("/proc/self/stat") }()
			runtime.GC()
		}
		_, err := os.ReadFile("/proc/self/stat")
		fmt.Println("read:", err)
	case "vcpu-log":
		// A vCPU thread logs (hv.log, console.log) past the cap: the
		// rotation's open, rename and dup3 must not kill the hv.
		dir := os.Getenv("XENO_JAIL_TEST_DIR") // made by the parent: no mkdir after lockdown
		l, err := logfile.Open(filepath.Join(dir, "hv.log"), 64)
		if err != nil {
			fmt.Println("open:", err)
			return 3
		}
		if err := l.Stderr(); err != nil {
			fmt.Println("stderr:", err)
			return 3
		}
		runtime.LockOSThread()
		if err := EnterVCPU(); err != nil {
			fmt.Println("enter:", err)
			return 3
		}
		for range 5 {
			if _, err := l.Write([]byte("forty bytes of guest-driven log text...\n")); err != nil {
				fmt.Println("write:", err)
				return 3
			}
		}
		fmt.Println("wrote")
	case "unix-dial":
		// virtio-vsock's connect to <uds>_PORT: a Unix stream socket,
		// with the flags Go's net package adds. (Not net itself: it
		// would link cgo into this binary, and AllThreadsSyscall, which
		// Lockdown needs, refuses to run with cgo.)
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			err = unix.Connect(fd, &unix.SockaddrUnix{Name: os.Getenv("XENO_JAIL_TEST_SOCK")})
			unix.Close(fd)
		}
		fmt.Println("dial:", err)
	case "inet-socket":
		unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		fmt.Println("survived socket(AF_INET)")
	case "unix-dgram":
		unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
		fmt.Println("survived socket(AF_UNIX, SOCK_DGRAM)")
	case "vcpu-socket":
		runtime.LockOSThread()
		if err := EnterVCPU(); err != nil {
			fmt.Println("enter:", err)
			return 3
		}
		unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		fmt.Println("survived socket on a vCPU thread")
	case "vcpu-tunoffload":
		// A vCPU thread may set a tap's offloads (virtio-net's Status
		// writes), on stdin here: ENOTTY or EBADFD, not a kill.
		runtime.LockOSThread()
		if err := EnterVCPU(); err != nil {
			fmt.Println("enter:", err)
			return 3
		}
		_, _, e := unix.Syscall(unix.SYS_IOCTL, 0, unix.TUNSETOFFLOAD, 0)
		fmt.Println("tunsetoffload:", e != 0)
	case "tun-setiff":
		// Attaching to another tap is not the hv's business once jailed.
		unix.Syscall(unix.SYS_IOCTL, 0, unix.TUNSETIFF, 0)
		fmt.Println("survived TUNSETIFF")
	case "tty-ioctl":
		// ioctl is allowed for KVM requests only.
		unix.Syscall(unix.SYS_IOCTL, 0, unix.TCGETS, 0)
		fmt.Println("survived TCGETS")
	case "fork":
		// clone without CLONE_THREAD is a new process.
		unix.RawSyscall6(unix.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
		fmt.Println("survived fork")
	}
	return 0
}

func runChild(t *testing.T, mode string) (string, *os.ProcessState) {
	t.Helper()
	if os.Getuid() != 0 {
		// Works unprivileged too, but the capability checks assume root.
		t.Skip("skipping: the capability checks need root")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), jailChild+"="+mode)
	out, err := cmd.Output()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("child %s: %v", mode, err)
	}
	return string(out), cmd.ProcessState
}

func killedBySeccomp(ps *os.ProcessState) bool {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	return ok && KilledBySeccomp(ws)
}

func TestLockdownStatus(t *testing.T) {
	out, ps := runChild(t, "allowed")
	if !ps.Success() {
		t.Fatalf("child ended %v:\n%s", ps, out)
	}
	for _, want := range []string{"Seccomp: 2", "NoNewPrivs: 1", "CapEff: 0000000000000000",
		"CapPrm: 0000000000000000", "CapBnd: 0000000000000000", "read: <nil>"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("child output lacks %q:\n%s", want, out)
		}
	}
}

func TestForbiddenKills(t *testing.T) {
	for _, tc := range []struct{ mode, survived string }{
		{"forbidden", "survived mount"},
		{"vcpu-open", "survived openat"},
		{"tty-ioctl", "survived TCGETS"},
		{"tun-setiff", "survived TUNSETIFF"},
		{"fork", "survived fork"},
		{"inet-socket", "survived socket(AF_INET)"},
		{"unix-dgram", "survived socket(AF_UNIX, SOCK_DGRAM)"},
		{"vcpu-socket", "survived socket on a vCPU thread"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			out, ps := runChild(t, tc.mode)
			if !killedBySeccomp(ps) || strings.Contains(out, tc.survived) || !strings.Contains(out, "Seccomp: 2") {
				t.Fatalf("child %s ended %v, want killed by SIGSYS after lockdown:\n%s", tc.mode, ps, out)
			}
		})
	}
}

// TestUnixDialAllowed: the process filter lets the hv connect to a Unix
// stream socket, as virtio-vsock does for the guest's connections.
func TestUnixDialAllowed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	ln, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ln)
	if err := unix.Bind(ln, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(ln, 1); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XENO_JAIL_TEST_SOCK", path)
	out, ps := runChild(t, "unix-dial")
	if !ps.Success() || !strings.Contains(out, "dial: <nil>\n") {
		t.Fatalf("child ended %v, want its dial done:\n%s", ps, out)
	}
}

func TestVCPUThreadRotatesLog(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XENO_JAIL_TEST_DIR", dir)
	out, ps := runChild(t, "vcpu-log")
	if !ps.Success() || !strings.Contains(out, "wrote\n") {
		t.Fatalf("child ended %v, want its writes done:\n%s", ps, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "hv.log.1")); err != nil {
		t.Errorf("no rotated log: %v", err)
	}
}

func TestVCPUThreadSetsTapOffloads(t *testing.T) {
	out, ps := runChild(t, "vcpu-tunoffload")
	if !ps.Success() || !strings.Contains(out, "tunsetoffload: true") {
		t.Fatalf("child ended %v, want TUNSETOFFLOAD to fail with an error, not a kill:\n%s", ps, out)
	}
}

func TestVCPUFilterStaysOnItsThread(t *testing.T) {
	out, ps := runChild(t, "vcpu-other")
	if !ps.Success() || !strings.Contains(out, "read: <nil>") || !strings.Contains(out, "kvm ioctl: "+unix.ENOTTY.Error()) {
		t.Fatalf("child ended %v:\n%s", ps, out)
	}
}

func TestExplainNamesSyscall(t *testing.T) {
	_, ps := runChild(t, "forbidden")
	got := Explain(ps.Pid(), time.Second)
	t.Log(got)
	if !strings.HasPrefix(got, "hv killed by seccomp (SIGSYS)") {
		t.Fatalf("Explain = %q", got)
	}
	if _, err := loggedSyscall(os.Getpid()); err != nil && !errors.Is(err, errNotLogged) {
		t.Skipf("skipping the syscall number: %v", err)
	}
	if want := fmt.Sprintf("syscall %d", unix.SYS_MOUNT); !strings.HasSuffix(got, want) {
		// The record needs the kernel's audit (not audit=0) and no auditd
		// taking the records off the kernel log.
		t.Skipf("skipping the syscall number: the kernel log has no seccomp audit record: %q", got)
	}
}

func TestParseAudit(t *testing.T) {
	rec := `5,2741,94853211,-;audit: type=1326 audit(1764500000.123:7): auid=4294967295 uid=0 gid=0 ses=4294967295 pid=4242 comm="hv" exe="/bin/hv" sig=31 arch=c000003e syscall=165 compat=0 ip=0x47e0ce code=0x80000000`
	if nr, ok := parseAudit(rec, "pid=4242"); !ok || nr != 165 {
		t.Errorf("parseAudit = %d, %v; want 165", nr, ok)
	}
	if _, ok := parseAudit(rec, "pid=424"); ok {
		t.Error("parseAudit matched pid=424 in pid=4242")
	}
	if _, ok := parseAudit(strings.Replace(rec, "1326", "1300", 1), "pid=4242"); ok {
		t.Error("parseAudit took a record of another type")
	}
}

func TestAssemble(t *testing.T) {
	p, err := Assemble(VCPU())
	if err != nil {
		t.Fatal(err)
	}
	// The architecture check comes first, and the default is to kill.
	if p[0].K != offArch || p[1].K != unix.AUDIT_ARCH_X86_64 || p[len(p)-1].K != unix.SECCOMP_RET_KILL_PROCESS {
		t.Errorf("program starts %+v, ends %+v", p[:2], p[len(p)-1])
	}
	if _, err := Assemble([]Rule{{Nr: 1}, {Nr: 1}}); err == nil {
		t.Error("a duplicate rule was accepted")
	}
	if _, err := Assemble([]Rule{{Nr: 1}, {Nr: 1, Mask: 1, Value: 1}}); err == nil {
		t.Error("an unconditional rule and an alternative for the same call were accepted")
	}
	// Both ioctl alternatives survive the union, once each.
	n := 0
	for _, r := range Process() {
		if r.Nr == unix.SYS_IOCTL {
			n++
		}
	}
	if n != 2 {
		t.Errorf("the process list has %d ioctl rules, want 2 (KVM, TUNSETOFFLOAD)", n)
	}
	// The vCPU list is a strict subset of the process list.
	proc := map[uint32]bool{}
	for _, r := range Process() {
		proc[r.Nr] = true
	}
	for _, r := range VCPU() {
		if !proc[r.Nr] {
			t.Errorf("syscall %d is allowed on vCPU threads but not in the process", r.Nr)
		}
	}
	if len(VCPU()) >= len(Process()) {
		t.Error("the vCPU list is not narrower than the process list")
	}
}

// TestRecvmsgOnlyCloexec: the process may receive a file on the control
// socket only as Go's net does, with MSG_CMSG_CLOEXEC, and vCPU threads
// not at all.
func TestRecvmsgOnlyCloexec(t *testing.T) {
	var got []Rule
	for _, r := range Process() {
		if r.Nr == unix.SYS_RECVMSG {
			got = append(got, r)
		}
	}
	if len(got) != 1 || got[0].Mask != 0xffffffff || got[0].Arg != 2 || got[0].Value != unix.MSG_CMSG_CLOEXEC {
		t.Errorf("recvmsg rules %+v, want one: argument 2 exactly MSG_CMSG_CLOEXEC", got)
	}
	for _, r := range VCPU() {
		if r.Nr == unix.SYS_RECVMSG {
			t.Error("vCPU threads may call recvmsg")
		}
	}
}
