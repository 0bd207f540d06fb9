package vm

import (
	"fmt"
	"sync/atomic"
	"unsafe"

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
	// written, while a live save runs, has a bit per page of ram that
	// the hv itself wrote (Wrote); nil otherwise.
	written atomic.Pointer[pageBits]
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

// region is one KVM memory slot: RAM at guest-physical gpa, which is
// ram[off:off+len(mem)].
type region struct {
	gpa, off uint64
	mem      []byte
}

// regions are the KVM slots, slot i being regions()[i].
func (m *Memory) regions() []region {
	r := []region{{gpa: 0, off: 0, mem: m.ram[:m.low]}}
	if m.high > 0 {
		r = append(r, region{gpa: holeEnd, off: m.low, mem: m.ram[m.low:]})
	}
	return r
}

// Wrote records that the hv wrote b, a slice of guest RAM that Slice
// returned (virtio.Memory), when a live save tracks such writes; a b
// that is not guest RAM is ignored, as it holds nothing to send.
func (m *Memory) Wrote(b []byte) {
	w := m.written.Load()
	if w == nil || len(b) == 0 {
		return
	}
	// An offset from the pointers: Slice's callers keep only the slice.
	off := uintptr(unsafe.Pointer(unsafe.SliceData(b))) - uintptr(unsafe.Pointer(unsafe.SliceData(m.ram)))
	if off >= uintptr(len(m.ram)) || uintptr(len(b)) > uintptr(len(m.ram))-off {
		return
	}
	w.set(uint64(off)/pageSize, (uint64(off)+uint64(len(b))-1)/pageSize)
}

// trackWrites starts (a fresh, empty record) or stops recording Wrote.
func (m *Memory) trackWrites(on bool) {
	if !on {
		m.written.Store(nil)
		return
	}
	m.written.Store(newPageBits(uint64(len(m.ram)) / pageSize))
}
