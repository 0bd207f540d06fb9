package vm

// E820 entry types.
const (
	E820RAM      = 1
	E820Reserved = 2
	E820ACPI     = 3
)

// E820Entry is one line of the BIOS memory map the hv gives the guest.
type E820Entry struct {
	Addr, Size uint64
	Type       uint32
}

// Low-memory landmarks of a PC that Linux relies on.
const (
	ebdaStart = 0x9fc00  // RAM below it; EBDA, VGA and ROM above
	biosEnd   = 0x100000 // first MiB ends
	acpiBase  = 0xe0000  // ACPI tables; the RSDP legacy scan covers it
)

// E820 is the guest's memory map: RAM below the EBDA, the reserved legacy
// area with the ACPI tables (acpiSize bytes at acpiBase) marked
// ACPI-reclaimable, RAM from 1 MiB up to the MMIO hole and, for guests of
// more than 3 GiB, the rest from 4 GiB.
func (m *Memory) E820(acpiSize uint64) []E820Entry {
	e := []E820Entry{{0, ebdaStart, E820RAM}}
	if acpiSize > 0 {
		acpiSize = (acpiSize + 0xfff) &^ 0xfff
		acpiSize = min(acpiSize, biosEnd-acpiBase)
		e = append(e, E820Entry{ebdaStart, acpiBase - ebdaStart, E820Reserved},
			E820Entry{acpiBase, acpiSize, E820ACPI})
		if acpiBase+acpiSize < biosEnd {
			e = append(e, E820Entry{acpiBase + acpiSize, biosEnd - acpiBase - acpiSize, E820Reserved})
		}
	} else {
		e = append(e, E820Entry{ebdaStart, biosEnd - ebdaStart, E820Reserved})
	}
	e = append(e, E820Entry{biosEnd, m.low - biosEnd, E820RAM})
	if m.high > 0 {
		e = append(e, E820Entry{holeEnd, m.high, E820RAM})
	}
	return e
}

// e820Name is how Linux prints an e820 type.
func e820Name(t uint32) string {
	switch t {
	case E820RAM:
		return "usable"
	case E820Reserved:
		return "reserved"
	case E820ACPI:
		return "ACPI data"
	}
	return "unknown"
}
