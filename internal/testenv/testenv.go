// Package testenv holds the few facts that end-to-end tests share: where
// the built binaries are, and whether this machine has KVM and the outside
// tools. A test that cannot run here skips with the reason; under
// `make test` (XENO_REQUIRE_TOOLS=1) a missing tool that `make deps`
// should have installed is a failure, not a skip.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Bin returns the path of a built xeno binary (hv, xl, xeno, xeno-init)
// from XENO_BIN, which `make test` sets after building them with the
// release stamps. Without it the test skips: a plain `go test` cannot know
// which release to stamp.
func Bin(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("XENO_BIN")
	if dir == "" {
		t.Skipf("XENO_BIN is not set; run `make test` to build %s first", name)
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("testenv: %s: %v (XENO_BIN=%s)", name, err, dir)
	}
	return p
}

// The nested-KVM lab's hand-over (internal/kvmlab.Main): where /dev/kvm
// is missing, RequireKVM queues the test in the file LabQueueEnv names,
// and the queued tests run again inside the lab, where InLabEnv is set.
const (
	LabQueueEnv = "XENO_LAB_QUEUE"
	InLabEnv    = "XENO_IN_LAB"
)

// InLab reports whether this test binary runs inside the nested-KVM lab.
func InLab() bool { return os.Getenv(InLabEnv) != "" }

// LabCarryEnv names the file where Carry lists what the lab needs.
const LabCarryEnv = "XENO_LAB_CARRY"

// Carry makes dir, which a test made outside the lab (with tools the lab
// lacks, such as go), exist at the same path inside it, where
// Carried(key) returns it. Outside kvmlab.Main it does nothing.
func Carry(key, dir string) error {
	q := os.Getenv(LabCarryEnv)
	if q == "" {
		return nil
	}
	queueMu.Lock()
	defer queueMu.Unlock()
	f, err := os.OpenFile(q, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "%s %s\n", key, dir)
	return err
}

// Carried returns the directory Carry(key, ...) brought into the lab, or
// "" outside it.
func Carried(key string) string { return os.Getenv(CarriedEnv(key)) }

// CarriedEnv is the variable that holds the directory carried as key.
func CarriedEnv(key string) string { return "XENO_CARRIED_" + strings.ToUpper(key) }

var queueMu sync.Mutex

// RequireKVM skips unless /dev/kvm can be opened read-write. Under
// kvmlab.Main the skipped test is queued to run inside the lab.
func RequireKVM(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err == nil {
		f.Close()
		return
	}
	if q := os.Getenv(LabQueueEnv); q != "" {
		queueMu.Lock()
		qf, qerr := os.OpenFile(q, os.O_WRONLY|os.O_APPEND, 0)
		if qerr == nil {
			_, qerr = fmt.Fprintln(qf, t.Name())
			qf.Close()
		}
		queueMu.Unlock()
		if qerr != nil {
			t.Fatalf("testenv: queueing for the lab: %v", qerr)
		}
		t.Skipf("needs /dev/kvm (%v): runs inside the nested-KVM lab after this package's other tests", err)
	}
	t.Skipf("needs /dev/kvm: %v", err)
}

// HardwareKVM reports whether KVM here is backed by VT-x or AMD-V, where
// an unmodified Linux reaches init in seconds. On the software kvm_pvm it
// is false, with the reason.
func HardwareKVM() (bool, string) {
	cpuinfo, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return false, "cannot read /proc/cpuinfo: " + err.Error()
	}
	flags := ""
	for _, line := range strings.Split(string(cpuinfo), "\n") {
		if strings.HasPrefix(line, "flags") {
			flags = " " + line + " "
			break
		}
	}
	hasFlag := strings.Contains(flags, " vmx ") || strings.Contains(flags, " svm ")
	_, errIntel := os.Stat("/sys/module/kvm_intel")
	_, errAMD := os.Stat("/sys/module/kvm_amd")
	if !hasFlag || (errIntel != nil && errAMD != nil) {
		why := "no vmx/svm in /proc/cpuinfo or neither kvm_intel nor kvm_amd is loaded"
		if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
			why += " (KVM here is the software kvm_pvm, where Linux cannot reach init in useful time; see docs/kvm-notes.md)"
		}
		return false, why
	}
	return true, ""
}

// RequireHardwareKVM skips unless HardwareKVM.
func RequireHardwareKVM(t testing.TB) {
	t.Helper()
	// Not queued for the nested lab (RequireKVM): its SVM is emulated, and
	// the xeno-kernel twins of these tests cover Linux there.
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("needs hardware KVM: %v (the xeno-kernel tests cover Linux here, in the nested lab)", err)
	}
	f.Close()
	if InLab() {
		t.Skip("needs hardware KVM: this is the nested lab, whose AMD-V QEMU emulates")
	}
	if ok, why := HardwareKVM(); !ok {
		t.Skip("needs hardware KVM: " + why)
	}
}

// RequireCmd returns the path of an outside tool. It skips when the tool
// is missing, unless XENO_REQUIRE_TOOLS=1, where it fails.
func RequireCmd(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("XENO_REQUIRE_TOOLS") == "1" {
			t.Fatalf("%s is missing although make deps should have installed it", name)
		}
		t.Skipf("needs %s (run make deps): %v", name, err)
	}
	return p
}

// RequireRoot skips unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if unix.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// Guest returns the absolute path of the built micro-guest test/guests/NAME
// (e.g. "serial.bin" or "serial.pvh.elf"; a bare name means NAME.bin). It
// skips when the guest is missing, unless XENO_REQUIRE_TOOLS=1, where
// `make guests` should have built it and its absence is a failure.
func Guest(t testing.TB, name string) string {
	t.Helper()
	if filepath.Ext(name) == "" {
		name += ".bin"
	}
	_, self, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(self), "..", "..", "test", "guests", name)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("XENO_REQUIRE_TOOLS") == "1" {
			t.Fatalf("micro-guest %s not built although make guests should have built it: %v", name, err)
		}
		t.Skipf("micro-guest %s not built (run make guests): %v", name, err)
	}
	return p
}

// kmsgMidLine is a kernel message ("[    9.908927] clocksource: ...")
// that starts in the middle of a line.
var kmsgMidLine = regexp.MustCompile(`[^\n](\[ *\d+\.\d+\] [^\n]*\n)`)

// Untangle moves each kernel message that the guest's console printed in
// the middle of a user-space line to a line of its own before it: printk
// writes to the serial console between any two bytes of a process's
// output, so "xeno-init: running as inter[ 9.9] clocksource: ...\nface 1.2"
// becomes the kernel's line, then "xeno-init: running as interface 1.2".
func Untangle(console string) string {
	for {
		m := kmsgMidLine.FindStringSubmatchIndex(console)
		if m == nil {
			return console
		}
		msg := console[m[2]:m[3]]
		lineStart := strings.LastIndexByte(console[:m[2]], '\n') + 1
		console = console[:lineStart] + msg + console[lineStart:m[2]] + console[m[3]:]
	}
}

// Heavy takes this machine's lock for work that needs its CPUs to itself:
// a run of the nested-KVM lab, or a cold kernel build. make test runs two
// packages at once on two cores, and with a lab beside a kernel build (or
// another lab) the lab's guests missed their timer checks ("APIC timer
// disabled due to verification failure") and hung. Waiting for the lock
// is not the test's time; unlock releases it.
func Heavy(t testing.TB) (unlock func()) {
	t.Helper()
	unlock, err := LockHeavy()
	if err != nil {
		t.Fatal(err)
	}
	return unlock
}

// LockHeavy is Heavy outside a test (kvmlab.Main).
func LockHeavy() (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "xeno-heavy.lock"), os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("testenv: lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// Within runs f and fails the test if it has not returned after d: for
// tests of inputs (a FIFO, /dev/zero) that once blocked an open or read
// without end, a hang is the failure.
func Within(t testing.TB, d time.Duration, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("still blocked after %v", d)
		return nil
	}
}

// HostileFiles makes, in a fresh directory, a FIFO (an open waits for a
// writer) and a 4 GiB sparse file (free on disk, costly to read): the
// inputs that hung or ballooned the hv, xl and the kernel store.
func HostileFiles(t testing.TB) (fifo, sparse string) {
	t.Helper()
	dir := t.TempDir()
	fifo = filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sparse = filepath.Join(dir, "initrd.img")
	if err := os.WriteFile(sparse, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(sparse, 4<<30); err != nil {
		t.Fatal(err)
	}
	return fifo, sparse
}
