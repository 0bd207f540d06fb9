package build

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/xeno-hv/xeno/internal/testenv"
)

// TestCompatInterfaceBuild pins xeno-init to the older stable interface
// 1.1 on a 1.2 tree (a compat guest): the lock, the manifest and the
// stamp must say 1.1. Pinning an interface the built hv would refuse
// (1.3-dev on 1.2) is an error at the recipe's interface line.
func TestCompatInterfaceBuild(t *testing.T) {
	cpio := testenv.RequireCmd(t, "cpio")
	dir := t.TempDir()
	recipe := filepath.Join(dir, "compat.toml")
	r := strings.Replace(small, `seed = "bad"`, "seed = \"bad\"\ninterface = \"1.1\"", 1)
	r = strings.Replace(r, `name = "bad"`, `name = "compat"`, 1)
	if err := os.WriteFile(recipe, []byte(r), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, e, err := xeno(t, nil, "", "lock", recipe); err != nil {
		t.Fatalf("xeno lock: %v\n%s", err, e)
	}
	out := filepath.Join(dir, "out")
	if _, e, err := xeno(t, nil, "", "build", "-o", out, recipe); err != nil {
		t.Fatalf("xeno build: %v\n%s", err, e)
	}
	var m manifest
	if _, err := toml.DecodeFile(filepath.Join(out, "compat.manifest.toml"), &m); err != nil {
		t.Fatal(err)
	}
	if m.Interface != "1.1" {
		t.Errorf("manifest interface %q, want 1.1", m.Interface)
	}
	x := extractInitrd(t, cpio, filepath.Join(out, "compat.initrd"), "init")
	ver, err := exec.Command(filepath.Join(x, "init"), "--version").Output()
	if err != nil || strings.TrimSpace(string(ver)) != "xeno-init pinned interface 1.1" {
		t.Errorf("/init --version = %q, %v", ver, err)
	}

	bad := filepath.Join(dir, "newer.toml")
	if err := os.WriteFile(bad, []byte(strings.Replace(r, `interface = "1.1"`, `interface = "1.3-dev"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, e, err := xeno(t, nil, "", "lock", bad)
	if err == nil || !strings.Contains(e, bad+":4:") || !strings.Contains(e, "refused") {
		t.Errorf("a 1.3-dev guest on a 1.2 tree: %v\n%s", err, e)
	}
}
