package kformat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// ErrCorrupt is wrapped by CheckImage for a bzImage whose bytes disagree
// with themselves: its declared sizes, its checksums or its contents.
var ErrCorrupt = errors.New("corrupt bzImage")

// maxInitSize bounds init_size, the memory the kernel claims for
// decompressing itself: Debian's are ~56 MiB.
const maxInitSize = 1 << 30

// CheckImage verifies a whole bzImage, as a store must before it keeps
// one: the setup header (ParseSetupHeader), the sizes it declares
// against the file (setup_sects and syssize give the image's length, the
// payload must lie inside it), the CRC32 that Linux's
// arch/x86/boot/tools/build.c appends to every image, the payload
// decompressed to its end with the compressor's own checks (gzip's CRC32
// and ISIZE, xz's and zstd's checksums) and the kernel's size trailer,
// the ELF inside, and init_size against the memory that ELF spans.
//
// An image longer than it declares was changed after the build, as
// signing does: sbsign appends the signature and fills two PE header
// fields, CheckSum and the Certificate Table entry, that build.c left
// zero. The CRC is then checked over the declared image with those two
// fields zeroed again, so that a payload without a checksum of its own
// (LZ4) stays guarded in a signed kernel too.
func CheckImage(b []byte) (*SetupHeader, *ELFInfo, error) {
	h, err := ParseSetupHeader(b)
	if err != nil {
		return nil, nil, err
	}
	setup := uint64(h.SetupLen())
	if h.SysSize == 0 {
		return nil, nil, fmt.Errorf("%w: syssize is 0", ErrCorrupt)
	}
	declared := setup + 16*uint64(h.SysSize)
	if declared > uint64(len(b)) {
		return nil, nil, fmt.Errorf("%w: %w: the header declares %d bytes (%d of setup, syssize %d × 16), the file has %d",
			ErrCorrupt, ErrTruncated, declared, setup, h.SysSize, len(b))
	}
	payloadEnd := setup + uint64(h.PayloadOffset) + uint64(h.PayloadLength)
	if payloadEnd > declared {
		return nil, nil, fmt.Errorf("%w: payload ends at %#x, beyond the %d-byte image the header declares", ErrCorrupt, payloadEnd, declared)
	}
	if err := checkCRC(b[:declared], uint64(len(b))-declared); err != nil {
		return nil, nil, err
	}
	vmlinux, err := DecompressPayload(h.Payload(b))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	info, err := ParseELF(vmlinux)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	lo, hi := ^uint64(0), uint64(0)
	for _, s := range info.Segments {
		lo, hi = min(lo, s.Paddr), max(hi, s.Paddr+s.Memsz)
	}
	if h.InitSize == 0 || h.InitSize > maxInitSize || uint64(h.InitSize) < hi-lo {
		return nil, nil, fmt.Errorf("%w: init_size %d does not cover the %d bytes the kernel spans in memory (limit %d)", ErrCorrupt, h.InitSize, hi-lo, maxInitSize)
	}
	return h, info, nil
}

// PE32+ offsets, from the PE format's optional header: CheckSum, and the
// Certificate Table, data directory entry 4 (8 bytes: file offset, size).
const (
	peOptHeader     = 24 // after "PE\0\0" and the 20-byte COFF header
	peMagicPE32Plus = 0x20b
	peCheckSum      = 64
	peCertTable     = 112 + 4*8
)

// checkCRC checks build.c's CRC32 (IEEE, initial ~0, not inverted at the
// end, stored little-endian in the last 4 bytes) over image, the bytes
// the setup header declares; appended bytes followed it in the file.
func checkCRC(image []byte, appended uint64) error {
	want := binary.LittleEndian.Uint32(image[len(image)-4:])
	body := image[:len(image)-4]
	how := ""
	if appended > 0 {
		if pe, ok := peHeader(body); ok {
			body = bytes.Clone(body)
			clear(body[pe+peOptHeader+peCheckSum:][:4])
			clear(body[pe+peOptHeader+peCertTable:][:8])
			how = fmt.Sprintf(" (over the declared image, with %d bytes appended after it and the PE signature fields zeroed)", appended)
		} else {
			how = fmt.Sprintf(" (over the declared image, with %d bytes appended after it)", appended)
		}
	}
	if got := ^crc32.ChecksumIEEE(body); got != want {
		return fmt.Errorf("%w: image CRC32 is %08x%s, its trailer says %08x", ErrCorrupt, got, how, want)
	}
	return nil
}

// peHeader finds the PE32+ header an EFI-stub bzImage carries in its boot
// sector, returning the offset of its "PE\0\0" signature.
func peHeader(b []byte) (int, bool) {
	if len(b) < 0x40 || b[0] != 'M' || b[1] != 'Z' {
		return 0, false
	}
	pe := int(binary.LittleEndian.Uint32(b[0x3c:]))
	end := pe + peOptHeader + peCertTable + 8
	if pe <= 0 || end > len(b) || end < pe {
		return 0, false
	}
	if string(b[pe:pe+4]) != "PE\x00\x00" || binary.LittleEndian.Uint16(b[pe+peOptHeader:]) != peMagicPE32Plus {
		return 0, false
	}
	return pe, true
}
