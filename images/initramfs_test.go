package images

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
	"github.com/klauspost/compress/zstd"

	"github.com/xeno-hv/xeno/internal/atomicfile"
	"github.com/xeno-hv/xeno/internal/testenv"
)

var testEpoch = time.Unix(1700000000, 0)

// sampleTree has every supported kind of entry, a missing parent, a
// Source file and unsorted input.
func sampleTree(t *testing.T) []File {
	t.Helper()
	src := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(src, bytes.Repeat([]byte("source\n"), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	return []File{
		{Path: "usr/bin/tool", Mode: 0o755, Data: []byte("#!/bin/sh\necho hi\n")},
		{Path: "init", Mode: 0o755, Data: []byte("init-binary")},
		{Path: "bin", Mode: fs.ModeSymlink | 0o777, Link: "usr/bin"},
		{Path: "etc", Mode: fs.ModeDir | 0o700},
		{Path: "etc/big", Mode: 0o644, Source: src},
		{Path: "etc/empty", Mode: 0o600},
		{Path: "tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		{Path: "usr/sbin/su", Mode: fs.ModeSetuid | 0o755, Data: []byte("su")},
	}
}

type readEntry struct {
	hdr  cpio.Header
	data []byte
}

func readCpio(t testing.TB, r io.Reader) []readEntry {
	t.Helper()
	cr := cpio.NewReader(r)
	var out []readEntry
	for {
		h, err := cr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("reading back cpio: %v", err)
		}
		data, err := io.ReadAll(cr)
		if err != nil {
			t.Fatalf("reading %s: %v", h.Name, err)
		}
		out = append(out, readEntry{*h, data})
	}
}

func TestWriteInitramfsReadBack(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteInitramfs(&buf, sampleTree(t), None, testEpoch); err != nil {
		t.Fatal(err)
	}
	got := readCpio(t, bytes.NewReader(buf.Bytes()))
	want := []struct {
		name  string
		mode  cpio.FileMode
		links int
		data  string
		link  string
	}{
		{"bin", cpio.TypeSymlink | 0o777, 1, "", "usr/bin"},
		{"etc", cpio.TypeDir | 0o700, 2, "", ""},
		{"etc/big", cpio.TypeReg | 0o644, 1, strings.Repeat("source\n", 1000), ""},
		{"etc/empty", cpio.TypeReg | 0o600, 1, "", ""},
		{"init", cpio.TypeReg | 0o755, 1, "init-binary", ""},
		{"tmp", cpio.TypeDir | cpio.ModeSticky | 0o777, 2, "", ""},
		{"usr", cpio.TypeDir | 0o755, 4, "", ""},
		{"usr/bin", cpio.TypeDir | 0o755, 2, "", ""},
		{"usr/bin/tool", cpio.TypeReg | 0o755, 1, "#!/bin/sh\necho hi\n", ""},
		{"usr/sbin", cpio.TypeDir | 0o755, 2, "", ""},
		{"usr/sbin/su", cpio.TypeReg | cpio.ModeSetuid | 0o755, 1, "su", ""},
	}
	if len(got) != len(want) {
		for _, g := range got {
			t.Logf("got %s", g.hdr.Name)
		}
		t.Fatalf("got %d entries, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.hdr.Name != w.name || g.hdr.Mode != w.mode || g.hdr.Links != w.links ||
			string(g.data) != w.data || g.hdr.Linkname != w.link {
			t.Errorf("entry %d: got %s mode %o links %d link %q data %q; want %s mode %o links %d link %q data %q",
				i, g.hdr.Name, g.hdr.Mode, g.hdr.Links, g.hdr.Linkname, g.data, w.name, w.mode, w.links, w.link, w.data)
		}
		if g.hdr.Uid != 0 || g.hdr.Guid != 0 {
			t.Errorf("%s: uid/gid %d/%d, want 0/0", g.hdr.Name, g.hdr.Uid, g.hdr.Guid)
		}
		if !g.hdr.ModTime.Equal(testEpoch) {
			t.Errorf("%s: mtime %v, want %v", g.hdr.Name, g.hdr.ModTime, testEpoch)
		}
		if g.hdr.Inode != int64(i+1) {
			t.Errorf("%s: inode %d, want %d", g.hdr.Name, g.hdr.Inode, i+1)
		}
	}
}

func TestWriteInitramfsRefuses(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		files []File
		want  string
	}{
		{"device", []File{{Path: "dev/null", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666}}, "dev/null: device nodes"},
		{"fifo", []File{{Path: "run/fifo", Mode: fs.ModeNamedPipe | 0o600}}, "run/fifo: device nodes"},
		{"duplicate", []File{{Path: "a", Data: []byte("1")}, {Path: "a", Data: []byte("2")}}, "a: duplicate path"},
		{"absolute", []File{{Path: "/etc/passwd"}}, `"/etc/passwd": absolute path`},
		{"dotdot", []File{{Path: "a/../b"}}, `"a/../b": ".." component`},
		{"dot", []File{{Path: "./a"}}, `"./a": "." component`},
		{"empty component", []File{{Path: "a//b"}}, `"a//b": empty path component`},
		{"trailing slash", []File{{Path: "a/"}}, `"a/": empty path component`},
		{"file as parent", []File{{Path: "a", Data: []byte("x")}, {Path: "a/b"}}, "a/b: parent a is not a directory"},
		{"empty link", []File{{Path: "l", Mode: fs.ModeSymlink}}, "l: symlink without a target"},
		{"missing source", []File{{Path: "s", Source: filepath.Join(dir, "nope")}}, "s: stat"},
		{"source is dir", []File{{Path: "s", Source: dir}}, "is not a regular file"},
		{"data and source", []File{{Path: "s", Data: []byte("x"), Source: "/etc/hostname"}}, "both Data and Source"},
		{"long path", []File{{Path: strings.Repeat("a/", 2048) + "b"}}, "longer than the kernel's PATH_MAX"},
		{"dir with data", []File{{Path: "d", Mode: fs.ModeDir, Data: []byte("x")}}, "d: a directory has no contents"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := WriteInitramfs(&buf, tc.files, Gzip, testEpoch)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v, want one containing %q", err, tc.want)
			}
			if buf.Len() != 0 {
				t.Errorf("wrote %d bytes before refusing", buf.Len())
			}
		})
	}
	if err := WriteInitramfs(io.Discard, nil, None, time.Unix(-1, 0)); err == nil || !strings.Contains(err.Error(), "epoch") {
		t.Errorf("negative epoch: got %v", err)
	}
	var buf bytes.Buffer
	if err := WriteInitramfs(&buf, nil, "lz4", testEpoch); err == nil || !strings.Contains(err.Error(), `"lz4"`) {
		t.Errorf("unknown compression: got %v", err)
	}
}

// TestWriteInitramfsRefusesHuge checks the 4 GiB limit on a sparse file,
// which costs no disk space.
func TestWriteInitramfsRefusesHuge(t *testing.T) {
	p := filepath.Join(t.TempDir(), "huge")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 32); err != nil {
		t.Fatal(err)
	}
	f.Close()
	err = WriteInitramfs(io.Discard, []File{{Path: "boot/huge", Mode: 0o644, Source: p}}, None, testEpoch)
	if err == nil || !strings.Contains(err.Error(), "boot/huge: 4294967296 bytes is too large") {
		t.Fatalf("got %v, want a refusal naming boot/huge", err)
	}
}

func TestWriteInitramfsCompressions(t *testing.T) {
	tree := sampleTree(t)
	var plain bytes.Buffer
	if err := WriteInitramfs(&plain, tree, None, testEpoch); err != nil {
		t.Fatal(err)
	}
	for _, c := range []Compression{Gzip, Zstd} {
		t.Run(string(c), func(t *testing.T) {
			var a, b bytes.Buffer
			if err := WriteInitramfs(&a, tree, c, testEpoch); err != nil {
				t.Fatal(err)
			}
			if err := WriteInitramfs(&b, tree, c, testEpoch); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a.Bytes(), b.Bytes()) {
				t.Fatal("two writes of the same tree differ")
			}
			var r io.Reader
			switch c {
			case Gzip:
				zr, err := gzip.NewReader(bytes.NewReader(a.Bytes()))
				if err != nil {
					t.Fatal(err)
				}
				if zr.Name != "" || !zr.ModTime.IsZero() {
					t.Errorf("gzip header leaks name %q / mtime %v", zr.Name, zr.ModTime)
				}
				r = zr
			case Zstd:
				zr, err := zstd.NewReader(bytes.NewReader(a.Bytes()))
				if err != nil {
					t.Fatal(err)
				}
				defer zr.Close()
				r = zr
			}
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, plain.Bytes()) {
				t.Error("decompressed archive differs from the uncompressed one")
			}
		})
	}
}

// TestInitramfsValidators has GNU cpio, gzip and zstd, which share no code
// with the writer, judge the output.
func TestInitramfsValidators(t *testing.T) {
	cpioBin := testenv.RequireCmd(t, "cpio")
	gzipBin := testenv.RequireCmd(t, "gzip")
	zstdBin := testenv.RequireCmd(t, "zstd")
	dir := t.TempDir()
	tree := sampleTree(t)
	paths := map[Compression]string{}
	for _, c := range []Compression{None, Gzip, Zstd} {
		p := filepath.Join(dir, "initrd."+string(c))
		err := atomicfile.Write(p, 0o644, func(f *os.File) error { return WriteInitramfs(f, tree, c, testEpoch) })
		if err != nil {
			t.Fatal(err)
		}
		paths[c] = p
	}
	if out, err := exec.Command(gzipBin, "-t", paths[Gzip]).CombinedOutput(); err != nil {
		t.Errorf("gzip -t: %v\n%s", err, out)
	}
	if out, err := exec.Command(zstdBin, "-t", paths[Zstd]).CombinedOutput(); err != nil {
		t.Errorf("zstd -t: %v\n%s", err, out)
	}
	cmd := exec.Command(cpioBin, "-itv", "--quiet", "--numeric-uid-gid")
	in, err := os.Open(paths[None])
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	cmd.Stdin = in
	cmd.Env = append(os.Environ(), "TZ=UTC", "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -itv: %v\n%s", err, out)
	}
	// GNU cpio prints: mode links uid gid size month day year name [-> target]
	want := []string{
		"lrwxrwxrwx 1 0 0 7 Nov 14 2023 bin -> usr/bin",
		"drwx------ 2 0 0 0 Nov 14 2023 etc",
		"-rw-r--r-- 1 0 0 7000 Nov 14 2023 etc/big",
		"-rw------- 1 0 0 0 Nov 14 2023 etc/empty",
		"-rwxr-xr-x 1 0 0 11 Nov 14 2023 init",
		"drwxrwxrwt 2 0 0 0 Nov 14 2023 tmp",
		"drwxr-xr-x 4 0 0 0 Nov 14 2023 usr",
		"drwxr-xr-x 2 0 0 0 Nov 14 2023 usr/bin",
		"-rwxr-xr-x 1 0 0 18 Nov 14 2023 usr/bin/tool",
		"drwxr-xr-x 2 0 0 0 Nov 14 2023 usr/sbin",
		"-rwsr-xr-x 1 0 0 2 Nov 14 2023 usr/sbin/su",
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(want) {
		t.Fatalf("cpio -itv listed %d entries, want %d:\n%s", len(lines), len(want), out)
	}
	for i, l := range lines {
		if got := strings.Join(strings.Fields(l), " "); got != want[i] {
			t.Errorf("cpio -itv line %d: %q, want %q", i, got, want[i])
		}
	}
}

// The reader takes back what the writer wrote, in every compression.
func TestReadInitramfsFile(t *testing.T) {
	tree := []File{
		{Path: "init", Mode: 0o755, Data: []byte("#!/bin/sh\n")},
		{Path: "etc/xeno/manifest.toml", Mode: 0o644, Data: []byte("interface = \"1.2\"\n")},
	}
	for _, c := range []Compression{Gzip, Zstd, None} {
		p := filepath.Join(t.TempDir(), "initrd")
		err := atomicfile.Write(p, 0o644, func(f *os.File) error { return WriteInitramfs(f, tree, c, testEpoch) })
		if err != nil {
			t.Fatal(err)
		}
		b, err := ReadInitramfsFile(p, "/etc/xeno/manifest.toml", 1<<10)
		if err != nil || string(b) != "interface = \"1.2\"\n" {
			t.Errorf("%s: %q, %v", c, b, err)
		}
		if b, err := ReadInitramfsFile(p, "/etc/missing", 1<<10); b != nil || err != nil {
			t.Errorf("%s: missing file: %q, %v", c, b, err)
		}
		if _, err := ReadInitramfsFile(p, "/etc/xeno/manifest.toml", 4); err == nil {
			t.Errorf("%s: a file past the limit was read", c)
		}
	}
}
