package kformat

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// note encodes one ELF note: namesz, descsz, type, name and desc padded
// to 4 bytes.
func note(name string, typ uint32, desc []byte) []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	binary.Write(&b, le, uint32(len(name)+1))
	binary.Write(&b, le, uint32(len(desc)))
	binary.Write(&b, le, typ)
	b.WriteString(name + "\x00")
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	b.Write(desc)
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	return b.Bytes()
}

// tinyELF builds an x86-64 ET_EXEC with one PT_LOAD (the code) and one
// PT_NOTE, laid out by hand from the ELF64 format.
func tinyELF(notes []byte) []byte {
	const ehsize, phentsize = 64, 56
	code := []byte{0xf4} // hlt
	codeOff := uint64(ehsize + 2*phentsize)
	noteOff := codeOff + uint64(len(code))
	b := make([]byte, noteOff+uint64(len(notes)))
	le := binary.LittleEndian
	copy(b, "\x7fELF\x02\x01\x01")
	le.PutUint16(b[16:], 2)    // ET_EXEC
	le.PutUint16(b[18:], 0x3e) // EM_X86_64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[24:], 0x1000000) // entry
	le.PutUint64(b[32:], ehsize)    // phoff
	le.PutUint16(b[52:], ehsize)
	le.PutUint16(b[54:], phentsize)
	le.PutUint16(b[56:], 2)
	ph := func(i int, typ, flags uint32, off, addr, size uint64) {
		p := b[ehsize+i*phentsize:]
		le.PutUint32(p[0:], typ)
		le.PutUint32(p[4:], flags)
		le.PutUint64(p[8:], off)
		le.PutUint64(p[16:], addr)
		le.PutUint64(p[24:], addr)
		le.PutUint64(p[32:], size)
		le.PutUint64(p[40:], size)
	}
	ph(0, 1, 5, codeOff, 0x1000000, uint64(len(code))) // PT_LOAD R+X
	ph(1, 4, 4, noteOff, 0, uint64(len(notes)))        // PT_NOTE
	copy(b[codeOff:], code)
	copy(b[noteOff:], notes)
	return b
}

func TestParseELF(t *testing.T) {
	entry := make([]byte, 4)
	binary.LittleEndian.PutUint32(entry, 0x1000850)
	notes := append(note("GNU", 3, []byte{1, 2, 3, 4}), note("Xen", XenElfnotePhys32Entry, entry)...)
	notes = append(notes, note("Xen", XenElfnoteXenVersion, []byte("xen-3.0\x00"))...)
	info, err := ParseELF(tinyELF(notes))
	if err != nil {
		t.Fatal(err)
	}
	if info.Entry != 0x1000000 || len(info.Segments) != 1 || info.Segments[0].Flags != "RX" || info.Segments[0].Paddr != 0x1000000 {
		t.Errorf("info = %+v", info)
	}
	if e, ok := info.Phys32Entry(); !ok || e != 0x1000850 {
		t.Errorf("Phys32Entry = %#x, %v", e, ok)
	}
	if n, ok := info.Note(XenElfnoteXenVersion); !ok || n.Str != "xen-3.0" || n.Name != "XEN_VERSION" {
		t.Errorf("XEN_VERSION = %+v", n)
	}
	if len(info.XenNotes) != 2 {
		t.Errorf("kept %d notes, want the 2 Xen ones", len(info.XenNotes))
	}
	// A note whose sizes overrun the segment is refused.
	bad := note("Xen", XenElfnotePhys32Entry, entry)
	binary.LittleEndian.PutUint32(bad[4:], 1<<30)
	if _, err := ParseELF(tinyELF(bad)); err == nil {
		t.Error("accepted a note overrunning its segment")
	}
	if _, err := ParseELF([]byte("\x7fELF")); err == nil {
		t.Error("accepted a 4-byte ELF")
	}
}

func FuzzParseELF(f *testing.F) {
	entry := []byte{0x50, 0x08, 0x00, 0x01}
	f.Add(tinyELF(note("Xen", XenElfnotePhys32Entry, entry)))
	f.Add(tinyELF(append(note("Xen", XenElfnoteGuestOS, []byte("linux\x00")), note("Xen", XenElfnoteVirtBase, make([]byte, 8))...)))
	f.Add(tinyELF(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := ParseELF(b)
		if err != nil {
			return
		}
		for _, s := range info.Segments {
			if s.Offset+s.Filesz > uint64(len(b)) || s.Offset+s.Filesz < s.Offset {
				t.Fatalf("segment %+v outside %d bytes", s, len(b))
			}
		}
	})
}
