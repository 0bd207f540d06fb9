// Package vm is one xeno domain: guest memory, the boot loaders, the
// vCPU threads, the port and MMIO bus with its devices, and the exit
// status. cmd/hv builds a Config from its flags and calls Run.
package vm

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/hv/kvm"
	"github.com/xeno-hv/xeno/hv/uart"
)

// Addresses KVM needs for Intel VMX's real-mode support: three pages of
// TSS and one identity-map page, just below the IOAPIC window so they
// never overlap RAM.
const (
	tssAddr      = 0xfeffd000
	identityAddr = 0xfeffc000
)

// Config is everything a domain is made of.
type Config struct {
	Image     *Image
	Initrd    []byte
	Cmdline   string
	MemoryMiB int
	VCPUs     int
	Disks     []Disk
	Nets      []Net  // on the virtio-mmio bus after the disks
	Vsock     *Vsock // a virtio-vsock device, after the network devices
	Name      string
	UUID      string

	Build    abi.Build
	Admitted abi.Interface // what the hv presents to this guest
	Compat   bool          // admitted in compat mode

	Console io.Writer // UART and console-port output
	Log     io.Writer // hv diagnostics (stderr)
	Start   time.Time // process start, for the boot timer

	// Paused starts the domain paused: every vCPU parks before its
	// first KVM_RUN, so the guest executes nothing until Resume.
	Paused bool

	// KVM, if set, is /dev/kvm already open (by the hv's jailer, before
	// it left the host's file system); New takes it over.
	KVM *os.File

	// VCPUStart, if set, runs on each vCPU's thread, locked to it for
	// good, before its first KVM_RUN: cmd/hv installs the vCPU seccomp
	// filter there. An error ends the domain.
	VCPUStart func() error
}

// Disk is one virtio-blk backing file.
type Disk struct {
	Path     string
	ReadOnly bool
	// File, if set, is Path already opened and locked by OpenDisk (the
	// hv's jailer does so before it leaves the host's file system); the
	// VM takes it over.
	File *os.File
}

// Vsock is the virtio-vsock device: the guest's CID and the Unix socket
// of its host side (docs/devices.md).
type Vsock struct {
	CID uint64
	UDS string
}

// VM is a running domain.
type VM struct {
	cfg   Config
	sys   *kvm.System
	vm    *kvm.VM
	mem   *Memory
	vcpus []*vcpu
	load  LoadInfo
	e820  []E820Entry

	// manualDirty: KVM's dirty log is read and cleared apart
	// (kvm.ManualDirtyLog), so that a live save protects pages just
	// before it reads them, and switching the log on protects nothing.
	manualDirty bool

	uart *uart.UART
	dev  devices
	unk  unknownLog

	consoleMu sync.Mutex
	bpOnce    sync.Once
	fwaitOnce sync.Once

	started   time.Time
	bootTimer atomic.Int64

	// saveMu is held for a whole save (SaveTo): one at a time, and Close
	// waits for it, since a save reads the vCPUs and RAM that Close frees.
	saveMu sync.Mutex

	mu      sync.Mutex
	cond    *sync.Cond
	paused  bool
	saving  bool // a save holds the domain paused: Resume is refused
	nParked int
	// rebootAsked: xl reboot pressed the power button, so the guest's
	// poweroff is the reboot it was asked for.
	rebootAsked bool
	exit        *control.Exit
	done        chan struct{}
}

type vcpu struct {
	c   *kvm.VCPU
	tid atomic.Int32
}

// New creates the domain: KVM objects, memory, devices, the loaded kernel
// and the vCPUs' boot state. Nothing runs until Run.
func New(cfg Config) (_ *VM, err error) {
	v, err := newMachine(cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			v.Close()
		}
	}()
	acpiSize, rsdp, err := v.setupPlatform()
	if err != nil {
		return nil, err
	}
	v.e820 = v.mem.E820(acpiSize)
	if v.load, err = load(v.mem, cfg.Image, cfg.Initrd, cfg.Cmdline, v.e820, rsdp); err != nil {
		return nil, err
	}
	if err = v.createVCPUs(true); err != nil {
		return nil, err
	}
	v.logf("%s kernel at [%#x, %#x), entry %#x; initrd %d bytes at %#x", cfg.Image.Kind,
		v.load.KernelStart, v.load.KernelEnd, v.load.Entry, v.load.InitrdSize, v.load.InitrdAddr)
	for _, e := range v.e820 {
		v.logf("e820: [mem 0x%016x-0x%016x] %s", e.Addr, e.Addr+e.Size-1, e820Name(e.Type))
	}
	return v, nil
}

// newMachine creates what New and Restore share: the KVM VM with its
// in-kernel irqchip and PIT, and guest memory, zeroed.
func newMachine(cfg Config) (_ *VM, err error) {
	if cfg.VCPUs < 1 || cfg.VCPUs > abi.MaxVCPUs {
		return nil, fmt.Errorf("vm: %d vCPUs: want 1 to %d", cfg.VCPUs, abi.MaxVCPUs)
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.Console == nil {
		cfg.Console = io.Discard
	}
	v := &VM{cfg: cfg, done: make(chan struct{}), started: time.Now(), paused: cfg.Paused}
	v.cond = sync.NewCond(&v.mu)
	v.unk.log = cfg.Log
	defer func() {
		if err != nil {
			v.Close()
		}
	}()
	if cfg.KVM != nil {
		v.sys, err = kvm.FromFile(cfg.KVM)
	} else {
		v.sys, err = kvm.Open()
	}
	if err != nil {
		return nil, err
	}
	if v.vm, err = v.sys.CreateVM(); err != nil {
		return nil, err
	}
	if v.manualDirty, err = v.vm.ManualDirtyLog(); err != nil {
		return nil, err
	}
	if err = v.vm.SetTSSAddr(tssAddr); err != nil {
		return nil, err
	}
	if err = v.vm.SetIdentityMapAddr(identityAddr); err != nil {
		return nil, err
	}
	if err = v.vm.CreateIRQChip(); err != nil {
		return nil, err
	}
	if err = v.vm.CreatePIT2(); err != nil {
		return nil, err
	}
	if v.mem, err = NewMemory(uint64(cfg.MemoryMiB) << 20); err != nil {
		return nil, err
	}
	for i, r := range v.mem.regions() {
		if err = v.vm.SetMemory(uint32(i), r.gpa, r.mem); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// E820 is the memory map given to the guest.
func (v *VM) E820() []E820Entry { return v.e820 }

// irq returns a device's interrupt line on GSI n.
func (v *VM) irq(n uint32) func(bool) {
	return func(level bool) {
		if err := v.vm.IRQLine(n, level); err != nil {
			v.logf("irq %d: %v", n, err)
		}
	}
}

func (v *VM) logf(format string, args ...any) {
	fmt.Fprintf(v.cfg.Log, "hv: "+format+"\n", args...)
}

// ConsoleInput feeds host bytes to the guest's UART.
func (v *VM) ConsoleInput(p []byte) { v.uart.Input(p) }

// createVCPUs creates the vCPUs with their CPUID; with boot, it also
// gives them the state a kernel's entry expects (a restore sets theirs
// from the snapshot instead).
func (v *VM) createVCPUs(boot bool) error {
	sup, err := v.sys.SupportedCPUID()
	if err != nil {
		return err
	}
	msrList, err := v.sys.MSRIndexList()
	if err != nil {
		return err
	}
	cc := cpuidConfig{build: v.cfg.Build, admitted: v.cfg.Admitted, compat: v.cfg.Compat, maskPVM: SoftwareKVM()}
	for i := 0; i < v.cfg.VCPUs; i++ {
		c, err := v.vm.CreateVCPU(i)
		if err != nil {
			return err
		}
		v.vcpus = append(v.vcpus, &vcpu{c: c})
		if err := c.SetCPUID(filterCPUID(sup, cc, uint32(i))); err != nil {
			return err
		}
		if !boot {
			continue
		}
		if err := c.SetMSRs(bootMSRs(msrList)); err != nil {
			return err
		}
		if i > 0 {
			// APs wait for INIT/SIPI from the BSP, through the in-kernel LAPIC.
			if err := c.SetMPStateUninitialized(); err != nil {
				return err
			}
			continue
		}
		s, err := c.Sregs()
		if err != nil {
			return err
		}
		longModeSregs(&s)
		if err := c.SetSregs(s); err != nil {
			return err
		}
		regs := kvm.Regs{
			RIP: v.load.Entry, RSI: bootParamsAddr, RSP: bootStackTop, RFLAGS: 2,
			R8:  abi.EntryMagic,
			R9:  uint64(v.cfg.Admitted.Word()),
			R10: entryFlags(cc),
		}
		if err := c.SetRegs(regs); err != nil {
			return err
		}
	}
	if !boot {
		return nil // restoring each LAPIC rebuilds the map as below
	}
	// Rewrite every LAPIC once all vCPUs exist. KVM builds its APIC-ID
	// map while a vCPU is being created, before that vCPU counts as
	// online; here (kvm_pvm) an IPI to the last-created vCPU was then
	// lost until something rebuilt the map. KVM_SET_LAPIC rebuilds it.
	for _, c := range v.vcpus {
		st, err := c.c.LAPIC()
		if err != nil {
			return err
		}
		if err := c.c.SetLAPIC(st); err != nil {
			return err
		}
	}
	return nil
}

// bootMSRs are the MSR values a firmware would leave, limited to the MSRs
// KVM reports in KVM_GET_MSR_INDEX_LIST: the guest is told nothing KVM
// cannot keep.
func bootMSRs(list []uint32) []kvm.MSR {
	const msrMiscEnable, miscFastStrings = 0x1a0, 1
	want := []kvm.MSR{{Index: msrMiscEnable, Data: miscFastStrings}}
	var out []kvm.MSR
	for _, m := range want {
		for _, idx := range list {
			if idx == m.Index {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

// Run starts the vCPUs and returns when the domain has ended.
func (v *VM) Run() control.Exit {
	// vCPU threads are kicked out of KVM_RUN with SIGUSR1; Go must not
	// treat it as fatal, and nothing needs to read it.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, unix.SIGUSR1)
	defer signal.Stop(sig)
	for _, n := range v.dev.nets {
		n.dev.Start()
	}
	if v.dev.vsock != nil {
		v.dev.vsock.Start() // host clients are served only from here, jailed
	}
	var wg sync.WaitGroup
	for _, c := range v.vcpus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v.runVCPU(c)
		}()
	}
	<-v.done
	v.kickAll()
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(2 * time.Second):
		v.logf("vCPU threads did not stop within 2 s; exiting anyway")
	}
	v.unk.flush()
	v.mu.Lock()
	defer v.mu.Unlock()
	return *v.exit
}

// Close releases the VM's resources; only after Run has returned.
func (v *VM) Close() {
	v.saveMu.Lock()
	defer v.saveMu.Unlock()
	for _, c := range v.vcpus {
		c.c.Close()
	}
	if v.vm != nil {
		v.vm.Close()
	}
	if v.mem != nil {
		v.mem.Close()
	}
	if v.sys != nil {
		v.sys.Close()
	}
	v.dev.close()
}

// stop ends the domain with reason; the first reason wins.
func (v *VM) stop(reason, detail string) {
	v.mu.Lock()
	if v.exit != nil {
		v.mu.Unlock()
		return
	}
	if reason == control.ReasonPoweroff && v.rebootAsked {
		// The guest was asked to reboot and shut down cleanly for it,
		// as a Xen guest does on "control/shutdown = reboot".
		reason, detail = control.ReasonReboot, detail+", asked to reboot"
	}
	v.exit = &control.Exit{Reason: reason, Detail: detail, Code: control.ExitCode(reason), Time: time.Now().UTC()}
	close(v.done)
	v.cond.Broadcast()
	v.mu.Unlock()
	v.kickAll()
}

// Destroy stops the domain at once.
func (v *VM) Destroy() { v.stop(control.ReasonDestroyed, "destroyed by request") }

// Reset stops the domain with reason reboot, as a hardware reset would:
// the guest is not asked.
func (v *VM) Reset() { v.stop(control.ReasonReboot, "reset by request") }

// RequestReboot asks the guest to reboot through the ACPI power button
// (the one request every ACPI guest understands); the clean poweroff
// that follows ends the domain with reason reboot, so on_reboot applies.
func (v *VM) RequestReboot() error {
	v.mu.Lock()
	v.rebootAsked = true
	v.mu.Unlock()
	if err := v.PowerButton(); err != nil {
		v.mu.Lock()
		v.rebootAsked = false
		v.mu.Unlock()
		return fmt.Errorf("cannot ask the guest to reboot: %w (xl reboot -F resets it)", err)
	}
	return nil
}

// Done is closed when the domain has ended.
func (v *VM) Done() <-chan struct{} { return v.done }

// kickAll makes every vCPU leave KVM_RUN: immediate_exit covers a vCPU
// about to enter, the signal one inside the guest.
func (v *VM) kickAll() {
	pid := unix.Getpid()
	for _, c := range v.vcpus {
		c.c.SetImmediateExit(true)
		if tid := c.tid.Load(); tid != 0 {
			_ = unix.Tgkill(pid, int(tid), unix.SIGUSR1)
		}
	}
}

// Pause stops every vCPU outside the guest and returns once they are.
func (v *VM) Pause() error {
	v.mu.Lock()
	if v.exit != nil {
		err := v.endedLocked()
		v.mu.Unlock()
		return err
	}
	v.paused = true
	v.mu.Unlock()
	deadline := time.Now().Add(2 * time.Second)
	for {
		v.kickAll()
		v.mu.Lock()
		n, ended := v.nParked, v.exit != nil
		v.mu.Unlock()
		if n == len(v.vcpus) || ended {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("vCPUs did not stop within 2 s")
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// Resume lets paused vCPUs run again, unless a save holds them.
func (v *VM) Resume() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.saving {
		return errors.New("a save is in progress: the domain stays paused until it ends")
	}
	if v.exit != nil {
		return v.endedLocked()
	}
	v.resumeLocked()
	return nil
}

// endedLocked is the error for a request to a domain that has ended,
// with what ended it: a live save pauses at its end, long after it
// began, and a guest that crashed meanwhile must not read as a failed
// save. Call with v.mu held.
func (v *VM) endedLocked() error {
	return fmt.Errorf("domain has ended (%s: %s)", v.exit.Reason, v.exit.Detail)
}

func (v *VM) resumeLocked() {
	v.paused = false
	v.cond.Broadcast()
}

// Status reports the domain's state.
func (v *VM) Status() control.Status {
	v.mu.Lock()
	state := control.StateRunning
	if v.paused {
		state = control.StatePaused
	}
	v.mu.Unlock()
	var cpu int64
	for _, c := range v.vcpus {
		cpu += threadCPUTime(c.tid.Load())
	}
	return control.Status{
		State: state, Name: v.cfg.Name, UUID: v.cfg.UUID, PID: os.Getpid(),
		VCPUs: v.cfg.VCPUs, MemoryMiB: v.cfg.MemoryMiB,
		Interface: v.cfg.Admitted.Short(), Compat: v.cfg.Compat,
		UptimeNS: time.Since(v.started).Nanoseconds(), CPUTimeNS: cpu,
		BootTimerNS: v.bootTimer.Load(),
		Net:         v.netStatus(),
	}
}

// threadCPUTime is a thread of this process's run time, 0 if unknown.
// It reads the thread's CPU clock, which needs no /proc: a jailed hv has
// none (docs/security.md).
func threadCPUTime(tid int32) int64 {
	if tid == 0 {
		return 0
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(threadClock(tid), &ts); err != nil {
		return 0
	}
	return ts.Nano()
}

// threadClock is the clock id of thread tid's scheduler run time, as
// Linux's MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED) builds it: the
// complemented tid shifted by 3, per-thread bit 4, clock 2 (SCHED).
func threadClock(tid int32) int32 { return ^tid<<3 | 4 | 2 }

// park blocks a vCPU while the domain is paused; it reports whether the
// domain has ended. A vCPU with an unfinished exit is not parked but
// told to complete it first.
func (v *VM) park(unfinished bool) (ended, complete bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if unfinished && v.paused && v.exit == nil {
		return false, true
	}
	for v.paused && v.exit == nil {
		v.nParked++
		v.cond.Wait()
		v.nParked--
	}
	return v.exit != nil, false
}

func (v *VM) runVCPU(c *vcpu) {
	// KVM requires each vCPU's ioctls from one thread, and the kick
	// signals that thread. The thread dies with the goroutine.
	runtime.LockOSThread()
	c.tid.Store(int32(unix.Gettid()))
	if v.cfg.VCPUStart != nil {
		if err := v.cfg.VCPUStart(); err != nil {
			v.stop(control.ReasonError, fmt.Sprintf("vCPU %d: %v", c.c.ID, err))
			return
		}
	}
	// unfinished: the last exit was I/O or MMIO, which KVM completes
	// (the IN's data into RAX, RIP past a string instruction) only in
	// the next KVM_RUN.
	unfinished := false
	for {
		c.c.SetImmediateExit(false)
		ended, complete := v.park(unfinished)
		if complete {
			// With immediate_exit KVM completes it and returns at once
			// (KVM's api.rst, KVM_RUN), so that a parked vCPU's state,
			// which a snapshot reads, is whole.
			c.c.SetImmediateExit(true)
			_ = c.c.Run()
			unfinished = false
			continue
		}
		if ended {
			// A debugging aid for guests that hang: each vCPU's
			// registers when the domain ends (docs/hv.md).
			if os.Getenv("XENO_HV_DUMP") != "" {
				mp, _ := c.c.MPState()
				v.logf("vCPU %d at exit (mp_state %d):\n%s", c.c.ID, mp, v.dump(c))
			}
			return
		}
		err := c.c.Run()
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			v.crash(c, fmt.Sprintf("KVM_RUN failed: %v", err))
			return
		}
		r := c.c.ExitReason()
		unfinished = r == kvm.ExitIO || r == kvm.ExitMMIO
		if !v.act(c, v.handleExit(c.c)) {
			return
		}
	}
}
