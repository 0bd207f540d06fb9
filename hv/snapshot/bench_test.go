package snapshot_test

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/xeno-hv/xeno/hv/snapshot"
)

// idleGuest is 256 MiB of which about 3% of the pages hold data, in runs of
// 1 to 16 pages, as a mostly idle guest's RAM.
func idleGuest() ([]byte, snapshot.Header) {
	mem := make([]byte, 256<<20)
	rng := rand.New(rand.NewPCG(7, 8))
	pages := len(mem) / page
	for p := 0; p < pages; {
		if rng.IntN(270) != 0 {
			p++
			continue
		}
		for n := 1 + rng.IntN(16); n > 0 && p < pages; n, p = n-1, p+1 {
			for i := p * page; i < (p+1)*page; i += 8 {
				mem[i] = byte(rng.Uint32()) | 1
			}
		}
	}
	h := testHeader()
	h.MemoryMiB = 256
	return mem, h
}

// BenchmarkWriteMemory writes the idle guest's RAM as a full snapshot;
// MB/s counts the guest's 256 MiB, not the stream's bytes.
func BenchmarkWriteMemory(b *testing.B) {
	mem, h := idleGuest()
	b.SetBytes(int64(len(mem)))
	var n int64
	for b.Loop() {
		cw := &countWriter{}
		w, err := snapshot.NewWriter(cw, h)
		if err != nil {
			b.Fatal(err)
		}
		if err := w.Memory(0, mem); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		n = cw.n
	}
	b.ReportMetric(float64(n)/(1<<20), "stream-MiB")
}

// BenchmarkWriteMemoryRawSHA256 is the peer: the same 256 MiB copied whole
// through one SHA-256 to io.Discard, the least a format that neither skips
// zero pages nor hashes twice would cost.
func BenchmarkWriteMemoryRawSHA256(b *testing.B) {
	mem, _ := idleGuest()
	b.SetBytes(int64(len(mem)))
	for b.Loop() {
		h := sha256.New()
		if _, err := io.Copy(io.MultiWriter(h, io.Discard), bytes.NewReader(mem)); err != nil {
			b.Fatal(err)
		}
		h.Sum(nil)
	}
	b.ReportMetric(float64(len(mem))/(1<<20), "stream-MiB")
}

// BenchmarkReadMemory restores the idle guest's snapshot into zeroed RAM.
func BenchmarkReadMemory(b *testing.B) {
	mem, h := idleGuest()
	var buf bytes.Buffer
	w, err := snapshot.NewWriter(&buf, h)
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Memory(0, mem); err != nil {
		b.Fatal(err)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, len(mem))
	b.SetBytes(int64(len(mem)))
	for b.Loop() {
		clear(dst)
		r, err := snapshot.NewReader(bytes.NewReader(buf.Bytes()))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := r.Next(); err != nil {
			b.Fatal(err)
		}
		if err := r.ReadMemory(dst); err != nil {
			b.Fatal(err)
		}
		if _, err := r.Next(); err != io.EOF {
			b.Fatal(err)
		}
	}
	if !bytes.Equal(dst, mem) {
		b.Fatal("restored memory differs")
	}
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}
