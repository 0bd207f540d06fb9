// Package bus routes guest port and MMIO accesses to devices by address.
//
// A device is a window of registers: the bus hands it every access whose
// first byte lies in the window, with the offset of that byte from the
// window's base and the access's bytes, whatever its width. Windows never
// overlap; Add refuses a device that would.
package bus

import (
	"fmt"
	"sort"
)

// Device is a port or MMIO device. Read fills data (1 to 8 bytes,
// little-endian) with what the guest reads at offset off of the device's
// window; Write takes what the guest wrote there. A device decides what
// accesses of other widths, or running past its window, do.
type Device interface {
	Read(off uint64, data []byte)
	Write(off uint64, data []byte)
}

// Bus is one address space (I/O ports or guest-physical MMIO). Devices
// are added before the vCPUs run; after that it is only read, so
// concurrent accesses need no lock.
type Bus struct {
	ranges []window // sorted by base, disjoint
}

type window struct {
	name       string
	base, size uint64
	dev        Device
}

func (w window) String() string {
	return fmt.Sprintf("%s at [%#x, %#x]", w.name, w.base, w.base+w.size-1)
}

// Add puts dev at [base, base+size). It refuses an empty or wrapping
// window and one that overlaps a device already there, naming both.
func (b *Bus) Add(name string, base, size uint64, dev Device) error {
	w := window{name: name, base: base, size: size, dev: dev}
	if size == 0 || base+size-1 < base {
		return fmt.Errorf("bus: %s: window of %#x bytes at %#x", name, size, base)
	}
	i := sort.Search(len(b.ranges), func(i int) bool { return b.ranges[i].base > base })
	for _, j := range []int{i - 1, i} {
		if j < 0 || j >= len(b.ranges) {
			continue
		}
		o := b.ranges[j]
		if base <= o.base+o.size-1 && o.base <= base+size-1 {
			return fmt.Errorf("bus: %s overlaps %s", w, o)
		}
	}
	b.ranges = append(b.ranges, window{})
	copy(b.ranges[i+1:], b.ranges[i:])
	b.ranges[i] = w
	return nil
}

// Find returns the device whose window holds addr, and addr's offset in
// it; false when no device is there.
func (b *Bus) Find(addr uint64) (Device, uint64, bool) {
	i := sort.Search(len(b.ranges), func(i int) bool { return b.ranges[i].base > addr }) - 1
	if i < 0 || addr-b.ranges[i].base >= b.ranges[i].size {
		return nil, 0, false
	}
	return b.ranges[i].dev, addr - b.ranges[i].base, true
}

// Read serves a guest read at addr and reports whether a device took it.
func (b *Bus) Read(addr uint64, data []byte) bool {
	d, off, ok := b.Find(addr)
	if ok {
		d.Read(off, data)
	}
	return ok
}

// Write serves a guest write at addr and reports whether a device took it.
func (b *Bus) Write(addr uint64, data []byte) bool {
	d, off, ok := b.Find(addr)
	if ok {
		d.Write(off, data)
	}
	return ok
}
