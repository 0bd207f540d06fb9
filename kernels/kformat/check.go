package kformat

import (
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
// signing does (sbsign rewrites the PE checksum and appends the
// signature), so its CRC no longer holds and is not checked; everything
// else is.
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
	if declared == uint64(len(b)) {
		// build.c's CRC: IEEE, initial ~0, not inverted at the end,
		// stored little-endian in the last 4 bytes.
		want := binary.LittleEndian.Uint32(b[len(b)-4:])
		if got := ^crc32.ChecksumIEEE(b[:len(b)-4]); got != want {
			return nil, nil, fmt.Errorf("%w: image CRC32 is %08x, its trailer says %08x", ErrCorrupt, got, want)
		}
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
