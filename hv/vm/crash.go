package vm

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/xeno-hv/xeno/hv/control"
)

// crash ends the domain with reason crash and a register dump of c, on
// stderr and in the exit file's detail.
func (v *VM) crash(c *vcpu, why string) {
	detail := fmt.Sprintf("vCPU %d: %s", c.c.ID, why)
	if dump := v.dump(c); dump != "" {
		detail += "\n" + dump
	}
	v.logf("crash: %s", detail)
	v.stop(control.ReasonCrash, detail)
}

// ResetStateNote ends a dump whose registers are the vCPU's reset values.
const ResetStateNote = "these are the vCPU's reset values, not its state at the fault: KVM on AMD re-initializes a vCPU that triple-faults"

func (v *VM) dump(c *vcpu) string {
	r, err := c.c.Regs()
	if err != nil {
		return err.Error()
	}
	s, err := c.c.Sregs()
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "RIP=%016x RSP=%016x RFLAGS=%08x\n", r.RIP, r.RSP, r.RFLAGS)
	fmt.Fprintf(&b, "RAX=%016x RBX=%016x RCX=%016x RDX=%016x\n", r.RAX, r.RBX, r.RCX, r.RDX)
	fmt.Fprintf(&b, "RSI=%016x RDI=%016x RBP=%016x R8=%016x\n", r.RSI, r.RDI, r.RBP, r.R8)
	fmt.Fprintf(&b, "CR0=%08x CR2=%016x CR3=%016x CR4=%08x EFER=%x CS=%04x(l=%d)",
		s.CR0, s.CR2, s.CR3, s.CR4, s.EFER, s.CS.Selector, s.CS.L)
	if r.RIP == 0xfff0 && s.CS.Selector == 0xf000 {
		// svm.c's shutdown_interception INITs the vCPU before it reports
		// KVM_EXIT_SHUTDOWN (the VMCB is undefined after SHUTDOWN), so on
		// AMD hosts the faulting state is gone by the time we ask.
		b.WriteString("\n" + ResetStateNote)
	}
	rip := r.RIP + s.CS.Base
	if pa, ok := v.translate(s.CR0, s.CR3, s.CR4, rip); ok {
		if code, ok := v.mem.Slice(pa, 16); ok {
			fmt.Fprintf(&b, "\ncode at RIP (gpa %#x): % x", pa, code)
		}
	}
	return b.String()
}

// emulateRejected completes the two instructions the software KVM's
// emulator rejects but Linux cannot avoid, and reports false for anything
// else, which stays a crash:
//   - int3 (0xcc): RIP moves past it, as the trap leaves it, and #BP is
//     injected;
//   - fwait (0x9b): with no unmasked x87 exception pending (FSW.ES clear,
//     read with KVM_GET_FPU) it is a no-op, so RIP moves past it.
func (v *VM) emulateRejected(c *vcpu) bool {
	r, err := c.c.Regs()
	if err != nil {
		return false
	}
	s, err := c.c.Sregs()
	if err != nil {
		return false
	}
	pa, ok := v.translate(s.CR0, s.CR3, s.CR4, r.RIP+s.CS.Base)
	if !ok {
		return false
	}
	code, ok := v.mem.Slice(pa, 1)
	if !ok {
		return false
	}
	switch code[0] {
	case 0xcc:
		ev, err := c.c.VCPUEvents()
		if err != nil {
			return false
		}
		r.RIP++
		if c.c.SetRegs(r) != nil {
			return false
		}
		const vectorBP = 3
		ev.ExcInjected, ev.ExcNr, ev.ExcHasError, ev.ExcPending, ev.ExcErrorCode = 1, vectorBP, 0, 0, 0
		if c.c.SetVCPUEvents(ev) != nil {
			return false
		}
		v.bpOnce.Do(func() { v.logf("KVM's emulator rejected int3 at %#x; injecting #BP (logged once)", r.RIP-1) })
		return true
	case 0x9b:
		const fswES = 0x80
		fsw, err := c.c.FPUStatus()
		if err != nil || fsw&fswES != 0 {
			return false
		}
		r.RIP++
		if c.c.SetRegs(r) != nil {
			return false
		}
		v.fwaitOnce.Do(func() {
			v.logf("KVM's emulator rejected fwait at %#x; no x87 exception pending, skipped (logged once)", r.RIP-1)
		})
		return true
	}
	return false
}

// translate walks the guest's 4-level page tables (read-only, bounded to
// RAM) to find the physical address of linear address va.
func (v *VM) translate(cr0, cr3, cr4, va uint64) (uint64, bool) {
	const pg, pae = 1 << 31, 1 << 5
	if cr0&pg == 0 {
		return va, true
	}
	if cr4&pae == 0 {
		return 0, false // 32-bit paging: not used by xeno guests
	}
	table := cr3 &^ 0xfff
	for level := 3; level >= 0; level-- {
		idx := (va >> (12 + 9*uint(level))) & 0x1ff
		e, ok := v.mem.Slice(table+8*idx, 8)
		if !ok {
			return 0, false
		}
		pte := binary.LittleEndian.Uint64(e)
		if pte&1 == 0 {
			return 0, false
		}
		addr := pte & 0x000ffffffffff000
		if level > 0 && level < 3 && pte&0x80 != 0 {
			size := uint64(1) << (12 + 9*uint(level))
			return addr&^(size-1) | va&(size-1), true
		}
		table = addr
	}
	return table | va&0xfff, true
}
