// Package kvm wraps the few KVM ioctls the hv uses. The numbers and struct
// layouts follow <linux/kvm.h> for x86-64 (checked against the header of
// the build machine by docs/kvm-notes.md's recipe); nothing here depends on
// cgo.
package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl request numbers (x86-64).
const (
	getAPIVersion        = 0xae00
	createVM             = 0xae01
	getMSRIndexList      = 0xc004ae02
	checkExtension       = 0xae03
	getVCPUMmapSize      = 0xae04
	getSupportedCPUID    = 0xc008ae05
	createVCPU           = 0xae41
	getDirtyLog          = 0x4010ae42
	clearDirtyLog        = 0xc018aec0
	enableCap            = 0x4068aea3
	setUserMemoryRegion  = 0x4020ae46
	setTSSAddr           = 0xae47
	setIdentityMapAddr   = 0x4008ae48
	createIRQChip        = 0xae60
	setGSIRouting        = 0x4008ae6a
	irqLine              = 0x4008ae61
	createPIT2           = 0x4040ae77
	run                  = 0xae80
	getRegs              = 0x8090ae81
	setRegs              = 0x4090ae82
	getSregs             = 0x8138ae83
	setSregs             = 0x4138ae84
	setMSRs              = 0x4008ae89
	setCPUID2            = 0x4008ae90
	getMPState           = 0x8004ae98
	setMPState           = 0x4004ae99
	getVCPUEvents        = 0x8040ae9f
	setVCPUEvents        = 0x4040aea0
	pitSpeakerDummy      = 1
	wantAPIVersion       = 12
	maxCPUIDEntries      = 256
	maxMSRIndices        = 1024
	kvmRunExitReasonOff  = 8
	kvmRunImmediateExit  = 1
	kvmRunUnionOffset    = 0x20
	mpStateUninitialized = 1
)

// Capabilities the hv requires (KVM_CAP_*).
const (
	CapIRQChip         = 0
	CapUserMemory      = 3
	CapSetTSSAddr      = 4
	CapExtCPUID        = 7
	CapMPState         = 14
	CapPIT2            = 33
	CapSetIdentityMap  = 37
	CapImmediateExit   = 136
	CapIRQInjectStatus = 26
	CapIRQRouting      = 25
)

// KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 and its options: KVM_GET_DIRTY_LOG
// leaves the log and the protection alone, KVM_CLEAR_DIRTY_LOG clears
// and write-protects what it is given, and a slot starts logging with
// every page dirty and none write-protected.
const (
	capManualDirtyLogProtect2 = 168
	dirtyLogManualProtect     = 1 << 0
	dirtyLogInitiallySet      = 1 << 1
)

// Required lists the capabilities without which the hv refuses to start,
// with the name it reports.
var Required = []struct {
	Cap  int
	Name string
}{
	{CapIRQChip, "KVM_CAP_IRQCHIP"},
	{CapUserMemory, "KVM_CAP_USER_MEMORY"},
	{CapSetTSSAddr, "KVM_CAP_SET_TSS_ADDR"},
	{CapExtCPUID, "KVM_CAP_EXT_CPUID"},
	{CapMPState, "KVM_CAP_MP_STATE"},
	{CapPIT2, "KVM_CAP_PIT2"},
	{CapSetIdentityMap, "KVM_CAP_SET_IDENTITY_MAP_ADDR"},
	{CapImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"},
	{CapIRQRouting, "KVM_CAP_IRQ_ROUTING"},
}

// Exit reasons (KVM_EXIT_*).
const (
	ExitUnknown       = 0
	ExitException     = 1
	ExitIO            = 2
	ExitHypercall     = 3
	ExitDebug         = 4
	ExitHLT           = 5
	ExitMMIO          = 6
	ExitShutdown      = 8
	ExitFailEntry     = 9
	ExitIntr          = 10
	ExitInternalError = 17
	ExitSystemEvent   = 24
)

// InternalErrorEmulation is the KVM_INTERNAL_ERROR_EMULATION suberror.
const InternalErrorEmulation = 1

func ioctl(fd uintptr, req uintptr, arg uintptr) (uintptr, error) {
	for {
		r, _, e := unix.Syscall(unix.SYS_IOCTL, fd, req, arg)
		if e == unix.EINTR && req != run {
			continue
		}
		if e != 0 {
			return r, e
		}
		return r, nil
	}
}

// System is an open /dev/kvm.
type System struct {
	f *os.File
}

// Open opens /dev/kvm and checks the API version and the capabilities in
// Required, with one error per missing piece.
func Open() (*System, error) {
	f, err := OpenDevice()
	if err != nil {
		return nil, err
	}
	return FromFile(f)
}

// OpenDevice opens /dev/kvm, saying what to do when that fails. The hv's
// jailer opens it so, before it leaves the host's file system.
func OpenDevice() (*os.File, error) {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("kvm: /dev/kvm does not exist (is the kvm module loaded?): %w", err)
		case errors.Is(err, os.ErrPermission):
			return nil, fmt.Errorf("kvm: /dev/kvm: permission denied (add the user to group kvm): %w", err)
		}
		return nil, fmt.Errorf("kvm: %w", err)
	}
	return f, nil
}

// FromFile checks an open /dev/kvm as Open does and takes it over (it is
// closed on failure).
func FromFile(f *os.File) (*System, error) {
	s := &System{f: f}
	v, err := ioctl(f.Fd(), getAPIVersion, 0)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("kvm: KVM_GET_API_VERSION: %w", err)
	}
	if v != wantAPIVersion {
		f.Close()
		return nil, fmt.Errorf("kvm: /dev/kvm has API version %d, the hv needs %d", v, wantAPIVersion)
	}
	for _, c := range Required {
		if !s.Has(c.Cap) {
			f.Close()
			return nil, fmt.Errorf("kvm: /dev/kvm lacks %s, which the hv needs", c.Name)
		}
	}
	return s, nil
}

// Close closes /dev/kvm.
func (s *System) Close() error { return s.f.Close() }

// Has reports KVM_CHECK_EXTENSION(c) > 0.
func (s *System) Has(c int) bool {
	r, err := ioctl(s.f.Fd(), checkExtension, uintptr(c))
	return err == nil && r > 0
}

// CPUIDEntry is struct kvm_cpuid_entry2.
type CPUIDEntry struct {
	Function, Index, Flags uint32
	EAX, EBX, ECX, EDX     uint32
	_                      [3]uint32
}

// CPUIDFlagSignificantIndex marks a leaf whose subleaf index matters.
const CPUIDFlagSignificantIndex = 1

type cpuid2 struct {
	nent    uint32
	_       uint32
	entries [maxCPUIDEntries]CPUIDEntry
}

// SupportedCPUID is KVM_GET_SUPPORTED_CPUID.
func (s *System) SupportedCPUID() ([]CPUIDEntry, error) {
	c := &cpuid2{nent: maxCPUIDEntries}
	if _, err := ioctl(s.f.Fd(), getSupportedCPUID, uintptr(unsafe.Pointer(c))); err != nil {
		return nil, fmt.Errorf("kvm: KVM_GET_SUPPORTED_CPUID: %w", err)
	}
	return append([]CPUIDEntry(nil), c.entries[:c.nent]...), nil
}

// MSRIndexList is KVM_GET_MSR_INDEX_LIST: the MSRs KVM saves and restores.
func (s *System) MSRIndexList() ([]uint32, error) {
	buf := make([]uint32, 1+maxMSRIndices)
	buf[0] = maxMSRIndices
	if _, err := ioctl(s.f.Fd(), getMSRIndexList, uintptr(unsafe.Pointer(&buf[0]))); err != nil {
		return nil, fmt.Errorf("kvm: KVM_GET_MSR_INDEX_LIST: %w", err)
	}
	n := buf[0]
	if n > maxMSRIndices {
		n = maxMSRIndices
	}
	return append([]uint32(nil), buf[1:1+n]...), nil
}

func (s *System) vcpuMmapSize() (int, error) {
	r, err := ioctl(s.f.Fd(), getVCPUMmapSize, 0)
	if err != nil {
		return 0, fmt.Errorf("kvm: KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	return int(r), nil
}

// VM is one KVM virtual machine.
type VM struct {
	sys *System
	fd  int
}

// CreateVM is KVM_CREATE_VM.
func (s *System) CreateVM() (*VM, error) {
	r, err := ioctl(s.f.Fd(), createVM, 0)
	if err != nil {
		return nil, fmt.Errorf("kvm: KVM_CREATE_VM: %w", err)
	}
	unix.CloseOnExec(int(r))
	return &VM{sys: s, fd: int(r)}, nil
}

// Close closes the VM fd.
func (vm *VM) Close() error { return unix.Close(vm.fd) }

// SetTSSAddr reserves three pages for the real-mode TSS (Intel VMX needs it).
func (vm *VM) SetTSSAddr(addr uint32) error {
	if _, err := ioctl(uintptr(vm.fd), setTSSAddr, uintptr(addr)); err != nil {
		return fmt.Errorf("kvm: KVM_SET_TSS_ADDR: %w", err)
	}
	return nil
}

// SetIdentityMapAddr reserves the page for the EPT identity map.
func (vm *VM) SetIdentityMapAddr(addr uint64) error {
	if _, err := ioctl(uintptr(vm.fd), setIdentityMapAddr, uintptr(unsafe.Pointer(&addr))); err != nil {
		return fmt.Errorf("kvm: KVM_SET_IDENTITY_MAP_ADDR: %w", err)
	}
	return nil
}

// CreateIRQChip creates the in-kernel PIC, IOAPIC and LAPICs.
func (vm *VM) CreateIRQChip() error {
	if _, err := ioctl(uintptr(vm.fd), createIRQChip, 0); err != nil {
		return fmt.Errorf("kvm: KVM_CREATE_IRQCHIP: %w", err)
	}
	return vm.setPCRouting()
}

// KVM's irqchip numbers and routing entry type (linux/kvm.h).
const (
	irqchipPICMaster = 0
	irqchipPICSlave  = 1
	irqchipIOAPIC    = 2
	routingIRQChip   = 1
	routingEntrySize = 48 // struct kvm_irq_routing_entry
	ioapicPins       = 24 // KVM_IOAPIC_NUM_PINS
)

// setPCRouting wires GSIs the way a PC's MADT describes them: ISA IRQs to
// the 8259s, and GSI n to IOAPIC pin n, except that the PIT's IRQ 0 is
// IOAPIC pin 2 (the MADT's interrupt source override). KVM's default
// table sends GSI 0 to pin 0, so a guest that believed the MADT never saw
// a timer tick there: Linux logged "8254 timer not connected to
// IO-APIC" and fell back to the 8259's virtual wire, and with
// no_timer_check it had no timer at all.
func (vm *VM) setPCRouting() error {
	type route struct{ gsi, chip, pin uint32 }
	var rs []route
	for i := uint32(0); i < 16; i++ {
		if i == 2 { // the cascade
			continue
		}
		chip := uint32(irqchipPICMaster)
		if i >= 8 {
			chip = irqchipPICSlave
		}
		rs = append(rs, route{i, chip, i % 8})
	}
	for i := uint32(0); i < ioapicPins; i++ {
		switch i {
		case 0:
			rs = append(rs, route{0, irqchipIOAPIC, 2})
		case 2: // pin 2 belongs to IRQ 0
		default:
			rs = append(rs, route{i, irqchipIOAPIC, i})
		}
	}
	b := make([]byte, 8+len(rs)*routingEntrySize)
	le := binary.LittleEndian
	le.PutUint32(b, uint32(len(rs)))
	for i, r := range rs {
		e := b[8+i*routingEntrySize:]
		le.PutUint32(e[0:], r.gsi)
		le.PutUint32(e[4:], routingIRQChip)
		le.PutUint32(e[16:], r.chip)
		le.PutUint32(e[20:], r.pin)
	}
	if _, err := ioctl(uintptr(vm.fd), setGSIRouting, uintptr(unsafe.Pointer(&b[0]))); err != nil {
		return fmt.Errorf("kvm: KVM_SET_GSI_ROUTING: %w", err)
	}
	return nil
}

// CreatePIT2 creates the in-kernel i8254 PIT.
func (vm *VM) CreatePIT2() error {
	var cfg [16]uint32
	cfg[0] = pitSpeakerDummy
	if _, err := ioctl(uintptr(vm.fd), createPIT2, uintptr(unsafe.Pointer(&cfg))); err != nil {
		return fmt.Errorf("kvm: KVM_CREATE_PIT2: %w", err)
	}
	return nil
}

// memRegion is struct kvm_userspace_memory_region.
type memRegion struct {
	slot, flags            uint32
	guestPhys, size, uaddr uint64
}

// memLogDirtyPages is KVM_MEM_LOG_DIRTY_PAGES, a memRegion flag.
const memLogDirtyPages = 1

// SetMemory maps host memory mem at guest-physical gpa in slot.
func (vm *VM) SetMemory(slot uint32, gpa uint64, mem []byte) error {
	return vm.setMemory(slot, gpa, mem, 0)
}

// SetDirtyLogging registers slot again, as SetMemory mapped it, with
// KVM_MEM_LOG_DIRTY_PAGES on or off. KVM allows it while vCPUs run; on,
// it write-protects the slot and logs every page the guest (or KVM on
// its behalf) writes from then on, for DirtyLog.
func (vm *VM) SetDirtyLogging(slot uint32, gpa uint64, mem []byte, on bool) error {
	flags := uint32(0)
	if on {
		flags = memLogDirtyPages
	}
	return vm.setMemory(slot, gpa, mem, flags)
}

func (vm *VM) setMemory(slot uint32, gpa uint64, mem []byte, flags uint32) error {
	r := memRegion{slot: slot, flags: flags, guestPhys: gpa, size: uint64(len(mem)), uaddr: uint64(uintptr(unsafe.Pointer(&mem[0])))}
	if _, err := ioctl(uintptr(vm.fd), setUserMemoryRegion, uintptr(unsafe.Pointer(&r))); err != nil {
		return fmt.Errorf("kvm: KVM_SET_USER_MEMORY_REGION slot %d at %#x (flags %#x): %w", slot, gpa, flags, err)
	}
	return nil
}

// kvmEnableCap is struct kvm_enable_cap.
type kvmEnableCap struct {
	cap, flags uint32
	args       [4]uint64
	_          [64]byte
}

// ManualDirtyLog switches the VM to KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2
// with KVM_DIRTY_LOG_INITIALLY_SET, as QEMU does, if KVM offers both,
// and reports whether it did. Then switching a slot's dirty log on
// write-protects nothing (the log starts all set), DirtyLog only reads
// the log, and ClearDirtyLog takes pages from it and write-protects them
// just before the caller reads them. Call it before any slot logs.
func (vm *VM) ManualDirtyLog() (bool, error) {
	const want = dirtyLogManualProtect | dirtyLogInitiallySet
	r, err := ioctl(uintptr(vm.fd), checkExtension, capManualDirtyLogProtect2)
	if err != nil || r&want != want {
		return false, nil
	}
	c := kvmEnableCap{cap: capManualDirtyLogProtect2, args: [4]uint64{want}}
	if _, err := ioctl(uintptr(vm.fd), enableCap, uintptr(unsafe.Pointer(&c))); err != nil {
		return false, fmt.Errorf("kvm: KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2): %w", err)
	}
	return true, nil
}

// clearLog is struct kvm_clear_dirty_log.
type clearLog struct {
	slot, pages uint32
	first       uint64
	bitmap      uint64
}

// ClearDirtyLog is KVM_CLEAR_DIRTY_LOG for slot, of pages pages from page
// 0: the pages whose bits are set in bitmap (as DirtyLog lays them out)
// leave the log and are write-protected again, so that a write after
// this call logs them anew. Only after ManualDirtyLog.
func (vm *VM) ClearDirtyLog(slot uint32, pages uint64, bitmap []uint64) error {
	words := (pages + 63) / 64
	if words == 0 || uint64(len(bitmap)) < words || pages > math.MaxUint32 {
		return fmt.Errorf("kvm: KVM_CLEAR_DIRTY_LOG slot %d: a bitmap of %d words for %d pages", slot, len(bitmap), pages)
	}
	l := clearLog{slot: slot, pages: uint32(pages), bitmap: uint64(uintptr(unsafe.Pointer(&bitmap[0])))}
	_, err := ioctl(uintptr(vm.fd), clearDirtyLog, uintptr(unsafe.Pointer(&l)))
	runtime.KeepAlive(bitmap)
	if err != nil {
		return fmt.Errorf("kvm: KVM_CLEAR_DIRTY_LOG slot %d: %w", slot, err)
	}
	return nil
}

// dirtyLog is struct kvm_dirty_log; bitmap is the union's pointer.
type dirtyLog struct {
	slot   uint32
	_      uint32
	bitmap uint64
}

// DirtyLog is KVM_GET_DIRTY_LOG for slot, of pages pages: it ORs into
// bitmap (bit i of word i/64 = page i of the slot) the pages written
// since logging was switched on or since the last call, and KVM clears
// its log and write-protects them again; after ManualDirtyLog, the
// pages logged and not yet cleared by ClearDirtyLog, and KVM changes
// nothing. KVM writes a whole number of 64-bit words, so bitmap must
// hold (pages+63)/64.
func (vm *VM) DirtyLog(slot uint32, pages uint64, bitmap []uint64) error {
	words := (pages + 63) / 64
	if words == 0 || uint64(len(bitmap)) < words {
		return fmt.Errorf("kvm: KVM_GET_DIRTY_LOG slot %d: a bitmap of %d words for %d pages", slot, len(bitmap), pages)
	}
	// KVM overwrites what it is given; the caller's bits are kept by
	// reading into a buffer of our own.
	got := make([]uint64, words)
	l := dirtyLog{slot: slot, bitmap: uint64(uintptr(unsafe.Pointer(&got[0])))}
	_, err := ioctl(uintptr(vm.fd), getDirtyLog, uintptr(unsafe.Pointer(&l)))
	runtime.KeepAlive(got)
	if err != nil {
		return fmt.Errorf("kvm: KVM_GET_DIRTY_LOG slot %d: %w", slot, err)
	}
	for i, w := range got {
		bitmap[i] |= w
	}
	return nil
}

// IRQLine sets the level of a GSI on the in-kernel irqchip.
func (vm *VM) IRQLine(irq uint32, level bool) error {
	a := [2]uint32{irq, 0}
	if level {
		a[1] = 1
	}
	if _, err := ioctl(uintptr(vm.fd), irqLine, uintptr(unsafe.Pointer(&a))); err != nil {
		return fmt.Errorf("kvm: KVM_IRQ_LINE %d: %w", irq, err)
	}
	return nil
}

// VCPU is one virtual CPU and its shared kvm_run page.
type VCPU struct {
	fd  int
	run []byte
	ID  int
}

// CreateVCPU is KVM_CREATE_VCPU plus the mmap of its kvm_run area.
func (vm *VM) CreateVCPU(id int) (*VCPU, error) {
	r, err := ioctl(uintptr(vm.fd), createVCPU, uintptr(id))
	if err != nil {
		return nil, fmt.Errorf("kvm: KVM_CREATE_VCPU %d: %w", id, err)
	}
	unix.CloseOnExec(int(r))
	size, err := vm.sys.vcpuMmapSize()
	if err != nil {
		unix.Close(int(r))
		return nil, err
	}
	m, err := unix.Mmap(int(r), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(int(r))
		return nil, fmt.Errorf("kvm: mmap kvm_run of vCPU %d: %w", id, err)
	}
	return &VCPU{fd: int(r), run: m, ID: id}, nil
}

// Close unmaps kvm_run and closes the vCPU.
func (c *VCPU) Close() error {
	unix.Munmap(c.run)
	return unix.Close(c.fd)
}

// Run is KVM_RUN. It returns unix.EINTR when a signal (or immediate_exit)
// stopped it before or during guest execution.
func (c *VCPU) Run() error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(c.fd), run, 0)
	if e != 0 {
		return e
	}
	return nil
}

// SetImmediateExit sets kvm_run.immediate_exit: KVM_RUN returns EINTR at
// once instead of entering the guest.
func (c *VCPU) SetImmediateExit(on bool) {
	v := byte(0)
	if on {
		v = 1
	}
	c.run[kvmRunImmediateExit] = v
}

// ExitReason is kvm_run.exit_reason of the last KVM_RUN.
func (c *VCPU) ExitReason() uint32 {
	return *(*uint32)(unsafe.Pointer(&c.run[kvmRunExitReasonOff]))
}

// IO describes a KVM_EXIT_IO: Data is the in-page buffer of Size*Count
// bytes that the hv reads (out) or fills (in).
type IO struct {
	Out   bool
	Size  int
	Port  uint16
	Count int
	Data  []byte
}

// IO decodes kvm_run.io, bounding the data window to the mapped page.
func (c *VCPU) IO() (IO, bool) {
	u := c.run[kvmRunUnionOffset:]
	io := IO{
		Out:   u[0] == 1,
		Size:  int(u[1]),
		Port:  *(*uint16)(unsafe.Pointer(&u[2])),
		Count: int(*(*uint32)(unsafe.Pointer(&u[4]))),
	}
	off := *(*uint64)(unsafe.Pointer(&u[8]))
	n := uint64(io.Size) * uint64(io.Count)
	if off > uint64(len(c.run)) || n > uint64(len(c.run))-off {
		return io, false
	}
	io.Data = c.run[off : off+n]
	return io, true
}

// MMIO describes a KVM_EXIT_MMIO; Data aliases kvm_run.mmio.data.
type MMIO struct {
	Addr  uint64
	Data  []byte
	Write bool
}

// MMIO decodes kvm_run.mmio.
func (c *VCPU) MMIO() MMIO {
	u := c.run[kvmRunUnionOffset:]
	n := *(*uint32)(unsafe.Pointer(&u[16]))
	if n > 8 {
		n = 8
	}
	return MMIO{
		Addr:  *(*uint64)(unsafe.Pointer(&u[0])),
		Data:  u[8 : 8+n],
		Write: u[20] != 0,
	}
}

// InternalError returns kvm_run.internal: suberror and data words.
func (c *VCPU) InternalError() (suberror uint32, data []uint64) {
	u := c.run[kvmRunUnionOffset:]
	sub := *(*uint32)(unsafe.Pointer(&u[0]))
	n := *(*uint32)(unsafe.Pointer(&u[4]))
	if n > 16 {
		n = 16
	}
	for i := uint32(0); i < n; i++ {
		data = append(data, *(*uint64)(unsafe.Pointer(&u[8+8*i])))
	}
	return sub, data
}

// SystemEvent returns kvm_run.system_event.type.
func (c *VCPU) SystemEvent() uint32 {
	return *(*uint32)(unsafe.Pointer(&c.run[kvmRunUnionOffset]))
}

// FailEntry returns kvm_run.fail_entry.hardware_entry_failure_reason.
func (c *VCPU) FailEntry() uint64 {
	return *(*uint64)(unsafe.Pointer(&c.run[kvmRunUnionOffset]))
}

// Regs is struct kvm_regs.
type Regs struct {
	RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11, R12, R13, R14, R15   uint64
	RIP, RFLAGS                            uint64
}

// Segment is struct kvm_segment.
type Segment struct {
	Base                           uint64
	Limit                          uint32
	Selector                       uint16
	Type                           uint8
	Present, DPL, DB, S, L, G, AVL uint8
	Unusable                       uint8
	_                              uint8
}

// DTable is struct kvm_dtable.
type DTable struct {
	Base  uint64
	Limit uint16
	_     [3]uint16
}

// Sregs is struct kvm_sregs.
type Sregs struct {
	CS, DS, ES, FS, GS, SS, TR, LDT Segment
	GDT, IDT                        DTable
	CR0, CR2, CR3, CR4, CR8         uint64
	EFER                            uint64
	APICBase                        uint64
	InterruptBitmap                 [4]uint64
}

func (c *VCPU) ptrIoctl(req uintptr, p unsafe.Pointer, name string) error {
	if _, err := ioctl(uintptr(c.fd), req, uintptr(p)); err != nil {
		return fmt.Errorf("kvm: vCPU %d: %s: %w", c.ID, name, err)
	}
	return nil
}

// Regs is KVM_GET_REGS.
func (c *VCPU) Regs() (Regs, error) {
	var r Regs
	return r, c.ptrIoctl(getRegs, unsafe.Pointer(&r), "KVM_GET_REGS")
}

// SetRegs is KVM_SET_REGS.
func (c *VCPU) SetRegs(r Regs) error {
	return c.ptrIoctl(setRegs, unsafe.Pointer(&r), "KVM_SET_REGS")
}

// Sregs is KVM_GET_SREGS.
func (c *VCPU) Sregs() (Sregs, error) {
	var s Sregs
	return s, c.ptrIoctl(getSregs, unsafe.Pointer(&s), "KVM_GET_SREGS")
}

// SetSregs is KVM_SET_SREGS.
func (c *VCPU) SetSregs(s Sregs) error {
	return c.ptrIoctl(setSregs, unsafe.Pointer(&s), "KVM_SET_SREGS")
}

// SetCPUID is KVM_SET_CPUID2.
func (c *VCPU) SetCPUID(entries []CPUIDEntry) error {
	if len(entries) > maxCPUIDEntries {
		return fmt.Errorf("kvm: vCPU %d: %d CPUID entries, at most %d", c.ID, len(entries), maxCPUIDEntries)
	}
	b := &cpuid2{nent: uint32(len(entries))}
	copy(b.entries[:], entries)
	return c.ptrIoctl(setCPUID2, unsafe.Pointer(b), "KVM_SET_CPUID2")
}

// MSR is struct kvm_msr_entry.
type MSR struct {
	Index uint32
	_     uint32
	Data  uint64
}

// SetMSRs is KVM_SET_MSRS; KVM reports how many it set.
func (c *VCPU) SetMSRs(msrs []MSR) error {
	if len(msrs) == 0 {
		return nil
	}
	buf := make([]byte, 8+16*len(msrs))
	*(*uint32)(unsafe.Pointer(&buf[0])) = uint32(len(msrs))
	for i, m := range msrs {
		*(*MSR)(unsafe.Pointer(&buf[8+16*i])) = m
	}
	n, err := ioctl(uintptr(c.fd), setMSRs, uintptr(unsafe.Pointer(&buf[0])))
	if err != nil {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_MSRS: %w", c.ID, err)
	}
	if int(n) != len(msrs) {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_MSRS set %d of %d (MSR %#x refused)", c.ID, n, len(msrs), msrs[n].Index)
	}
	return nil
}

// SetMPStateUninitialized parks an AP until INIT/SIPI from the BSP.
func (c *VCPU) SetMPStateUninitialized() error {
	s := uint32(mpStateUninitialized)
	return c.ptrIoctl(setMPState, unsafe.Pointer(&s), "KVM_SET_MP_STATE")
}

// MPState is KVM_GET_MP_STATE.
func (c *VCPU) MPState() (uint32, error) {
	var s uint32
	return s, c.ptrIoctl(getMPState, unsafe.Pointer(&s), "KVM_GET_MP_STATE")
}

// Events is struct kvm_vcpu_events, kept opaque but for the exception
// fields the hv uses to inject a fault.
type Events struct {
	ExcInjected  uint8
	ExcNr        uint8
	ExcHasError  uint8
	ExcPending   uint8
	ExcErrorCode uint32
	_            [56]byte
}

// VCPUEvents is KVM_GET_VCPU_EVENTS.
func (c *VCPU) VCPUEvents() (Events, error) {
	var e Events
	return e, c.ptrIoctl(getVCPUEvents, unsafe.Pointer(&e), "KVM_GET_VCPU_EVENTS")
}

// SetVCPUEvents is KVM_SET_VCPU_EVENTS.
func (c *VCPU) SetVCPUEvents(e Events) error {
	return c.ptrIoctl(setVCPUEvents, unsafe.Pointer(&e), "KVM_SET_VCPU_EVENTS")
}

const (
	getLAPIC = 0x8400ae8e
	setLAPIC = 0x4400ae8f
)

// LAPICState is struct kvm_lapic_state: the 1 KiB register page.
type LAPICState [1024]byte

// LAPIC is KVM_GET_LAPIC.
func (c *VCPU) LAPIC() (*LAPICState, error) {
	s := new(LAPICState)
	return s, c.ptrIoctl(getLAPIC, unsafe.Pointer(s), "KVM_GET_LAPIC")
}

// SetLAPIC is KVM_SET_LAPIC.
func (c *VCPU) SetLAPIC(s *LAPICState) error {
	return c.ptrIoctl(setLAPIC, unsafe.Pointer(s), "KVM_SET_LAPIC")
}

const getFPU = 0x81a0ae8c

// FPUStatus returns the x87 status word from KVM_GET_FPU.
func (c *VCPU) FPUStatus() (uint16, error) {
	f, err := c.FPU()
	return f.FSW, err
}
