package main

import (
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// --restore fd=FD takes a stream on an inherited descriptor, read as a
// pipe is: a descriptor that is 0-2, not a number or not open is refused
// before anything else, as a usage error or naming the descriptor.
func TestOpenSnapshotFD(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	// The hv's own descriptor, as exec leaves it: closing it is f's job.
	fd, err := unix.Dup(int(r.Fd()))
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		w.WriteString("XENOSNAP")
		w.Close()
	}()
	arg := "fd=" + strconv.Itoa(fd)
	f, err := openSnapshot(arg)
	if err != nil {
		unix.Close(fd)
		t.Fatalf("%s: %v", arg, err)
	}
	defer f.Close()
	if b, err := io.ReadAll(f); err != nil || string(b) != "XENOSNAP" {
		t.Errorf("read %q, %v from %s", b, err, arg)
	}
	for _, bad := range []string{"fd=0", "fd=2", "fd=x", "fd=", "fd=-3"} {
		var u usageError
		if _, err := openSnapshot(bad); !errors.As(err, &u) || !strings.Contains(err.Error(), "--restore "+bad+":") {
			t.Errorf("%s: %v, want a usage error naming it", bad, err)
		}
	}
	if _, err := openSnapshot("fd=1000000"); err == nil || !strings.Contains(err.Error(), "--restore fd=1000000: bad file descriptor") {
		t.Errorf("a descriptor that is not open: %v", err)
	}
	if _, err := openSnapshot("/nonexistent/s.snap"); err == nil || !strings.Contains(err.Error(), "--restore: ") {
		t.Errorf("a missing file: %v", err)
	}
}
