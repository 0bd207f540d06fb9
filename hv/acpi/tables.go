package acpi

import (
	"encoding/binary"
	"fmt"
)

// The fixed hardware the tables describe; the hv routes these ports to PM.
const (
	PM1aEvt = 0x600 // PM1a_EVT_BLK: PM1_STS (2 bytes) then PM1_EN (2 bytes)
	PM1aCnt = 0x604 // PM1a_CNT_BLK: PM1_CNT (2 bytes)
	// PM1aLen is PM's window from PM1aEvt: the two blocks are adjacent.
	PM1aLen = PM1aCnt + 2 - PM1aEvt
	SCIIRQ  = 9

	// S5SlpTyp is the SLP_TYP value that \_S5 tells the OS to write to
	// PM1_CNT for soft-off; onSleep receives it.
	S5SlpTyp = 5

	// ResetPort and ResetValue are the FADT RESET_REG: the i8042's command
	// port with the pulse-reset command, which the hv already implements
	// for reboot=k, so Linux's default ACPI reboot works too.
	ResetPort  = 0x64
	ResetValue = 0xfe

	// MaxCPUs: xAPIC ID 0xff is the broadcast address, so CPUs get IDs
	// 0..254.
	MaxCPUs = 254
	// MaxVirtio bounds the DSDT's device list (names VR00..VR1F).
	MaxVirtio = 32
	// IOAPICPins is the number of inputs of KVM's in-kernel IOAPIC.
	IOAPICPins = 24
)

// MMIODevice is one virtio-mmio window and its IOAPIC input.
type MMIODevice struct {
	Base, Size uint64
	IRQ        uint32
}

// Config describes the machine the tables announce.
type Config struct {
	CPUs       int
	SCIIRQ     uint8  // 0 means SCIIRQ
	PM1aEvt    uint16 // 0 means PM1aEvt
	PM1aCnt    uint16 // 0 means PM1aCnt
	IOAPICAddr uint32 // 0 means 0xfec00000
	LAPICAddr  uint32 // 0 means 0xfee00000
	Virtio     []MMIODevice
	OEMID      string // up to 6 characters; "" means "XENO"

	// I8042 announces an i8042 keyboard controller in IAPC_BOOT_ARCH. Leave
	// it false unless the hv emulates the controller's probe: Linux then
	// skips probing ports 0x60/0x64, which only costs boot time.
	I8042 bool
	// NoCOM1 leaves the PNP0501 device for COM1 out of the DSDT.
	NoCOM1 bool
}

const (
	rsdpLen = 36
	hdrLen  = 36
	fadtLen = 276
	facsLen = 64
)

// Build lays the tables out for guest-physical address base and returns
// them with the RSDP's address (base: the RSDP comes first, 16-byte
// aligned, so a scan of the BIOS area finds it).
func Build(cfg Config, base uint64) (blob []byte, rsdpAddr uint64, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, 0, err
	}
	if base%16 != 0 {
		return nil, 0, fmt.Errorf("acpi: base %#x is not 16-byte aligned", base)
	}

	// Layout: RSDP, FACS (64-byte aligned), DSDT, FADT, MADT, XSDT, RSDT.
	dsdt := buildDSDT(cfg)
	madt := buildMADT(cfg)
	off := uint64(rsdpLen)
	place := func(n int, align uint64) uint64 {
		off = (off + align - 1) &^ (align - 1)
		at := off
		off += uint64(n)
		return base + at
	}
	facsAt := place(facsLen, 64)
	dsdtAt := place(len(dsdt), 16)
	fadtAt := place(fadtLen, 16)
	madtAt := place(len(madt), 16)
	xsdtAt := place(hdrLen+8*2, 16)
	rsdtAt := place(hdrLen+4*2, 16)
	end := off
	if base+end > 1<<32 {
		return nil, 0, fmt.Errorf("acpi: tables at %#x..%#x do not fit below 4 GiB", base, base+end)
	}

	blob = make([]byte, end)
	put := func(at uint64, b []byte) { copy(blob[at-base:], b) }
	put(facsAt, buildFACS())
	put(dsdtAt, dsdt)
	put(fadtAt, buildFADT(cfg, facsAt, dsdtAt))
	put(madtAt, madt)
	xsdt := sdtHeader("XSDT", 1, cfg.OEMID)
	xsdt = binary.LittleEndian.AppendUint64(xsdt, fadtAt)
	xsdt = binary.LittleEndian.AppendUint64(xsdt, madtAt)
	put(xsdtAt, finishSDT(xsdt))
	rsdt := sdtHeader("RSDT", 1, cfg.OEMID)
	rsdt = binary.LittleEndian.AppendUint32(rsdt, uint32(fadtAt))
	rsdt = binary.LittleEndian.AppendUint32(rsdt, uint32(madtAt))
	put(rsdtAt, finishSDT(rsdt))
	put(base, buildRSDP(cfg.OEMID, rsdtAt, xsdtAt))
	return blob, base, nil
}

func (cfg Config) withDefaults() (Config, error) {
	if cfg.CPUs < 1 || cfg.CPUs > MaxCPUs {
		return cfg, fmt.Errorf("acpi: %d CPUs is out of range 1..%d", cfg.CPUs, MaxCPUs)
	}
	if len(cfg.Virtio) > MaxVirtio {
		return cfg, fmt.Errorf("acpi: %d virtio-mmio devices, at most %d", len(cfg.Virtio), MaxVirtio)
	}
	if cfg.SCIIRQ == 0 {
		cfg.SCIIRQ = SCIIRQ
	}
	if cfg.SCIIRQ >= 16 {
		return cfg, fmt.Errorf("acpi: SCI IRQ %d is not an ISA IRQ", cfg.SCIIRQ)
	}
	if cfg.PM1aEvt == 0 {
		cfg.PM1aEvt = PM1aEvt
	}
	if cfg.PM1aCnt == 0 {
		cfg.PM1aCnt = PM1aCnt
	}
	if cfg.IOAPICAddr == 0 {
		cfg.IOAPICAddr = 0xfec00000
	}
	if cfg.LAPICAddr == 0 {
		cfg.LAPICAddr = 0xfee00000
	}
	if cfg.OEMID == "" {
		cfg.OEMID = "XENO"
	}
	if len(cfg.OEMID) > 6 {
		return cfg, fmt.Errorf("acpi: OEM ID %q is longer than 6 characters", cfg.OEMID)
	}
	for i, d := range cfg.Virtio {
		switch {
		case d.Size == 0 || d.Base+d.Size > 1<<32 || d.Base+d.Size < d.Base:
			return cfg, fmt.Errorf("acpi: virtio-mmio %d: window %#x+%#x is not a 32-bit address range", i, d.Base, d.Size)
		case d.IRQ >= IOAPICPins:
			return cfg, fmt.Errorf("acpi: virtio-mmio %d: IRQ %d is beyond the IOAPIC's %d pins", i, d.IRQ, IOAPICPins)
		case d.IRQ == uint32(cfg.SCIIRQ) || d.IRQ == 0 || d.IRQ == 2:
			return cfg, fmt.Errorf("acpi: virtio-mmio %d: IRQ %d is taken by the SCI or the timer", i, d.IRQ)
		}
	}
	return cfg, nil
}

func pad(s string, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = ' '
	}
	copy(b, s)
	return b
}

func checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return -s
}

func buildRSDP(oem string, rsdt, xsdt uint64) []byte {
	b := make([]byte, rsdpLen)
	copy(b, "RSD PTR ")
	copy(b[9:15], pad(oem, 6))
	b[15] = 2 // ACPI 2.0+: the XSDT fields are valid
	binary.LittleEndian.PutUint32(b[16:], uint32(rsdt))
	binary.LittleEndian.PutUint32(b[20:], rsdpLen)
	binary.LittleEndian.PutUint64(b[24:], xsdt)
	b[8] = checksum(b[:20])
	b[32] = checksum(b)
	return b
}

// sdtHeader returns a table header with the length and checksum left for
// finishSDT.
func sdtHeader(sig string, rev byte, oem string) []byte {
	b := make([]byte, hdrLen)
	copy(b, sig)
	b[8] = rev
	copy(b[10:16], pad(oem, 6))
	copy(b[16:24], pad("XENOHV", 8))
	binary.LittleEndian.PutUint32(b[24:], 1) // OEM revision
	copy(b[28:32], "XENO")                   // creator ID
	binary.LittleEndian.PutUint32(b[32:], 1) // creator revision
	return b
}

func finishSDT(b []byte) []byte {
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)))
	b[9] = 0
	b[9] = checksum(b)
	return b
}

func buildFACS() []byte {
	b := make([]byte, facsLen)
	copy(b, "FACS")
	binary.LittleEndian.PutUint32(b[4:], facsLen)
	b[32] = 2 // version
	return b
}

// gas is a Generic Address Structure for a System I/O register block.
func gas(port uint16, bits uint8) []byte {
	b := make([]byte, 12)
	if port == 0 {
		return b
	}
	b[0] = 1 // System I/O
	b[1] = bits
	binary.LittleEndian.PutUint64(b[4:], uint64(port))
	return b
}

// FADT flags and IAPC_BOOT_ARCH bits used below.
const (
	fadtWBINVD      = 1 << 0
	fadtProcC1      = 1 << 2
	fadtSlpButton   = 1 << 5 // no fixed sleep button
	fadtFixRTC      = 1 << 6 // no RTC wake status in PM1
	fadtResetRegSup = 1 << 10

	bootLegacyDevices = 1 << 0
	boot8042          = 1 << 1
	bootNoVGA         = 1 << 2
	bootNoCMOSRTC     = 1 << 5
)

func buildFADT(cfg Config, facs, dsdt uint64) []byte {
	b := sdtHeader("FACP", 6, cfg.OEMID)
	b = append(b, make([]byte, fadtLen-hdrLen)...)
	le := binary.LittleEndian
	le.PutUint32(b[36:], uint32(facs))
	le.PutUint32(b[40:], uint32(dsdt))
	le.PutUint16(b[46:], uint16(cfg.SCIIRQ))
	// SMI_CMD, ACPI_ENABLE and ACPI_DISABLE stay 0: the machine is
	// ACPI-only, SCI_EN reads 1, and Linux then skips the SMI handshake.
	le.PutUint32(b[56:], uint32(cfg.PM1aEvt))
	le.PutUint32(b[64:], uint32(cfg.PM1aCnt))
	b[88] = 4 // PM1_EVT_LEN
	b[89] = 2 // PM1_CNT_LEN
	// No PM timer, no GPE blocks: Linux uses kvmclock/TSC and needs
	// neither. C2/C3 latencies above their limits say "not supported".
	le.PutUint16(b[96:], 101)
	le.PutUint16(b[98:], 1001)
	boot := uint16(bootLegacyDevices | bootNoVGA | bootNoCMOSRTC)
	if cfg.I8042 {
		boot |= boot8042
	}
	le.PutUint16(b[109:], boot)
	// PWR_BUTTON (bit 4) stays clear: the power button is the fixed one
	// in PM1, which PressPowerButton drives.
	le.PutUint32(b[112:], fadtWBINVD|fadtProcC1|fadtSlpButton|fadtFixRTC|fadtResetRegSup)
	copy(b[116:], gas(ResetPort, 8))
	b[116+3] = 1 // access size: byte
	b[128] = ResetValue
	b[131] = 0 // FADT minor version: ACPI 6.0
	// X_FIRMWARE_CTRL stays 0: the FACS is below 4 GiB and ACPICA would
	// otherwise map it twice. X_DSDT is what 64-bit OSPMs read.
	le.PutUint64(b[140:], dsdt)
	copy(b[148:], gas(cfg.PM1aEvt, 32))
	copy(b[172:], gas(cfg.PM1aCnt, 16))
	copy(b[268:], "XENOHV\x00\x00") // hypervisor vendor identity
	return finishSDT(b)
}

// MADT entry types and interrupt flags.
const (
	madtLAPIC    = 0
	madtIOAPIC   = 1
	madtOverride = 2
	madtLAPICNMI = 4

	intiActiveHigh = 0x1
	intiEdge       = 0x1 << 2
	intiLevel      = 0x3 << 2
)

func buildMADT(cfg Config) []byte {
	le := binary.LittleEndian
	b := sdtHeader("APIC", 5, cfg.OEMID)
	b = le.AppendUint32(b, cfg.LAPICAddr)
	b = le.AppendUint32(b, 1) // PCAT_COMPAT: 8259s present, Linux masks them
	for i := 0; i < cfg.CPUs; i++ {
		b = append(b, madtLAPIC, 8, byte(i), byte(i))
		b = le.AppendUint32(b, 1) // enabled
	}
	b = append(b, madtIOAPIC, 12, 0, 0)
	b = le.AppendUint32(b, cfg.IOAPICAddr)
	b = le.AppendUint32(b, 0) // GSI base
	// The PIT's IRQ 0 is wired to IOAPIC pin 2, as on every PC.
	b = append(b, madtOverride, 10, 0, 0)
	b = le.AppendUint32(b, 2)
	b = le.AppendUint16(b, intiActiveHigh|intiEdge)
	// The SCI is level-triggered, active high: the hv drives it with
	// KVM_IRQ_LINE as a level (1 = asserted), as QEMU does.
	b = append(b, madtOverride, 10, 0, cfg.SCIIRQ)
	b = le.AppendUint32(b, uint32(cfg.SCIIRQ))
	b = le.AppendUint16(b, intiActiveHigh|intiLevel)
	// A virtio line below 16 would otherwise be taken as an ISA (edge)
	// IRQ, and Linux lets the MADT win over the DSDT's _CRS for those.
	var overridden [16]bool
	for _, d := range cfg.Virtio {
		if d.IRQ < 16 && !overridden[d.IRQ] {
			overridden[d.IRQ] = true
			b = append(b, madtOverride, 10, 0, byte(d.IRQ))
			b = le.AppendUint32(b, d.IRQ)
			b = le.AppendUint16(b, intiActiveHigh|intiLevel)
		}
	}
	// LINT1 of every CPU is NMI.
	b = append(b, madtLAPICNMI, 6, 0xff, 0, 0, 1)
	return finishSDT(b)
}

func buildDSDT(cfg Config) []byte {
	var sb [][]byte
	if !cfg.NoCOM1 {
		sb = append(sb, amlDevice("COM1",
			amlName("_HID", amlInteger(uint64(eisaID("PNP0501")))),
			amlName("_UID", amlInteger(1)),
			amlName("_CRS", amlResourceTemplate(resIO(0x3f8, 8), resIRQNoFlags(4))),
		))
	}
	for i, d := range cfg.Virtio {
		// Level, active high: the device holds its line while
		// InterruptStatus is non-zero, and the hv drives it with
		// KVM_IRQ_LINE, so a level never loses an interrupt.
		sb = append(sb, amlDevice(fmt.Sprintf("VR%02X", i),
			amlName("_HID", amlString("LNRO0005")),
			amlName("_UID", amlInteger(uint64(i))),
			amlName("_CRS", amlResourceTemplate(
				resMemory32Fixed(uint32(d.Base), uint32(d.Size)),
				resInterrupt(d.IRQ, false))),
		))
	}
	b := sdtHeader("DSDT", 2, cfg.OEMID) // revision 2: 64-bit integers
	b = append(b, amlName("_S5_", amlPackage(
		amlInteger(S5SlpTyp), amlInteger(S5SlpTyp), amlInteger(0), amlInteger(0)))...)
	b = append(b, amlScope("_SB_", sb...)...)
	return finishSDT(b)
}
