package builder

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCompare(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	write := func(dir, name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	big := strings.Repeat("x", 200000)
	write(a, "same", big)
	write(b, "same", big)
	write(a, "late", big+"A")
	write(b, "late", big+"B")
	write(a, "short", "abc")
	write(b, "short", "abcd")
	write(a, "only-a", "")
	bad, names, err := Compare(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 4 {
		t.Errorf("names = %v", names)
	}
	want := map[string]int64{"late": 200000, "short": 3, "only-a": -1}
	if len(bad) != len(want) {
		t.Fatalf("mismatches = %+v, want %v", bad, want)
	}
	for _, m := range bad {
		if off, ok := want[m.File]; !ok || off != m.Offset {
			t.Errorf("%s: offset %d, want %d", m.File, m.Offset, want[m.File])
		}
	}
}

func TestSnapshotLeavesOutNonSource(t *testing.T) {
	root, dst := t.TempDir(), t.TempDir()
	for _, p := range []string{"go.mod", "a/b.go", ".git/HEAD", "bin/xeno", "a/bin/x.go"} {
		os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755)
		os.WriteFile(filepath.Join(root, p), []byte(p), 0o644)
	}
	if err := Snapshot(root, dst); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{"go.mod": true, "a/b.go": true, ".git/HEAD": false, "bin/xeno": false} {
		_, err := os.Stat(filepath.Join(dst, p))
		if (err == nil) != want {
			t.Errorf("%s copied = %v, want %v", p, err == nil, want)
		}
	}
	h1, err := sourceHash(root)
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := sourceHash(dst)
	if h1 != h2 {
		t.Error("a snapshot has another source hash than its tree")
	}
	os.WriteFile(filepath.Join(dst, "a/b.go"), []byte("changed"), 0o644)
	if h3, _ := sourceHash(dst); h3 == h2 {
		t.Error("source hash ignores a changed .go file")
	}
}

func TestGoEnvFixesOutputAffectingVariables(t *testing.T) {
	t.Setenv("GOAMD64", "v3")
	t.Setenv("CGO_ENABLED", "1")
	t.Setenv("GOFLAGS", "-race")
	env := goEnv()
	seen := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if _, dup := seen[k]; dup && strings.HasPrefix(k, "GO") {
			t.Errorf("%s set twice", k)
		}
		seen[k] = v
	}
	for k, v := range map[string]string{"GOAMD64": "v1", "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly"} {
		if seen[k] != v {
			t.Errorf("%s=%q, want %q", k, seen[k], v)
		}
	}
}
