package images

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"strings"

	"github.com/cavaliergopher/cpio"
	"github.com/klauspost/compress/zstd"

	"github.com/xeno-hv/xeno/internal/hostfile"
)

// maxReadEntries bounds how far ReadInitramfsFile looks, so that a hostile
// archive of empty entries cannot keep a reader busy.
const maxReadEntries = 1 << 20

// ReadInitramfsFile returns the contents of name (an image path such as
// "/etc/xeno/manifest.toml") inside the newc initramfs at file, or nil if
// it is not there. It reads what WriteInitramfs writes: a newc archive,
// gzip-, zstd- or not compressed, and refuses an entry larger than limit.
// Errors name neither the package nor file: the caller says which
// ramdisk it was reading, and why.
func ReadInitramfsFile(file, name string, limit int64) ([]byte, error) {
	// A FIFO or device here would block or read forever: only a regular
	// file of a size an initramfs can have is looked into.
	f, _, err := hostfile.OpenRegular(file, hostfile.MaxInitrd)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	magic, _ := br.Peek(6)
	var r io.Reader
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		z, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		defer z.Close()
		r = z
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		z, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		defer z.Close()
		r = z
	case bytes.HasPrefix(magic, []byte("070701")), bytes.HasPrefix(magic, []byte("070702")):
		r = br
	default:
		return nil, fmt.Errorf("not a newc cpio archive (compressed with gzip, zstd or nothing): magic % x", magic)
	}
	want := strings.TrimPrefix(name, "/")
	cr := cpio.NewReader(r)
	for i := 0; i < maxReadEntries; i++ {
		h, err := cr.Next()
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("cpio: %w", err)
		}
		if strings.TrimPrefix(strings.TrimPrefix(h.Name, "."), "/") != want {
			continue
		}
		if h.Size > limit {
			return nil, fmt.Errorf("/%s is larger than %d bytes", want, limit)
		}
		b, err := io.ReadAll(io.LimitReader(cr, limit))
		if err != nil {
			return nil, fmt.Errorf("cpio: /%s: %w", want, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("cpio: more than %d entries", maxReadEntries)
}
