package kvm

import (
	"testing"
	"unsafe"
)

// TestStateLayouts checks each state struct against its size in the
// uapi headers (linux/kvm.h, asm/kvm.h) and against the size its ioctl
// numbers encode (bits 16-29 of an _IOR/_IOW/_IOWR number), so that a
// wrong field or a wrong number fails here and not in a guest.
func TestStateLayouts(t *testing.T) {
	ioSize := func(req uintptr) uintptr { return req >> 16 & 0x3fff }
	for _, c := range []struct {
		name string
		size uintptr // from the uapi header
		got  uintptr
		reqs []uintptr
	}{
		{"kvm_regs", 144, unsafe.Sizeof(Regs{}), []uintptr{getRegs, setRegs}},
		{"kvm_sregs", 312, unsafe.Sizeof(Sregs{}), []uintptr{getSregs, setSregs}},
		{"kvm_fpu", 416, unsafe.Sizeof(FPU{}), []uintptr{getFPU, setFPU}},
		{"kvm_xsave", 4096, xsaveBaseSize, []uintptr{getXSave, setXSave, getXSave2}},
		{"kvm_xcrs", 392, unsafe.Sizeof(XCRs{}), []uintptr{getXCRs, setXCRs}},
		{"kvm_msrs", 8, 8, []uintptr{getMSRs, setMSRs}},
		{"kvm_msr_entry", 16, unsafe.Sizeof(MSR{}), nil},
		{"kvm_lapic_state", 1024, unsafe.Sizeof(LAPICState{}), []uintptr{getLAPIC, setLAPIC}},
		{"kvm_mp_state", 4, 4, []uintptr{getMPState, setMPState}},
		{"kvm_vcpu_events", 64, unsafe.Sizeof(Events{}), []uintptr{getVCPUEvents, setVCPUEvents}},
		{"kvm_debugregs", 128, unsafe.Sizeof(DebugRegs{}), []uintptr{getDebugRegs, setDebugRegs}},
		{"kvm_irqchip", 520, unsafe.Sizeof(IRQChip{}), []uintptr{getIRQChip, setIRQChip}},
		{"kvm_pit_state2", 112, unsafe.Sizeof(PITState{}), []uintptr{getPIT2, setPIT2}},
		{"kvm_clock_data", 48, unsafe.Sizeof(Clock{}), []uintptr{getClock, setClock}},
		{"kvm_userspace_memory_region", 32, unsafe.Sizeof(memRegion{}), []uintptr{setUserMemoryRegion}},
		{"kvm_dirty_log", 16, unsafe.Sizeof(dirtyLog{}), []uintptr{getDirtyLog}},
	} {
		if c.got != c.size {
			t.Errorf("%s: Go type is %d bytes, the header's %d", c.name, c.got, c.size)
		}
		for _, r := range c.reqs {
			if ioSize(r) != c.size {
				t.Errorf("%s: ioctl %#x encodes %d bytes, want %d", c.name, r, ioSize(r), c.size)
			}
			if r>>8&0xff != 0xae {
				t.Errorf("%s: ioctl %#x is not KVMIO's", c.name, r)
			}
		}
	}
	// The numbers proper: (direction, nr) of each, from the header.
	const ior, iow, iowr = 2, 1, 3
	for _, c := range []struct {
		req     uintptr
		dir, nr uintptr
	}{
		{getMSRs, iowr, 0x88}, {setMSRs, iow, 0x89}, {getFPU, ior, 0x8c}, {setFPU, iow, 0x8d},
		{getIRQChip, iowr, 0x62}, {setIRQChip, ior, 0x63}, {setClock, iow, 0x7b}, {getClock, ior, 0x7c},
		{getPIT2, ior, 0x9f}, {setPIT2, iow, 0xa0}, {getDebugRegs, ior, 0xa1}, {setDebugRegs, iow, 0xa2},
		{getXSave, ior, 0xa4}, {setXSave, iow, 0xa5}, {getXCRs, ior, 0xa6}, {setXCRs, iow, 0xa7},
		{getXSave2, ior, 0xcf}, {getLAPIC, ior, 0x8e}, {setLAPIC, iow, 0x8f},
		{getMPState, ior, 0x98}, {setMPState, iow, 0x99}, {getVCPUEvents, ior, 0x9f}, {setVCPUEvents, iow, 0xa0},
		{setTSCKHz, 0, 0xa2}, {getTSCKHz, 0, 0xa3},
		{setUserMemoryRegion, iow, 0x46}, {getDirtyLog, iow, 0x42},
	} {
		if c.req>>30 != c.dir || c.req&0xff != c.nr {
			t.Errorf("ioctl %#x: direction %d nr %#x, want %d %#x", c.req, c.req>>30, c.req&0xff, c.dir, c.nr)
		}
	}
}

// TestFPUFields checks the offsets the x87 status word and MXCSR have in
// struct kvm_fpu, which FPUStatus and a restore rely on.
func TestFPUFields(t *testing.T) {
	var f FPU
	if off := unsafe.Offsetof(f.FSW); off != 130 {
		t.Errorf("fsw at %d, want 130", off)
	}
	if off := unsafe.Offsetof(f.LastIP); off != 136 {
		t.Errorf("last_ip at %d, want 136", off)
	}
	if off := unsafe.Offsetof(f.MXCSR); off != 408 {
		t.Errorf("mxcsr at %d, want 408", off)
	}
	var x XCRs
	if off := unsafe.Offsetof(x.XCRs); off != 8 {
		t.Errorf("xcrs at %d, want 8", off)
	}
}

// TestDirtyLogFields checks the offsets of struct kvm_dirty_log and
// struct kvm_userspace_memory_region that the dirty logging relies on:
// the bitmap pointer after the slot and its padding, the flags word
// (KVM_MEM_LOG_DIRTY_PAGES = bit 0) after the slot.
func TestDirtyLogFields(t *testing.T) {
	var l dirtyLog
	if off := unsafe.Offsetof(l.bitmap); off != 8 {
		t.Errorf("dirty_bitmap at %d, want 8", off)
	}
	var r memRegion
	for _, c := range []struct {
		name      string
		off, want uintptr
	}{
		{"flags", unsafe.Offsetof(r.flags), 4}, {"guest_phys_addr", unsafe.Offsetof(r.guestPhys), 8},
		{"memory_size", unsafe.Offsetof(r.size), 16}, {"userspace_addr", unsafe.Offsetof(r.uaddr), 24},
	} {
		if c.off != c.want {
			t.Errorf("%s at %d, want %d", c.name, c.off, c.want)
		}
	}
	if memLogDirtyPages != 1 {
		t.Errorf("KVM_MEM_LOG_DIRTY_PAGES is %d, the header's 1<<0", memLogDirtyPages)
	}
	var vm VM
	if err := vm.DirtyLog(0, 65, make([]uint64, 1)); err == nil {
		t.Error("a bitmap of 1 word for 65 pages was taken")
	}
	if err := vm.ClearDirtyLog(0, 65, make([]uint64, 1)); err == nil {
		t.Error("a bitmap of 1 word for 65 pages was cleared")
	}
	// struct kvm_clear_dirty_log: slot, num_pages, first_page, bitmap
	// (24 bytes, as KVM_CLEAR_DIRTY_LOG encodes); kvm_enable_cap: cap,
	// flags, args[4], pad[64] (104, as KVM_ENABLE_CAP encodes).
	ioSize := func(req uintptr) uintptr { return req >> 16 & 0x3fff }
	var c clearLog
	if unsafe.Sizeof(c) != 24 || ioSize(clearDirtyLog) != 24 || unsafe.Offsetof(c.first) != 8 || unsafe.Offsetof(c.bitmap) != 16 {
		t.Errorf("kvm_clear_dirty_log: %d bytes, first_page at %d, bitmap at %d, ioctl size %d", unsafe.Sizeof(c), unsafe.Offsetof(c.first), unsafe.Offsetof(c.bitmap), ioSize(clearDirtyLog))
	}
	var e kvmEnableCap
	if unsafe.Sizeof(e) != 104 || ioSize(enableCap) != 104 || unsafe.Offsetof(e.args) != 8 {
		t.Errorf("kvm_enable_cap: %d bytes, args at %d, ioctl size %d", unsafe.Sizeof(e), unsafe.Offsetof(e.args), ioSize(enableCap))
	}
}

func TestRawRoundTrip(t *testing.T) {
	r := Regs{RAX: 1, RIP: 0x1234, RFLAGS: 2}
	b := Raw(&r)
	if len(b) != 144 {
		t.Fatalf("%d bytes", len(b))
	}
	var got Regs
	if err := FromRaw(b, &got); err != nil || got != r {
		t.Fatalf("got %+v, %v", got, err)
	}
	if err := FromRaw(b[:143], &got); err == nil {
		t.Error("a short blob was taken")
	}
	if err := FromRaw(append(b, 0), &got); err == nil {
		t.Error("a long blob was taken")
	}
}
