package vm

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/xeno-hv/xeno/hv/kvm"
	"github.com/xeno-hv/xeno/kernels/kformat"
)

// Where the loader puts its structures in the first MiB. Everything lies
// in e820 RAM below the EBDA that Linux reserves or copies early.
const (
	gdtAddr        = 0x500
	bootParamsAddr = 0x7000
	bootStackTop   = 0x8ff0 // a harmless RSP; the boot protocol promises none
	pml4Addr       = 0x9000
	pdptAddr       = 0xa000
	pdAddr         = 0xb000 // four pages: 2 MiB pages for 0-4 GiB
	cmdlineAddr    = 0x20000
	cmdlineMax     = 0x10000
	identityMapTop = 4 << 30
)

// boot_params (zero page) offsets, Documentation/arch/x86/zero-page.rst.
const (
	bpACPIRSDP      = 0x070
	bpExtRamdisk    = 0x0c0
	bpExtRamdiskSz  = 0x0c4
	bpExtCmdline    = 0x0c8
	bpE820Entries   = 0x1e8
	bpSetupHeader   = 0x1f1
	bpTypeOfLoader  = 0x210
	bpLoadFlags     = 0x211
	bpRamdiskImage  = 0x218
	bpRamdiskSize   = 0x21c
	bpCmdLinePtr    = 0x228
	bpE820Table     = 0x2d0
	bpE820Max       = 128
	bootParamsSize  = 0x1000
	loaderUndefined = 0xff
	loadedHigh      = 0x01
	keepSegments    = 0x40
)

// BootKind selects how the kernel is entered.
type BootKind string

// Boot kinds accepted by --boot.
const (
	BootBzImage BootKind = "bzimage" // 64-bit entry at load address + 0x200
	BootELF     BootKind = "elf"     // decompressed vmlinux, startup_64
	BootAuto    BootKind = "auto"    // bzImage, except decompress where CPL0 is emulated
)

// Image is a kernel ready to be placed in guest memory.
type Image struct {
	Path    string
	Kind    BootKind // BootBzImage or BootELF, after resolving auto
	File    []byte   // the bzImage, when there is one
	Header  *kformat.SetupHeader
	Vmlinux []byte // BootELF only
}

// LoadInfo is what loading decided: the entry state and where things went.
type LoadInfo struct {
	Entry       uint64
	KernelStart uint64
	KernelEnd   uint64
	InitrdAddr  uint64
	InitrdSize  uint64
}

// OpenImage reads a kernel: a bzImage (booted through its 64-bit entry or,
// for BootELF, decompressed in Go) or a raw vmlinux ELF for BootELF.
func OpenImage(path string, b []byte, kind BootKind) (*Image, error) {
	img := &Image{Path: path}
	if len(b) >= 4 && string(b[:4]) == "\x7fELF" {
		if kind == BootBzImage {
			return nil, fmt.Errorf("vm: %s: an ELF kernel cannot boot as a bzImage", path)
		}
		img.Kind, img.Vmlinux = BootELF, b
		return img, nil
	}
	h, err := kformat.ParseSetupHeader(b)
	if err != nil {
		return nil, fmt.Errorf("vm: %s: %w", path, err)
	}
	img.File, img.Header, img.Kind = b, h, kind
	if kind == BootELF {
		v, err := kformat.Decompress(b)
		if err != nil {
			return nil, fmt.Errorf("vm: %s: decompress for ELF boot: %w", path, err)
		}
		img.Vmlinux = v
	}
	return img, nil
}

// load places the kernel, initrd, command line and boot_params in memory
// and returns the entry point.
func load(mem *Memory, img *Image, initrd []byte, cmdline string, e820 []E820Entry, rsdp uint64) (LoadInfo, error) {
	var li LoadInfo
	bp, _ := mem.Slice(bootParamsAddr, bootParamsSize)
	clear(bp)
	le := binary.LittleEndian
	if img.Header != nil {
		// Copy the setup header as the kernel's build wrote it; its end is
		// given by the jump at 0x200 (0x202 + the jump's offset byte).
		end := 0x202 + int(img.File[0x201])
		end = min(end, len(img.File), bootParamsSize)
		copy(bp[bpSetupHeader:end], img.File[bpSetupHeader:end])
	} else {
		// A bare vmlinux: write the fields startup_64 reads.
		le.PutUint16(bp[0x1fe:], 0xaa55)
		le.PutUint32(bp[0x202:], 0x53726448)
		le.PutUint16(bp[0x206:], 0x020f)
		le.PutUint32(bp[0x22c:], 0x7fffffff)
		le.PutUint32(bp[0x238:], cmdlineMax-1)
	}
	bp[bpTypeOfLoader] = loaderUndefined
	bp[bpLoadFlags] |= loadedHigh | keepSegments

	switch img.Kind {
	case BootBzImage:
		h := img.Header
		addr := uint64(0x100000)
		if h.PrefAddress != 0 {
			addr = h.PrefAddress
		}
		pm := img.File[h.SetupLen():]
		size := max(uint64(len(pm)), uint64(h.InitSize))
		dst, ok := mem.Slice(addr, size)
		if !ok {
			return li, fmt.Errorf("vm: %s: kernel [%#x, %#x) does not fit in guest RAM", img.Path, addr, addr+size)
		}
		copy(dst, pm)
		li.Entry, li.KernelStart, li.KernelEnd = addr+0x200, addr, addr+size
	case BootELF:
		info, err := kformat.ParseELF(img.Vmlinux)
		if err != nil {
			return li, fmt.Errorf("vm: %s: %w", img.Path, err)
		}
		li.KernelStart = ^uint64(0)
		for _, s := range info.Segments {
			dst, ok := mem.Slice(s.Paddr, s.Memsz)
			if !ok {
				return li, fmt.Errorf("vm: %s: ELF segment [%#x, %#x) does not fit in guest RAM", img.Path, s.Paddr, s.Paddr+s.Memsz)
			}
			copy(dst, img.Vmlinux[s.Offset:s.Offset+s.Filesz])
			clear(dst[s.Filesz:])
			li.KernelStart = min(li.KernelStart, s.Paddr)
			li.KernelEnd = max(li.KernelEnd, s.Paddr+s.Memsz)
		}
		// vmlinux's entry is the physical address of startup_64 (the
		// ELF entry of arch/x86's linker script is phys_startup_64).
		li.Entry = info.Entry
		if img.Header != nil {
			li.KernelEnd = max(li.KernelEnd, li.KernelStart+uint64(img.Header.InitSize))
		}
		if _, ok := mem.Slice(li.Entry, 1); !ok {
			return li, fmt.Errorf("vm: %s: ELF entry %#x is not in guest RAM", img.Path, li.Entry)
		}
	default:
		return li, fmt.Errorf("vm: %s: unknown boot kind %q", img.Path, img.Kind)
	}

	// Command line.
	limit := uint64(le.Uint32(bp[0x238:]))
	if limit == 0 || limit > cmdlineMax-1 {
		limit = cmdlineMax - 1
	}
	if uint64(len(cmdline)) > limit {
		return li, fmt.Errorf("vm: %s: command line is %d bytes, the kernel accepts %d", img.Path, len(cmdline), limit)
	}
	cl, _ := mem.Slice(cmdlineAddr, cmdlineMax)
	clear(cl)
	copy(cl, cmdline)
	le.PutUint32(bp[bpCmdLinePtr:], cmdlineAddr)

	// Initrd: as high as the kernel allows, below the hole and 4 GiB.
	if len(initrd) > 0 {
		top := min(mem.LowTop(), uint64(le.Uint32(bp[0x22c:]))+1)
		size := uint64(len(initrd))
		if size >= top || top-size < li.KernelEnd {
			return li, fmt.Errorf("vm: initrd of %d MiB does not fit between the kernel's end %#x and %#x; give the guest more memory", size>>20, li.KernelEnd, top)
		}
		addr := (top - size) &^ 0xfff
		if addr < li.KernelEnd {
			return li, fmt.Errorf("vm: initrd of %d MiB overlaps the kernel; give the guest more memory", size>>20)
		}
		dst, _ := mem.Slice(addr, size)
		copy(dst, initrd)
		le.PutUint32(bp[bpRamdiskImage:], uint32(addr))
		le.PutUint32(bp[bpRamdiskSize:], uint32(size))
		le.PutUint32(bp[bpExtRamdisk:], uint32(addr>>32))
		le.PutUint32(bp[bpExtRamdiskSz:], uint32(size>>32))
		li.InitrdAddr, li.InitrdSize = addr, size
	}

	if len(e820) > bpE820Max {
		return li, errors.New("vm: e820 table too long")
	}
	bp[bpE820Entries] = byte(len(e820))
	for i, e := range e820 {
		o := bpE820Table + 20*i
		le.PutUint64(bp[o:], e.Addr)
		le.PutUint64(bp[o+8:], e.Size)
		le.PutUint32(bp[o+16:], e.Type)
	}
	le.PutUint64(bp[bpACPIRSDP:], rsdp)
	writePageTables(mem)
	writeGDT(mem)
	return li, nil
}

// writePageTables identity-maps [0, 4 GiB) with 2 MiB pages, enough for
// the kernel, boot_params and every device window; Linux builds its own
// tables early in startup_64.
func writePageTables(mem *Memory) {
	le := binary.LittleEndian
	pml4, _ := mem.Slice(pml4Addr, 0x1000)
	pdpt, _ := mem.Slice(pdptAddr, 0x1000)
	clear(pml4)
	clear(pdpt)
	const present, rw, ps = 1, 2, 0x80
	le.PutUint64(pml4, pdptAddr|present|rw)
	for i := uint64(0); i < identityMapTop>>30; i++ {
		pd, _ := mem.Slice(pdAddr+i*0x1000, 0x1000)
		le.PutUint64(pdpt[8*i:], (pdAddr+i*0x1000)|present|rw)
		for j := uint64(0); j < 512; j++ {
			le.PutUint64(pd[8*j:], (i<<30+j<<21)|present|rw|ps)
		}
	}
}

// GDT selectors of the Linux boot protocol: __BOOT_CS 0x10, __BOOT_DS 0x18.
const (
	selCode = 0x10
	selData = 0x18
	selTSS  = 0x20
)

func writeGDT(mem *Memory) {
	gdt, _ := mem.Slice(gdtAddr, 0x30)
	le := binary.LittleEndian
	le.PutUint64(gdt[0x00:], 0)
	le.PutUint64(gdt[0x08:], 0)
	le.PutUint64(gdt[selCode:], 0x00af9b000000ffff) // 64-bit code, DPL0
	le.PutUint64(gdt[selData:], 0x00cf93000000ffff) // flat data, DPL0
	le.PutUint64(gdt[selTSS:], 0x00008b0000000067)  // busy 64-bit TSS at 0
	le.PutUint64(gdt[selTSS+8:], 0)
}

// longModeSregs puts a vCPU in 64-bit mode with the loader's GDT and
// page tables, as the 64-bit boot protocol requires.
func longModeSregs(s *kvm.Sregs) {
	code := kvm.Segment{Base: 0, Limit: 0xffffffff, Selector: selCode, Type: 11, Present: 1, S: 1, L: 1, G: 1}
	data := kvm.Segment{Base: 0, Limit: 0xffffffff, Selector: selData, Type: 3, Present: 1, S: 1, DB: 1, G: 1}
	s.CS = code
	s.DS, s.ES, s.FS, s.GS, s.SS = data, data, data, data, data
	s.TR = kvm.Segment{Base: 0, Limit: 0x67, Selector: selTSS, Type: 11, Present: 1}
	s.GDT = kvm.DTable{Base: gdtAddr, Limit: 0x2f}
	s.IDT = kvm.DTable{Base: 0, Limit: 0}
	const (
		cr0PE, cr0MP, cr0ET, cr0NE, cr0WP, cr0PG = 1, 2, 0x10, 0x20, 0x10000, 0x80000000
		cr4PAE                                   = 0x20
		eferLME, eferLMA                         = 0x100, 0x400
	)
	s.CR0 = cr0PE | cr0MP | cr0ET | cr0NE | cr0PG
	s.CR3 = pml4Addr
	s.CR4 = cr4PAE
	s.EFER = eferLME | eferLMA
}

// OpenImageAuto resolves BootAuto: where KVM emulates kernel mode (the
// software kvm_pvm), a kernel whose payload decompresses boots as ELF,
// because the in-guest decompressor would take minutes; everywhere else,
// and for kernels whose payload is not compressed (the micro-guests),
// through the bzImage 64-bit entry.
func OpenImageAuto(path string, b []byte, kind BootKind) (*Image, error) {
	if kind != BootAuto {
		return OpenImage(path, b, kind)
	}
	if len(b) >= 4 && string(b[:4]) == "\x7fELF" {
		return OpenImage(path, b, BootELF)
	}
	if SoftwareKVM() {
		if h, err := kformat.ParseSetupHeader(b); err == nil && kformat.DetectCompression(h.Payload(b)) != kformat.Unknown {
			return OpenImage(path, b, BootELF)
		}
	}
	return OpenImage(path, b, BootBzImage)
}

// KernelWorkarounds is what the hv appends to a Linux command line where
// CPUID masking alone does not keep the kernel off instructions the
// software KVM rejects (docs/kvm-notes.md); empty elsewhere.
//
// clearcpuid takes X86_FEATURE_* numbers (word*32+bit) in Linux 6.1:
// 141 cx16 (4*32+13), 151 popcnt (4*32+23), 154 xsave (4*32+26) and
// 308 smap (9*32+20). Measured here: with the CPUID bits masked, Linux
// 6.1 still patched a popcnt into hweight64 and crashed on it, so the
// CPUID mask alone is not enough for every bit.
func KernelWorkarounds(img *Image) string {
	if !SoftwareKVM() || img.Kind != BootELF {
		return ""
	}
	return "noxsave clearcpuid=141,151,154,308"
}
