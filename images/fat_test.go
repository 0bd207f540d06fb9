package images

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xeno-hv/xeno/internal/atomicfile"
	"github.com/xeno-hv/xeno/internal/testenv"
)

// TestFATNames writes names that need each path through the short/long
// name code and has mtools read every file back by its long name, and
// fsck.vfat check the volume, on FAT16 and FAT32.
func TestFATNames(t *testing.T) {
	fsck := testenv.RequireCmd(t, "fsck.vfat")
	mtype := testenv.RequireCmd(t, "mtype")
	names := []string{
		"a", "UPPER.TXT", "lower.txt", "MiXeD.Txt", "long name with spaces.conf",
		"x.tar.gz", "12345678.123", "123456789.txt", "longname1.txt", "longname2.txt",
		"héllo wörld.txt", "dir/sub dir/deep file.efi", "dir/ok",
		"a-file-name-longer-than-twenty-six-characters-needs-several-entries.bin",
	}
	// Enough files to push a directory past one cluster.
	for i := 0; i < 40; i++ {
		names = append(names, "many/file number "+itoa(int64(i))+".data")
	}
	var files []fatFile
	for i, n := range names {
		files = append(files, fatFile{n, []byte(strings.Repeat(n+"\n", i*50))})
	}
	for _, fat32 := range []bool{false, true} {
		name := map[bool]string{false: "FAT16", true: "FAT32"}[fat32]
		t.Run(name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "fat.img")
			size := fatSize(files, fat32)
			err := atomicfile.Write(img, 0o644, func(f *os.File) error {
				return writeFAT(f, 0, size, fat32, "NAMES", 0x12345678, testEpoch, files, 0)
			})
			if err != nil {
				t.Fatal(err)
			}
			if out := run(t, fsck, "-n", "-v", img); !strings.Contains(out, map[bool]string{false: "16 bit entries", true: "32 bit entries"}[fat32]) {
				t.Errorf("fsck.vfat:\n%s", out)
			}
			for _, f := range files {
				if got := run(t, mtype, "-i", img, "::/"+f.path); got != string(f.data) {
					t.Errorf("%s: read back %d bytes, want %d", f.path, len(got), len(f.data))
				}
			}
		})
	}
}

func TestFATRefuses(t *testing.T) {
	w := &memWriterAt{b: make([]byte, 8<<20)}
	for _, tc := range []struct {
		files []fatFile
		want  string
	}{
		{[]fatFile{{"a", nil}, {"a", nil}}, "a: duplicate path"},
		{[]fatFile{{"a", nil}, {"a/b", nil}}, "a/b: a is a file"},
		{[]fatFile{{"../x", nil}}, `"../x": ".." component`},
		{[]fatFile{{"a:b", nil}}, `"a:b": ':' is not allowed`},
		{[]fatFile{{"Dir/x", nil}, {"DIR/y", nil}}, `Dir/x: "DIR" and "Dir" differ only in case`},
		{[]fatFile{{"big", make([]byte, 9<<20)}}, "too small for the files"},
	} {
		err := writeFAT(w, 0, int64(len(w.b)), false, "X", 0, testEpoch, tc.files, 0)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
}

// memWriterAt is an io.WriterAt over a fixed buffer.
type memWriterAt struct{ b []byte }

func (m *memWriterAt) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("write of %d bytes at %d outside %d-byte image", len(p), off, len(m.b))
	}
	return copy(m.b[off:], p), nil
}
