package vm

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/hv/acpi"
)

// Fixed platform resources.
const (
	com1Base    = 0x3f8
	uartIRQ     = 4
	ioapicAddr  = 0xfec00000
	lapicAddr   = 0xfee00000
	virtioBase  = 0xd0000000
	virtioSize  = 0x1000
	virtioIRQ0  = 5
	maxVirtio   = 8 // IRQs 5-8 and 10-13, see virtioIRQ
	allOnes     = 0xff
	portPCIAddr = 0xcf8
)

// virtioIRQ is the IOAPIC input of virtio device i: 5, 6, 7, 8, then 10
// onwards, skipping the SCI on 9.
func virtioIRQ(i int) uint32 {
	irq := uint32(virtioIRQ0 + i)
	if irq >= acpi.SCIIRQ {
		irq++
	}
	return irq
}

// silentPorts are probed by Linux on every boot and have nothing behind
// them here; they read as all ones without a log line.
func silentPort(port uint16) bool {
	switch {
	case port == 0x61, port == 0x80, port == 0xed, port == 0x87:
	case port >= 0xcf8 && port <= 0xcff: // PCI config: no PCI bus
	case port >= 0x2f8 && port <= 0x2ff, port >= 0x3e8 && port <= 0x3ef, port >= 0x2e8 && port <= 0x2ef: // COM2-4
	case port >= 0x3f0 && port <= 0x3f7: // floppy
	case port >= 0x278 && port <= 0x27f, port >= 0x378 && port <= 0x37f: // LPT
	case port >= 0x3b0 && port <= 0x3df: // VGA
	default:
		return false
	}
	return true
}

// unknownLog reports each unknown port or address once.
type unknownLog struct {
	mu   sync.Mutex
	seen map[uint64]bool
	log  io.Writer
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
	if u.seen == nil {
		u.seen = make(map[uint64]bool)
	}
	u.seen[key] = true
	dir := "read"
	if write {
		dir = "write"
	}
	fmt.Fprintf(u.log, "hv: ignoring %d-byte %s %s at %#x (no device; logged once)\n", n, kind, dir, addr)
}

func fill(d []byte, v byte) {
	for i := range d {
		d[i] = v
	}
}

func (v *VM) portIn(port uint16, d []byte) {
	switch {
	case port >= com1Base && port < com1Base+8:
		d[0] = v.uart.Read(uint8(port - com1Base))
		fill(d[1:], 0)
	case port == 0x60 || port == 0x64:
		d[0] = v.i8042.read(port)
		fill(d[1:], 0)
	case port == 0x70 || port == 0x71:
		d[0] = v.rtc.read(port)
		fill(d[1:], 0)
	case port >= abi.PortFirst && port <= abi.PortLast:
		v.xeno.in(port, d)
	case v.dev.pmIn(port, d):
	case silentPort(port):
		fill(d, allOnes)
	default:
		v.unk.once("port", uint64(port), false, len(d))
		fill(d, allOnes)
	}
}

func (v *VM) portOut(port uint16, d []byte) {
	switch {
	case port >= com1Base && port < com1Base+8:
		v.uart.Write(uint8(port-com1Base), d[0])
	case port == 0x60 || port == 0x64:
		v.i8042.write(port, d[0])
	case port == 0x70 || port == 0x71:
		v.rtc.write(port, d[0])
	case port >= abi.PortFirst && port <= abi.PortLast:
		v.xeno.out(port, d)
	case v.dev.pmOut(port, d):
	case silentPort(port):
	default:
		v.unk.once("port", uint64(port), true, len(d))
	}
}

func (v *VM) mmioRead(addr uint64, d []byte) {
	if v.dev.mmio(addr, d, false) {
		return
	}
	v.unk.once("mmio", addr, false, len(d))
	fill(d, allOnes)
}

func (v *VM) mmioWrite(addr uint64, d []byte) {
	if v.dev.mmio(addr, d, true) {
		return
	}
	v.unk.once("mmio", addr, true, len(d))
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
