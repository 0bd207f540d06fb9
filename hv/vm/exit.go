package vm

import (
	"fmt"

	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/hv/kvm"
)

// exitData is the part of a vCPU's kvm_run that handleExit reads:
// *kvm.VCPU after KVM_RUN, or a fake in tests.
type exitData interface {
	ExitReason() uint32
	IO() (kvm.IO, bool)
	MMIO() kvm.MMIO
	InternalError() (suberror uint32, data []uint64)
	SystemEvent() uint32
	FailEntry() uint64
}

// exitAction is what the vCPU loop does after an exit.
type exitAction int

const (
	exitContinue  exitAction = iota // enter the guest again
	exitStop                        // end the domain with reason and detail
	exitCrash                       // crash the domain with a register dump; detail says why
	exitEmulation                   // KVM's emulator rejected an instruction: complete it, or crash
)

// exitResult is handleExit's verdict on one exit.
type exitResult struct {
	action exitAction
	reason string // a control.Reason*, for exitStop
	detail string
}

func crashResult(format string, args ...any) exitResult {
	return exitResult{action: exitCrash, detail: fmt.Sprintf(format, args...)}
}

// handleExit serves one VM exit: port and MMIO accesses go to the buses.
// A device that ends the domain (the shutdown port, ACPI S5, the i8042
// reset) does it through its callback, and the vCPU loop then sees the
// domain has ended.
func (v *VM) handleExit(e exitData) exitResult {
	switch r := e.ExitReason(); r {
	case kvm.ExitIO:
		io, ok := e.IO()
		if !ok {
			return crashResult("KVM_EXIT_IO with a data window outside kvm_run")
		}
		for i := 0; i < io.Count; i++ {
			d := io.Data[i*io.Size : (i+1)*io.Size]
			v.access(&v.dev.pio, "port", uint64(io.Port), d, io.Out)
		}
	case kvm.ExitMMIO:
		m := e.MMIO()
		v.access(&v.dev.mmio, "mmio", m.Addr, m.Data, m.Write)
	case kvm.ExitHLT:
		// Only without an in-kernel LAPIC; nothing will wake this vCPU.
		return crashResult("vCPU halted with no interrupt source")
	case kvm.ExitShutdown:
		return crashResult("triple fault (KVM_EXIT_SHUTDOWN)")
	case kvm.ExitInternalError:
		sub, data := e.InternalError()
		why := fmt.Sprintf("KVM internal error, suberror %d", sub)
		if sub == kvm.InternalErrorEmulation {
			why = "instruction rejected by KVM's emulator (KVM_INTERNAL_ERROR_EMULATION)"
		}
		if len(data) > 0 {
			why += fmt.Sprintf(", data %x", data)
		}
		if sub == kvm.InternalErrorEmulation {
			return exitResult{action: exitEmulation, detail: why}
		}
		return crashResult("%s", why)
	case kvm.ExitFailEntry:
		return crashResult("VM entry failed, hardware reason %#x", e.FailEntry())
	case kvm.ExitSystemEvent:
		switch t := e.SystemEvent(); t {
		case 1:
			return exitResult{action: exitStop, reason: control.ReasonPoweroff, detail: "KVM system event: shutdown"}
		case 2:
			return exitResult{action: exitStop, reason: control.ReasonReboot, detail: "KVM system event: reset"}
		default:
			return crashResult("KVM system event %d", t)
		}
	case kvm.ExitIntr:
	default:
		return crashResult("unexpected KVM exit reason %d", r)
	}
	return exitResult{action: exitContinue}
}

// act carries out handleExit's result for vCPU c and reports whether c
// enters the guest again.
func (v *VM) act(c *vcpu, r exitResult) bool {
	switch r.action {
	case exitContinue:
		return true
	case exitEmulation:
		if v.emulateRejected(c) {
			return true
		}
		v.crash(c, r.detail)
	case exitCrash:
		v.crash(c, r.detail)
	case exitStop:
		v.stop(r.reason, r.detail)
	}
	return false
}
