package vm

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A read-write disk is exclusive and a read-only one shared, as two hv
// processes would see it (flock locks of two open file descriptions
// conflict as between processes).
func TestLockDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	open := func(ro bool) (*os.File, error) {
		flag := os.O_RDWR
		if ro {
			flag = os.O_RDONLY
		}
		f, err := os.OpenFile(path, flag, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f, lockDisk(f, path, ro)
	}
	ro1, err := open(true)
	if err != nil {
		t.Fatalf("first read-only: %v", err)
	}
	if _, err := open(true); err != nil {
		t.Fatalf("second read-only: %v", err)
	}
	if _, err := open(false); err == nil || !strings.Contains(err.Error(), "cannot be opened read-write: in use read-only by process") {
		t.Fatalf("read-write while shared: %v", err)
	}
	ro1.Close()
	// Closing one reader leaves the other's lock.
	if _, err := open(false); err == nil {
		t.Fatal("read-write while one reader remains: no error")
	}
}

func TestFindFlock(t *testing.T) {
	locks := `1: FLOCK  ADVISORY  WRITE 24278 fe:00:9977941 0 EOF
1: -> FLOCK  ADVISORY  WRITE 2697 fe:00:9977941 0 EOF
2: POSIX  ADVISORY  WRITE 77 08:01:12 0 EOF
3: FLOCK  ADVISORY  READ 4242 08:01:12 0 EOF
`
	pid, mode, ok := findFlock(bufio.NewScanner(strings.NewReader(locks)), 8, 1, 12)
	if !ok || pid != 4242 || mode != "READ" {
		t.Errorf("findFlock = %d %q %v; want 4242 READ (the FLOCK holder, not the POSIX lock)", pid, mode, ok)
	}
	if _, _, ok := findFlock(bufio.NewScanner(strings.NewReader(locks)), 8, 1, 1); ok {
		t.Error("found a lock on inode 1")
	}
}

func TestFlagValue(t *testing.T) {
	for _, args := range [][]string{
		{"hv", "--name", "web"}, {"hv", "-name", "web"}, {"hv", "--name=web"}, {"hv", "-kernel", "k", "-name=web"},
	} {
		if got := flagValue(args, "name"); got != "web" {
			t.Errorf("flagValue(%q) = %q", args, got)
		}
	}
	if got := flagValue([]string{"hv", "name", "x"}, "name"); got != "" {
		t.Errorf("a bare word counted as a flag: %q", got)
	}
}
