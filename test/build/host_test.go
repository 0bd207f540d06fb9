package build

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/xeno-hv/xeno/internal/testenv"
)

// TestBuildHost builds recipes/host.toml and checks that the hv and xl it
// compiled into the image are there, executable and stamped with the
// release the manifest names.
func TestBuildHost(t *testing.T) {
	cpio := testenv.RequireCmd(t, "cpio")
	out := t.TempDir()
	if _, e, err := xeno(t, nil, "", "build", "-o", out, "recipes/host.toml"); err != nil {
		t.Fatalf("xeno build host: %v\n%s", err, e)
	}
	x := extractInitrd(t, cpio, filepath.Join(out, "host.initrd"))
	for _, p := range []string{"init", "usr/bin/hv", "usr/bin/xl"} {
		st, err := os.Stat(filepath.Join(x, p))
		if err != nil || st.Mode().Perm() != 0o755 || st.Size() < 1<<20 {
			t.Errorf("/%s: %v, %v", p, st, err)
		}
	}
	man, err := os.ReadFile(filepath.Join(out, "host.manifest.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`name = "./cmd/hv"`, `name = "./cmd/xl"`, `name = "./cmd/xeno-init"`} {
		if !strings.Contains(string(man), want) {
			t.Errorf("host manifest lacks input %s", want)
		}
	}
	// The build id the manifest records is the one stamped into hv.
	var m struct {
		BuildID string `toml:"hv_build_id"`
	}
	if _, err := toml.Decode(string(man), &m); err != nil || len(m.BuildID) != 32 {
		t.Fatalf("manifest hv_build_id %q: %v", m.BuildID, err)
	}
	hv, _ := os.ReadFile(filepath.Join(x, "usr/bin/hv"))
	if !strings.Contains(string(hv), m.BuildID) {
		t.Errorf("/usr/bin/hv does not hold the manifest's build id %s", m.BuildID)
	}
}
