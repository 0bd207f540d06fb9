package images

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/cavaliergopher/cpio"
	"github.com/klauspost/compress/zstd"
)

// File is one entry of an image tree.
type File struct {
	// Path is slash-separated and relative: no leading "/", no "." or ".."
	// components, no empty components.
	Path string
	// Mode holds the permission bits (plus setuid/setgid/sticky) and the
	// type: fs.ModeDir, fs.ModeSymlink or none for a regular file. Device
	// nodes, fifos and sockets are refused: the kernel's devtmpfs provides
	// /dev, and newc device numbers are not written by the cpio library.
	Mode fs.FileMode
	// Data is a regular file's contents, unless Source is set.
	Data []byte
	// Source is a host path whose contents are read at write time.
	Source string
	// Link is a symlink's target.
	Link string
}

// Compression names an initramfs compression.
type Compression string

// The compressions the kernel's initramfs unpacker understands and xeno
// writes deterministically.
const (
	Gzip Compression = "gzip"
	Zstd Compression = "zstd"
	None Compression = "none"
)

// Fixed compression levels: the bytes of the output depend on them, so they
// are part of the format, not a tuning knob.
const (
	gzipLevel = gzip.BestCompression
	zstdLevel = zstd.SpeedBetterCompression
)

// maxCpioSize is the largest file a newc header can describe: its size
// field is eight hex digits. cavaliergopher/cpio truncates larger sizes
// silently, so they are refused before writing.
const maxCpioSize = 1<<32 - 1

// maxCpioName is PATH_MAX, the longest name (with its NUL) the kernel's
// unpacker and cpio readers accept.
const maxCpioName = 4096

// entry is a validated File with what the writer derives for it.
type entry struct {
	File
	size  int64
	links int
}

// WriteInitramfs writes files as a newc cpio archive compressed with c.
// Entries are sorted by path, so parents come before their children;
// missing parent directories are added with mode 0755. Every entry gets
// mtime epoch, uid and gid 0, and an inode number from its position in the
// sorted order; directories get 2+subdirectories links. Invalid trees
// (bad paths, duplicates, device nodes, files of 4 GiB or more) are
// refused with an error naming the path, before anything is written.
func WriteInitramfs(w io.Writer, files []File, c Compression, epoch time.Time) error {
	if epoch.Unix() < 0 || epoch.Unix() > maxCpioSize {
		return fmt.Errorf("images: initramfs: epoch %v does not fit newc's unsigned 32-bit mtime", epoch.UTC())
	}
	entries, err := normalize(files)
	if err != nil {
		return err
	}
	switch c {
	case Gzip:
		zw, err := gzip.NewWriterLevel(w, gzipLevel)
		if err != nil {
			return fmt.Errorf("images: initramfs: %w", err)
		}
		// The zero Header has no name and a zero mtime, which gzip writes
		// as "no time": nothing of the host leaks into the stream.
		if err := writeCpio(zw, entries, epoch); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return fmt.Errorf("images: initramfs: gzip: %w", err)
		}
		return nil
	case Zstd:
		// One encoder goroutine and a fixed level: the frame layout does
		// not depend on the machine's core count.
		zw, err := zstd.NewWriter(w,
			zstd.WithEncoderLevel(zstdLevel),
			zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderCRC(true))
		if err != nil {
			return fmt.Errorf("images: initramfs: %w", err)
		}
		if err := writeCpio(zw, entries, epoch); err != nil {
			zw.Close()
			return err
		}
		if err := zw.Close(); err != nil {
			return fmt.Errorf("images: initramfs: zstd: %w", err)
		}
		return nil
	case None:
		return writeCpio(w, entries, epoch)
	default:
		return fmt.Errorf("images: initramfs: unknown compression %q (want gzip, zstd or none)", c)
	}
}

// validPath reports why p is not a clean relative slash path, or "".
func validPath(p string) string {
	switch {
	case p == "":
		return "empty path"
	case strings.HasPrefix(p, "/"):
		return "absolute path"
	case strings.ContainsRune(p, 0):
		return "NUL in path"
	case len(p) >= maxCpioName:
		return fmt.Sprintf("path of %d bytes is longer than the kernel's PATH_MAX", len(p))
	}
	for _, c := range strings.Split(p, "/") {
		switch c {
		case "":
			return "empty path component"
		case ".", "..":
			return fmt.Sprintf("%q component", c)
		}
	}
	return ""
}

// normalize validates files and returns them sorted, with missing parent
// directories added and sizes and link counts filled in.
func normalize(files []File) ([]entry, error) {
	byPath := make(map[string]*entry, len(files))
	for _, f := range files {
		if why := validPath(f.Path); why != "" {
			return nil, fmt.Errorf("images: %q: %s", f.Path, why)
		}
		if _, dup := byPath[f.Path]; dup {
			return nil, fmt.Errorf("images: %s: duplicate path", f.Path)
		}
		e := &entry{File: f}
		if err := e.check(); err != nil {
			return nil, err
		}
		byPath[f.Path] = e
	}
	// Synthesise parents, and refuse a non-directory used as one.
	for p := range byPath {
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			parent, ok := byPath[dir]
			if !ok {
				byPath[dir] = &entry{File: File{Path: dir, Mode: fs.ModeDir | 0o755}}
				continue
			}
			if !parent.Mode.IsDir() {
				return nil, fmt.Errorf("images: %s: parent %s is not a directory", p, dir)
			}
		}
	}
	entries := make([]entry, 0, len(byPath))
	for _, e := range byPath {
		if e.Mode.IsDir() {
			e.links = 2
		} else {
			e.links = 1
		}
		entries = append(entries, *e)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Path < entries[j].Path })
	// A directory's link count is 2 plus one ".." per subdirectory.
	index := make(map[string]int, len(entries))
	for i := range entries {
		index[entries[i].Path] = i
	}
	for _, e := range entries {
		if dir := path.Dir(e.Path); e.Mode.IsDir() && dir != "." {
			entries[index[dir]].links++
		}
	}
	return entries, nil
}

// check validates one entry's type and contents and records its size.
func (e *entry) check() error {
	const special = fs.ModeDevice | fs.ModeCharDevice | fs.ModeNamedPipe | fs.ModeSocket | fs.ModeIrregular
	m := e.Mode
	switch {
	case m&special != 0:
		return fmt.Errorf("images: %s: device nodes, fifos and sockets are refused (mode %v)", e.Path, m)
	case m.IsDir():
		if e.Data != nil || e.Source != "" || e.Link != "" {
			return fmt.Errorf("images: %s: a directory has no contents or link target", e.Path)
		}
	case m&fs.ModeSymlink != 0:
		if e.Link == "" {
			return fmt.Errorf("images: %s: symlink without a target", e.Path)
		}
		if len(e.Link) > 4095 || strings.ContainsRune(e.Link, 0) {
			return fmt.Errorf("images: %s: symlink target is longer than 4095 bytes or holds a NUL", e.Path)
		}
		if e.Data != nil || e.Source != "" {
			return fmt.Errorf("images: %s: a symlink has no contents besides its target", e.Path)
		}
		e.size = int64(len(e.Link))
	case m.Type() == 0:
		if e.Link != "" {
			return fmt.Errorf("images: %s: link target on a regular file", e.Path)
		}
		if e.Source != "" {
			if e.Data != nil {
				return fmt.Errorf("images: %s: both Data and Source are set", e.Path)
			}
			st, err := os.Stat(e.Source)
			if err != nil {
				return fmt.Errorf("images: %s: %w", e.Path, err)
			}
			if !st.Mode().IsRegular() {
				return fmt.Errorf("images: %s: source %s is not a regular file", e.Path, e.Source)
			}
			e.size = st.Size()
		} else {
			e.size = int64(len(e.Data))
		}
		if e.size > maxCpioSize {
			return fmt.Errorf("images: %s: %d bytes is too large for a newc cpio (limit 4 GiB - 1)", e.Path, e.size)
		}
	default:
		return fmt.Errorf("images: %s: unsupported file type %v", e.Path, m.Type())
	}
	return nil
}

// cpioMode converts an fs.FileMode to the Unix st_mode newc stores.
func cpioMode(m fs.FileMode) cpio.FileMode {
	c := cpio.FileMode(m.Perm())
	switch {
	case m.IsDir():
		c |= cpio.TypeDir
	case m&fs.ModeSymlink != 0:
		c |= cpio.TypeSymlink
	default:
		c |= cpio.TypeReg
	}
	if m&fs.ModeSetuid != 0 {
		c |= cpio.ModeSetuid
	}
	if m&fs.ModeSetgid != 0 {
		c |= cpio.ModeSetgid
	}
	if m&fs.ModeSticky != 0 {
		c |= cpio.ModeSticky
	}
	return c
}

func writeCpio(w io.Writer, entries []entry, epoch time.Time) error {
	cw := cpio.NewWriter(w)
	mtime := time.Unix(epoch.Unix(), 0)
	for i, e := range entries {
		hdr := &cpio.Header{
			Name:    e.Path,
			Mode:    cpioMode(e.Mode),
			Links:   e.links,
			Size:    e.size,
			ModTime: mtime,
			Inode:   int64(i + 1),
		}
		if err := cw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("images: initramfs: %s: %w", e.Path, err)
		}
		if err := writeContents(cw, e); err != nil {
			return fmt.Errorf("images: initramfs: %s: %w", e.Path, err)
		}
	}
	if err := cw.Close(); err != nil {
		return fmt.Errorf("images: initramfs: trailer: %w", err)
	}
	return nil
}

// writeContents writes exactly e.size bytes: the symlink target, the data,
// or the source file, which must not have changed size since normalize.
func writeContents(w io.Writer, e entry) error {
	switch {
	case e.Mode.IsDir():
		return nil
	case e.Mode&fs.ModeSymlink != 0:
		_, err := io.WriteString(w, e.Link)
		return err
	case e.Source != "":
		f, err := os.Open(e.Source)
		if err != nil {
			return err
		}
		defer f.Close()
		n, err := io.Copy(w, io.LimitReader(f, e.size+1))
		if err != nil && !errors.Is(err, cpio.ErrWriteTooLong) {
			return err
		}
		if n != e.size || err != nil {
			return fmt.Errorf("source %s changed size while being written", e.Source)
		}
		return nil
	default:
		_, err := w.Write(e.Data)
		return err
	}
}
