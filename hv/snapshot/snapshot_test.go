package snapshot_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/bits"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/snapshot"
)

const page = snapshot.PageSize

func testHeader() snapshot.Header {
	return snapshot.Header{
		Release:   "1.2.0",
		BuildID:   "b0123",
		Changeset: "abcdef",
		Interface: "1.2",
		Compat:    true,
		MemoryMiB: 16,
		VCPUs:     2,
		Config:    json.RawMessage(`{"name":"t","memory":16}`),
	}
}

// randomPages fills mem with pages that are each zero, random, or zero but
// for their last byte (which a zero test that stops early would miss), and
// returns how many are not zero.
func randomPages(rng *rand.Rand, mem []byte, dataEvery int) int {
	nonzero := 0
	for p := 0; p < len(mem)/page; p++ {
		pg := mem[p*page : (p+1)*page]
		switch rng.IntN(dataEvery) {
		case 0:
			for i := range pg {
				pg[i] = byte(rng.Uint32())
			}
			pg[0] |= 1
			nonzero++
		case 1:
			pg[page-1] = 0x80
			nonzero++
		}
	}
	return nonzero
}

// readAll reads a whole stream as a restoring hv would, memory into buffers
// of at most 1 MiB (bigger memory sections are read past), and returns the
// sections and the memory by GPA.
func readAll(b []byte) ([]snapshot.Section, map[uint64][]byte, error) {
	r, err := snapshot.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, nil, err
	}
	var secs []snapshot.Section
	mem := map[uint64][]byte{}
	for {
		s, err := r.Next()
		if err == io.EOF {
			return secs, mem, nil
		}
		if err != nil {
			return secs, mem, err
		}
		secs = append(secs, s)
		if s.Kind == "memory" && s.Size <= 1<<20 {
			dst := mem[s.GPA]
			if uint64(len(dst)) != s.Size {
				dst = make([]byte, s.Size)
				mem[s.GPA] = dst
			}
			if err := r.ReadMemory(dst); err != nil {
				return secs, mem, err
			}
		}
	}
}

// smallSnapshot is the stream the truncation, bit-flip and fuzz tests
// break: every record kind, a few KiB.
func smallSnapshot(t testing.TB) []byte {
	var buf bytes.Buffer
	w, err := snapshot.NewWriter(&buf, testHeader())
	if err != nil {
		t.Fatal(err)
	}
	mem := make([]byte, 16*page)
	mem[3*page+7] = 1
	mem[4*page] = 2
	mem[9*page+page-1] = 3
	dirty := []uint64{1<<4 | 1<<5 | 1<<9}
	for _, err := range []error{
		w.Section("vcpu.0", []byte("registers")),
		w.Section("irqchip", nil),
		w.Memory(1<<20, mem),
		w.MemoryDirty(1<<20, mem, dirty),
		w.Section("uart", []byte{0, 1, 2}),
		w.Close(),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	h := testHeader()
	small := map[string][]byte{
		"vcpu.0":  make([]byte, 3000),
		"vcpu.1":  make([]byte, 2*snapshot.MaxChunk+17), // several chunks
		"irqchip": {},
		"uart":    []byte("lsr"),
	}
	order := []string{"vcpu.0", "vcpu.1", "irqchip", "uart"}
	smallBytes := 0
	for _, k := range order {
		for i := range small[k] {
			small[k][i] = byte(rng.Uint32())
		}
		smallBytes += len(small[k])
	}
	low := make([]byte, 8<<20)
	high := make([]byte, 64<<10)
	nonzero := randomPages(rng, low, 3) + randomPages(rng, high, 2)
	if nonzero == 0 || nonzero == (len(low)+len(high))/page {
		t.Fatalf("%d non-zero pages: the test needs both kinds", nonzero)
	}

	var buf bytes.Buffer
	w, err := snapshot.NewWriter(&buf, h)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range order[:2] {
		if err := w.Section(k, small[k]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Memory(0, low); err != nil {
		t.Fatal(err)
	}
	if err := w.Memory(4<<30, high); err != nil {
		t.Fatal(err)
	}
	for _, k := range order[2:] {
		if err := w.Section(k, small[k]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	// Zero pages cost nothing: every data page costs its bytes and at most
	// a whole run record (13 bytes), every small section its bytes, a begin
	// and end record (at most 1+1+32+1+32), and a chunk record (5) per MiB.
	limit := nonzero*(page+13) + smallBytes + 6*(67+16) + 16*5 + 4096
	if buf.Len() > limit {
		t.Errorf("stream is %d bytes, more than %d for %d non-zero pages", buf.Len(), limit, nonzero)
	}
	if buf.Len() < nonzero*page {
		t.Errorf("stream is %d bytes, less than its %d non-zero pages", buf.Len(), nonzero)
	}

	r, err := snapshot.NewReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Header(); !reflect.DeepEqual(got, h) {
		t.Errorf("header %+v, want %+v", got, h)
	}
	var kinds []string
	for {
		s, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, s.Kind)
		switch s.Kind {
		case "memory":
			want := map[uint64][]byte{0: low, 4 << 30: high}[s.GPA]
			if s.Data != nil || uint64(len(want)) != s.Size {
				t.Fatalf("memory section at %#x of %d bytes (data %v)", s.GPA, s.Size, s.Data != nil)
			}
			dst := make([]byte, s.Size)
			if err := r.ReadMemory(dst); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dst, want) {
				t.Errorf("memory at %#x differs", s.GPA)
			}
		default:
			if !bytes.Equal(s.Data, small[s.Kind]) {
				t.Errorf("section %q: %d bytes differ from the %d written", s.Kind, len(s.Data), len(small[s.Kind]))
			}
		}
	}
	if want := []string{"vcpu.0", "vcpu.1", "memory", "memory", "irqchip", "uart"}; !reflect.DeepEqual(kinds, want) {
		t.Errorf("sections %v, want %v", kinds, want)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("Next after the end: %v, want io.EOF", err)
	}
}

// TestMemoryDirty is a pre-copy migration in one stream: a full round,
// then a dirty round over the same region, applied on top of it.
func TestMemoryDirty(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const pages = 300 // not a multiple of 64: the bitmap's last word is partial
	mem0 := make([]byte, pages*page)
	randomPages(rng, mem0, 2)
	mem1 := bytes.Clone(mem0)
	dirty := make([]uint64, (pages+63)/64)
	mark := func(p int) { dirty[p/64] |= 1 << (p % 64) }
	var becameZero, becameData, unchanged int = -1, -1, -1
	for p := 0; p < pages; p++ {
		pg := mem1[p*page : (p+1)*page]
		zero := bytes.Equal(pg, make([]byte, page))
		switch {
		case !zero && becameZero < 0:
			clear(pg)
			becameZero = p
			mark(p)
		case zero && becameData < 0:
			pg[100] = 0x55
			becameData = p
			mark(p)
		case p%7 == 0:
			pg[rng.IntN(page)] ^= 0xff
			mark(p)
		case p%11 == 0 && unchanged < 0:
			unchanged = p
			mark(p)
		}
	}
	mark(pages - 1)
	mem1[pages*page-1] ^= 1

	var buf bytes.Buffer
	w, err := snapshot.NewWriter(&buf, testHeader())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Memory(0, mem0); err != nil {
		t.Fatal(err)
	}
	nonZero := 0
	for p := 0; p < pages; p++ {
		if !bytes.Equal(mem0[p*page:(p+1)*page], make([]byte, page)) {
			nonZero++
		}
	}
	if got := w.Pages(); got != uint64(nonZero) {
		t.Errorf("Pages after the full round: %d, want its %d non-zero pages", got, nonZero)
	}
	if err := w.MemoryDirty(0, mem1, dirty); err != nil {
		t.Fatal(err)
	}
	nDirty := 0
	for _, d := range dirty {
		nDirty += bits.OnesCount64(d)
	}
	if got := w.Pages(); got != uint64(nonZero+nDirty) {
		t.Errorf("Pages after the dirty round: %d, want %d + %d dirty", got, nonZero, nDirty)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := snapshot.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]byte, len(mem0))
	for round, want := range [][]byte{mem0, mem1} {
		s, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if s.Kind != "memory" || s.Size != uint64(len(dst)) {
			t.Fatalf("round %d: section %q of %d bytes", round, s.Kind, s.Size)
		}
		if err := r.ReadMemory(dst); err != nil {
			t.Fatal(err)
		}
		for p := 0; p < pages; p++ {
			if !bytes.Equal(dst[p*page:(p+1)*page], want[p*page:(p+1)*page]) {
				t.Errorf("round %d: page %d differs (became zero %d, became data %d)", round, p, becameZero, becameData)
			}
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("Next after the last round: %v, want io.EOF", err)
	}
}

func TestMemoryDirtyBitmapBounds(t *testing.T) {
	w, err := snapshot.NewWriter(io.Discard, testHeader())
	if err != nil {
		t.Fatal(err)
	}
	mem := make([]byte, 70*page)
	for _, dirty := range [][]uint64{
		{1},                // too short for 70 pages
		{0, 1 << 6},        // page 70, one past the end
		{0, 0, 1},          // page 128
		{1, 1 << 5, 0, 16}, // page 196
	} {
		if err := w.MemoryDirty(0, mem, dirty); !errors.Is(err, snapshot.ErrUsage) {
			t.Errorf("bitmap %x: %v, want ErrUsage", dirty, err)
		}
	}
	if err := w.MemoryDirty(0, mem, []uint64{1, 1 << 5, 0}); err != nil {
		t.Errorf("a bitmap with spare zero words: %v", err)
	}
	if err := w.Memory(0, make([]byte, 17<<20)); !errors.Is(err, snapshot.ErrTooLarge) {
		t.Errorf("17 MiB for a 16 MiB header: %v, want ErrTooLarge", err)
	}
	if err := w.Section("Bad", nil); !errors.Is(err, snapshot.ErrUsage) {
		t.Errorf("kind Bad: %v, want ErrUsage", err)
	}
}

func TestTruncatedEverywhere(t *testing.T) {
	b := smallSnapshot(t)
	if _, _, err := readAll(b); err != nil {
		t.Fatalf("the whole stream: %v", err)
	}
	for n := 0; n < len(b); n++ {
		_, _, err := readAll(b[:n])
		if !errors.Is(err, snapshot.ErrTruncated) {
			t.Errorf("cut at %d of %d: %v, want ErrTruncated", n, len(b), err)
		}
	}
}

func TestBitFlipsEverywhere(t *testing.T) {
	b := smallSnapshot(t)
	c := make([]byte, len(b))
	bits := 8
	if testing.Short() {
		bits = 1 // every byte's low bit
	}
	for i := range b {
		for bit := range bits {
			copy(c, b)
			c[i] ^= 1 << bit
			if _, _, err := readAll(c); err == nil || err == io.EOF {
				t.Errorf("bit %d of byte %d flipped: %v, want a refusal", bit, i, err)
			}
		}
	}
}

// TestPipe streams a snapshot through a pipe, as xl migrate does: nothing
// seeks, and the reader's io.EOF waits for the sender to close.
func TestPipe(t *testing.T) {
	want := smallSnapshot(t)
	pr, pw := io.Pipe()
	closed := make(chan struct{})
	go func() {
		// Written in odd pieces, so that no record arrives whole.
		for b := want; len(b) > 0; b = b[min(len(b), 1000):] {
			if _, err := pw.Write(b[:min(len(b), 1000)]); err != nil {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
		close(closed)
		pw.Close()
	}()
	r, err := snapshot.NewReader(pr)
	if err != nil {
		t.Fatal(err)
	}
	for {
		s, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if s.Kind == "memory" {
			if err := r.ReadMemory(make([]byte, s.Size)); err != nil {
				t.Fatal(err)
			}
		}
	}
	select {
	case <-closed:
	default:
		t.Error("io.EOF before the sender closed the pipe")
	}
}

func TestTrailingGarbage(t *testing.T) {
	b := append(smallSnapshot(t), 0)
	if _, _, err := readAll(b); !errors.Is(err, snapshot.ErrCorrupt) || !strings.Contains(err.Error(), "after the trailer") {
		t.Errorf("a byte after the trailer: %v", err)
	}
}

// enc writes the layout of docs/snapshot.md independently of the package,
// so that the tests can build the hostile streams the Writer refuses to.
type enc struct {
	buf bytes.Buffer
	sec hash.Hash
	n   uint32
}

func newEnc(version uint32, h snapshot.Header) *enc {
	e := &enc{}
	e.raw([]byte("XENOSNAP"))
	e.u32(version)
	js, _ := json.Marshal(h)
	e.small("header", js)
	return e
}

func (e *enc) raw(p []byte) {
	e.buf.Write(p)
	if e.sec != nil {
		e.sec.Write(p)
	}
}
func (e *enc) u8(v byte)    { e.raw([]byte{v}) }
func (e *enc) u32(v uint32) { e.raw(binary.LittleEndian.AppendUint32(nil, v)) }
func (e *enc) u64(v uint64) { e.raw(binary.LittleEndian.AppendUint64(nil, v)) }

func (e *enc) begin(kind string) {
	e.sec = sha256.New()
	e.u8(0x01)
	e.u8(byte(len(kind)))
	e.raw([]byte(kind))
}
func (e *enc) chunk(p []byte) { e.u8(0x03); e.u32(uint32(len(p))); e.raw(p) }
func (e *enc) mem(gpa, size uint64) {
	e.sec = sha256.New()
	e.u8(0x02)
	e.u64(gpa)
	e.u64(size)
}
func (e *enc) data(start uint64, pages []byte) {
	e.u8(0x04)
	e.u64(start)
	e.u32(uint32(len(pages) / page))
	e.raw(pages)
}
func (e *enc) zero(start, count uint64) { e.u8(0x05); e.u64(start); e.u64(count) }
func (e *enc) end() {
	e.u8(0x06)
	sum := e.sec.Sum(nil)
	e.sec = nil
	e.raw(sum)
	e.n++
}
func (e *enc) small(kind string, p []byte) {
	e.begin(kind)
	for len(p) > 0 {
		n := min(len(p), 1<<20)
		e.chunk(p[:n])
		p = p[n:]
	}
	e.end()
}
func (e *enc) trailer(count uint32) []byte {
	e.u8(0x07)
	e.u32(count)
	sum := sha256.Sum256(e.buf.Bytes())
	e.raw(sum[:])
	return e.buf.Bytes()
}

// TestLayout checks the Writer against the documented layout, byte for
// byte, through the independent encoder.
func TestLayout(t *testing.T) {
	mem := make([]byte, 8*page)
	mem[2*page] = 9
	mem[3*page+1] = 8
	mem[6*page+2] = 7
	e := newEnc(1, testHeader())
	e.small("vcpu.0", []byte("regs"))
	e.mem(0x100000, uint64(len(mem)))
	e.data(2, mem[2*page:4*page])
	e.data(6, mem[6*page:7*page])
	e.end()
	e.mem(0x100000, uint64(len(mem)))
	e.zero(1, 1)
	e.data(2, mem[2*page:3*page])
	e.zero(4, 2)
	e.end()
	want := e.trailer(e.n)

	var buf bytes.Buffer
	w, err := snapshot.NewWriter(&buf, testHeader())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Section("vcpu.0", []byte("regs")); err != nil {
		t.Fatal(err)
	}
	if err := w.Memory(0x100000, mem); err != nil {
		t.Fatal(err)
	}
	if err := w.MemoryDirty(0x100000, mem, []uint64{1<<1 | 1<<2 | 1<<4 | 1<<5}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("writer's %d bytes differ from the documented layout's %d", buf.Len(), len(want))
	}
}

type hostileCase struct {
	name   string
	stream []byte
	want   error
	says   string
}

// hostileCases are streams that are well formed up to one lie.
func hostileCases() []hostileCase {
	h := testHeader()
	memSection := func(f func(e *enc)) []byte {
		e := newEnc(1, h)
		e.mem(0, 64*page)
		f(e)
		e.end()
		return e.trailer(e.n)
	}
	onePage := make([]byte, page)
	onePage[0] = 1
	bigHeader := h
	bigHeader.MemoryMiB = 2 << 20
	noCPU := h
	noCPU.VCPUs = 0
	dupe := newEnc(1, h)
	dupe.small("uart", []byte{1})
	dupe.small("uart", []byte{1})
	wrongCount := newEnc(1, h)
	wrongCount.small("uart", nil)

	return []hostileCase{
		{"bad magic", []byte("XENOSNAQ\x01\x00\x00\x00"), snapshot.ErrBadMagic, "bad magic"},
		{"version 7", newEnc(7, h).trailer(1), snapshot.ErrVersion, "format version 7: unknown format version: this hv reads 1"},
		{"chunk of 2^31", func() []byte {
			e := newEnc(1, h)
			e.begin("vcpu.0")
			e.u8(0x03)
			e.u32(1 << 31)
			return e.buf.Bytes()
		}(), snapshot.ErrCorrupt, `section "vcpu.0": corrupt: chunk of 2147483648 bytes`},
		{"memory of 2^60", func() []byte {
			e := newEnc(1, h)
			e.mem(0, 1<<60)
			e.end()
			return e.trailer(e.n)
		}(), snapshot.ErrTooLarge, `section "memory": too large`},
		{"memory of 17 MiB in 16", func() []byte {
			e := newEnc(1, h)
			e.mem(0, 17<<20)
			return e.buf.Bytes()
		}(), snapshot.ErrTooLarge, `section "memory"`},
		{"memory size not pages", func() []byte {
			e := newEnc(1, h)
			e.mem(0, page+1)
			return e.buf.Bytes()
		}(), snapshot.ErrCorrupt, `section "memory"`},
		{"memory wraps", func() []byte {
			e := newEnc(1, h)
			e.mem(1<<64-page, 2*page)
			return e.buf.Bytes()
		}(), snapshot.ErrCorrupt, `section "memory"`},
		{"data page past size", memSection(func(e *enc) { e.data(64, onePage) }), snapshot.ErrCorrupt, "past the section's 64 pages"},
		{"data page index 2^63", memSection(func(e *enc) { e.data(1<<63, onePage) }), snapshot.ErrCorrupt, "past the section's"},
		{"zero run past size", memSection(func(e *enc) { e.zero(60, 5) }), snapshot.ErrCorrupt, "past the section's"},
		{"zero run count wraps", memSection(func(e *enc) { e.zero(1, 1<<64-1) }), snapshot.ErrCorrupt, "past the section's"},
		{"data run of 257 pages", memSection(func(e *enc) {
			e.u8(0x04)
			e.u64(0)
			e.u32(257)
		}), snapshot.ErrCorrupt, "data run of 257 pages"},
		{"data run of 0 pages", memSection(func(e *enc) { e.data(0, nil) }), snapshot.ErrCorrupt, "data run of 0"},
		{"zero run of 0 pages", memSection(func(e *enc) { e.zero(3, 0) }), snapshot.ErrCorrupt, "zero run of 0"},
		{"duplicate run", memSection(func(e *enc) { e.data(3, onePage); e.data(3, onePage) }), snapshot.ErrCorrupt, "overlaps"},
		{"overlapping runs", memSection(func(e *enc) { e.zero(2, 4); e.data(5, onePage) }), snapshot.ErrCorrupt, "overlaps"},
		{"descending runs", memSection(func(e *enc) { e.data(9, onePage); e.zero(2, 1) }), snapshot.ErrCorrupt, "overlaps"},
		{"chunk in memory", memSection(func(e *enc) { e.chunk([]byte{1}) }), snapshot.ErrCorrupt, "inside a memory section"},
		{"kind with capitals", func() []byte {
			e := newEnc(1, h)
			e.small("VCPU.0", []byte{1})
			return e.trailer(e.n)
		}(), snapshot.ErrCorrupt, `"VCPU.0"`},
		{"kind of 33 bytes", func() []byte {
			e := newEnc(1, h)
			e.small(strings.Repeat("a", 33), []byte{1})
			return e.trailer(e.n)
		}(), snapshot.ErrCorrupt, "kind of 33 bytes"},
		{"kind memory as small", func() []byte {
			e := newEnc(1, h)
			e.small("memory", []byte{1})
			return e.trailer(e.n)
		}(), snapshot.ErrCorrupt, "reserved"},
		{"section twice", dupe.trailer(dupe.n), snapshot.ErrCorrupt, `"uart" twice`},
		{"header memory 2 TiB", newEnc(1, bigHeader).trailer(1), snapshot.ErrCorrupt, `section "header"`},
		{"header no vcpus", newEnc(1, noCPU).trailer(1), snapshot.ErrCorrupt, "vcpus 0"},
		{"trailer count", wrongCount.trailer(wrongCount.n + 1), snapshot.ErrCorrupt, "counts 3 sections, the stream has 2"},
		{"unknown record", func() []byte {
			e := newEnc(1, h)
			e.u8(0x08)
			return e.buf.Bytes()
		}(), snapshot.ErrCorrupt, "record 0x8"},
		{"no trailer", newEnc(1, h).buf.Bytes(), snapshot.ErrTruncated, "without a complete trailer"},
	}
}

// TestHostile feeds the hostile cases to the reader. Nothing in
// the reader passes a length from the stream to make(): small sections grow
// one checked chunk (at most 1 MiB) at a time and memory goes into the
// caller's dst, so each refusal costs a few hundred KiB at most (bufio's
// 64 KiB, hashes, errors), which the test checks with the runtime's
// allocation counter.
func TestHostile(t *testing.T) {
	cases := hostileCases()
	for _, c := range cases {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, _, err := readAll(c.stream)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v, want %v saying %q", c.name, err, c.want, c.says)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 2<<20 {
			t.Errorf("%s: reading allocated %d bytes", c.name, n)
		}
	}
}

// TestSectionPastMax streams 16 MiB and one chunk more: the reader holds
// MaxSection at most and refuses the chunk that would pass it.
func TestSectionPastMax(t *testing.T) {
	e := newEnc(1, testHeader())
	e.begin("vcpu.0")
	chunk := make([]byte, 1<<20)
	for range snapshot.MaxSection/len(chunk) + 1 {
		e.chunk(chunk)
	}
	e.end()
	_, _, err := readAll(e.trailer(e.n))
	if !errors.Is(err, snapshot.ErrTooLarge) || !strings.Contains(err.Error(), `section "vcpu.0"`) {
		t.Errorf("a section of 17 MiB: %v, want ErrTooLarge", err)
	}
}

// FuzzReader reads arbitrary bytes as a snapshot. It must never panic,
// never take more than the bounds, and refuse with one of the package's
// sentinels. Run it with -fuzzminimizetime 2s: minimising a new input of
// a few KiB otherwise takes up to a minute in which nothing is fuzzed.
func FuzzReader(f *testing.F) {
	f.Add(smallSnapshot(f))
	f.Add(newEnc(1, testHeader()).trailer(1))
	// The hostile cases carry good hashes up to their lie, so that the
	// fuzzer starts past the hash checks.
	for _, c := range hostileCases() {
		f.Add(c.stream)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, err := readAll(b)
		if err == nil {
			return
		}
		for _, s := range []error{snapshot.ErrBadMagic, snapshot.ErrVersion, snapshot.ErrTruncated, snapshot.ErrCorrupt, snapshot.ErrTooLarge} {
			if errors.Is(err, s) {
				return
			}
		}
		t.Fatalf("refused without a sentinel: %v", err)
	})
}

// FuzzSectionBody gets past the hashes that stop FuzzReader's mutations
// early: the fuzzer writes the records inside one section (a memory section
// of 64 pages, or a small one) and the test encoder adds correct section
// and stream hashes around them.
func FuzzSectionBody(f *testing.F) {
	pg := make([]byte, page)
	pg[9] = 1
	e := &enc{}
	e.data(1, pg)
	e.zero(2, 3)
	e.data(60, append(bytes.Clone(pg), pg...))
	f.Add(true, e.buf.Bytes())
	f.Add(false, []byte{0x03, 2, 0, 0, 0, 'h', 'i'})
	f.Fuzz(func(t *testing.T, memory bool, body []byte) {
		e := newEnc(1, testHeader())
		if memory {
			e.mem(0, 64*page)
		} else {
			e.begin("vcpu.0")
		}
		e.raw(body)
		e.end()
		_, _, err := readAll(e.trailer(e.n))
		if err == nil {
			return
		}
		for _, s := range []error{snapshot.ErrTruncated, snapshot.ErrCorrupt, snapshot.ErrTooLarge} {
			if errors.Is(err, s) {
				return
			}
		}
		t.Fatalf("refused without a sentinel: %v", err)
	})
}

// TestWriteFuzzCorpus writes the valid snapshots FuzzReader starts from
// into testdata/fuzz/FuzzReader, when XENO_WRITE_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("XENO_WRITE_CORPUS") != "1" {
		t.Skip("XENO_WRITE_CORPUS=1 rewrites the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzReader")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mem := make([]byte, 8*page)
	randomPages(rand.New(rand.NewPCG(5, 6)), mem, 3)
	e := newEnc(1, testHeader())
	e.mem(0, uint64(len(mem)))
	e.data(0, mem[:page])
	e.zero(1, 7)
	e.end()
	seeds := map[string][]byte{
		"valid-small":        smallSnapshot(t),
		"valid-header-only":  newEnc(1, testHeader()).trailer(1),
		"valid-dirty-zeroes": e.trailer(e.n),
	}
	for name, b := range seeds {
		if _, _, err := readAll(b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
