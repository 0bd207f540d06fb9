package vm

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/xeno-hv/xeno/hv/acpi"
	"github.com/xeno-hv/xeno/hv/bus"
)

// Fixed platform resources.
const (
	com1Base   = 0x3f8
	uartIRQ    = 4
	ioapicAddr = 0xfec00000
	lapicAddr  = 0xfee00000
	virtioBase = 0xd0000000
	virtioSize = 0x1000
	virtioIRQ0 = 5
	maxVirtio  = 8 // IRQs 5-8 and 10-13, see virtioIRQ
	allOnes    = 0xff
)

// virtioAddr is the base of virtio device i's MMIO window.
func virtioAddr(i int) uint64 { return virtioBase + uint64(i)*virtioSize }

// virtioIRQ is the IOAPIC input of virtio device i: 5, 6, 7, 8, then 10
// onwards, skipping the SCI on 9.
func virtioIRQ(i int) uint32 {
	irq := uint32(virtioIRQ0 + i)
	if irq >= acpi.SCIIRQ {
		irq++
	}
	return irq
}

// silent is an address range that Linux probes on every boot with
// nothing behind it here: it reads as all ones, like an unclaimed port,
// without a log line.
type silent struct{}

func (silent) Read(_ uint64, d []byte) { fill(d, allOnes) }
func (silent) Write(uint64, []byte)    {}

// silentPorts are the port ranges served by silent.
func silentPorts() []portDevice {
	return []portDevice{
		{"port 0x61 (PC speaker)", 0x61, 1, silent{}},
		{"port 0x80 (POST code)", 0x80, 1, silent{}},
		{"port 0x87 (DMA page)", 0x87, 1, silent{}},
		{"port 0xed (I/O delay)", 0xed, 1, silent{}},
		{"PCI config (no PCI bus)", 0xcf8, 8, silent{}},
		{"COM2", 0x2f8, 8, silent{}},
		{"COM3", 0x3e8, 8, silent{}},
		{"COM4", 0x2e8, 8, silent{}},
		{"floppy", 0x3f0, 8, silent{}},
		{"LPT2", 0x278, 8, silent{}},
		{"LPT1", 0x378, 8, silent{}},
		{"VGA", 0x3b0, 0x30, silent{}},
	}
}

// portDevice is a device and its window on the port bus.
type portDevice struct {
	name       string
	base, size uint64
	dev        bus.Device
}

// Bounds of the unknown-access log: a guest chooses the addresses, so
// neither the table nor hv.log may grow with what it does.
const (
	unknownTable  = 256              // distinct addresses logged, one line each
	unknownPeriod = 10 * time.Second // at most one summary line per period
)

// unknownLog reports each unknown port or address once, for the first
// unknownTable distinct ones. Past that, accesses at addresses not in the
// table are counted, and the count is logged at most once per
// unknownPeriod and when the domain ends (flush). Linux probes a few
// dozen unknown ports at boot; a guest that sprays addresses costs one
// line per period.
type unknownLog struct {
	mu   sync.Mutex
	seen map[uint64]bool // at most unknownTable entries
	log  io.Writer
	now  func() time.Time // time.Now; tests set a clock

	suppressed      uint64    // accesses not logged since the last summary
	firstSuppressed bool      // the "table full" line has been written
	lastSummary     time.Time // when the last summary was written
}

func (u *unknownLog) once(kind string, addr uint64, write bool, n int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	key := addr
	if kind == "mmio" {
		key |= 1 << 63
	}
	if u.seen[key] {
		return
	}
	if len(u.seen) >= unknownTable {
		u.suppress()
		return
	}
	if u.seen == nil {
		u.seen = make(map[uint64]bool, unknownTable)
	}
	u.seen[key] = true
	dir := "read"
	if write {
		dir = "write"
	}
	fmt.Fprintf(u.log, "hv: ignoring %d-byte %s %s at %#x (no device; logged once)\n", n, kind, dir, addr)
}

// suppress counts one access that is not logged, and writes a summary
// when the period has passed since the last one.
func (u *unknownLog) suppress() {
	now := u.clock()
	u.suppressed++
	if !u.firstSuppressed {
		u.firstSuppressed = true
		fmt.Fprintf(u.log, "hv: %d distinct unknown ports and addresses logged; further ones are counted, with a summary every %v\n",
			unknownTable, unknownPeriod)
		u.lastSummary = now
		return
	}
	if now.Sub(u.lastSummary) >= unknownPeriod {
		u.summary(now)
	}
}

func (u *unknownLog) summary(now time.Time) {
	fmt.Fprintf(u.log, "hv: %d more unknown accesses suppressed in the last %.0f s\n", u.suppressed, now.Sub(u.lastSummary).Seconds())
	u.suppressed, u.lastSummary = 0, now
}

// flush writes the count of accesses not yet summarised, once the domain
// has ended.
func (u *unknownLog) flush() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.suppressed > 0 {
		u.summary(u.clock())
	}
}

func (u *unknownLog) clock() time.Time {
	if u.now == nil {
		return time.Now()
	}
	return u.now()
}

func fill(d []byte, v byte) {
	for i := range d {
		d[i] = v
	}
}

// access serves one guest access of d at addr on b. An address with no
// device behind it is logged once and reads as all ones.
func (v *VM) access(b *bus.Bus, kind string, addr uint64, d []byte, write bool) {
	if len(d) == 0 {
		return // devices take 1 to 8 bytes; KVM never exits with fewer
	}
	var ok bool
	if write {
		ok = b.Write(addr, d)
	} else {
		ok = b.Read(addr, d)
	}
	if ok {
		return
	}
	v.unk.once(kind, addr, write, len(d))
	if !write {
		fill(d, allOnes)
	}
}

// le32 reads up to 4 bytes of a port access as a number.
func le32(d []byte) uint32 {
	var b [4]byte
	copy(b[:], d)
	return binary.LittleEndian.Uint32(b[:])
}

func put32(d []byte, x uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], x)
	copy(d, b[:])
}
