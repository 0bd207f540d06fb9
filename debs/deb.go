package debs

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/xeno-hv/xeno/internal/hostfile"
)

const (
	arMagic      = "!<arch>\n"
	arHeaderSize = 60
	// maxMembers bounds the ar index: a .deb has three members, a few more
	// are tolerated (signatures such as _gpgorigin).
	maxMembers = 16
	// maxControlFile bounds the control file read from control.tar; real
	// ones are a few KiB.
	maxControlFile = 1 << 20
	// maxDebianBinary bounds the debian-binary member ("2.0\n").
	maxDebianBinary = 64
	// maxZstdWindow bounds the zstd decoder's memory: dpkg-deb uses small
	// windows, and an archive asking for more is refused, not obeyed.
	maxZstdWindow = 1 << 28
	// maxDeb bounds the package file itself: linux-source, the largest
	// .deb xeno reads, is about 150 MiB.
	maxDeb = 1 << 30
)

// Package is an opened .deb: its file, the file's sha256, the fields of its
// control file (Package, Version, Architecture, Depends, ...) and where its
// data.tar member lies.
type Package struct {
	Path    string
	SHA256  string
	Control map[string]string

	data member
}

type member struct {
	name   string
	offset int64
	size   int64
}

// Open reads the ar index of the .deb at path, checks its members and
// parses the control file. It hashes the whole file on the way.
func Open(path string) (*Package, error) {
	// A FIFO named as the package must be refused, not waited on.
	f, size, err := hostfile.OpenRegular(path, maxDeb)
	if err != nil {
		return nil, fmt.Errorf("debs: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, size)); err != nil {
		return nil, fmt.Errorf("debs: %s: %w", path, err)
	}
	p, err := parse(f, size)
	if err != nil {
		return nil, fmt.Errorf("debs: %s: %w", path, err)
	}
	p.Path = path
	p.SHA256 = hex.EncodeToString(h.Sum(nil))
	return p, nil
}

// parse indexes the ar archive in r (size bytes) and reads its control file.
func parse(r io.ReaderAt, size int64) (*Package, error) {
	members, err := readAr(r, size)
	if err != nil {
		return nil, err
	}
	if len(members) == 0 || members[0].name != "debian-binary" {
		return nil, errors.New("not a .deb (first ar member is not debian-binary)")
	}
	if members[0].size > maxDebianBinary {
		return nil, fmt.Errorf("debian-binary member is %d bytes, want at most %d", members[0].size, maxDebianBinary)
	}
	vb := make([]byte, members[0].size)
	if _, err := r.ReadAt(vb, members[0].offset); err != nil {
		return nil, fmt.Errorf("reading debian-binary: %w", err)
	}
	if !strings.HasPrefix(string(vb), "2.") {
		return nil, fmt.Errorf("unsupported .deb format version %q", strings.TrimSpace(string(vb)))
	}
	var control, data *member
	for i := range members[1:] {
		m := &members[i+1]
		switch {
		case strings.HasPrefix(m.name, "control.tar"):
			if control != nil {
				return nil, errors.New("two control.tar members")
			}
			control = m
		case strings.HasPrefix(m.name, "data.tar"):
			if data != nil {
				return nil, errors.New("two data.tar members")
			}
			data = m
		}
	}
	if control == nil {
		return nil, errors.New("no control.tar member")
	}
	if data == nil {
		return nil, errors.New("no data.tar member")
	}
	for _, m := range []*member{control, data} {
		if _, err := compression(m.name); err != nil {
			return nil, err
		}
	}
	fields, err := readControl(r, *control)
	if err != nil {
		return nil, err
	}
	return &Package{Control: fields, data: *data}, nil
}

// readAr returns the members of the ar archive, checking that each lies
// wholly inside the file.
func readAr(r io.ReaderAt, size int64) ([]member, error) {
	magic := make([]byte, len(arMagic))
	if n, _ := r.ReadAt(magic, 0); n < len(magic) || string(magic) != arMagic {
		return nil, errors.New("not a .deb (bad ar magic)")
	}
	var members []member
	off := int64(len(arMagic))
	hdr := make([]byte, arHeaderSize)
	for off < size {
		if len(members) == maxMembers {
			return nil, fmt.Errorf("more than %d ar members", maxMembers)
		}
		if size-off < arHeaderSize {
			return nil, fmt.Errorf("truncated ar header at offset %d", off)
		}
		if _, err := r.ReadAt(hdr, off); err != nil {
			return nil, fmt.Errorf("reading ar header at offset %d: %w", off, err)
		}
		if string(hdr[58:60]) != "`\n" {
			return nil, fmt.Errorf("bad ar member header at offset %d", off)
		}
		name := strings.TrimSpace(string(hdr[0:16]))
		// GNU ar ends names with '/'; dpkg-deb does not, but accept both.
		name = strings.TrimSuffix(name, "/")
		if name == "" {
			return nil, fmt.Errorf("empty ar member name at offset %d", off)
		}
		msize, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
		if err != nil || msize < 0 {
			return nil, fmt.Errorf("bad size %q in ar member %q", strings.TrimSpace(string(hdr[48:58])), name)
		}
		off += arHeaderSize
		if msize > size-off {
			return nil, fmt.Errorf("truncated ar member %q: %d bytes declared, %d present", name, msize, size-off)
		}
		members = append(members, member{name: name, offset: off, size: msize})
		off += msize + msize%2 // members are 2-byte aligned
	}
	return members, nil
}

// compression names the decompressor for a tar member by its suffix.
func compression(name string) (string, error) {
	switch {
	case strings.HasSuffix(name, ".tar"):
		return "", nil
	case strings.HasSuffix(name, ".tar.xz"):
		return "xz", nil
	case strings.HasSuffix(name, ".tar.zst"):
		return "zst", nil
	case strings.HasSuffix(name, ".tar.gz"):
		return "gz", nil
	}
	return "", fmt.Errorf("ar member %q: unsupported compression", name)
}

// openTar returns a tar reader over the member's decompressed bytes; close
// releases the decompressor.
func openTar(r io.ReaderAt, m member) (tr *tar.Reader, closeFn func(), err error) {
	kind, err := compression(m.name)
	if err != nil {
		return nil, nil, err
	}
	raw := bufio.NewReaderSize(io.NewSectionReader(r, m.offset, m.size), 1<<16)
	var dec io.Reader
	closeFn = func() {}
	switch kind {
	case "":
		dec = raw
	case "xz":
		xr, err := xz.NewReader(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", m.name, err)
		}
		dec = xr
	case "zst":
		zr, err := zstd.NewReader(raw, zstd.WithDecoderMaxWindow(maxZstdWindow), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", m.name, err)
		}
		dec, closeFn = zr, zr.Close
	case "gz":
		gr, err := gzip.NewReader(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", m.name, err)
		}
		dec, closeFn = gr, func() { gr.Close() }
	}
	return tar.NewReader(dec), closeFn, nil
}

func readControl(r io.ReaderAt, m member) (map[string]string, error) {
	tr, done, err := openTar(r, m)
	if err != nil {
		return nil, err
	}
	defer done()
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("%s: no control file", m.name)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.name, err)
		}
		if strings.TrimPrefix(hdr.Name, "./") != "control" || hdr.Typeflag != tar.TypeReg {
			continue
		}
		if hdr.Size > maxControlFile {
			return nil, fmt.Errorf("%s: control file is %d bytes, want at most %d", m.name, hdr.Size, maxControlFile)
		}
		b, err := io.ReadAll(io.LimitReader(tr, maxControlFile))
		if err != nil {
			return nil, fmt.Errorf("%s: control: %w", m.name, err)
		}
		return ParseControl(b)
	}
}

// ParseControl parses one deb822 paragraph: "Field: value" lines, with
// continuation lines starting with a space or tab joined by newlines.
func ParseControl(b []byte) (map[string]string, error) {
	fields := map[string]string{}
	last := ""
	for i, line := range strings.Split(string(bytes.TrimRight(b, "\n")), "\n") {
		if line == "" {
			return nil, fmt.Errorf("control:%d: more than one paragraph", i+1)
		}
		if line[0] == ' ' || line[0] == '\t' {
			if last == "" {
				return nil, fmt.Errorf("control:%d: continuation line before any field", i+1)
			}
			fields[last] += "\n" + strings.TrimSpace(line)
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("control:%d: not a \"Field: value\" line: %q", i+1, line)
		}
		fields[k] = strings.TrimSpace(v)
		last = k
	}
	if fields["Package"] == "" {
		return nil, errors.New("control: no Package field")
	}
	return fields, nil
}

// Walk streams every entry of data.tar in archive order: regular files,
// directories, symlinks and hard links. r yields the entry's contents (for
// regular files); fn must bound what it reads. An error from fn stops the
// walk and is returned as is.
func (p *Package) Walk(fn func(hdr *tar.Header, r io.Reader) error) error {
	f, _, err := hostfile.OpenRegular(p.Path, maxDeb)
	if err != nil {
		return fmt.Errorf("debs: %w", err)
	}
	defer f.Close()
	tr, done, err := openTar(f, p.data)
	if err != nil {
		return fmt.Errorf("debs: %s: %w", p.Path, err)
	}
	defer done()
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("debs: %s: %s: %w", p.Path, p.data.name, err)
		}
		if err := fn(hdr, memberReader{tr, p.data.name}); err != nil {
			return err
		}
	}
}

// memberReader names the member in read errors, so that a corrupt
// compressed stream found while fn reads an entry says where it is.
type memberReader struct {
	r    io.Reader
	name string
}

func (m memberReader) Read(b []byte) (int, error) {
	n, err := m.r.Read(b)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%s: %w", m.name, err)
	}
	return n, err
}

// DataMember names the data.tar member, e.g. "data.tar.xz".
func (p *Package) DataMember() string { return p.data.name }
