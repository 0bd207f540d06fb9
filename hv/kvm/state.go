package kvm

import (
	"fmt"
	"unsafe"
)

// The state ioctls save and restore use (linux/kvm.h, x86-64). Each
// number encodes the size of its struct: state_test.go checks them
// against the Go types and the uapi sizes.
const (
	getMSRs       = 0xc008ae88 // _IOWR(0x88, struct kvm_msrs)
	setFPU        = 0x41a0ae8d // _IOW(0x8d, struct kvm_fpu)
	getIRQChip    = 0xc208ae62 // _IOWR(0x62, struct kvm_irqchip)
	setIRQChip    = 0x8208ae63 // _IOR(0x63, struct kvm_irqchip): sic, the header's direction
	setClock      = 0x4030ae7b // _IOW(0x7b, struct kvm_clock_data)
	getClock      = 0x8030ae7c // _IOR(0x7c, struct kvm_clock_data)
	getPIT2       = 0x8070ae9f // _IOR(0x9f, struct kvm_pit_state2)
	setPIT2       = 0x4070aea0 // _IOW(0xa0, struct kvm_pit_state2)
	getDebugRegs  = 0x8080aea1 // _IOR(0xa1, struct kvm_debugregs)
	setDebugRegs  = 0x4080aea2 // _IOW(0xa2, struct kvm_debugregs)
	setTSCKHz     = 0xaea2     // _IO(0xa2)
	getTSCKHz     = 0xaea3     // _IO(0xa3)
	getXSave      = 0x9000aea4 // _IOR(0xa4, struct kvm_xsave)
	setXSave      = 0x5000aea5 // _IOW(0xa5, struct kvm_xsave)
	getXCRs       = 0x8188aea6 // _IOR(0xa6, struct kvm_xcrs)
	setXCRs       = 0x4188aea7 // _IOW(0xa7, struct kvm_xcrs)
	getXSave2     = 0x9000aecf // _IOR(0xcf, struct kvm_xsave)
	xsaveBaseSize = 4096       // struct kvm_xsave without extra[]
	// MaxXSave bounds the XSAVE area the hv accepts from KVM or a
	// snapshot: AMX's tile data makes it about 11 KiB today.
	MaxXSave = 64 << 10
)

// Capabilities of the state ioctls (KVM_CAP_*).
const (
	CapAdjustClock = 39
	CapVCPUEvents  = 41
	CapDebugRegs   = 50
	CapXSave       = 55
	CapXCRs        = 56
	CapTSCControl  = 60
	CapGetTSCKHz   = 61
	CapXSave2      = 208
)

// FPU is struct kvm_fpu, the legacy x87/SSE state: what KVM_GET_FPU
// gives where the host has no XSAVE.
type FPU struct {
	FPR        [8][16]byte
	FCW, FSW   uint16
	FTWX, _    uint8
	LastOpcode uint16
	LastIP     uint64
	LastDP     uint64
	XMM        [16][16]byte
	MXCSR      uint32
	_          uint32
}

// XCR is struct kvm_xcr.
type XCR struct {
	XCR   uint32
	_     uint32
	Value uint64
}

// XCRs is struct kvm_xcrs.
type XCRs struct {
	N     uint32
	Flags uint32
	XCRs  [16]XCR
	_     [16]uint64
}

// DebugRegs is struct kvm_debugregs.
type DebugRegs struct {
	DB    [4]uint64
	DR6   uint64
	DR7   uint64
	Flags uint64
	_     [9]uint64
}

// IRQChip is struct kvm_irqchip: Chip 0 is the master PIC, 1 the slave,
// 2 the IOAPIC; Data is the union, kept as KVM gives it.
type IRQChip struct {
	Chip uint32
	_    uint32
	Data [512]byte
}

// The irqchips of KVM_GET_IRQCHIP.
const (
	ChipPICMaster = irqchipPICMaster
	ChipPICSlave  = irqchipPICSlave
	ChipIOAPIC    = irqchipIOAPIC
)

// PITState is struct kvm_pit_state2, kept opaque: three 24-byte channel
// states, flags and reserved words.
type PITState [112]byte

// Clock is struct kvm_clock_data.
type Clock struct {
	Clock    uint64
	Flags    uint32
	_        uint32
	Realtime uint64
	HostTSC  uint64
	_        [4]uint32
}

// Check is KVM_CHECK_EXTENSION on the VM: some capabilities (XSAVE2's
// size) are answered per VM.
func (vm *VM) Check(c int) int {
	r, err := ioctl(uintptr(vm.fd), checkExtension, uintptr(c))
	if err != nil {
		return 0
	}
	return int(r)
}

func (vm *VM) ptrIoctl(req uintptr, p unsafe.Pointer, name string) error {
	if _, err := ioctl(uintptr(vm.fd), req, uintptr(p)); err != nil {
		return fmt.Errorf("kvm: %s: %w", name, err)
	}
	return nil
}

// IRQChip is KVM_GET_IRQCHIP of chip.
func (vm *VM) IRQChip(chip uint32) (*IRQChip, error) {
	c := &IRQChip{Chip: chip}
	return c, vm.ptrIoctl(getIRQChip, unsafe.Pointer(c), fmt.Sprintf("KVM_GET_IRQCHIP %d", chip))
}

// SetIRQChip is KVM_SET_IRQCHIP.
func (vm *VM) SetIRQChip(c *IRQChip) error {
	return vm.ptrIoctl(setIRQChip, unsafe.Pointer(c), fmt.Sprintf("KVM_SET_IRQCHIP %d", c.Chip))
}

// PIT2 is KVM_GET_PIT2.
func (vm *VM) PIT2() (*PITState, error) {
	s := new(PITState)
	return s, vm.ptrIoctl(getPIT2, unsafe.Pointer(s), "KVM_GET_PIT2")
}

// SetPIT2 is KVM_SET_PIT2.
func (vm *VM) SetPIT2(s *PITState) error {
	return vm.ptrIoctl(setPIT2, unsafe.Pointer(s), "KVM_SET_PIT2")
}

// Clock is KVM_GET_CLOCK: the kvmclock's value the guest sees now.
func (vm *VM) Clock() (Clock, error) {
	var c Clock
	return c, vm.ptrIoctl(getClock, unsafe.Pointer(&c), "KVM_GET_CLOCK")
}

// SetClock is KVM_SET_CLOCK with the clock value alone: the restored
// guest's kvmclock goes on from where it was saved. The flags KVM gave
// (realtime, host TSC) describe the saving host and are not passed.
func (vm *VM) SetClock(c Clock) error {
	c2 := Clock{Clock: c.Clock}
	return vm.ptrIoctl(setClock, unsafe.Pointer(&c2), "KVM_SET_CLOCK")
}

// XSaveSize is how many bytes KVM_GET_XSAVE2 writes for this VM, 0 where
// the host has no XSAVE.
func (vm *VM) XSaveSize() int {
	if !vm.sys.Has(CapXSave) {
		return 0
	}
	if n := vm.Check(CapXSave2); n > xsaveBaseSize {
		return n
	}
	return xsaveBaseSize
}

// XSave is KVM_GET_XSAVE, or KVM_GET_XSAVE2 when size (XSaveSize) is
// beyond struct kvm_xsave's 4096 bytes.
func (c *VCPU) XSave(size int) ([]byte, error) {
	if size < xsaveBaseSize || size > MaxXSave {
		return nil, fmt.Errorf("kvm: vCPU %d: XSAVE area of %d bytes: want %d to %d", c.ID, size, xsaveBaseSize, MaxXSave)
	}
	b := make([]byte, size)
	if size > xsaveBaseSize {
		return b, c.ptrIoctl(getXSave2, unsafe.Pointer(&b[0]), "KVM_GET_XSAVE2")
	}
	return b, c.ptrIoctl(getXSave, unsafe.Pointer(&b[0]), "KVM_GET_XSAVE")
}

// SetXSave is KVM_SET_XSAVE. KVM reads as many bytes as KVM_CAP_XSAVE2
// says (size), so b is copied into a buffer of that size: a shorter one
// from an older host is zero-extended, a longer one refused.
func (c *VCPU) SetXSave(b []byte, size int) error {
	if size < xsaveBaseSize || size > MaxXSave {
		return fmt.Errorf("kvm: vCPU %d: XSAVE area of %d bytes: want %d to %d", c.ID, size, xsaveBaseSize, MaxXSave)
	}
	if len(b) < xsaveBaseSize || len(b) > size {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_XSAVE: %d bytes of state, this host takes %d to %d", c.ID, len(b), xsaveBaseSize, size)
	}
	buf := make([]byte, size)
	copy(buf, b)
	return c.ptrIoctl(setXSave, unsafe.Pointer(&buf[0]), "KVM_SET_XSAVE")
}

// FPU is KVM_GET_FPU.
func (c *VCPU) FPU() (FPU, error) {
	var f FPU
	return f, c.ptrIoctl(getFPU, unsafe.Pointer(&f), "KVM_GET_FPU")
}

// SetFPU is KVM_SET_FPU.
func (c *VCPU) SetFPU(f FPU) error {
	return c.ptrIoctl(setFPU, unsafe.Pointer(&f), "KVM_SET_FPU")
}

// XCRs is KVM_GET_XCRS.
func (c *VCPU) XCRs() (XCRs, error) {
	var x XCRs
	return x, c.ptrIoctl(getXCRs, unsafe.Pointer(&x), "KVM_GET_XCRS")
}

// SetXCRs is KVM_SET_XCRS.
func (c *VCPU) SetXCRs(x XCRs) error {
	if x.N > uint32(len(x.XCRs)) {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_XCRS: %d XCRs, at most %d", c.ID, x.N, len(x.XCRs))
	}
	return c.ptrIoctl(setXCRs, unsafe.Pointer(&x), "KVM_SET_XCRS")
}

// DebugRegs is KVM_GET_DEBUGREGS.
func (c *VCPU) DebugRegs() (DebugRegs, error) {
	var d DebugRegs
	return d, c.ptrIoctl(getDebugRegs, unsafe.Pointer(&d), "KVM_GET_DEBUGREGS")
}

// SetDebugRegs is KVM_SET_DEBUGREGS.
func (c *VCPU) SetDebugRegs(d DebugRegs) error {
	return c.ptrIoctl(setDebugRegs, unsafe.Pointer(&d), "KVM_SET_DEBUGREGS")
}

// SetMPState is KVM_SET_MP_STATE.
func (c *VCPU) SetMPState(s uint32) error {
	return c.ptrIoctl(setMPState, unsafe.Pointer(&s), "KVM_SET_MP_STATE")
}

// TSCKHz is KVM_GET_TSC_KHZ: the guest's TSC rate.
func (c *VCPU) TSCKHz() (uint32, error) {
	r, err := ioctl(uintptr(c.fd), getTSCKHz, 0)
	if err != nil {
		return 0, fmt.Errorf("kvm: vCPU %d: KVM_GET_TSC_KHZ: %w", c.ID, err)
	}
	return uint32(r), nil
}

// SetTSCKHz is KVM_SET_TSC_KHZ.
func (c *VCPU) SetTSCKHz(khz uint32) error {
	if _, err := ioctl(uintptr(c.fd), setTSCKHz, uintptr(khz)); err != nil {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_TSC_KHZ %d: %w", c.ID, khz, err)
	}
	return nil
}

// MSRs is KVM_GET_MSRS of indices. KVM stops at the first MSR it cannot
// read and returns how many it read; that one is skipped and the rest
// asked again, so the result is every MSR of indices that this vCPU
// really has, in order.
func (c *VCPU) MSRs(indices []uint32) ([]MSR, error) {
	if len(indices) > maxMSRIndices {
		return nil, fmt.Errorf("kvm: vCPU %d: KVM_GET_MSRS: %d MSRs, at most %d", c.ID, len(indices), maxMSRIndices)
	}
	var out []MSR
	for len(indices) > 0 {
		buf := make([]byte, 8+16*len(indices))
		*(*uint32)(unsafe.Pointer(&buf[0])) = uint32(len(indices))
		for i, idx := range indices {
			*(*uint32)(unsafe.Pointer(&buf[8+16*i])) = idx
		}
		n, err := ioctl(uintptr(c.fd), getMSRs, uintptr(unsafe.Pointer(&buf[0])))
		if err != nil {
			return nil, fmt.Errorf("kvm: vCPU %d: KVM_GET_MSRS: %w", c.ID, err)
		}
		if int(n) > len(indices) {
			return nil, fmt.Errorf("kvm: vCPU %d: KVM_GET_MSRS read %d of %d", c.ID, n, len(indices))
		}
		for i := 0; i < int(n); i++ {
			out = append(out, *(*MSR)(unsafe.Pointer(&buf[8+16*i])))
		}
		if int(n) == len(indices) {
			break
		}
		indices = indices[n+1:] // indices[n] cannot be read: skip it
	}
	return out, nil
}
