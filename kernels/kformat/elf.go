package kformat

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"strings"
)

// Xen ELF note types (xen/include/public/elfnote.h). Linux carries them
// so that Xen and PVH loaders can boot vmlinux directly.
const (
	XenElfnoteEntry             = 1
	XenElfnoteHypercallPage     = 2
	XenElfnoteVirtBase          = 3
	XenElfnotePaddrOffset       = 4
	XenElfnoteXenVersion        = 5
	XenElfnoteGuestOS           = 6
	XenElfnoteGuestVersion      = 7
	XenElfnoteLoader            = 8
	XenElfnotePAEMode           = 9
	XenElfnoteFeatures          = 10
	XenElfnoteBSDSymtab         = 11
	XenElfnoteHVStartLow        = 12
	XenElfnoteL1MFNValid        = 13
	XenElfnoteSuspendCancel     = 14
	XenElfnoteInitP2M           = 15
	XenElfnoteModStartPFN       = 16
	XenElfnoteSupportedFeatures = 17
	XenElfnotePhys32Entry       = 18
)

var xenNoteNames = map[uint32]string{
	XenElfnoteEntry: "ENTRY", XenElfnoteHypercallPage: "HYPERCALL_PAGE", XenElfnoteVirtBase: "VIRT_BASE",
	XenElfnotePaddrOffset: "PADDR_OFFSET", XenElfnoteXenVersion: "XEN_VERSION", XenElfnoteGuestOS: "GUEST_OS",
	XenElfnoteGuestVersion: "GUEST_VERSION", XenElfnoteLoader: "LOADER", XenElfnotePAEMode: "PAE_MODE",
	XenElfnoteFeatures: "FEATURES", XenElfnoteBSDSymtab: "BSD_SYMTAB", XenElfnoteHVStartLow: "HV_START_LOW",
	XenElfnoteL1MFNValid: "L1_MFN_VALID", XenElfnoteSuspendCancel: "SUSPEND_CANCEL", XenElfnoteInitP2M: "INIT_P2M",
	XenElfnoteModStartPFN: "MOD_START_PFN", XenElfnoteSupportedFeatures: "SUPPORTED_FEATURES",
	XenElfnotePhys32Entry: "PHYS32_ENTRY",
}

// stringNotes are the Xen notes whose descriptor is a NUL-terminated string.
var stringNotes = map[uint32]bool{
	XenElfnoteXenVersion: true, XenElfnoteGuestOS: true, XenElfnoteGuestVersion: true,
	XenElfnoteLoader: true, XenElfnotePAEMode: true, XenElfnoteFeatures: true, XenElfnoteBSDSymtab: true,
}

// Segment is one PT_LOAD program header.
type Segment struct {
	Vaddr  uint64 `json:"vaddr"`
	Paddr  uint64 `json:"paddr"`
	Offset uint64 `json:"offset"`
	Filesz uint64 `json:"filesz"`
	Memsz  uint64 `json:"memsz"`
	Flags  string `json:"flags"` // "RWX" subset
}

// XenNote is one Xen ELF note: Str for string notes, Value for numeric ones.
type XenNote struct {
	Type  uint32 `json:"type"`
	Name  string `json:"name"`
	Str   string `json:"str,omitempty"`
	Value uint64 `json:"value,omitempty"`
	Desc  []byte `json:"-"`
}

// ELFInfo is what a loader needs from vmlinux.
type ELFInfo struct {
	Entry    uint64    `json:"entry"`
	Segments []Segment `json:"segments"`
	XenNotes []XenNote `json:"xen_notes,omitempty"`
}

// Note returns the Xen note of type t.
func (e *ELFInfo) Note(t uint32) (XenNote, bool) {
	for _, n := range e.XenNotes {
		if n.Type == t {
			return n, true
		}
	}
	return XenNote{}, false
}

// Phys32Entry returns the PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY), a
// physical address entered in 32-bit protected mode.
func (e *ELFInfo) Phys32Entry() (uint32, bool) {
	n, ok := e.Note(XenElfnotePhys32Entry)
	return uint32(n.Value), ok
}

// maxNotes bounds how many notes we collect from one segment.
const maxNotes = 256

// ParseELF reads vmlinux's entry point, load segments and Xen notes. It
// refuses anything but a little-endian x86-64 executable whose segments
// lie inside the file.
func ParseELF(vmlinux []byte) (*ELFInfo, error) {
	if err := checkELF(vmlinux); err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(vmlinux))
	if err != nil {
		return nil, fmt.Errorf("vmlinux: %w", err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC {
		return nil, fmt.Errorf("vmlinux: ELF type %v, want ET_EXEC", f.Type)
	}
	info := &ELFInfo{Entry: f.Entry}
	size := uint64(len(vmlinux))
	for _, p := range f.Progs {
		if p.Off > size || p.Filesz > size-p.Off {
			return nil, fmt.Errorf("vmlinux: %v segment [%#x+%#x] beyond the file's %d bytes", p.Type, p.Off, p.Filesz, size)
		}
		switch p.Type {
		case elf.PT_LOAD:
			if p.Memsz < p.Filesz {
				return nil, fmt.Errorf("vmlinux: PT_LOAD at %#x has memsz %#x < filesz %#x", p.Paddr, p.Memsz, p.Filesz)
			}
			info.Segments = append(info.Segments, Segment{
				Vaddr: p.Vaddr, Paddr: p.Paddr, Offset: p.Off, Filesz: p.Filesz, Memsz: p.Memsz, Flags: progFlags(p.Flags),
			})
		case elf.PT_NOTE:
			notes, err := xenNotes(vmlinux[p.Off : p.Off+p.Filesz])
			if err != nil {
				return nil, fmt.Errorf("vmlinux: PT_NOTE at %#x: %w", p.Off, err)
			}
			info.XenNotes = append(info.XenNotes, notes...)
		}
	}
	if len(info.Segments) == 0 {
		return nil, fmt.Errorf("vmlinux: no PT_LOAD segments")
	}
	return info, nil
}

func progFlags(f elf.ProgFlag) string {
	var s strings.Builder
	for _, x := range []struct {
		bit elf.ProgFlag
		c   byte
	}{{elf.PF_R, 'R'}, {elf.PF_W, 'W'}, {elf.PF_X, 'X'}} {
		if f&x.bit != 0 {
			s.WriteByte(x.c)
		}
	}
	return s.String()
}

// xenNotes walks an ELF note segment (namesz, descsz, type, name, desc,
// each padded to 4 bytes) and keeps the notes named "Xen".
func xenNotes(b []byte) ([]XenNote, error) {
	le := binary.LittleEndian
	var out []XenNote
	for count := 0; len(b) > 0; count++ {
		if count == maxNotes {
			return nil, fmt.Errorf("more than %d notes", maxNotes)
		}
		if len(b) < 12 {
			return nil, fmt.Errorf("truncated note header (%d bytes)", len(b))
		}
		namesz, descsz, typ := uint64(le.Uint32(b)), uint64(le.Uint32(b[4:])), le.Uint32(b[8:])
		nameEnd := 12 + align4(namesz)
		descEnd := nameEnd + align4(descsz)
		if nameEnd > uint64(len(b)) || descEnd > uint64(len(b)) {
			return nil, fmt.Errorf("note of type %d overruns its segment", typ)
		}
		name := strings.TrimRight(string(b[12:12+namesz]), "\x00")
		desc := b[nameEnd : nameEnd+descsz]
		b = b[descEnd:]
		if name != "Xen" {
			continue
		}
		n := XenNote{Type: typ, Name: xenNoteNames[typ], Desc: append([]byte(nil), desc...)}
		if n.Name == "" {
			n.Name = fmt.Sprintf("TYPE_%d", typ)
		}
		switch {
		case stringNotes[typ]:
			n.Str = strings.TrimRight(string(desc), "\x00")
		case len(desc) == 8:
			n.Value = le.Uint64(desc)
		case len(desc) == 4:
			n.Value = uint64(le.Uint32(desc))
		case len(desc) == 2:
			n.Value = uint64(le.Uint16(desc))
		case len(desc) == 1:
			n.Value = uint64(desc[0])
		}
		out = append(out, n)
	}
	return out, nil
}

func align4(n uint64) uint64 { return (n + 3) &^ 3 }

// String formats a note's value for people.
func (n XenNote) String() string {
	if stringNotes[n.Type] {
		return fmt.Sprintf("%q", n.Str)
	}
	return fmt.Sprintf("%#x", n.Value)
}
