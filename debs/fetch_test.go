package debs

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// aptSHA256 is apt's own record of the package's hash, from the signed
// index: an independent check of what Fetch downloaded.
func aptSHA256(t *testing.T, name, version string) string {
	t.Helper()
	out, err := exec.Command("apt-cache", "show", name+"="+version).Output()
	if err != nil {
		t.Skipf("apt-cache does not know %s=%s: %v", name, version, err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "SHA256: "); ok {
			return v
		}
	}
	t.Fatalf("apt-cache show %s=%s has no SHA256", name, version)
	return ""
}

func fetchOrSkip(t *testing.T, dir, name, version, want string) (string, string) {
	t.Helper()
	path, sha, err := Fetch(dir, name, version, want)
	if errors.Is(err, ErrApt) {
		t.Skipf("apt cannot download here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return path, sha
}

func TestFetch(t *testing.T) {
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("needs apt-get")
	}
	// busybox-static has an epoch, which apt spells %3a in file names.
	name := "busybox-static"
	version, err := Candidate(name)
	if err != nil {
		t.Skipf("apt has no %s: %v", name, err)
	}
	want := aptSHA256(t, name, version)
	dir := t.TempDir()
	path, sha := fetchOrSkip(t, dir, name, version, "")
	if sha != want {
		t.Fatalf("Fetch sha256 %s, apt-cache says %s", sha, want)
	}
	if filepath.Dir(path) != filepath.Join(dir, "debs") || !strings.HasPrefix(filepath.Base(path), name+"_") {
		t.Errorf("cached at %s", path)
	}
	p, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if p.Control["Package"] != name || p.Control["Version"] != version || p.SHA256 != want {
		t.Errorf("Open: %s %s %s", p.Control["Package"], p.Control["Version"], p.SHA256)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, "debs", ".fetch-*"))
	if len(leftovers) != 0 {
		t.Errorf("temp dirs left behind: %v", leftovers)
	}

	// The second fetch reuses the cache: it works without apt at all.
	t.Setenv("PATH", t.TempDir())
	path2, sha2, err := Fetch(dir, name, version, want)
	if err != nil || path2 != path || sha2 != want {
		t.Fatalf("cached Fetch = %s, %s, %v", path2, sha2, err)
	}
	// A wrong pin is refused, naming both hashes.
	bad := strings.Repeat("0", 64)
	_, _, err = Fetch(dir, name, version, bad)
	if err == nil || !strings.Contains(err.Error(), "hash mismatch") || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), want) {
		t.Fatalf("wrong pin: %v", err)
	}
	// A corrupted cache file is detected, not reused.
	b, _ := os.ReadFile(path)
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = Fetch(dir, name, version, "")
	if err == nil || !strings.Contains(err.Error(), "hash mismatch") || !strings.Contains(err.Error(), path) {
		t.Fatalf("corrupt cache: %v", err)
	}
}

func TestFetchNotFound(t *testing.T) {
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("needs apt-get")
	}
	for _, c := range [][2]string{{"xeno-no-such-package", "1.0"}, {"hello", "0.0-no-such-version"}} {
		_, _, err := Fetch(t.TempDir(), c[0], c[1], "")
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "package not found by apt") {
			t.Errorf("Fetch(%s=%s) = %v, want ErrNotFound", c[0], c[1], err)
		}
	}
	if _, _, err := Fetch(t.TempDir(), "-o=foo", "1", ""); err == nil {
		t.Error("Fetch accepted an option as a package name")
	}
}
