package vm

import (
	"fmt"

	"github.com/xeno-hv/xeno/hv/abi"
	"golang.org/x/sys/unix"
)

// Guest-physical layout. RAM starts at 0; a guest with more than 3 GiB
// continues at 4 GiB, leaving [3 GiB, 4 GiB) for MMIO: the virtio-mmio
// windows, the IOAPIC and the LAPIC.
const (
	holeStart = 3 << 30
	holeEnd   = 4 << 30
)

// Memory is the guest's RAM: one anonymous mapping presented as one or
// two KVM memory slots. Untouched pages cost nothing (MAP_NORESERVE).
type Memory struct {
	ram  []byte
	low  uint64 // bytes of RAM below holeStart
	high uint64 // bytes of RAM from holeEnd
}

// NewMemory maps size bytes of guest RAM.
func NewMemory(size uint64) (*Memory, error) {
	if size < abi.MinMemoryMiB<<20 {
		return nil, fmt.Errorf("vm: %d MiB of memory is too little (%d MiB at least)", size>>20, abi.MinMemoryMiB)
	}
	ram, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("vm: mmap %d MiB of guest memory: %w", size>>20, err)
	}
	// Transparent huge pages make faults cheaper; advisory only.
	_ = unix.Madvise(ram, unix.MADV_HUGEPAGE)
	m := &Memory{ram: ram, low: min(size, holeStart)}
	m.high = size - m.low
	return m, nil
}

// Size is the amount of RAM.
func (m *Memory) Size() uint64 { return m.low + m.high }

// LowTop is the end of RAM below the MMIO hole.
func (m *Memory) LowTop() uint64 { return m.low }

// Close unmaps the RAM.
func (m *Memory) Close() error { return unix.Munmap(m.ram) }

// Slice returns the n bytes of RAM at guest-physical gpa, or false if any
// of them is not RAM (beyond the end, or in the MMIO hole). The bounds
// checks cannot overflow: gpa and n come from the guest.
func (m *Memory) Slice(gpa, n uint64) ([]byte, bool) {
	switch {
	case gpa < m.low:
		if n > m.low-gpa {
			return nil, false
		}
		return m.ram[gpa : gpa+n : gpa+n], true
	case gpa >= holeEnd && gpa-holeEnd < m.high:
		off := gpa - holeEnd
		if n > m.high-off {
			return nil, false
		}
		return m.ram[m.low+off : m.low+off+n : m.low+off+n], true
	}
	return nil, false
}

// regions are the (guest-physical, host slice) pairs for KVM slots.
func (m *Memory) regions() []struct {
	gpa uint64
	mem []byte
} {
	r := []struct {
		gpa uint64
		mem []byte
	}{{0, m.ram[:m.low]}}
	if m.high > 0 {
		r = append(r, struct {
			gpa uint64
			mem []byte
		}{holeEnd, m.ram[m.low:]})
	}
	return r
}
