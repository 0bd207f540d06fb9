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

// LabStall is what a test logs before it runs again a micro-guest that
// StuckInKVMRun in the lab; it returns whether to run it again: once, and
// only in the lab.
func LabStall(t interface{ Logf(string, ...any) }, try int, dump string) bool {
	if !InLab() || try > 1 || !StuckInKVMRun(dump) {
		return false
	}
	t.Logf("the lab's KVM held a vCPU in KVM_RUN until the bound (docs/kvm-notes.md); running it once more. The hv's dump:\n%s", dump)
	return true
}
