package vm

import (
	"encoding/binary"
	"os"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/hv/kvm"
)

// SoftwareKVM reports whether /dev/kvm is the software kvm_pvm, which
// emulates guest CPL0 code and rejects a few instructions (see
// docs/kvm-notes.md). Only then does the hv hide the features below: on
// hardware KVM the guest gets everything KVM supports.
func SoftwareKVM() bool {
	_, err := os.Stat("/sys/module/kvm_pvm")
	return err == nil
}

// CPUID feature bits the hv may hide.
const (
	leaf1ECXCX16    = 1 << 13 // cmpxchg16b
	leaf1ECXPOPCNT  = 1 << 23
	leaf1ECXXSAVE   = 1 << 26
	leaf1ECXOSXSAVE = 1 << 27
	leaf7EBXSMAP    = 1 << 20 // clac/stac
	// leaf1ECXHypervisor is not in KVM_GET_SUPPORTED_CPUID: the VMM sets
	// it. Without it Linux looks for no hypervisor leaves at all, so it
	// finds neither KVM's (no kvmclock) nor xeno's.
	leaf1ECXHypervisor = 1 << 31
)

// cpuidConfig is what the CPUID table presents.
type cpuidConfig struct {
	build    abi.Build
	admitted abi.Interface
	compat   bool
	maskPVM  bool // hide what the software KVM's emulator rejects
}

// filterCPUID turns KVM_GET_SUPPORTED_CPUID into the table of one vCPU.
func filterCPUID(sup []kvm.CPUIDEntry, cfg cpuidConfig, apicID uint32) []kvm.CPUIDEntry {
	out := make([]kvm.CPUIDEntry, 0, len(sup)+2)
	for _, e := range sup {
		if e.Function >= abi.CPUIDXenoBase && e.Function <= abi.CPUIDXenoBase+0xff {
			continue // ours, below
		}
		switch e.Function {
		case 1:
			e.EBX = e.EBX&0x00ffffff | apicID<<24
			e.ECX |= leaf1ECXHypervisor
			if cfg.maskPVM {
				// The software KVM's emulator rejects lock cmpxchg16b
				// (Linux's SLUB and percpu use it when cx16 is set),
				// popcnt (hweight alternatives) and xsaves/xrstors (FPU
				// context switch); hiding the bits makes Linux take the
				// plain paths. OSXSAVE follows XSAVE.
				e.ECX &^= leaf1ECXCX16 | leaf1ECXPOPCNT | leaf1ECXXSAVE | leaf1ECXOSXSAVE
			}
		case 7:
			if cfg.maskPVM && e.Index == 0 {
				// clac/stac are rejected by the emulator: no SMAP.
				e.EBX &^= leaf7EBXSMAP
			}
		case 0xb, 0x1f:
			e.EDX = apicID
		case 0xd:
			if cfg.maskPVM {
				continue // no XSAVE, no XSAVE state leaf
			}
		}
		out = append(out, e)
	}
	le := binary.LittleEndian
	sig := []byte(abi.CPUIDSignature)
	base := kvm.CPUIDEntry{Function: abi.CPUIDXenoBase, EAX: abi.CPUIDXenoMax,
		EBX: le.Uint32(sig[0:]), ECX: le.Uint32(sig[4:]), EDX: le.Uint32(sig[8:])}
	r := cfg.build.Release
	flags := uint32(0)
	if r.Dev {
		flags |= abi.CPUIDFlagDev
	}
	if cfg.compat {
		flags |= abi.CPUIDFlagCompat
	}
	if cfg.maskPVM {
		flags |= abi.CPUIDFlagSyscallFixup
	}
	ver := kvm.CPUIDEntry{Function: abi.CPUIDXenoVer,
		EAX: uint32(r.Major)<<16 | uint32(r.Minor), EBX: uint32(r.Patch), ECX: flags, EDX: cfg.admitted.Word()}
	return append(out, base, ver)
}

// entryFlags is R10 at entry: the same flags as CPUID 0x40000101 ECX.
func entryFlags(cfg cpuidConfig) uint64 {
	f := uint64(0)
	if cfg.build.Release.Dev {
		f |= abi.CPUIDFlagDev
	}
	if cfg.compat {
		f |= abi.CPUIDFlagCompat
	}
	if cfg.maskPVM {
		f |= abi.CPUIDFlagSyscallFixup
	}
	return f
}
