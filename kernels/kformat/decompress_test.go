package kformat

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// payloadOf compresses vmlinux the way the kernel's build does: the
// compressor's stream, then (except for gzip) the LE32 uncompressed size.
func payloadOf(t testing.TB, c Compression, vmlinux []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	var w io.WriteCloser
	var err error
	switch c {
	case LZ4:
		// lz4 -l: magic, then LE32-sized blocks of at most 8 MiB input.
		binary.Write(&b, binary.LittleEndian, uint32(lz4LegacyMagic))
		for rest := vmlinux; len(rest) > 0; {
			n := min(len(rest), lz4LegacyBlock)
			dst := make([]byte, lz4.CompressBlockBound(n))
			k, err := lz4.CompressBlock(rest[:n], dst, nil)
			if err != nil || k == 0 {
				t.Fatalf("lz4: %d, %v", k, err)
			}
			binary.Write(&b, binary.LittleEndian, uint32(k))
			b.Write(dst[:k])
			rest = rest[n:]
		}
	case Gzip:
		w = gzip.NewWriter(&b)
	case Zstd:
		w, err = zstd.NewWriter(&b)
	case XZ:
		w, err = xz.NewWriter(&b)
	case LZMA:
		w, err = lzma.NewWriter(&b)
	}
	if err != nil {
		t.Fatal(err)
	}
	if w != nil {
		w.Write(vmlinux)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if c != Gzip {
		binary.Write(&b, binary.LittleEndian, uint32(len(vmlinux)))
	}
	return b.Bytes()
}

// bigELF is tinyELF padded with compressible bytes past 8 MiB, so that
// LZ4 needs more than one legacy block.
func bigELF() []byte {
	e := tinyELF(nil)
	pad := bytes.Repeat([]byte("xeno kernel store "), (9<<20)/18)
	return append(e, pad...)
}

func TestDecompressFormats(t *testing.T) {
	vmlinux := bigELF()
	for _, c := range []Compression{LZ4, Zstd, Gzip, XZ, LZMA} {
		t.Run(string(c), func(t *testing.T) {
			p := payloadOf(t, c, vmlinux)
			if got := DetectCompression(p); got != c {
				t.Fatalf("DetectCompression = %s", got)
			}
			out, err := Decompress(fakeBzImage(0x020f, 0x7f, p))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, vmlinux) {
				t.Fatalf("round trip differs: %d bytes, want %d", len(out), len(vmlinux))
			}
			// A size trailer that disagrees is refused.
			bad := bytes.Clone(p)
			bad[len(bad)-4]++
			if _, err := DecompressPayload(bad); err == nil {
				t.Error("accepted a wrong size trailer")
			}
			// So is a payload cut short.
			if _, err := DecompressPayload(p[:len(p)*2/3]); err == nil {
				t.Error("accepted a truncated payload")
			}
		})
	}
}

func TestDecompressRefuses(t *testing.T) {
	notELF := bytes.Repeat([]byte("not an ELF "), 100)
	if _, err := DecompressPayload(payloadOf(t, Gzip, notELF)); !errors.Is(err, ErrNotELF) {
		t.Errorf("non-ELF payload: %v", err)
	}
	lzo := append([]byte{0x89, 'L', 'Z', 'O', 0, 0, 0, 0}, 0, 0, 0, 0)
	if _, err := DecompressPayload(lzo); !errors.Is(err, ErrUnsupportedCompression) {
		t.Errorf("lzo: %v", err)
	}
	// A trailer claiming more than MaxVmlinux is refused before decoding.
	huge := payloadOf(t, Zstd, tinyELF(nil))
	binary.LittleEndian.PutUint32(huge[len(huge)-4:], MaxVmlinux+1)
	if _, err := DecompressPayload(huge); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Errorf("huge trailer: %v", err)
	}
}

func TestDecompressInitrd(t *testing.T) {
	cpio := bytes.Repeat([]byte("070701 xeno initramfs "), 1000)
	var gz bytes.Buffer
	// Two members, as when initramfs images are concatenated.
	for _, part := range [][]byte{cpio[:5000], cpio[5000:]} {
		w := gzip.NewWriter(&gz)
		w.Write(part)
		w.Close()
	}
	zw, _ := zstd.NewWriter(nil)
	zs := zw.EncodeAll(cpio, nil)
	for name, in := range map[string][]byte{"gzip": gz.Bytes(), "zstd": zs} {
		out, ok, err := DecompressInitrd(in, 1<<20)
		if err != nil || !ok || !bytes.Equal(out, cpio) {
			t.Errorf("%s: ok=%v err=%v, %d bytes, want %d", name, ok, err, len(out), len(cpio))
		}
		if _, _, err := DecompressInitrd(in, 1000); err == nil {
			t.Errorf("%s: no error past the bound: %v", name, err)
		}
	}
	out, ok, err := DecompressInitrd(cpio, 1<<20)
	if err != nil || ok || !bytes.Equal(out, cpio) {
		t.Errorf("plain cpio: ok=%v err=%v", ok, err)
	}
	if _, _, err := DecompressInitrd(gz.Bytes()[:100], 1<<20); err == nil {
		t.Errorf("truncated gzip accepted")
	}
}

func FuzzDecompressInitrd(f *testing.F) {
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write([]byte("070701 initramfs"))
	w.Close()
	zw, _ := zstd.NewWriter(nil)
	f.Add(gz.Bytes())
	f.Add(zw.EncodeAll([]byte("070701 initramfs"), nil))
	f.Add([]byte("070701 plain"))
	f.Fuzz(func(t *testing.T, b []byte) {
		const limit = 1 << 16
		out, ok, err := DecompressInitrd(b, limit)
		if err == nil && ok && len(out) > limit {
			t.Fatalf("%d bytes past the %d limit", len(out), limit)
		}
		if err == nil && !ok && !bytes.Equal(out, b) {
			t.Fatalf("an uncompressed initramfs was changed")
		}
	})
}
