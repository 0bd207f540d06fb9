// Package kvmlab runs hv under a hardware-virtualization KVM on machines
// that have none: inside a QEMU TCG virtual machine whose emulated CPU has
// AMD-V (SVM), running Debian's pinned cloud kernel with its kvm-amd
// module. hv is an ordinary KVM VMM there, as on an AMD host.
//
// It exists because some machines that run xeno's tests are themselves
// kvm_pvm guests: their kvm_pvm refuses to bind ("this kernel is itself a
// kvm-pvm guest") and /dev/kvm is absent, so no guest could run at all.
// Tests use it only where /dev/kvm cannot be opened, and say so.
//
// One quirk is measured, not understood: under TCG's SVM, a Linux guest
// of hv that uses KVM's paravirtual features (kvmclock, PV EOI, PV IPIs)
// boots, but its timers never fire (sleep 1 never returns). Guests in the
// lab get "nopv" on their command line (GuestCmdline); on hardware KVM
// they boot with every PV feature.
package kvmlab

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xeno-hv/xeno/debs"
	"github.com/xeno-hv/xeno/images"
	"github.com/xeno-hv/xeno/internal/atomicfile"
	"github.com/xeno-hv/xeno/kernels"
	"github.com/xeno-hv/xeno/kernels/kerneltest"
	"github.com/xeno-hv/xeno/recipes"
)

// GuestCmdline is what a guest kernel's command line needs inside the
// lab (see the package comment): no PV features, and the TSC rate, so
// that the guest keeps time by its TSC, which runs on while a domain is
// paused, as kvmclock does on hardware (with jiffies its wall clock
// stood still across xl pause). no_timer_check: Linux's check that IRQ 0
// ticks busy-waits 10 ticks by the TSC, and a loaded lab (TCG starved by
// a kernel build) misses it now and then; the fallbacks it then tries
// (8259, virtual wire) ended in triple faults. The hv routes IRQ 0 to the
// pin the MADT names (TestXenoKernelBoots counts its ticks there).
// noxsave: the lab's KVM reports XSAVE features (AVX, PKRU) but a CPUID
// 0xd size for x87 and SSE only, so every guest printed "XSAVE
// consistency problem", dumped 29 CPUID leaves (1.3 s of exits on TCG)
// and then fell back to FXSAVE anyway; noxsave goes there directly.
func GuestCmdline() (string, error) {
	khz, err := hostTSCkHz()
	if err != nil {
		return "", fmt.Errorf("kvmlab: %w", err)
	}
	return fmt.Sprintf("nopv tsc_early_khz=%d tsc=reliable no_timer_check noxsave", khz), nil
}

// Spec is one run of the lab.
type Spec struct {
	// HV and XL are the binaries put at /bin/hv and /bin/xl.
	HV, XL string
	// Recipe pins the busybox-static of the lab's user space (Busybox).
	Recipe string
	// Files are put into the lab's root file system: path inside -> data.
	// busybox is at /bin/busybox.
	Files map[string][]byte
	// Script is a busybox sh script run as root once /dev/kvm exists. Its
	// exit code is the Result's.
	Script string
	// MemoryMiB and CPUs size the lab machine (default 2048 and 2).
	MemoryMiB, CPUs int
	// Console, if set, gets the script's console line by line as it comes.
	Console io.Writer
	// Idle, if set, ends a run whose console is silent that long (ErrHung).
	Idle time.Duration
}

// Result is what the lab printed on its console and how the script ended.
type Result struct {
	Console string
	Exit    int
	Elapsed time.Duration
}

const exitMarker = "KVMLAB-EXIT "

// noHold is what the lab prints when it could not hold a VM (HoldKVM): a
// lab run without one is at risk of locking up, and is refused.
const noHold = "kvmlab: no VM held, so KVM's static keys would flip"

// ErrNoEnd is returned when the lab's script never reported its end.
var ErrNoEnd = errors.New("kvmlab: the lab's init never finished")

// Available says whether the lab can run here, and if not, why.
func Available() error {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return fmt.Errorf("kvmlab: %w", err)
	}
	return nil
}

// Run boots the lab with spec until its script ends or ctx is done. The
// Result holds the console so far even with an error.
func Run(ctx context.Context, spec Spec) (*Result, error) {
	if spec.MemoryMiB == 0 {
		spec.MemoryMiB = 2048
	}
	if spec.CPUs == 0 {
		spec.CPUs = 2
	}
	s, err := kernels.Open(kernels.DefaultCacheDir())
	if err != nil {
		return nil, fmt.Errorf("kvmlab: %w", err)
	}
	k, err := s.Fetch(kerneltest.Cloud56, kerneltest.Cloud56Version)
	if err != nil {
		return nil, fmt.Errorf("kvmlab: the lab's kernel: %w", err)
	}
	dir, err := os.MkdirTemp("", "kvmlab-")
	if err != nil {
		return nil, fmt.Errorf("kvmlab: %w", err)
	}
	defer os.RemoveAll(dir)
	initrd := filepath.Join(dir, "lab.cpio")
	if err := writeRoot(k, spec, initrd); err != nil {
		return nil, fmt.Errorf("kvmlab: %w", err)
	}
	khz, err := hostTSCkHz()
	if err != nil {
		return nil, fmt.Errorf("kvmlab: %w", err)
	}
	// The lab kernel cannot calibrate its TSC against TCG's PIT; without
	// a TSC frequency its KVM never updates the guest's kvmclock.
	//
	// softlockup_panic: kvm-amd on TCG's SVM now and then pins a CPU in
	// an hv's KVM_RUN for good (CI saw "soft lockup - CPU#1 stuck for
	// 3000s! [0.hv]", printed every 28 s, so the Idle watchdog never
	// fired and the run waited out a 52-minute bound). A panic ends the
	// lab at once (ErrNoEnd), and the callers run it once more.
	// watchdog_thresh=30 reports after 60 s, so that a starved TCG, whose
	// clock jumps, is not taken for a lock-up.
	cmdline := fmt.Sprintf("console=ttyS0 panic=-1 quiet tsc_early_khz=%d tsc=reliable softlockup_panic=1 watchdog_thresh=30", khz)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	qmpSock := filepath.Join(dir, "qmp.sock")
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-accel", "tcg", "-M", "pc", "-cpu", "max",
		"-smp", strconv.Itoa(spec.CPUs), "-m", strconv.Itoa(spec.MemoryMiB),
		"-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot", "-nodefaults",
		"-qmp", "unix:"+qmpSock+",server=on,wait=off",
		"-kernel", k.BzImagePath(), "-initrd", initrd, "-append", cmdline)
	out := &watched{}
	out.last.Store(time.Now().UnixNano())
	var w io.Writer = out
	if spec.Console != nil {
		w = io.MultiWriter(out, &untilExit{w: spec.Console})
	}
	// The hang report is written from the watchdog's goroutine.
	w = &lockedWriter{w: w}
	cmd.Stdout, cmd.Stderr = w, w
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("kvmlab: qemu: %w", err)
	}
	if spec.Idle > 0 {
		report := func() { io.WriteString(w, hangReport(qmpSock, cmd.Process.Pid)) }
		go watchdog(ctx, cancel, out, spec.Idle, report)
	}
	err = cmd.Wait()
	res := &Result{Console: strings.ReplaceAll(out.String(), "\r", ""), Exit: -1, Elapsed: time.Since(start)}
	if ctx.Err() != nil {
		return res, fmt.Errorf("kvmlab: no end after %v: %w", res.Elapsed.Round(time.Second), context.Cause(ctx))
	}
	if err != nil {
		return res, fmt.Errorf("kvmlab: qemu: %w", err)
	}
	if strings.Contains(res.Console, noHold) {
		return res, errors.New(noHold)
	}
	i := strings.LastIndex(res.Console, exitMarker)
	if i < 0 {
		return res, ErrNoEnd
	}
	fmt.Sscanf(res.Console[i+len(exitMarker):], "%d", &res.Exit)
	return res, nil
}

// RunAgainIfDead runs spec, each run bounded by bound, and once more in a
// fresh lab when the lab machine itself died or went silent (ErrNoEnd,
// ErrHung): its kernel panicked or locked up inside kvm-amd on TCG's SVM
// (docs/kvm-notes.md), which says nothing of the script. died hears of
// the first such failure; a second one stands.
func RunAgainIfDead(bound time.Duration, spec Spec, died func(*Result, error)) (*Result, error) {
	run := func() (*Result, error) {
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		defer cancel()
		return Run(ctx, spec)
	}
	res, err := run()
	if errors.Is(err, ErrNoEnd) || errors.Is(err, ErrHung) {
		died(res, err)
		res, err = run()
	}
	return res, err
}

// ErrHung is the cause when the lab printed nothing for Spec.Idle.
var ErrHung = errors.New("kvmlab: the lab machine printed nothing for too long (hung)")

// watched is the console buffer, with the time of its last write.
type watched struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	last atomic.Int64
}

func (w *watched) Write(p []byte) (int, error) {
	w.last.Store(time.Now().UnixNano())
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *watched) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// watchdog ends the lab once its console has been silent for idle: the
// nested lab now and then locks up whole (seen after a guest's triple
// fault), and a bound of many minutes would be spent waiting. report
// first prints what the lab's CPUs were doing.
func watchdog(ctx context.Context, cancel context.CancelCauseFunc, w *watched, idle time.Duration, report func()) {
	t := time.NewTicker(idle / 10)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if time.Since(time.Unix(0, w.last.Load())) > idle {
				report()
				cancel(ErrHung)
				return
			}
		}
	}
}

// addLibs adds the shared libraries that the dynamically linked program
// exe loads, and its interpreter, to files at their paths here (a test
// binary built with cgo is one). A static exe adds nothing.
func addLibs(files map[string][]byte, exe string) error {
	f, err := elf.Open(exe)
	if err != nil {
		return err
	}
	defer f.Close()
	dynamic := false
	for _, p := range f.Progs {
		dynamic = dynamic || p.Type == elf.PT_INTERP
	}
	if !dynamic {
		return nil
	}
	out, err := exec.Command("ldd", exe).Output()
	if err != nil {
		return fmt.Errorf("ldd %s: %w", exe, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		// "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
		// "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vDSO has no file.
		fields := strings.Fields(line)
		var lib string
		switch {
		case len(fields) >= 3 && fields[1] == "=>":
			lib = fields[2]
		case len(fields) >= 1 && strings.HasPrefix(fields[0], "/"):
			lib = fields[0]
		}
		if lib == "" {
			continue
		}
		data, err := os.ReadFile(lib)
		if err != nil {
			return err
		}
		files[lib] = data
	}
	return nil
}

// untilExit passes the console on line by line, without carriage
// returns, up to the script's exit marker: what follows is the lab's own
// poweroff, not the script's.
type untilExit struct {
	w    io.Writer
	line []byte
	done bool
}

func (u *untilExit) Write(p []byte) (int, error) {
	for _, c := range p {
		if u.done || c == '\r' {
			continue
		}
		u.line = append(u.line, c)
		if c != '\n' {
			continue
		}
		if bytes.HasPrefix(u.line, []byte(exitMarker)) {
			u.done = true
		} else if _, err := u.w.Write(u.line); err != nil {
			return len(p), err
		}
		u.line = u.line[:0]
	}
	return len(p), nil
}

// labInit loads KVM and runs the script. A missing /dev/kvm ends the run
// with exit code 97, so the caller can tell the lab failed, not the hv.
const labInit = `#!/bin/busybox sh
export PATH=/bin
busybox mkdir -p /proc /sys /dev /tmp
busybox mount -t proc proc /proc
busybox mount -t sysfs sysfs /sys
busybox mount -t devtmpfs dev /dev
# As systemd does on a real host: xl puts each hv in a cgroup v2 group.
busybox mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
busybox mkdir -p /dev/pts
busybox mount -t devpts -o ptmxmode=0666 devpts /dev/pts
[ -e /dev/ptmx ] || busybox ln -s pts/ptmx /dev/ptmx
busybox --install -s /bin
for m in $(cat /lab/modules); do insmod /lab/$m || echo "kvmlab: insmod $m failed"; done
# One VM held open for the lab's life, so that KVM's static keys never
# flip (HoldKVM).
if [ -c /dev/kvm ]; then
	/lab/kvmlab hold-kvm /tmp/kvm-held &
	for i in $(seq 100); do [ -e /tmp/kvm-held ] && break; sleep 0.1; done
	[ -e /tmp/kvm-held ] || echo "` + noHold + `"
fi
# Where the kernel and KVM's modules landed (KASLR), for a hang report's
# addresses (hang.go).
echo "kvmlab: text $(grep ' _text$' /proc/kallsyms | cut -d' ' -f1) kvm $(cat /sys/module/kvm/sections/.text) kvm_amd $(cat /sys/module/kvm_amd/sections/.text)"
if [ -c /dev/kvm ]; then
	sh /lab/script
	code=$?
else
	echo "kvmlab: no /dev/kvm after loading kvm-amd"
	code=97
fi
echo "` + exitMarker + `$code"
poweroff -f
`

// writeRoot writes the lab's initramfs: busybox, the kvm, loop, tun and
// bridge modules of the cloud kernel (tun for virtio-net's taps, bridge
// for xl's vifs), hv, xl, the spec's files and the script.
func writeRoot(k *kernels.Kernel, spec Spec, dst string) error {
	bb, err := Busybox(spec.Recipe)
	if err != nil {
		return err
	}
	hv, err := os.ReadFile(spec.HV)
	if err != nil {
		return err
	}
	xl, err := os.ReadFile(spec.XL)
	if err != nil {
		return err
	}
	// The kvmlab command, built beside hv, holds a VM (HoldKVM).
	self, err := os.ReadFile(filepath.Join(filepath.Dir(spec.HV), "kvmlab"))
	if err != nil {
		return fmt.Errorf("the kvmlab command beside hv (make build): %w", err)
	}
	mods, err := kernels.ModuleClosure(k.ModulesDir(), []string{"kvm_amd", "loop", "tun", "bridge"})
	if err != nil {
		return err
	}
	files := []images.File{
		{Path: "init", Mode: 0o755, Data: []byte(labInit)},
		{Path: "bin/busybox", Mode: 0o755, Data: bb},
		{Path: "bin/hv", Mode: 0o755, Data: hv},
		{Path: "bin/xl", Mode: 0o755, Data: xl},
		{Path: "lab/script", Mode: 0o644, Data: []byte(spec.Script)},
		{Path: "lab/kvmlab", Mode: 0o755, Data: self},
	}
	var order []string
	for _, m := range mods {
		data, err := os.ReadFile(m)
		if err != nil {
			return err
		}
		files = append(files, images.File{Path: "lab/" + filepath.Base(m), Mode: 0o644, Data: data})
		order = append(order, filepath.Base(m))
	}
	files = append(files, images.File{Path: "lab/modules", Mode: 0o644, Data: []byte(strings.Join(order, "\n") + "\n")})
	for p, data := range spec.Files {
		files = append(files, images.File{Path: strings.TrimPrefix(path.Clean(p), "/"), Mode: 0o755, Data: data})
	}
	return atomicfile.Write(dst, 0o644, func(f *os.File) error {
		return images.WriteInitramfs(f, files, images.None, time.Unix(0, 0))
	})
}

// Busybox is /bin/busybox of the busybox-static that recipe (normally
// recipes/minimal.toml) pins, fetched into the download cache and
// verified by sha256.
func Busybox(recipe string) ([]byte, error) {
	r, err := recipes.LoadFile(recipe)
	if err != nil {
		return nil, err
	}
	for _, p := range r.Packages {
		if p.Name != "busybox-static" {
			continue
		}
		file, _, err := debs.Fetch(kernels.DefaultCacheDir(), p.Name, p.Version, p.SHA256)
		if err != nil {
			return nil, err
		}
		pkg, err := debs.Open(file)
		if err != nil {
			return nil, err
		}
		var bb []byte
		err = pkg.Walk(func(hdr *tar.Header, rd io.Reader) error {
			if strings.TrimPrefix(hdr.Name, ".") == "/bin/busybox" && hdr.Typeflag == tar.TypeReg {
				bb, err = io.ReadAll(io.LimitReader(rd, 16<<20))
				return err
			}
			return nil
		})
		if err == nil && bb == nil {
			err = fmt.Errorf("%s has no /bin/busybox", file)
		}
		return bb, err
	}
	return nil, fmt.Errorf("%s pins no busybox-static", recipe)
}

// hostTSCkHz is this machine's TSC frequency, which TCG's guest TSC runs at.
func hostTSCkHz() (int, error) {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "cpu MHz" {
			mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("cpu MHz %q: %w", v, err)
			}
			return int(mhz * 1000), nil
		}
	}
	return 0, errors.New("no cpu MHz in /proc/cpuinfo")
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
