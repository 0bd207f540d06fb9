package snapshot

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
)

// Reader reads one snapshot stream, front to back, without seeking.
//
// A snapshot is hostile input. The reader allocates only fixed buffers, the
// bytes of small sections (grown one chunk of at most MaxChunk at a time, up
// to MaxSection in all) and a 4 KiB page for skipping memory; no length
// read from the stream reaches make() before it is checked against one of
// those bounds. Memory pages go straight into the caller's dst, at indices
// checked against the section's Size, which is checked against the header.
// After the first error every call returns it.
type Reader struct {
	in       *bufio.Reader
	stream   hash.Hash
	section  hash.Hash // the open section's bytes, nil between sections
	off      int64     // bytes consumed from the stream
	secOff   int64     // where the open section began
	kind     string    // the open section's kind, for errors
	h        Header
	memLimit uint64
	limit    int64 // MaxStream of the header's RAM, once it is read
	sections uint32
	kinds    map[string]bool
	mem      *memSection // a memory section Next returned and ReadMemory has not read
	err      error
	done     bool
	buf      [32]byte
	page     []byte
}

type memSection struct {
	size uint64
}

// NewReader reads and checks the magic, the format version and the header.
func NewReader(r io.Reader) (*Reader, error) {
	sr := &Reader{
		in:     bufio.NewReaderSize(r, 64<<10),
		stream: sha256.New(),
		kinds:  map[string]bool{},
	}
	if err := sr.preamble(); err != nil {
		return nil, err
	}
	k, err := sr.u8()
	if err != nil {
		return nil, err
	}
	if k != recSection {
		return nil, sr.fail(ErrCorrupt, "record %#x where the header section begins", k)
	}
	sr.beginSection(k)
	kind, err := sr.kindField()
	if err != nil {
		return nil, err
	}
	if kind != kindHeader {
		return nil, sr.fail(ErrCorrupt, "first section is %q, not %q", kind, kindHeader)
	}
	sr.kind = kind
	js, err := sr.smallBody(MaxHeader)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(js, &sr.h); err != nil {
		return nil, sr.fail(ErrCorrupt, "%v", err)
	}
	if err := sr.h.check(); err != nil {
		return nil, sr.fail(ErrCorrupt, "%v", err)
	}
	sr.memLimit = uint64(sr.h.MemoryMiB) << 20
	sr.limit = MaxStream(sr.h.MemoryMiB)
	sr.kinds[kind] = true
	sr.kind = ""
	return sr, nil
}

// Header returns the header NewReader read.
func (r *Reader) Header() Header { return r.h }

func (r *Reader) preamble() error {
	var pre [len(Magic) + 4]byte
	n, err := io.ReadFull(r.in, pre[:])
	r.off += int64(n)
	r.stream.Write(pre[:n])
	if !bytes.HasPrefix([]byte(Magic), pre[:min(n, len(Magic))]) {
		r.err = fmt.Errorf("snapshot: %w", ErrBadMagic)
		return r.err
	}
	if err != nil {
		return r.ioErr(err)
	}
	if v := binary.LittleEndian.Uint32(pre[len(Magic):]); v != FormatVersion {
		r.err = fmt.Errorf("snapshot: format version %d: %w: this hv reads %d", v, ErrVersion, FormatVersion)
		return r.err
	}
	return nil
}

// where names the open section, or the stream between sections.
func (r *Reader) where() string {
	if r.kind == "" {
		return "stream"
	}
	return fmt.Sprintf("section %q", r.kind)
}

func (r *Reader) fail(sentinel error, format string, a ...any) error {
	r.err = fmt.Errorf("snapshot: %s: %w: %s", r.where(), sentinel, fmt.Sprintf(format, a...))
	return r.err
}

func (r *Reader) ioErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		if r.section != nil {
			r.err = fmt.Errorf("snapshot: %s: %w after %d bytes of the section, %d of the stream",
				r.where(), ErrTruncated, r.off-r.secOff, r.off)
		} else {
			r.err = fmt.Errorf("snapshot: %s: %w after %d bytes, without a complete trailer", r.where(), ErrTruncated, r.off)
		}
		return r.err
	}
	r.err = fmt.Errorf("snapshot: %s: reading: %w", r.where(), err)
	return r.err
}

// full reads len(p) bytes, hashing them into the stream and the open section.
func (r *Reader) full(p []byte) error {
	if r.limit > 0 && r.off+int64(len(p)) > r.limit {
		return r.fail(ErrTooLarge, "the stream goes on past %d bytes, the most a snapshot of a %d MiB domain takes (%d copies of its RAM, %d MiB for the rest)",
			r.limit, r.h.MemoryMiB, MaxRAMCopies, maxOther>>20)
	}
	n, err := io.ReadFull(r.in, p)
	r.off += int64(n)
	r.stream.Write(p[:n])
	if r.section != nil {
		r.section.Write(p[:n])
	}
	if err != nil {
		return r.ioErr(err)
	}
	return nil
}

func (r *Reader) u8() (byte, error) {
	err := r.full(r.buf[:1])
	return r.buf[0], err
}

func (r *Reader) u32() (uint32, error) {
	err := r.full(r.buf[:4])
	return binary.LittleEndian.Uint32(r.buf[:4]), err
}

func (r *Reader) u64() (uint64, error) {
	err := r.full(r.buf[:8])
	return binary.LittleEndian.Uint64(r.buf[:8]), err
}

// beginSection starts the section hash with the record byte already read.
func (r *Reader) beginSection(rec byte) {
	r.section = sha256.New()
	r.section.Write([]byte{rec})
	r.secOff = r.off - 1
}

// kindField reads a small section's kind: u8 length, then the bytes.
func (r *Reader) kindField() (string, error) {
	n, err := r.u8()
	if err != nil {
		return "", err
	}
	if n < 1 || n > MaxKind {
		return "", r.fail(ErrCorrupt, "section kind of %d bytes", n)
	}
	var kb [MaxKind]byte
	if err := r.full(kb[:n]); err != nil {
		return "", err
	}
	kind := string(kb[:n])
	if !validKind(kind) {
		return "", r.fail(ErrCorrupt, "section kind %q is not 1 to %d bytes of [a-z0-9._-]", kind, MaxKind)
	}
	return kind, nil
}

// endSection checks the section's hash; the end record's byte is read.
func (r *Reader) endSection() error {
	want := r.section.Sum(nil)
	r.section = nil
	if err := r.full(r.buf[:32]); err != nil {
		return err
	}
	if !bytes.Equal(want, r.buf[:32]) {
		return r.fail(ErrCorrupt, "hash mismatch")
	}
	r.sections++
	return nil
}

// smallBody reads a small section's chunks up to its end record.
func (r *Reader) smallBody(limit int) ([]byte, error) {
	var data []byte
	for {
		k, err := r.u8()
		if err != nil {
			return nil, err
		}
		switch k {
		case recChunk:
			n, err := r.u32()
			if err != nil {
				return nil, err
			}
			if n < 1 || n > MaxChunk {
				return nil, r.fail(ErrCorrupt, "chunk of %d bytes (1 to %d)", n, MaxChunk)
			}
			if uint64(len(data))+uint64(n) > uint64(limit) {
				return nil, r.fail(ErrTooLarge, "more than %d bytes", limit)
			}
			l := len(data)
			data = slices.Grow(data, int(n))[:l+int(n)]
			if err := r.full(data[l:]); err != nil {
				return nil, err
			}
		case recEnd:
			if err := r.endSection(); err != nil {
				return nil, err
			}
			return data, nil
		default:
			return nil, r.fail(ErrCorrupt, "record %#x inside a small section", k)
		}
	}
}

// Next returns the next section, its hash checked (for small sections). It
// returns io.EOF only after a valid trailer; a stream that ends without one
// is an error (truncated). A memory section that ReadMemory did not read is
// read and checked (and its pages dropped) first.
func (r *Reader) Next() (Section, error) {
	if r.err != nil {
		return Section{}, r.err
	}
	if r.done {
		return Section{}, io.EOF
	}
	if r.mem != nil {
		if err := r.memBody(nil); err != nil {
			return Section{}, err
		}
	}
	k, err := r.u8()
	if err != nil {
		return Section{}, err
	}
	switch k {
	case recSection:
		r.beginSection(k)
		kind, err := r.kindField()
		if err != nil {
			return Section{}, err
		}
		if kind == kindHeader || kind == kindMemory {
			return Section{}, r.fail(ErrCorrupt, "small section with the reserved kind %q", kind)
		}
		if r.kinds[kind] {
			return Section{}, r.fail(ErrCorrupt, "section %q twice", kind)
		}
		r.kind = kind
		data, err := r.smallBody(MaxSection)
		if err != nil {
			return Section{}, err
		}
		r.kinds[kind] = true
		r.kind = ""
		return Section{Kind: kind, Data: data}, nil
	case recMemory:
		r.beginSection(k)
		r.kind = kindMemory
		gpa, err := r.u64()
		if err != nil {
			return Section{}, err
		}
		size, err := r.u64()
		if err != nil {
			return Section{}, err
		}
		switch {
		case size == 0 || size%PageSize != 0:
			return Section{}, r.fail(ErrCorrupt, "size %d is not a positive multiple of %d", size, PageSize)
		case size > r.memLimit:
			return Section{}, r.fail(ErrTooLarge, "size %d past the header's %d MiB", size, r.h.MemoryMiB)
		case gpa%PageSize != 0 || gpa+size < gpa:
			return Section{}, r.fail(ErrCorrupt, "GPA %#x with size %d", gpa, size)
		}
		r.mem = &memSection{size: size}
		return Section{Kind: kindMemory, GPA: gpa, Size: size}, nil
	case recTrailer:
		return Section{}, r.trailer()
	default:
		return Section{}, r.fail(ErrCorrupt, "record %#x where a section or the trailer begins", k)
	}
}

func (r *Reader) trailer() error {
	r.kind = ""
	count, err := r.u32()
	if err != nil {
		return err
	}
	want := r.stream.Sum(nil)
	if err := r.full(r.buf[:32]); err != nil {
		return err
	}
	if !bytes.Equal(want, r.buf[:32]) {
		return r.fail(ErrCorrupt, "stream hash mismatch")
	}
	if count != r.sections {
		return r.fail(ErrCorrupt, "trailer counts %d sections, the stream has %d", count, r.sections)
	}
	// A pipe's sender closes after the trailer; anything more is not ours.
	switch _, err := r.in.Peek(1); {
	case err == nil:
		return r.fail(ErrCorrupt, "bytes after the trailer")
	case err != io.EOF:
		return r.ioErr(err)
	}
	r.done = true
	return io.EOF
}

// ReadMemory writes the memory section that Next just returned into dst
// (len(dst) must equal Size); it writes only the pages present in the
// stream (data pages, and zero-runs as zeros), so dst must start zeroed for
// a full snapshot. Every page index is bounded by Size; the section's hash
// is checked before ReadMemory returns nil. On error, dst may hold partial
// data and the caller must discard the domain.
func (r *Reader) ReadMemory(dst []byte) error {
	if r.err != nil {
		return r.err
	}
	if r.mem == nil {
		return fmt.Errorf("snapshot: %w: ReadMemory without a memory section from Next", ErrUsage)
	}
	if uint64(len(dst)) != r.mem.size {
		return fmt.Errorf("snapshot: section %q: %w: dst of %d bytes for a section of %d", kindMemory, ErrUsage, len(dst), r.mem.size)
	}
	return r.memBody(dst)
}

// memBody reads a memory section's runs up to its end record, into dst, or
// with dst nil only checking them.
func (r *Reader) memBody(dst []byte) error {
	pages := r.mem.size / PageSize
	var next uint64 // the lowest page the next run may start at
	for {
		k, err := r.u8()
		if err != nil {
			return err
		}
		switch k {
		case recData, recZero:
			start, err := r.u64()
			if err != nil {
				return err
			}
			var count uint64
			if k == recData {
				c, err := r.u32()
				if err != nil {
					return err
				}
				count = uint64(c)
				if count < 1 || count > MaxRunPages {
					return r.fail(ErrCorrupt, "data run of %d pages (1 to %d)", count, MaxRunPages)
				}
			} else if count, err = r.u64(); err != nil {
				return err
			} else if count < 1 {
				return r.fail(ErrCorrupt, "zero run of 0 pages")
			}
			if start < next {
				return r.fail(ErrCorrupt, "run at page %d overlaps or precedes the one ending at page %d", start, next)
			}
			if start >= pages || count > pages-start {
				return r.fail(ErrCorrupt, "run of %d pages at page %d past the section's %d pages", count, start, pages)
			}
			next = start + count
			if err := r.pages(k, dst, start, count); err != nil {
				return err
			}
		case recEnd:
			if err := r.endSection(); err != nil {
				return err
			}
			r.mem = nil
			r.kind = ""
			return nil
		default:
			return r.fail(ErrCorrupt, "record %#x inside a memory section", k)
		}
	}
}

// pages applies one checked run to dst, or reads past it when dst is nil.
func (r *Reader) pages(k byte, dst []byte, start, count uint64) error {
	if k == recZero {
		if dst != nil {
			clear(dst[start*PageSize : (start+count)*PageSize])
		}
		return nil
	}
	if dst != nil {
		return r.full(dst[start*PageSize : (start+count)*PageSize])
	}
	if r.page == nil {
		r.page = make([]byte, PageSize)
	}
	for range count {
		if err := r.full(r.page); err != nil {
			return err
		}
	}
	return nil
}
