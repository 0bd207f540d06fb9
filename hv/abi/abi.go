// Package abi is the single source of truth for the guest interface that
// xeno's hypervisor offers: release numbers, the interface table and its
// compat rules, the CPUID leaves, the I/O ports and the info-port selectors.
// The hv, the toolstack and the guest init all import it, so a change here
// is, by definition, an interface change. docs/abi.md describes the same
// facts for people; keep the two in step.
package abi

// These are stamped at build time with
//
//	-ldflags "-X github.com/xeno-hv/xeno/hv/abi.release=1.2.3 -X ...buildID=..."
//
// so that one source tree can be built as several releases. They are
// unexported variables because -X cannot set constants, and nothing but the
// linker should change them.
var (
	release   = "1.2.0"
	buildID   = "unstamped"
	changeset = "unknown"
)

// Arch is the architecture suffix of capability strings, as in Xen's
// "xen-3.0-x86_64".
const Arch = "x86_64"

// CPUID leaves. The KVM signature stays at 0x40000000 so that Linux still
// finds kvmclock and its PV features; xeno's own leaves live in a block of
// their own, where no other hypervisor signature looks.
const (
	CPUIDKVMBase    = 0x40000000
	CPUIDXenoBase   = 0x40000100 // EBX,ECX,EDX = "XenoHVXenoHV", EAX = max leaf
	CPUIDXenoVer    = 0x40000101 // see VersionLeaf
	CPUIDXenoMax    = CPUIDXenoVer
	CPUIDSignature  = "XenoHVXenoHV"
	CPUIDFlagDev    = 1 << 0 // the hv is a -dev (volatile) build
	CPUIDFlagCompat = 1 << 1 // this domain runs in compat mode
	// CPUIDFlagSyscallFixup asks the xeno guest kernel to finish user-mode
	// SYSCALLs in its page-fault handler: set only where KVM is the
	// software kvm_pvm, which delivers them as a #PF at LSTAR
	// (docs/kvm-notes.md). It says nothing about the interface, so every
	// interface line may carry it.
	CPUIDFlagSyscallFixup = 1 << 2
)

// I/O ports of the xeno devices. They sit in an otherwise unused range
// below the PCI config ports, so no legacy device or probe of Linux's
// touches them.
const (
	PortInfoSelect = 0x0e10 // outw: select an info item, resets the read offset
	PortInfoData   = 0x0e12 // inb: next byte of the selected item, 0 past its end
	PortInfoLen    = 0x0e14 // inl: length of the selected item, LenUnsupported if none
	PortConsole    = 0x0e18 // outb: one byte to the domain console (interface 1.0)
	PortShutdown   = 0x0e19 // outb: ShutdownPoweroff/Reboot/Crash (interface 1.2)
	PortBootTimer  = 0x0e1a // outb: any value, marks "init started" (interface 1.2)
	PortFirst      = 0x0e10
	PortLast       = 0x0e1f
)

// ChannelPort is the vsock port of xeno-init's command channel (a
// line protocol: docs/xl.md, "xl query"), and the host port xeno-init
// announces itself to once it listens. It is a contract between
// xeno-init and xl, carried by the virtio-vsock device; the hv does not
// look at it.
const ChannelPort = 1024

// LenUnsupported is what PortInfoLen answers for a selector the admitted
// interface does not have. It is also what an absent device reads as
// (all ones), so a guest needs only one test.
const LenUnsupported = 0xffffffff

// Info-port selectors.
const (
	SelSignature    = 0x00 // "XenoHV"
	SelRelease      = 0x01 // "1.2.3" or "1.3.0-dev": the running point release
	SelExtraversion = 0x02 // ".3" or ".0-dev", as Xen's xen_extraversion
	SelChangeset    = 0x03
	SelBuildID      = 0x04
	SelCaps         = 0x05 // "xeno-1.2-x86_64 xeno-1.1-x86_64 ..."
	SelUUID         = 0x06
	SelName         = 0x07
	SelInterface    = 0x08 // admitted interface, e.g. "1.1 compat" or "1.2"
	SelUptime       = 0x09 // interface 1.3: ns since the domain started, decimal
)

// Shutdown reasons written to PortShutdown.
const (
	ShutdownPoweroff = 0
	ShutdownReboot   = 1
	ShutdownCrash    = 2
)

// Entry registers: at the kernel's entry point the hv also passes the
// admitted interface in registers, as the 2004 thread proposed, so that a
// guest can decide before it has touched a single port.
const (
	EntryMagic = 0x4f4e4558 // R8 = "XENO" as little-endian bytes
	// R9 = MAJOR<<16 | MINOR of the admitted interface
	// R10 = flags, CPUIDFlagDev | CPUIDFlagCompat
)

// Domain limits. The hv refuses a domain outside them, and the toolstack
// checks a config against the same numbers before it starts anything.
const (
	// MaxVCPUs is what the hv is built and tested for. The ACPI MADT it
	// writes could name up to 254 CPUs (xAPIC ID 0xff is the broadcast
	// address), so raising this is a decision, not a rewrite.
	MaxVCPUs = 64
	// Guest RAM in MiB: below 16 MiB there is no room for the kernel's
	// own decompression, above 1 TiB no host here has it.
	MinMemoryMiB = 16
	MaxMemoryMiB = 1 << 20
)

// Feature is one thing an interface version gives the guest.
type Feature int

const (
	FeatCPUID      Feature = iota // the 0x40000100 leaves
	FeatConsole                   // PortConsole
	FeatInfo                      // the info port, selectors 0x00-0x08
	FeatShutdown                  // PortShutdown
	FeatBootTimer                 // PortBootTimer
	FeatInfoUptime                // SelUptime
)

func (f Feature) String() string {
	switch f {
	case FeatCPUID:
		return "cpuid-leaves"
	case FeatConsole:
		return "console-port"
	case FeatInfo:
		return "info-port"
	case FeatShutdown:
		return "shutdown-port"
	case FeatBootTimer:
		return "boot-timer-port"
	case FeatInfoUptime:
		return "info-uptime"
	}
	return "unknown-feature"
}
