package logfile

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Writing far past the cap keeps PATH and PATH.1 under it, loses no line
// of the newest 2×max bytes, and never splits a line across the two.
func TestRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hv.log")
	const max = 1000
	l, err := Open(path, max)
	if err != nil {
		t.Fatal(err)
	}
	var all bytes.Buffer
	for i := range 500 {
		line := fmt.Sprintf("line %04d\n", i)
		all.WriteString(line)
		if n, err := l.Write([]byte(line)); n != len(line) || err != nil {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	cur, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	old, err := os.ReadFile(path + ".1")
	if err != nil {
		t.Fatal(err)
	}
	if len(cur) > max || len(old) > max {
		t.Fatalf("sizes %d and %d: over the cap %d", len(cur), len(old), max)
	}
	if len(old) != max {
		t.Errorf("rotated file holds %d bytes; 100 whole lines are %d", len(old), max)
	}
	both := append(old, cur...)
	if !bytes.HasSuffix(all.Bytes(), both) || !bytes.HasPrefix(both, []byte("line ")) {
		t.Fatalf("the two files are not the newest whole lines:\n%s", both)
	}
	if _, err := l.Write([]byte("x")); err == nil {
		t.Error("write after Close succeeded")
	}
}

// An existing file counts towards the cap (a restarted domain appends),
// and one write longer than the cap is split rather than kept whole.
func TestExistingAndLongWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	if err := os.WriteFile(path, bytes.Repeat([]byte("a"), 90), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := Open(path, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Write(bytes.Repeat([]byte("b"), 20)); err != nil {
		t.Fatal(err)
	}
	if old, _ := os.ReadFile(path + ".1"); len(old) != 90 {
		t.Errorf("the earlier run's 90 bytes were not rotated: .1 holds %d", len(old))
	}
	if n, err := l.Write(bytes.Repeat([]byte("c"), 250)); n != 250 || err != nil {
		t.Fatalf("long write: %d, %v", n, err)
	}
	cur, _ := os.ReadFile(path)
	old, _ := os.ReadFile(path + ".1")
	if string(cur) != string(bytes.Repeat([]byte("c"), 50)) || string(old) != string(bytes.Repeat([]byte("c"), 100)) {
		t.Errorf("after a 250-byte write with cap 100: %q and .1 %q", cur, old)
	}
}
