package versions_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/internal/testenv"
)

// buildGuest builds recipes/minimal.toml pinned to another interface (and,
// for a dev guest, another hv release) into a temporary directory.
func buildGuest(t *testing.T, iface, hvRelease string) string {
	t.Helper()
	top := root(t)
	xeno := testenv.Bin(t, "xeno")
	src, err := os.ReadFile(filepath.Join(top, "recipes/minimal.toml"))
	if err != nil {
		t.Fatal(err)
	}
	recipe := string(src)
	recipe = strings.Replace(recipe, "seed = ", "interface = \""+iface+"\"\nseed = ", 1)
	var flags []string
	if hvRelease != "" {
		recipe = strings.Replace(recipe, `release = "1.2"`, `release = "`+hvRelease+`"`, 1)
		flags = []string{"--hv-release", hvRelease}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "minimal.toml")
	if err := os.WriteFile(path, []byte(recipe), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		append([]string{"lock", "--src", top, path}, flags...),
		append([]string{"build", "--src", top, path, "-o", dir}, flags...),
	} {
		c := exec.Command(xeno, args...)
		c.Dir = top
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("xeno %v: %v\n%s", args, err, out)
		}
	}
	return dir
}

// bootLinux runs the built image under bin/hv until it ends by itself.
func bootLinux(t *testing.T, dir string, args ...string) (string, control.Exit) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sock := filepath.Join(t.TempDir(), "control.sock")
	all := append([]string{"--kernel", filepath.Join(dir, "minimal.vmlinuz"), "--initrd", filepath.Join(dir, "minimal.initrd"),
		"--cmdline", "console=ttyS0 panic=-1", "--memory", "512", "--vcpus", "2", "--control", sock}, args...)
	c := exec.CommandContext(ctx, testenv.Bin(t, "hv"), all...)
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	_ = c.Run()
	var e control.Exit
	b, err := os.ReadFile(control.ExitFile(sock))
	if err != nil {
		t.Fatalf("no exit file (%v); console:\n%s", err, out.String())
	}
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	return out.String(), e
}

// TestLinuxCells boots xeno-init with Linux for one compat cell (a 1.1
// guest on this hv, admitted by the hv as 1.1) and one refusal cell (a
// 1.3-dev guest on a 1.2 hv, with the toolstack's check bypassed, so that
// xeno-init's own check refuses and powers off with the crash reason).
// Linux cannot reach init on a software KVM, so this runs only on VT-x or
// AMD-V; the micro-guest matrix covers the same cells everywhere.
func TestLinuxCells(t *testing.T) {
	testenv.RequireHardwareKVM(t)
	if abi.Current().Release.Interface().Short() != "1.2" {
		t.Skip("the cells are written for an hv of the 1.2 line")
	}
	t.Run("compat 1.1 on 1.2", func(t *testing.T) {
		dir := buildGuest(t, "1.1", "")
		out, e := bootLinux(t, dir, "--interface", "1.1")
		if !strings.Contains(out, "xeno-init: running in compat mode as interface 1.1") || e.Reason != control.ReasonPoweroff {
			t.Fatalf("want compat mode and poweroff, got reason %s; console:\n%s", e.Reason, out)
		}
	})
	t.Run("refuse 1.3-dev on 1.2", func(t *testing.T) {
		dir := buildGuest(t, "1.3-dev", "1.3.0-dev")
		m, err := os.ReadFile(filepath.Join(dir, "minimal.manifest.toml"))
		if err != nil {
			t.Fatal(err)
		}
		iface := ""
		for _, l := range strings.Split(string(m), "\n") {
			if v, ok := strings.CutPrefix(l, "interface = "); ok {
				iface = strings.Trim(v, `"`)
			}
		}
		out, e := bootLinux(t, dir, "--interface", iface, "--unchecked-interface")
		if !strings.Contains(out, "xeno-init: refusing to run: guest interface 1.3-dev, hv release "+abi.Current().Release.String()) || e.Reason != control.ReasonCrash {
			t.Fatalf("want a refusal and the crash reason, got reason %s; console:\n%s", e.Reason, out)
		}
	})
}
