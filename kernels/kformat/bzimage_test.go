package kformat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// fakeBzImage builds the smallest image ParseSetupHeader accepts: a boot
// sector and one setup sector carrying the header, then the payload.
func fakeBzImage(version uint16, xloadflags uint16, payload []byte) []byte {
	const setupSects = 1
	b := make([]byte, (setupSects+1)*512)
	le := binary.LittleEndian
	b[0x1f1] = setupSects
	le.PutUint16(b[0x1fe:], 0xAA55)
	le.PutUint32(b[0x202:], 0x53726448)
	le.PutUint16(b[0x206:], version)
	le.PutUint16(b[0x20e:], 0x300-0x200)
	copy(b[0x300:], "9.9.9-test (builder) #1\x00")
	b[0x211] = LoadedHigh
	le.PutUint32(b[0x230:], 2<<20)
	b[0x234] = 1
	b[0x235] = 21
	le.PutUint16(b[0x236:], xloadflags)
	le.PutUint32(b[0x238:], 2047)
	le.PutUint32(b[0x248:], 0)
	le.PutUint32(b[0x24c:], uint32(len(payload)))
	le.PutUint64(b[0x258:], 16<<20)
	le.PutUint32(b[0x260:], 64<<20)
	return append(b, payload...)
}

func TestParseSetupHeader(t *testing.T) {
	payload := []byte{0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3, 4}
	b := fakeBzImage(0x020f, 0x7f, payload)
	h, err := ParseSetupHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	if ProtocolString(h.Version) != "2.15" || h.XLoadFlags != 0x7f || !h.RelocatableKernel ||
		h.KernelAlignment != 2<<20 || h.MinAlignment != 21 || h.CmdlineSize != 2047 ||
		h.PrefAddress != 16<<20 || h.InitSize != 64<<20 || h.SetupLen() != 1024 {
		t.Errorf("header = %+v", h)
	}
	if h.Release() != "9.9.9-test" {
		t.Errorf("Release = %q", h.Release())
	}
	if !bytes.Equal(h.Payload(b), payload) || DetectCompression(h.Payload(b)) != Zstd {
		t.Errorf("payload = % x", h.Payload(b))
	}
	if got := XLoadFlagNames(0x3); len(got) != 2 || got[0] != "KERNEL_64" || got[1] != "CAN_BE_LOADED_ABOVE_4G" {
		t.Errorf("XLoadFlagNames = %v", got)
	}
}

func TestParseSetupHeaderErrors(t *testing.T) {
	good := fakeBzImage(0x020f, 0x7f, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	flip := func(off int, x byte) []byte {
		b := bytes.Clone(good)
		b[off] ^= x
		return b
	}
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"cut in header", good[:0x220], ErrTruncated},
		{"cut before HdrS", good[:0x203], ErrTruncated},
		{"cut in payload", good[:len(good)-1], ErrTruncated},
		{"cut in setup", good[:0x300], ErrTruncated},
		{"boot flag", flip(0x1fe, 1), ErrBadMagic},
		{"HdrS", flip(0x203, 0x20), ErrBadMagic},
		{"text", bytes.Repeat([]byte("not a kernel\n"), 100), ErrBadMagic},
		{"protocol 2.11", fakeBzImage(0x020b, 0x7f, []byte{1, 2, 3, 4}), ErrOldProtocol},
		{"32-bit only", fakeBzImage(0x020f, 0x7e, []byte{1, 2, 3, 4}), ErrNo64BitEntry},
	}
	for _, c := range cases {
		_, err := ParseSetupHeader(c.b)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
}

func TestDetectCompression(t *testing.T) {
	cases := map[Compression][]byte{
		Gzip:    {0x1f, 0x8b, 8},
		XZ:      {0xfd, '7', 'z', 'X', 'Z', 0},
		LZMA:    {0x5d, 0, 0, 0x80},
		Bzip2:   []byte("BZh9"),
		LZO:     {0x89, 'L', 'Z', 'O', 0},
		LZ4:     {0x02, 0x21, 0x4c, 0x18},
		Zstd:    {0x28, 0xb5, 0x2f, 0xfd},
		Unknown: {0, 0, 0, 0},
	}
	for want, b := range cases {
		if got := DetectCompression(b); got != want {
			t.Errorf("DetectCompression(% x) = %s, want %s", b, got, want)
		}
	}
}

func FuzzParseSetupHeader(f *testing.F) {
	f.Add(fakeBzImage(0x020f, 0x7f, []byte{1, 2, 3, 4, 5, 6, 7, 8}))
	f.Add(fakeBzImage(0x020b, 0x7f, []byte{1}))
	f.Add(fakeBzImage(0x020f, 0x01, nil))
	for _, c := range []Compression{LZ4, Zstd, Gzip, LZMA} {
		f.Add(fakeBzImage(0x020f, 0x7f, payloadOf(f, c, tinyELF(nil))))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseSetupHeader(b)
		if err != nil {
			return
		}
		if h.Version < MinProtocol || h.XLoadFlags&XLFKernel64 == 0 {
			t.Fatalf("accepted protocol %#x xloadflags %#x", h.Version, h.XLoadFlags)
		}
		p := h.Payload(b) // must not panic: bounds were checked
		if len(p) != int(h.PayloadLength) {
			t.Fatalf("payload %d bytes, header says %d", len(p), h.PayloadLength)
		}
		_, _ = DecompressPayload(p)
	})
}
