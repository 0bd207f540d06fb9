package snapshot

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"math/bits"
)

// zeroPage is compared against, never written.
var zeroPage [PageSize]byte

// Writer writes one snapshot stream. The stream never seeks: it works on a
// pipe (xl migrate). After an error every call returns that error: the
// stream is then unusable, and the reader refuses what was written.
type Writer struct {
	out      *bufio.Writer
	stream   hash.Hash // every byte from the magic on
	section  hash.Hash // the open section's bytes, nil between sections
	sections uint32
	kinds    map[string]bool
	memLimit uint64
	pages    uint64 // pages in the memory sections' runs so far
	err      error
	closed   bool
	scratch  []byte
	run      []byte // a data run's pages, copied (runs.flush)
}

// NewWriter writes the magic, the format version and the header section.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	if err := h.check(); err != nil {
		return nil, fmt.Errorf("snapshot: header: %w: %v", ErrUsage, err)
	}
	js, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("snapshot: header: %w", err)
	}
	if len(js) > MaxHeader {
		return nil, fmt.Errorf("snapshot: header: %w: %d bytes, at most %d", ErrTooLarge, len(js), MaxHeader)
	}
	sw := &Writer{
		out:      bufio.NewWriterSize(w, 64<<10),
		stream:   sha256.New(),
		kinds:    map[string]bool{},
		memLimit: uint64(h.MemoryMiB) << 20,
		scratch:  make([]byte, 0, 64),
	}
	pre := binary.LittleEndian.AppendUint32([]byte(Magic), FormatVersion)
	sw.write(pre)
	sw.small(kindHeader, js)
	if sw.err != nil {
		return nil, sw.err
	}
	return sw, nil
}

func (w *Writer) write(p []byte) {
	if w.err != nil {
		return
	}
	w.stream.Write(p)
	if w.section != nil {
		w.section.Write(p)
	}
	if _, err := w.out.Write(p); err != nil {
		w.err = fmt.Errorf("snapshot: %w", err)
	}
}

// usable refuses a call after an error or after Close.
func (w *Writer) usable() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return fmt.Errorf("snapshot: %w: writer closed", ErrUsage)
	}
	return nil
}

func (w *Writer) begin(rec []byte) {
	w.section = sha256.New()
	w.write(rec)
}

func (w *Writer) end() {
	w.write([]byte{recEnd})
	sum := w.section.Sum(nil)
	w.section = nil
	w.write(sum)
	w.sections++
}

// small writes a small section in chunks; the caller has checked kind.
func (w *Writer) small(kind string, data []byte) {
	w.begin(append([]byte{recSection, byte(len(kind))}, kind...))
	for len(data) > 0 {
		n := min(len(data), MaxChunk)
		w.write(binary.LittleEndian.AppendUint32(append(w.scratch[:0], recChunk), uint32(n)))
		w.write(data[:n])
		data = data[n:]
	}
	w.end()
	w.kinds[kind] = true
}

// Section writes one small section (a device's or vCPU's state). kind:
// 1-32 bytes of [a-z0-9._-], e.g. "vcpu.0", "irqchip", "uart"; each kind
// once per stream, and "header" and "memory" are the package's own.
func (w *Writer) Section(kind string, data []byte) error {
	if err := w.usable(); err != nil {
		return err
	}
	switch {
	case !validKind(kind):
		return fmt.Errorf("snapshot: section %q: %w: a kind is 1 to %d bytes of [a-z0-9._-]", kind, ErrUsage, MaxKind)
	case kind == kindHeader || kind == kindMemory:
		return fmt.Errorf("snapshot: section %q: %w: kind reserved", kind, ErrUsage)
	case w.kinds[kind]:
		return fmt.Errorf("snapshot: section %q: %w: written twice", kind, ErrUsage)
	case len(data) > MaxSection:
		return fmt.Errorf("snapshot: section %q: %w: %d bytes, at most %d", kind, ErrTooLarge, len(data), MaxSection)
	}
	w.small(kind, data)
	return w.err
}

// Memory writes one guest RAM region whole; pages (4 KiB) that are all zero
// are skipped (the restoring side starts from zeroed memory). mem may
// change while it is written (a live save's guest runs): each run of
// pages is copied once and the copy written and hashed, so the stream
// stays whole, and a page that changed is the caller's to send again.
func (w *Writer) Memory(gpa uint64, mem []byte) error {
	if err := w.memoryBegin(gpa, mem); err != nil {
		return err
	}
	r := runs{w: w, mem: mem}
	for p := 0; p < len(mem)/PageSize; p++ {
		if !isZero(mem[p*PageSize : (p+1)*PageSize]) {
			r.page(uint64(p), false)
		}
	}
	r.flush()
	w.end()
	return w.err
}

// MemoryDirty writes only the pages of mem whose bit is set in dirty
// (KVM_GET_DIRTY_LOG's bitmap: bit i of word i/64 = page i), zero pages
// included (as zero-run records), for pre-copy rounds. The bitmap must
// cover every page of mem, and no bit past the last page may be set.
func (w *Writer) MemoryDirty(gpa uint64, mem []byte, dirty []uint64) error {
	if err := w.usable(); err != nil {
		return err
	}
	pages := uint64(len(mem)) / PageSize
	if uint64(len(dirty)) < (pages+63)/64 {
		return fmt.Errorf("snapshot: section %q: %w: dirty bitmap of %d words for %d pages", kindMemory, ErrUsage, len(dirty), pages)
	}
	for i := pages / 64; i < uint64(len(dirty)); i++ {
		word := dirty[i]
		if i == pages/64 {
			word &^= 1<<(pages%64) - 1
		}
		if word != 0 {
			return fmt.Errorf("snapshot: section %q: %w: dirty bit for page %d past the region's %d pages",
				kindMemory, ErrUsage, i*64+uint64(bits.TrailingZeros64(word)), pages)
		}
	}
	if err := w.memoryBegin(gpa, mem); err != nil {
		return err
	}
	r := runs{w: w, mem: mem}
	for i, word := range dirty[:(pages+63)/64] {
		for word != 0 {
			b := bits.TrailingZeros64(word)
			word &= word - 1
			p := uint64(i)*64 + uint64(b)
			r.page(p, isZero(mem[p*PageSize:(p+1)*PageSize]))
		}
	}
	r.flush()
	w.end()
	return w.err
}

func (w *Writer) memoryBegin(gpa uint64, mem []byte) error {
	if err := w.usable(); err != nil {
		return err
	}
	size := uint64(len(mem))
	switch {
	case size == 0 || size%PageSize != 0:
		return fmt.Errorf("snapshot: section %q: %w: size %d is not a positive multiple of %d", kindMemory, ErrUsage, size, PageSize)
	case size > w.memLimit:
		return fmt.Errorf("snapshot: section %q: %w: size %d past the header's %d MiB", kindMemory, ErrTooLarge, size, w.memLimit>>20)
	case gpa%PageSize != 0 || gpa+size < gpa:
		return fmt.Errorf("snapshot: section %q: %w: GPA %#x", kindMemory, ErrUsage, gpa)
	}
	rec := append(w.scratch[:0], recMemory)
	rec = binary.LittleEndian.AppendUint64(rec, gpa)
	rec = binary.LittleEndian.AppendUint64(rec, size)
	w.begin(rec)
	return w.err
}

// isZero compares against a zero page: bytes.Equal is the runtime's
// vectorised memequal, far faster than a loop over words in Go.
func isZero(page []byte) bool {
	return bytes.Equal(page, zeroPage[:])
}

// runs coalesces pages, given in ascending order, into data and zero run
// records: one logic for full and dirty-page sections.
type runs struct {
	w      *Writer
	mem    []byte
	start  uint64
	n      uint64
	zero   bool
	active bool
}

func (r *runs) page(p uint64, zero bool) {
	r.w.pages++
	if r.active && p == r.start+r.n && zero == r.zero && (zero || r.n < MaxRunPages) {
		r.n++
		return
	}
	r.flush()
	r.start, r.n, r.zero, r.active = p, 1, zero, true
}

func (r *runs) flush() {
	if !r.active {
		return
	}
	r.active = false
	w := r.w
	if r.zero {
		rec := append(w.scratch[:0], recZero)
		rec = binary.LittleEndian.AppendUint64(rec, r.start)
		w.write(binary.LittleEndian.AppendUint64(rec, r.n))
		return
	}
	rec := append(w.scratch[:0], recData)
	rec = binary.LittleEndian.AppendUint64(rec, r.start)
	w.write(binary.LittleEndian.AppendUint32(rec, uint32(r.n)))
	// A live save's guest writes RAM while it is sent: the hashes and
	// the stream must see the same bytes, so they read one copy.
	if w.run == nil {
		w.run = make([]byte, MaxRunPages*PageSize)
	}
	n := copy(w.run, r.mem[r.start*PageSize:(r.start+r.n)*PageSize])
	w.write(w.run[:n])
}

// Pages is the number of pages the memory sections written so far carry,
// in data and zero runs alike: what a save reports it sent.
func (w *Writer) Pages() uint64 { return w.pages }

// Close writes the trailer (section count and a SHA-256 over the whole
// stream) and flushes. It does not close the io.Writer.
func (w *Writer) Close() error {
	if err := w.usable(); err != nil {
		return err
	}
	w.write(binary.LittleEndian.AppendUint32(append(w.scratch[:0], recTrailer), w.sections))
	w.write(w.stream.Sum(nil))
	if w.err == nil {
		if err := w.out.Flush(); err != nil {
			w.err = fmt.Errorf("snapshot: %w", err)
		}
	}
	w.closed = true
	return w.err
}
