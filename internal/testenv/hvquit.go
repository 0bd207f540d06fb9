package testenv

import (
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// QuitOnCancel makes an hv command whose context ends get SIGQUIT, with
// GOTRACEBACK=all, instead of SIGKILL: the failure then shows every
// goroutine, the vCPU threads' among them (WaitDelay kills it if the dump
// itself hangs).
func QuitOnCancel(cmd *exec.Cmd) {
	cmd.Env = append(cmd.Environ(), "GOTRACEBACK=all")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 5 * time.Second
}

// StuckInKVMRun reports whether an hv's SIGQUIT dump shows every vCPU
// (each goroutine in vm.(*VM).runVCPU) inside KVM_RUN. For a micro-guest
// that does port I/O every few microseconds and has been silent until its
// bound, that means KVM returned no exit for that long: the nested lab's
// kvm-amd on TCG has done so (mid-line stalls, docs/kvm-notes.md), a KVM
// on hardware must not. A vCPU blocked anywhere in the hv is the hv's.
func StuckInKVMRun(dump string) bool {
	vcpus := 0
	for _, g := range strings.Split(dump, "\ngoroutine ")[1:] {
		if !strings.Contains(g, "/hv/vm.(*VM).runVCPU(") {
			continue
		}
		vcpus++
		header, _, _ := strings.Cut(g, "\n")
		if !strings.Contains(header, "[syscall") || !strings.Contains(g, "/hv/kvm.(*VCPU).Run(") {
			return false
		}
	}
	return vcpus > 0
}

// LabLoss reports whether a micro-guest run that went wrong was spoiled by
// the nested lab's kvm-amd on TCG rather than by the hv, and so should run
// once more: only in the lab, only on a first try, and after logging why.
// The lab spoils a run two ways (docs/kvm-notes.md): it holds every vCPU
// inside KVM_RUN with no exit until the bound (timedOut, and the hv's
// SIGQUIT dump reads StuckInKVMRun), or it ends the guest in a triple fault
// early in a run. The micro-guests load an IDT that reports any exception,
// so a triple fault is a failure to deliver one; the lab has been seen to
// do that under QEMU too. A guest that faults again on its second run
// stands, so a test that wants a triple fault still gets it.
func LabLoss(t interface{ Logf(string, ...any) }, try int, timedOut bool, stderr string) bool {
	if !InLab() || try > 1 {
		return false
	}
	switch {
	case timedOut && StuckInKVMRun(stderr):
		t.Logf("the lab's KVM held a vCPU in KVM_RUN until the bound (docs/kvm-notes.md); running it once more. The hv's dump:\n%s", stderr)
		return true
	case !timedOut && strings.Contains(stderr, "triple fault (KVM_EXIT_SHUTDOWN)"):
		t.Logf("the guest triple-faulted in the lab, whose KVM has lost exceptions before (docs/kvm-notes.md); running it once more. The hv's stderr:\n%s", stderr)
		return true
	}
	return false
}
