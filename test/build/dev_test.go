package build

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/xeno-hv/xeno/builder"
	"github.com/xeno-hv/xeno/internal/testenv"
)

// TestDevInterfaceBuild builds a guest for the volatile 1.3.0-dev line:
// the lock, the manifest and the xeno-init inside must all carry the
// interface with the build id of the exact tree, 1.3-dev@ID; and without
// --hv-release the 1.2 tree refuses the recipe.
func TestDevInterfaceBuild(t *testing.T) {
	cpio := testenv.RequireCmd(t, "cpio")
	src := t.TempDir()
	if err := builder.Snapshot(root(t), src); err != nil {
		t.Fatal(err)
	}
	id, err := exec.Command("sh", filepath.Join(src, "scripts/buildid.sh"), "1.3.0-dev").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "1.3-dev@" + strings.TrimSpace(string(id))
	dir := t.TempDir()
	recipe := filepath.Join(dir, "dev.toml")
	r := strings.Replace(small, `release = "1.2"`, `release = "1.3.0-dev"`, 1)
	r = strings.Replace(r, `name = "bad"`, `name = "dev"`, 1)
	if err := os.WriteFile(recipe, []byte(r), 0o644); err != nil {
		t.Fatal(err)
	}
	srcArgs := []string{"--src", src, "--changeset", "test"}
	if _, e, err := xeno(t, nil, "", append(append([]string{"lock", "--hv-release", "1.3.0-dev"}, srcArgs[:2]...), recipe)...); err != nil {
		t.Fatalf("xeno lock: %v\n%s", err, e)
	}
	lock, _ := os.ReadFile(recipe + ".lock")
	if !strings.Contains(string(lock), fmt.Sprintf("interface = %q", want)) {
		t.Errorf("lock does not pin %s:\n%s", want, lock)
	}
	// The tree builds 1.2.x: without --hv-release the pin is refused.
	_, e, err := xeno(t, nil, "", append(append([]string{"build", "-o", filepath.Join(dir, "no")}, srcArgs...), recipe)...)
	if err == nil || !strings.Contains(e, recipe+":6:") || !strings.Contains(e, "recipe pins hv 1.3.0-dev") {
		t.Errorf("build of a 1.3.0-dev recipe by a 1.2 tree: %v\n%s", err, e)
	}
	out := filepath.Join(dir, "out")
	if _, e, err := xeno(t, nil, "", append(append([]string{"build", "--hv-release", "1.3.0-dev", "-o", out}, srcArgs...), recipe)...); err != nil {
		t.Fatalf("xeno build: %v\n%s", err, e)
	}
	var m manifest
	if _, err := toml.DecodeFile(filepath.Join(out, "dev.manifest.toml"), &m); err != nil {
		t.Fatal(err)
	}
	if m.Interface != want || m.HVRelease != "1.3.0-dev" {
		t.Errorf("manifest interface %q release %q, want %q 1.3.0-dev", m.Interface, m.HVRelease, want)
	}
	x := extractInitrd(t, cpio, filepath.Join(out, "dev.initrd"), "init", "etc/xeno/manifest.toml")
	ver, err := exec.Command(filepath.Join(x, "init"), "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(ver)); got != "xeno-init pinned interface "+want {
		t.Errorf("/init --version = %q, want pinned %s", got, want)
	}
	inner, _ := os.ReadFile(filepath.Join(x, "etc/xeno/manifest.toml"))
	if !strings.Contains(string(inner), fmt.Sprintf("interface = %q", want)) {
		t.Errorf("inner manifest lacks %s:\n%s", want, inner)
	}
}
