package kformat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
	"testing"
)

// wholeImage is fakeBzImage finished as Linux's build.c finishes one:
// padded to 16 bytes with room for the CRC32, syssize set, CRC last.
func wholeImage(payload []byte) []byte {
	b := fakeBzImage(0x020f, 0x7f, payload)
	// An EFI stub's PE32+ header in the boot sector, as Linux's header.S
	// lays it out: "MZ", the offset at 0x3c, CheckSum and the
	// Certificate Table left zero.
	copy(b, "MZ")
	binary.LittleEndian.PutUint32(b[0x3c:], 0x80)
	copy(b[0x80:], "PE\x00\x00")
	binary.LittleEndian.PutUint16(b[0x80+peOptHeader:], peMagicPE32Plus)
	setup := 1024
	sys := (len(b) - setup + 4 + 15) / 16
	b = append(b, make([]byte, setup+sys*16-len(b))...)
	binary.LittleEndian.PutUint32(b[0x1f4:], uint32(sys))
	return withCRC(b)
}

// sign does to an image what sbsign does, by the PE format: fills the
// CheckSum and the Certificate Table entry, then appends the signature
// 8-byte aligned. The image must carry a PE header (wholeImage's does).
func sign(t *testing.T, image []byte) []byte {
	t.Helper()
	pe, ok := peHeader(image)
	if !ok {
		t.Fatal("test image has no PE header")
	}
	b := bytes.Clone(image)
	le := binary.LittleEndian
	le.PutUint32(b[pe+peOptHeader+peCheckSum:], 0x1234567)
	le.PutUint32(b[pe+peOptHeader+peCertTable:], uint32(len(b)))
	le.PutUint32(b[pe+peOptHeader+peCertTable+4:], 64)
	return append(b, bytes.Repeat([]byte{0x30}, 64)...)
}

func withCRC(b []byte) []byte {
	binary.LittleEndian.PutUint32(b[len(b)-4:], ^crc32.ChecksumIEEE(b[:len(b)-4]))
	return b
}

func TestCheckImage(t *testing.T) {
	for _, c := range []Compression{Gzip, XZ, Zstd, LZ4} {
		t.Run(string(c), func(t *testing.T) {
			payload := payloadOf(t, c, tinyELF(nil))
			good := wholeImage(payload)
			if _, info, err := CheckImage(good); err != nil || info.Entry != 0x1000000 {
				t.Fatalf("intact image: %v", err)
			}
			refuse := func(name string, b []byte, want string) {
				t.Helper()
				_, _, err := CheckImage(b)
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), want) {
					t.Errorf("%s: %v, want ErrCorrupt saying %q", name, err, want)
				}
			}
			refuse("cut by one byte", good[:len(good)-1], "the header declares")
			flipped := bytes.Clone(good)
			flipped[1024+len(payload)/2] ^= 1
			refuse("payload bit flipped", flipped, "image CRC32")
			short := bytes.Clone(good)
			binary.LittleEndian.PutUint32(short[0x260:], 0)
			refuse("init_size 0", withCRC(short), "init_size")
			signed := sign(t, good)
			if _, _, err := CheckImage(signed); err != nil {
				t.Errorf("signed image: %v", err)
			}
			flippedSigned := bytes.Clone(signed)
			flippedSigned[1024+len(payload)/2] ^= 1
			refuse("signed, payload bit flipped", flippedSigned, "image CRC32")
			junk := append(bytes.Clone(good), "appended after the build"...)
			flippedJunk := bytes.Clone(junk)
			flippedJunk[1024+len(payload)/2] ^= 1
			refuse("appended data, payload bit flipped", flippedJunk, "with 24 bytes appended")
			if c == LZ4 {
				return // no checksum of its own: the image CRC guards it
			}
			// With the image CRC made to match, the payload's own check
			// (or its decoder) must catch the flip.
			refuse("payload bit flipped, CRC fixed", withCRC(flipped), string(c)+" payload")
		})
	}
}
