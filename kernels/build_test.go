package kernels

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseFragment(t *testing.T) {
	frag := "# comment\n\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x y\"\n"
	got, err := parseFragment("f.config", []byte(frag))
	if err != nil {
		t.Fatal(err)
	}
	want := []fragmentLine{{"CONFIG_A", "y", 3}, {"CONFIG_B", "n", 4}, {"CONFIG_C", `"x y"`, 5}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: got %v, want %v", i, got[i], want[i])
		}
	}
	_, err = parseFragment("f.config", []byte("CONFIG_A=y\nA=y\n"))
	if err == nil || !strings.Contains(err.Error(), "f.config:2:") {
		t.Errorf("a bad line is not reported at its line: %v", err)
	}
}

// A patch that does not apply names the patch, the file and the hunk.
func TestApplyPatchReportsHunk(t *testing.T) {
	if _, err := exec.LookPath("patch"); err != nil {
		t.Skip("no patch(1): make deps installs it")
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f.c"), []byte("one\ntwo\nthree\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := "--- a/f.c\n+++ b/f.c\n@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n"
	bad := "--- a/f.c\n+++ b/f.c\n@@ -1,3 +1,3 @@\n one\n-zwei\n+ZWEI\n three\n"
	dir := t.TempDir()
	gp, bp := filepath.Join(dir, "0001-good.patch"), filepath.Join(dir, "0002-bad.patch")
	os.WriteFile(gp, []byte(good), 0o644)
	os.WriteFile(bp, []byte(bad), 0o644)
	if err := applyPatch(context.Background(), src, gp); err != nil {
		t.Fatalf("good patch: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(src, "f.c")); string(b) != "one\nTWO\nthree\n" {
		t.Fatalf("good patch gave %q", b)
	}
	err := applyPatch(context.Background(), src, bp)
	if !errors.Is(err, ErrPatch) || !strings.Contains(err.Error(), "0002-bad.patch") || !strings.Contains(err.Error(), "f.c hunk #1") {
		t.Errorf("bad patch: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(src, "f.c")); string(b) != "one\nTWO\nthree\n" {
		t.Errorf("a failed patch changed the file: %q", b)
	}
}

// A kept tree follows the series: a changed patch is reversed and the new
// one applied, and the record of what is applied stays true.
func TestSyncPatches(t *testing.T) {
	if _, err := exec.LookPath("patch"); err != nil {
		t.Skip("no patch(1): make deps installs it")
	}
	tree := t.TempDir()
	src := filepath.Join(tree, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "f.c"), []byte("one\ntwo\nthree\n"), 0o644)
	dir := t.TempDir()
	p1 := filepath.Join(dir, "0001-a.patch")
	os.WriteFile(p1, []byte("--- a/f.c\n+++ b/f.c\n@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n"), 0o644)
	ctx := context.Background()
	check := func(want string) {
		t.Helper()
		if b, _ := os.ReadFile(filepath.Join(src, "f.c")); string(b) != want {
			t.Fatalf("f.c = %q, want %q", b, want)
		}
	}
	if err := syncPatches(ctx, tree, src, []string{p1}); err != nil {
		t.Fatal(err)
	}
	check("one\nTWO\nthree\n")
	if err := syncPatches(ctx, tree, src, []string{p1}); err != nil {
		t.Fatal(err)
	}
	check("one\nTWO\nthree\n")
	os.WriteFile(p1, []byte("--- a/f.c\n+++ b/f.c\n@@ -1,3 +1,3 @@\n one\n two\n-three\n+THREE\n"), 0o644)
	if err := syncPatches(ctx, tree, src, []string{p1}); err != nil {
		t.Fatal(err)
	}
	check("one\ntwo\nTHREE\n")
	if err := syncPatches(ctx, tree, src, nil); err != nil {
		t.Fatal(err)
	}
	check("one\ntwo\nthree\n")
	// A source that changed behind the record is reported, not patched over.
	syncPatches(ctx, tree, src, []string{p1})
	os.WriteFile(filepath.Join(src, "f.c"), []byte("other\n"), 0o644)
	if err := syncPatches(ctx, tree, src, nil); !errors.Is(err, errTreeDirty) {
		t.Errorf("dirty tree: %v", err)
	}
}

// A cold build never unpacks into a directory that holds anything.
func TestBuildRefusesBusyWorkDir(t *testing.T) {
	if _, err := toolchain(); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "x.config")
	os.WriteFile(cfg, []byte("CONFIG_A=y\n"), 0o644)
	work := filepath.Join(dir, "work")
	os.MkdirAll(work, 0o755)
	keep := filepath.Join(work, "mine")
	os.WriteFile(keep, []byte("user data"), 0o644)
	s, err := Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Build(context.Background(), BuildSpec{Source: "linux-source-6.1", SourceVersion: "6.1.192-2",
		SourceSHA256: strings.Repeat("a", 64), Config: cfg, Interface: "1.2", WorkDir: work})
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("busy --workdir: %v", err)
	}
	if b, _ := os.ReadFile(keep); string(b) != "user data" {
		t.Errorf("the user's file is gone")
	}
}

func FuzzParseFragment(f *testing.F) {
	f.Add([]byte("CONFIG_A=y\n# CONFIG_B is not set\n# comment\n\nCONFIG_C=\"x\"\n"))
	f.Add([]byte("CONFIG_=y\n#CONFIG_B is not set\nA=y"))
	f.Fuzz(func(t *testing.T, b []byte) {
		lines, err := parseFragment("f", b)
		if err != nil {
			return
		}
		n := strings.Count(string(b), "\n") + 1
		for _, l := range lines {
			if !strings.HasPrefix(l.name, "CONFIG_") || l.line < 1 || l.line > n {
				t.Fatalf("bad line %+v from %q", l, b)
			}
		}
	})
}
