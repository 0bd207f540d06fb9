package images

import (
	"bytes"
	"io/fs"
	"path"
	"sort"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"
)

// treeFromBytes turns fuzz input into a tree. Paths come from a tiny
// alphabet so that duplicates, shared parents and files used as parents
// are common; a few bad components keep the refusals exercised.
func treeFromBytes(b []byte) []File {
	comps := []string{"a", "b", "c", "dd", "e.f", "..", "", "."}
	next := func() byte {
		if len(b) == 0 {
			return 0
		}
		c := b[0]
		b = b[1:]
		return c
	}
	var files []File
	for len(b) > 0 && len(files) < 32 {
		kind, perm, depth := next(), next(), next()%4+1
		var parts []string
		for i := byte(0); i < depth; i++ {
			c := next()
			if c < 250 {
				parts = append(parts, comps[int(c)%5])
			} else {
				parts = append(parts, comps[5+int(c)%3])
			}
		}
		f := File{Path: strings.Join(parts, "/"), Mode: fs.FileMode(perm) & 0o777}
		n := int(next() % 16)
		if n > len(b) {
			n = len(b)
		}
		content := b[:n]
		b = b[n:]
		switch kind % 3 {
		case 0:
			f.Mode |= fs.ModeDir
		case 1:
			f.Data = append([]byte(nil), content...)
		case 2:
			f.Mode |= fs.ModeSymlink
			f.Link = string(content)
		}
		files = append(files, f)
	}
	return files
}

// modelEntry is what the archive must hold for one path, computed here
// without the writer's code.
type modelEntry struct {
	mode  cpio.FileMode
	data  string
	links int
}

// model returns the expected archive, or false if the tree must be refused.
func model(files []File) (map[string]*modelEntry, bool) {
	m := map[string]*modelEntry{}
	for _, f := range files {
		if f.Path == "" || strings.HasPrefix(f.Path, "/") {
			return nil, false
		}
		for _, c := range strings.Split(f.Path, "/") {
			if c == "" || c == "." || c == ".." {
				return nil, false
			}
		}
		if _, dup := m[f.Path]; dup {
			return nil, false
		}
		e := &modelEntry{mode: cpio.FileMode(f.Mode.Perm()), links: 1}
		switch {
		case f.Mode.IsDir():
			e.mode |= cpio.TypeDir
			e.links = 2
		case f.Mode&fs.ModeSymlink != 0:
			if f.Link == "" || strings.ContainsRune(f.Link, 0) {
				return nil, false
			}
			e.mode |= cpio.TypeSymlink
			e.data = f.Link
		default:
			e.mode |= cpio.TypeReg
			e.data = string(f.Data)
		}
		m[f.Path] = e
	}
	for _, f := range files {
		for d := path.Dir(f.Path); d != "."; d = path.Dir(d) {
			if e, ok := m[d]; !ok {
				m[d] = &modelEntry{mode: cpio.TypeDir | 0o755, links: 2}
			} else if e.mode&cpio.ModeType != cpio.TypeDir {
				return nil, false
			}
		}
	}
	for p, e := range m {
		if e.mode&cpio.ModeType == cpio.TypeDir && path.Dir(p) != "." {
			m[path.Dir(p)].links++
		}
	}
	return m, true
}

func FuzzWriteInitramfs(f *testing.F) {
	f.Add([]byte{0, 0o55, 1, 0, 0})
	f.Add([]byte{1, 0o44, 2, 0, 1, 3, 'a', 'b', 'c', 2, 0o77, 1, 2, 4, 'a', '/', 'b', 'c'})
	f.Add([]byte{1, 0o44, 1, 0, 1, 'x', 1, 0o44, 2, 0, 1, 1, 'y'})
	f.Add([]byte{1, 0o44, 2, 0, 255, 1, 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		files := treeFromBytes(b)
		want, ok := model(files)
		var buf bytes.Buffer
		err := WriteInitramfs(&buf, files, None, testEpoch)
		if !ok {
			if err == nil {
				t.Fatalf("accepted an invalid tree %+v", files)
			}
			return
		}
		if err != nil {
			t.Fatalf("refused a valid tree %+v: %v", files, err)
		}
		got := readCpio(t, bytes.NewReader(buf.Bytes()))
		if len(got) != len(want) {
			t.Fatalf("archive has %d entries, want %d", len(got), len(want))
		}
		names := make([]string, 0, len(got))
		for i, g := range got {
			names = append(names, g.hdr.Name)
			w := want[g.hdr.Name]
			if w == nil {
				t.Fatalf("unexpected entry %q", g.hdr.Name)
			}
			data := string(g.data)
			if g.hdr.Mode&cpio.ModeType == cpio.TypeSymlink {
				data = g.hdr.Linkname
			}
			if g.hdr.Mode != w.mode || data != w.data || g.hdr.Links != w.links {
				t.Errorf("%s: mode %o data %q links %d; want %o %q %d",
					g.hdr.Name, g.hdr.Mode, data, g.hdr.Links, w.mode, w.data, w.links)
			}
			if g.hdr.Inode != int64(i+1) || !g.hdr.ModTime.Equal(testEpoch) || g.hdr.Uid != 0 || g.hdr.Guid != 0 {
				t.Errorf("%s: inode %d mtime %v uid %d gid %d", g.hdr.Name, g.hdr.Inode, g.hdr.ModTime, g.hdr.Uid, g.hdr.Guid)
			}
		}
		if !sort.StringsAreSorted(names) {
			t.Errorf("entries not sorted: %v", names)
		}
	})
}
