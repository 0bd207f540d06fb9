package builder

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"
)

// Mismatch is one output that differs between two builds.
type Mismatch struct {
	File   string
	Offset int64 // first differing byte; -1 if one build lacks the file
}

// Compare compares every file of two output directories byte for byte.
func Compare(a, b string) ([]Mismatch, []string, error) {
	names := map[string]bool{}
	for _, d := range []string{a, b} {
		ents, err := os.ReadDir(d)
		if err != nil {
			return nil, nil, fmt.Errorf("builder: %w", err)
		}
		for _, e := range ents {
			if e.Type().IsRegular() {
				names[e.Name()] = true
			}
		}
	}
	var sorted []string
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	var bad []Mismatch
	for _, n := range sorted {
		off, err := firstDiff(filepath.Join(a, n), filepath.Join(b, n))
		if err != nil {
			return nil, nil, err
		}
		if off != -2 {
			bad = append(bad, Mismatch{File: n, Offset: off})
		}
	}
	return bad, sorted, nil
}

// firstDiff returns -2 if the files are equal, -1 if one is missing, else
// the offset of the first differing byte (or the shorter file's length).
func firstDiff(a, b string) (int64, error) {
	fa, err := os.Open(a)
	if err != nil {
		return -1, nil
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return -1, nil
	}
	defer fb.Close()
	ra, rb := bufio.NewReaderSize(fa, 1<<20), bufio.NewReaderSize(fb, 1<<20)
	var off int64
	ba, bb := make([]byte, 1<<16), make([]byte, 1<<16)
	for {
		na, ea := io.ReadFull(ra, ba)
		nb, eb := io.ReadFull(rb, bb)
		n := min(na, nb)
		if i := mismatchAt(ba[:n], bb[:n]); i >= 0 {
			return off + int64(i), nil
		}
		if na != nb {
			return off + int64(n), nil
		}
		off += int64(n)
		if ea != nil || eb != nil {
			if (ea == io.EOF || ea == io.ErrUnexpectedEOF) && (eb == io.EOF || eb == io.ErrUnexpectedEOF) {
				return -2, nil
			}
			return 0, fmt.Errorf("builder: comparing %s and %s: %v %v", a, b, ea, eb)
		}
	}
}

func mismatchAt(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// Diffoscope runs diffoscope on two differing files when it is installed,
// writing its report to w.
func Diffoscope(w io.Writer, a, b string) bool {
	p, err := exec.LookPath("diffoscope")
	if err != nil {
		return false
	}
	// diffoscope takes minutes on a disk image; bound it, since the
	// offset is already known.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, p, "--text", "-", a, b)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.Run() // exits 1 when the files differ, which they do
	if ctx.Err() != nil {
		fmt.Fprintf(w, "verify: diffoscope stopped after 2 minutes\n")
	}
	return true
}
