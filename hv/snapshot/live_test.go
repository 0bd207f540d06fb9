//go:build !race

// The guest writing RAM while a live save sends it is a data race by
// design, which the race detector would report.

package snapshot_test

import (
	"bytes"
	"errors"
	"io"
	"sync/atomic"
	"testing"

	"github.com/xeno-hv/xeno/hv/snapshot"
)

// TestMemoryChangingWhileWritten: pages that change while Memory and
// MemoryDirty write them still make a whole stream, its hashes over
// the bytes it carries; the reader takes it.
func TestMemoryChangingWhileWritten(t *testing.T) {
	const pages = 1024
	mem := bytes.Repeat([]byte{1}, pages*snapshot.PageSize)
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; !stop.Load(); i++ {
			p := (i * 7919) % pages
			for j := 0; j < snapshot.PageSize; j += 64 {
				mem[p*snapshot.PageSize+j]++
			}
		}
	}()
	var buf bytes.Buffer
	w, err := snapshot.NewWriter(&buf, snapshot.Header{Release: "1.2.0", Interface: "1.2", MemoryMiB: 4, VCPUs: 1})
	if err != nil {
		t.Fatal(err)
	}
	all := make([]uint64, pages/64)
	for i := range all {
		all[i] = ^uint64(0)
	}
	for round := 0; round < 5; round++ {
		if err := w.Memory(0, mem); err != nil {
			t.Fatal(err)
		}
		if err := w.MemoryDirty(0, mem, all); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	<-done
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := snapshot.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]byte, len(mem))
	for {
		s, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("a stream written from changing memory: %v", err)
		}
		if err := r.ReadMemory(dst); err != nil {
			t.Fatalf("a stream written from changing memory: section at %#x: %v", s.GPA, err)
		}
	}
}

// TestEndlessStreamRefused: a stream that repeats memory sections
// without end (a hostile sender, or a live save gone wrong) is refused
// once it passes MaxStream of its domain, not read forever.
func TestEndlessStreamRefused(t *testing.T) {
	const mib = 1
	mem := bytes.Repeat([]byte{7}, mib<<20)
	pr, pw := io.Pipe()
	go func() {
		w, err := snapshot.NewWriter(pw, snapshot.Header{Release: "1.2.0", Interface: "1.2", MemoryMiB: mib, VCPUs: 1})
		for err == nil {
			err = w.Memory(0, mem)
		}
		pw.CloseWithError(err)
	}()
	r, err := snapshot.NewReader(pr)
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	dst := make([]byte, len(mem))
	var copies int64
	for {
		_, err := r.Next()
		if err == nil {
			err = r.ReadMemory(dst)
		}
		if err != nil {
			if !errors.Is(err, snapshot.ErrTooLarge) {
				t.Fatalf("after %d copies of RAM: %v, want %v", copies, err, snapshot.ErrTooLarge)
			}
			t.Logf("refused after %d copies of RAM: %v", copies, err)
			break
		}
		copies++
	}
	if limit := snapshot.MaxStream(mib); copies*int64(len(mem)) > limit || copies < snapshot.MaxRAMCopies {
		t.Errorf("refused after %d copies of %d bytes; the bound is %d bytes, at least %d copies", copies, len(mem), limit, snapshot.MaxRAMCopies)
	}
}
