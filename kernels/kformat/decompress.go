package kformat

import (
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// Compression is a bzImage payload's compression, named as the kernel's
// CONFIG_KERNEL_* options name it.
type Compression string

const (
	Gzip    Compression = "gzip"
	XZ      Compression = "xz"
	LZMA    Compression = "lzma"
	Bzip2   Compression = "bzip2"
	LZO     Compression = "lzo"
	LZ4     Compression = "lz4"
	Zstd    Compression = "zstd"
	Unknown Compression = "unknown"
)

// MaxVmlinux bounds the decompressed kernel. Debian's vmlinux is ~60 MiB;
// a payload claiming more than this is refused before any allocation.
const MaxVmlinux = 512 << 20

const (
	lz4LegacyMagic = 0x184C2102
	// lz4LegacyBlock is the fixed uncompressed size of every block but
	// the last in lz4's legacy frame (lz4 -l).
	lz4LegacyBlock = 8 << 20
)

var (
	// ErrUnsupportedCompression is returned for payloads we recognise but
	// do not decode (LZO), or do not recognise.
	ErrUnsupportedCompression = errors.New("unsupported payload compression")
	// ErrNotELF is returned when the payload does not decode to an x86-64 ELF.
	ErrNotELF = errors.New("decompressed payload is not an x86-64 ELF")
)

// DetectCompression names the compression of a payload from its magic.
func DetectCompression(payload []byte) Compression {
	magics := []struct {
		magic []byte
		c     Compression
	}{
		{[]byte{0x1f, 0x8b}, Gzip},
		{[]byte{0xfd, '7', 'z', 'X', 'Z', 0x00}, XZ},
		{[]byte{0x5d, 0x00}, LZMA},
		{[]byte("BZh"), Bzip2},
		{[]byte{0x89, 'L', 'Z', 'O'}, LZO},
		{[]byte{0x02, 0x21, 0x4c, 0x18}, LZ4},
		{[]byte{0x28, 0xb5, 0x2f, 0xfd}, Zstd},
	}
	for _, m := range magics {
		if bytes.HasPrefix(payload, m.magic) {
			return m.c
		}
	}
	return Unknown
}

// Decompress parses bzImage's setup header and decompresses its payload
// to the vmlinux ELF, in Go. The kernel's build appends the uncompressed
// size as a little-endian 32-bit word to every payload (gzip's own ISIZE
// plays that part for gzip); the result must match it.
func Decompress(bzImage []byte) ([]byte, error) {
	h, err := ParseSetupHeader(bzImage)
	if err != nil {
		return nil, err
	}
	return DecompressPayload(h.Payload(bzImage))
}

// DecompressPayload decompresses a bzImage payload; see Decompress.
func DecompressPayload(payload []byte) ([]byte, error) {
	c := DetectCompression(payload)
	if len(payload) < 8 {
		return nil, fmt.Errorf("%s payload: %w: %d bytes", c, ErrTruncated, len(payload))
	}
	want := binary.LittleEndian.Uint32(payload[len(payload)-4:])
	if want > MaxVmlinux {
		return nil, fmt.Errorf("%s payload: uncompressed size %d exceeds the %d limit", c, want, MaxVmlinux)
	}
	stream := payload[:len(payload)-4]
	// The trailer sizes the output buffer, but only as far as the
	// payload could plausibly expand: a forged trailer on a tiny payload
	// must not cost 512 MiB up front.
	hint := int(min(uint64(want), 64*uint64(len(payload))))
	var out []byte
	var err error
	switch c {
	case LZ4:
		out, err = unlz4Legacy(stream, hint)
	case Zstd:
		out, err = unzstd(stream, hint)
	case Gzip:
		var r *gzip.Reader
		if r, err = gzip.NewReader(bytes.NewReader(payload)); err == nil {
			r.Multistream(false)
			out, err = readBounded(r, hint)
		}
	case XZ:
		var r *xz.Reader
		if r, err = (xz.ReaderConfig{SingleStream: true}).NewReader(bytes.NewReader(stream)); err == nil {
			out, err = readBounded(r, hint)
		}
		if err != nil {
			// The kernel's xz_wrap.sh adds the x86 BCJ filter, which
			// ulikunitz/xz does not implement.
			err = fmt.Errorf("%w (xz payloads with the x86 BCJ filter are not supported)", err)
		}
	case LZMA:
		var r *lzma.Reader
		if r, err = lzma.NewReader(bytes.NewReader(stream)); err == nil {
			out, err = readBounded(r, hint)
		}
	case Bzip2:
		out, err = readBounded(bzip2.NewReader(bytes.NewReader(stream)), hint)
	default:
		return nil, fmt.Errorf("%w: %s (magic % x)", ErrUnsupportedCompression, c, payload[:4])
	}
	if err != nil {
		return nil, fmt.Errorf("%s payload: %w", c, err)
	}
	if len(out) != int(want) {
		return nil, fmt.Errorf("%s payload: decompressed to %d bytes, the size trailer says %d", c, len(out), want)
	}
	if err := checkELF(out); err != nil {
		return nil, err
	}
	return out, nil
}

// unlz4Legacy decodes lz4's legacy frame as the kernel writes it (lz4 -l):
// the magic, then blocks each prefixed by its LE32 compressed size, each
// an independent LZ4 block of at most 8 MiB. A second magic may start a
// new frame. The block decoder is pierrec/lz4's: it is bounds-checked,
// fuzzed upstream, has an amd64 assembly fast path, and is already in
// the module graph through go-diskfs.
func unlz4Legacy(p []byte, want int) ([]byte, error) {
	le := binary.LittleEndian
	if len(p) < 4 || le.Uint32(p) != lz4LegacyMagic {
		return nil, errors.New("no lz4 legacy frame magic")
	}
	p = p[4:]
	out := make([]byte, 0, want)
	for len(p) > 0 {
		if len(p) < 4 {
			return nil, fmt.Errorf("%w: %d stray bytes after the last block", ErrTruncated, len(p))
		}
		n := le.Uint32(p)
		p = p[4:]
		if n == lz4LegacyMagic {
			continue
		}
		if uint64(n) > uint64(len(p)) {
			return nil, fmt.Errorf("%w: block of %d bytes, %d left", ErrTruncated, n, len(p))
		}
		if uint64(n) > uint64(lz4.CompressBlockBound(lz4LegacyBlock)) {
			return nil, fmt.Errorf("lz4 block of %d bytes exceeds the legacy bound", n)
		}
		// Decode into the spare capacity when it may suffice (the size
		// trailer makes the last, short block fit exactly); grow only
		// when a block does not fit.
		k, err := lz4.UncompressBlock(p[:n], out[len(out):min(cap(out), len(out)+lz4LegacyBlock)])
		if err != nil && cap(out)-len(out) < lz4LegacyBlock {
			if len(out)+lz4LegacyBlock > MaxVmlinux {
				return nil, fmt.Errorf("output exceeds the %d limit", MaxVmlinux)
			}
			grown := make([]byte, len(out), min(max(2*cap(out), len(out)+lz4LegacyBlock), MaxVmlinux))
			copy(grown, out)
			out = grown
			k, err = lz4.UncompressBlock(p[:n], out[len(out):len(out)+lz4LegacyBlock])
		}
		if err != nil {
			return nil, fmt.Errorf("lz4 block at output offset %d: %w", len(out), err)
		}
		out = out[:len(out)+k]
		p = p[n:]
	}
	return out, nil
}

func unzstd(p []byte, want int) ([]byte, error) {
	d, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(MaxVmlinux), zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.DecodeAll(p, make([]byte, 0, want))
}

// readBounded reads r to EOF into a buffer sized for want, refusing more
// than MaxVmlinux bytes.
func readBounded(r io.Reader, want int) ([]byte, error) {
	buf := bytes.NewBuffer(make([]byte, 0, want))
	n, err := io.Copy(buf, io.LimitReader(r, MaxVmlinux+1))
	if err != nil {
		return nil, err
	}
	if n > MaxVmlinux {
		return nil, fmt.Errorf("output exceeds the %d limit", MaxVmlinux)
	}
	return buf.Bytes(), nil
}

func checkELF(b []byte) error {
	if len(b) < 64 || string(b[:4]) != "\x7fELF" {
		return fmt.Errorf("%w: no ELF magic", ErrNotELF)
	}
	if b[4] != 2 || b[5] != 1 || binary.LittleEndian.Uint16(b[18:]) != 0x3e {
		return fmt.Errorf("%w: class %d, data %d, machine %#x", ErrNotELF, b[4], b[5], binary.LittleEndian.Uint16(b[18:]))
	}
	return nil
}

// DecompressInitrd returns an initramfs that starts with gzip or zstd
// magic decompressed (every member or frame, as the kernel would), and any
// other initramfs unchanged; ok says which. The output is bounded by
// limit. Where kernel mode is emulated (kvm_pvm) the kernel's own gunzip
// of a 1 MB initramfs took about 170 s, and Go does it in milliseconds.
func DecompressInitrd(b []byte, limit int64) (out []byte, ok bool, err error) {
	var r io.Reader
	switch DetectCompression(b) {
	case Gzip:
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, false, fmt.Errorf("gzip initramfs: %w", err)
		}
		r = zr
	case Zstd:
		zr, err := zstd.NewReader(bytes.NewReader(b), zstd.WithDecoderMaxMemory(uint64(limit)), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, false, fmt.Errorf("zstd initramfs: %w", err)
		}
		defer zr.Close()
		r = zr
	default:
		return b, false, nil
	}
	buf := bytes.NewBuffer(make([]byte, 0, min(int64(len(b))*4, limit)))
	n, err := io.Copy(buf, io.LimitReader(r, limit+1))
	if err != nil {
		return nil, false, fmt.Errorf("%s initramfs: %w", DetectCompression(b), err)
	}
	if n > limit {
		return nil, false, fmt.Errorf("%s initramfs: decompresses to more than %d bytes", DetectCompression(b), limit)
	}
	return buf.Bytes(), true, nil
}
