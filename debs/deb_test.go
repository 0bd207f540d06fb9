package debs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

type arMember struct {
	name string
	data []byte
}

// makeAr writes an ar archive the way dpkg-deb does: global magic, then
// 60-byte headers with decimal sizes and 2-byte alignment.
func makeAr(members ...arMember) []byte {
	var b bytes.Buffer
	b.WriteString(arMagic)
	for _, m := range members {
		fmt.Fprintf(&b, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", m.name, 0, 0, 0, "100644", len(m.data))
		b.Write(m.data)
		if len(m.data)%2 == 1 {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

type tarEntry struct {
	name     string
	typ      byte
	body     string
	linkname string
}

func makeTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body)), Linkname: e.linkname}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func compress(t testing.TB, kind string, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	var w io.WriteCloser
	var err error
	switch kind {
	case "gz":
		w = gzip.NewWriter(&out)
	case "xz":
		w, err = xz.NewWriter(&out)
	case "zst":
		w, err = zstd.NewWriter(&out)
	case "":
		return b
	}
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

const testControl = "Package: linux-image-test\nVersion: 1.0-1\nArchitecture: amd64\nDepends: kmod,\n linux-base\nDescription: test\n"

func testDeb(t testing.TB, kind string) []byte {
	control := compress(t, "gz", makeTar(t, tarEntry{name: "./", typ: tar.TypeDir}, tarEntry{name: "./control", typ: tar.TypeReg, body: testControl}))
	suffix := ""
	if kind != "" {
		suffix = "." + kind
	}
	data := compress(t, kind, makeTar(t,
		tarEntry{name: "./", typ: tar.TypeDir},
		tarEntry{name: "./boot/", typ: tar.TypeDir},
		tarEntry{name: "./boot/vmlinuz-1", typ: tar.TypeReg, body: "kernel"},
		tarEntry{name: "./boot/link", typ: tar.TypeSymlink, linkname: "vmlinuz-1"},
		tarEntry{name: "./boot/hard", typ: tar.TypeLink, linkname: "./boot/vmlinuz-1"},
	))
	return makeAr(arMember{"debian-binary", []byte("2.0\n")}, arMember{"control.tar.gz", control}, arMember{"data.tar" + suffix, data})
}

func writeTemp(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOpenAndWalk(t *testing.T) {
	for _, kind := range []string{"xz", "zst", "gz", ""} {
		t.Run("data.tar."+kind, func(t *testing.T) {
			b := testDeb(t, kind)
			p, err := Open(writeTemp(t, "x.deb", b))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(b)
			if p.SHA256 != hex.EncodeToString(sum[:]) {
				t.Errorf("SHA256 = %s, want %x", p.SHA256, sum)
			}
			if p.Control["Package"] != "linux-image-test" || p.Control["Version"] != "1.0-1" || p.Control["Depends"] != "kmod,\nlinux-base" {
				t.Errorf("control = %q", p.Control)
			}
			var got []string
			err = p.Walk(func(h *tar.Header, r io.Reader) error {
				body, _ := io.ReadAll(r)
				got = append(got, fmt.Sprintf("%c %s %s %s", h.Typeflag, h.Name, body, h.Linkname))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"5 ./  ", "5 ./boot/  ", "0 ./boot/vmlinuz-1 kernel ", "2 ./boot/link  vmlinuz-1", "1 ./boot/hard  ./boot/vmlinuz-1"}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("walk = %q\nwant %q", got, want)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	good := testDeb(t, "xz")
	control := compress(t, "gz", makeTar(t, tarEntry{name: "./control", typ: tar.TypeReg, body: testControl}))
	cases := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "not a .deb (bad ar magic)"},
		{"text", []byte("hello, world\n"), "not a .deb (bad ar magic)"},
		{"truncated member", good[:len(good)-100], "truncated ar member \"data.tar.xz\""},
		{"truncated header", good[:len(arMagic)+30], "truncated ar header"},
		{"no data", makeAr(arMember{"debian-binary", []byte("2.0\n")}, arMember{"control.tar.gz", control}), "no data.tar member"},
		{"no control", makeAr(arMember{"debian-binary", []byte("2.0\n")}, arMember{"data.tar.gz", control}), "no control.tar member"},
		{"not debian-binary first", makeAr(arMember{"control.tar.gz", control}), "first ar member is not debian-binary"},
		{"format 3", makeAr(arMember{"debian-binary", []byte("3.0\n")}), "unsupported .deb format version"},
		{"bz2 data", makeAr(arMember{"debian-binary", []byte("2.0\n")}, arMember{"control.tar.gz", control}, arMember{"data.tar.bz2", nil}), "unsupported compression"},
		{"bad size", bytes.Replace(good, []byte("4         `\n"), []byte("x4        `\n"), 1), "bad size"},
		{"control not gzip", makeAr(arMember{"debian-binary", []byte("2.0\n")}, arMember{"control.tar.gz", []byte("nope")}, arMember{"data.tar", nil}), "control.tar.gz"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeTemp(t, "bad.deb", c.b)
			_, err := Open(path)
			if err == nil {
				t.Fatalf("Open accepted %s", c.name)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file and %q", err, c.want)
			}
		})
	}
}

// A data.tar that is cut short inside its compressed stream passes Open
// (the ar index is consistent) but Walk must fail, naming the file.
func TestWalkCorruptData(t *testing.T) {
	control := compress(t, "gz", makeTar(t, tarEntry{name: "./control", typ: tar.TypeReg, body: testControl}))
	body := strings.Repeat("kernel bytes ", 10000)
	data := compress(t, "xz", makeTar(t, tarEntry{name: "./boot/vmlinuz-1", typ: tar.TypeReg, body: body}))
	data = data[:len(data)/2]
	path := writeTemp(t, "cut.deb", makeAr(arMember{"debian-binary", []byte("2.0\n")}, arMember{"control.tar.gz", control}, arMember{"data.tar.xz", data}))
	p, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Walk(func(h *tar.Header, r io.Reader) error {
		_, err := io.Copy(io.Discard, r)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", path, h.Name, err)
		}
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Walk of a cut data.tar.xz: err = %v", err)
	}
}

func TestParseControl(t *testing.T) {
	for _, bad := range []string{"Package foo\n", " cont\n", "Package: a\n\nPackage: b\n", "Version: 1\n"} {
		if _, err := ParseControl([]byte(bad)); err == nil {
			t.Errorf("ParseControl(%q) accepted", bad)
		}
	}
}

func FuzzOpen(f *testing.F) {
	f.Add(testDeb(f, "gz"))
	f.Add(testDeb(f, ""))
	f.Add([]byte(arMagic + "debian-binary   0           0     0     100644  4         `\n2.0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parse(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		if p.Control["Package"] == "" {
			t.Fatal("parse accepted a package without a name")
		}
		if p.data.offset < 0 || p.data.offset+p.data.size > int64(len(b)) {
			t.Fatalf("data member [%d+%d] outside %d bytes", p.data.offset, p.data.size, len(b))
		}
	})
}
