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
	setup := 1024
	sys := (len(b) - setup + 4 + 15) / 16
	b = append(b, make([]byte, setup+sys*16-len(b))...)
	binary.LittleEndian.PutUint32(b[0x1f4:], uint32(sys))
	return withCRC(b)
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
			if c == LZ4 {
				return // no checksum of its own: the image CRC guards it
			}
			// With the image CRC made to match, the payload's own check
			// (or its decoder) must catch the flip.
			refuse("payload bit flipped, CRC fixed", withCRC(flipped), string(c)+" payload")
		})
	}
}
