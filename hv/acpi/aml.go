package acpi

import (
	"encoding/binary"
	"fmt"
)

// A tiny AML encoder: only the terms the DSDT needs (ACPI 6.5 §20).

const (
	amlZero         = 0x00
	amlOne          = 0x01
	amlNameOp       = 0x08
	amlBytePrefix   = 0x0a
	amlWordPrefix   = 0x0b
	amlDWordPrefix  = 0x0c
	amlStringPrefix = 0x0d
	amlQWordPrefix  = 0x0e
	amlScopeOp      = 0x10
	amlBufferOp     = 0x11
	amlPackageOp    = 0x12
	amlExtOpPrefix  = 0x5b
	amlDeviceOp     = 0x82 // after amlExtOpPrefix
	amlRootChar     = '\\'
)

// amlPkgLength encodes the PkgLength of a body of n bytes: the length
// counts its own encoding, which is 1 to 4 bytes.
func amlPkgLength(n int) []byte {
	for size := 1; size <= 4; size++ {
		total := n + size
		if size == 1 {
			if total < 0x40 {
				return []byte{byte(total)}
			}
			continue
		}
		if total >= 1<<(4+8*(size-1)) {
			continue
		}
		b := make([]byte, size)
		b[0] = byte(size-1)<<6 | byte(total&0x0f)
		for i := 1; i < size; i++ {
			b[i] = byte(total >> (4 + 8*(i-1)))
		}
		return b
	}
	panic(fmt.Sprintf("acpi: AML package of %d bytes is too large", n))
}

// amlNameSeg checks and returns a 4-character name segment.
func amlNameSeg(s string) []byte {
	if len(s) != 4 {
		panic("acpi: AML name " + s + " is not 4 characters")
	}
	for i, c := range []byte(s) {
		ok := c == '_' || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9')
		if !ok {
			panic("acpi: invalid AML name " + s)
		}
	}
	return []byte(s)
}

func amlInteger(v uint64) []byte {
	switch {
	case v == 0:
		return []byte{amlZero}
	case v == 1:
		return []byte{amlOne}
	case v <= 0xff:
		return []byte{amlBytePrefix, byte(v)}
	case v <= 0xffff:
		return binary.LittleEndian.AppendUint16([]byte{amlWordPrefix}, uint16(v))
	case v <= 0xffffffff:
		return binary.LittleEndian.AppendUint32([]byte{amlDWordPrefix}, uint32(v))
	}
	return binary.LittleEndian.AppendUint64([]byte{amlQWordPrefix}, v)
}

func amlString(s string) []byte {
	b := append([]byte{amlStringPrefix}, s...)
	return append(b, 0)
}

// amlName is Name(seg, value).
func amlName(seg string, value []byte) []byte {
	b := append([]byte{amlNameOp}, amlNameSeg(seg)...)
	return append(b, value...)
}

// amlPackage is Package(){elements...}.
func amlPackage(elems ...[]byte) []byte {
	var body []byte
	body = append(body, byte(len(elems)))
	for _, e := range elems {
		body = append(body, e...)
	}
	return append(append([]byte{amlPackageOp}, amlPkgLength(len(body))...), body...)
}

// amlScope is Scope(\seg){terms...} for a root-relative single segment.
func amlScope(rootSeg string, terms ...[]byte) []byte {
	body := append([]byte{amlRootChar}, amlNameSeg(rootSeg)...)
	for _, t := range terms {
		body = append(body, t...)
	}
	return append(append([]byte{amlScopeOp}, amlPkgLength(len(body))...), body...)
}

// amlDevice is Device(seg){terms...}.
func amlDevice(seg string, terms ...[]byte) []byte {
	body := amlNameSeg(seg)
	for _, t := range terms {
		body = append(body, t...)
	}
	out := []byte{amlExtOpPrefix, amlDeviceOp}
	return append(append(out, amlPkgLength(len(body))...), body...)
}

// amlResourceTemplate wraps resource descriptors in a Buffer with the end
// tag (checksum 0, "treated as correct").
func amlResourceTemplate(descs ...[]byte) []byte {
	var data []byte
	for _, d := range descs {
		data = append(data, d...)
	}
	data = append(data, 0x79, 0x00)
	body := append(amlInteger(uint64(len(data))), data...)
	return append(append([]byte{amlBufferOp}, amlPkgLength(len(body))...), body...)
}

// resMemory32Fixed is Memory32Fixed(ReadWrite, base, size).
func resMemory32Fixed(base, size uint32) []byte {
	b := []byte{0x86, 9, 0, 1}
	b = binary.LittleEndian.AppendUint32(b, base)
	return binary.LittleEndian.AppendUint32(b, size)
}

// resInterrupt is Interrupt(ResourceConsumer, Level|Edge, ActiveHigh,
// Exclusive){irq}.
func resInterrupt(irq uint32, edge bool) []byte {
	flags := byte(0x01) // consumer
	if edge {
		flags |= 0x02
	}
	b := []byte{0x89, 6, 0, flags, 1}
	return binary.LittleEndian.AppendUint32(b, irq)
}

// resIO is IO(Decode16, base, base, 1, n).
func resIO(base uint16, n uint8) []byte {
	b := []byte{0x47, 0x01}
	b = binary.LittleEndian.AppendUint16(b, base)
	b = binary.LittleEndian.AppendUint16(b, base)
	return append(b, 1, n)
}

// resIRQNoFlags is IRQNoFlags(){irq} for an ISA IRQ (edge, active high).
func resIRQNoFlags(irq uint8) []byte {
	return binary.LittleEndian.AppendUint16([]byte{0x22}, uint16(1)<<irq)
}

// eisaID compresses a PNP id such as "PNP0501" as EisaId() does.
func eisaID(id string) uint32 {
	if len(id) != 7 {
		panic("acpi: bad EISA id " + id)
	}
	hex := func(c byte) uint32 {
		switch {
		case c >= '0' && c <= '9':
			return uint32(c - '0')
		case c >= 'A' && c <= 'F':
			return uint32(c-'A') + 10
		}
		panic("acpi: bad EISA id " + id)
	}
	v := (uint32(id[0]-0x40)&0x1f)<<26 | (uint32(id[1]-0x40)&0x1f)<<21 | (uint32(id[2]-0x40)&0x1f)<<16
	for i := 3; i < 7; i++ {
		v |= hex(id[i]) << (4 * (6 - i))
	}
	// EisaId() is stored as the big-endian bytes of v.
	return v>>24 | (v>>8)&0xff00 | (v<<8)&0xff0000 | v<<24
}
