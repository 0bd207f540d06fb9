package vm

import (
	"strings"
	"testing"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/hv/devstate"
	"github.com/xeno-hv/xeno/hv/kvm"
)

// goodMachine is a well-formed set of KVM sections for one vCPU, made
// the way Save makes them, from zeroed KVM structs.
func goodMachine(t *testing.T, edit func(*vcpuState, *irqchipState, *clockState)) map[string][]byte {
	t.Helper()
	var (
		regs  kvm.Regs
		sregs kvm.Sregs
		lapic kvm.LAPICState
		ev    kvm.Events
		fpu   kvm.FPU
		xcrs  kvm.XCRs
		pit   kvm.PITState
	)
	vs := vcpuState{Version: 1, Regs: kvm.Raw(&regs), Sregs: kvm.Raw(&sregs), LAPIC: kvm.Raw(&lapic),
		Events: kvm.Raw(&ev), FPU: kvm.Raw(&fpu), XCRs: kvm.Raw(&xcrs), MSRs: []msrJSON{{0x10, 5}}}
	ic := irqchipState{Version: 1}
	for chip, dst := range []*[]byte{&ic.PICMaster, &ic.PICSlave, &ic.IOAPIC} {
		c := kvm.IRQChip{Chip: uint32(chip)}
		*dst = kvm.Raw(&c)
	}
	clk := clockState{Version: 1, KVMClock: 1e9, UptimeNS: 5e9}
	if edit != nil {
		edit(&vs, &ic, &clk)
	}
	enc := func(x any) []byte {
		b, err := devstate.Encode("t", x)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return map[string][]byte{
		"vcpu.0": enc(&vs), kindIRQChip: enc(&ic), kindClock: enc(&clk),
		kindPIT: enc(&pitState{Version: 1, PIT: kvm.Raw(&pit)}),
	}
}

func TestDecodeMachine(t *testing.T) {
	m, err := decodeMachine(goodMachine(t, nil), 1, []uint32{0x10, 0x11})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.vcpus) != 1 || m.vcpus[0].fpu == nil || len(m.vcpus[0].msrs) != 1 || m.vcpus[0].msrs[0].Data != 5 || m.clock.UptimeNS != 5e9 {
		t.Errorf("decoded %+v", m)
	}
}

// TestDecodeMachineHostile: every bound a bent snapshot could cross is
// refused, with the part named, before anything reaches KVM.
func TestDecodeMachineHostile(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*vcpuState, *irqchipState, *clockState)
		want string
	}{
		{"short regs", func(v *vcpuState, _ *irqchipState, _ *clockState) { v.Regs = v.Regs[:100] }, "kvm.Regs: 100 bytes, want 144"},
		{"long lapic", func(v *vcpuState, _ *irqchipState, _ *clockState) { v.LAPIC = append(v.LAPIC, 0) }, "LAPICState: 1025 bytes"},
		{"no fpu", func(v *vcpuState, _ *irqchipState, _ *clockState) { v.FPU = nil }, "no FPU state"},
		{"both fpus", func(v *vcpuState, _ *irqchipState, _ *clockState) { v.XSave = make([]byte, 4096) }, "both"},
		{"xsave too big", func(v *vcpuState, _ *irqchipState, _ *clockState) {
			v.FPU, v.XSave = nil, make([]byte, kvm.MaxXSave+1)
		}, "XSAVE area of"},
		{"xsave too small", func(v *vcpuState, _ *irqchipState, _ *clockState) { v.FPU, v.XSave = nil, make([]byte, 100) }, "XSAVE area of 100"},
		{"too many xcrs", func(v *vcpuState, _ *irqchipState, _ *clockState) { v.XCRs[0] = 17 }, "17 XCRs"},
		{"foreign msr", func(v *vcpuState, _ *irqchipState, _ *clockState) { v.MSRs = []msrJSON{{0xc0000080, 0}} }, "MSR 0xc0000080"},
		{"too many msrs", func(v *vcpuState, _ *irqchipState, _ *clockState) {
			v.MSRs = []msrJSON{{0x10, 0}, {0x10, 0}, {0x10, 0}}
		}, "3 MSRs"},
		{"vcpu version", func(v *vcpuState, _ *irqchipState, _ *clockState) { v.Version = 3 }, "version 3"},
		{"chip swapped", func(_ *vcpuState, ic *irqchipState, _ *clockState) { ic.PICSlave, ic.IOAPIC = ic.IOAPIC, ic.PICSlave }, "chip 2's"},
		{"chip short", func(_ *vcpuState, ic *irqchipState, _ *clockState) { ic.IOAPIC = nil }, "irqchip 2"},
		{"negative uptime", func(_ *vcpuState, _ *irqchipState, c *clockState) { c.UptimeNS = -1 }, "uptime -1"},
	} {
		_, err := decodeMachine(goodMachine(t, c.edit), 1, []uint32{0x10, 0x11})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
	s := goodMachine(t, nil)
	s["vcpu.0"] = []byte(`{"version":1,"regs":"AAAA"`)
	if _, err := decodeMachine(s, 1, nil); err == nil || !strings.Contains(err.Error(), `section "vcpu.0"`) {
		t.Errorf("a cut vCPU section: %v", err)
	}
	if _, err := decodeMachine(goodMachine(t, nil), 2, []uint32{0x10}); err == nil || !strings.Contains(err.Error(), `"vcpu.1"`) {
		t.Errorf("a missing vCPU: %v", err)
	}
}

// FuzzRestoreState feeds arbitrary state to every port device's decoder
// and a vCPU's: each must refuse or accept without a panic, and a device
// that accepted must then serve the guest's accesses.
func FuzzRestoreState(f *testing.F) {
	f.Add([]byte(`{"version":1,"sel":1,"cur":"YWJj","off":1,"boot_timer_done":true}`))
	f.Add([]byte(`{"version":1,"ier":15,"lcr":128,"rx":"aGVsbG8="}`))
	f.Add([]byte(`{"version":1,"out":"VQ==","ctr":69,"pending":96}`))
	f.Add([]byte(`{"version":1,"regs":"","msrs":[{"index":16,"data":1}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		v := testVM(t, abi.Interface{Major: 1, Minor: 2})
		for _, d := range v.deviceStates() {
			_ = d.dev.RestoreState(b)
		}
		_, _ = decodeVCPU(b, []uint32{0x10})
		for _, port := range []uint16{0x3f8, 0x3fd, 0x60, 0x64, 0x71, abi.PortInfoLen, abi.PortInfoData, 0x600} {
			v.portIn(port, make([]byte, 4))
		}
		if err := v.saveDevices(func(string, []byte) error { return nil }); err != nil {
			t.Fatal(err)
		}
	})
}
