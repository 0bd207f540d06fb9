package versions_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/internal/kvmlab"
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
	// Building the kernel for another interface keeps both cores busy.
	defer testenv.Heavy(t)()
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

// TestLinuxMatrix is the matrix of docs/versions.md with real Linux
// guests: recipes/minimal.toml built three times, its xeno kernel and
// xeno-init pinned to 1.1, 1.2 and 1.3-dev, against the four hv builds.
// First xl decides every cell at the toolstack from the image's manifest;
// then each image boots under each hv with that check bypassed
// (--unchecked-interface), and the guest kernel and xeno-init must reach
// the table's verdict themselves, naming both versions and the rule.
// Where /dev/kvm is missing, the 12 boots run in the nested lab.
func TestLinuxMatrix(t *testing.T) {
	why := kvmlab.Need(t)
	hvs, gs := setup(t)
	if abi.Current().Release.Interface().Short() != "1.2" {
		t.Skip("the matrix is written for an hv of the 1.2 line")
	}
	images := map[string]string{}
	for _, g := range gs {
		rel := ""
		if strings.HasSuffix(strings.Split(g.Iface, "@")[0], "-dev") {
			rel = "1.3.0-dev"
		}
		images[g.Label] = buildGuest(t, strings.Split(g.Iface, "@")[0], rel)
	}

	t.Run("toolstack", func(t *testing.T) {
		for _, g := range gs {
			for _, b := range hvs {
				verdict := want[g.Label][b.Label]
				dir := t.TempDir()
				cfg := filepath.Join(dir, "m.cfg")
				img := images[g.Label]
				body := fmt.Sprintf("name = \"m\"\nkernel = %q\nramdisk = %q\nmemory = 256\n",
					filepath.Join(img, "minimal.vmlinuz"), filepath.Join(img, "minimal.initrd"))
				if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
				out, errOut, code := xl(t, b, filepath.Join(dir, "state"), "create", "-n", cfg)
				if !strings.Contains(out+errOut, ": "+verdict.String()+",") || (code == 0) != (verdict != abi.Refuse) {
					t.Errorf("%s guest on %s: want %s; xl create -n exited %d:\n%s%s", g.Label, b.Label, verdict, code, out, errOut)
				}
			}
		}
	})

	var boots []kvmlab.Boot
	for _, g := range gs {
		for _, b := range hvs {
			img := images[g.Label]
			boots = append(boots, kvmlab.Boot{
				Name: g.Label + " on " + b.Label, HV: filepath.Join(b.Bin, "hv"),
				Kernel: filepath.Join(img, "minimal.vmlinuz"), Initrd: filepath.Join(img, "minimal.initrd"),
				Cmdline: "console=ttyS0 panic=-1",
				Args:    []string{"--interface", manifestInterface(t, img), "--unchecked-interface", "--memory", "256", "--vcpus", "1"},
			})
		}
	}
	start := time.Now()
	booted := kvmlab.BootAll(t, why, boots)
	t.Logf("%d Linux boots in %v", len(boots), time.Since(start).Round(time.Second))
	for _, g := range gs {
		pinned := strings.Split(g.Iface, "@")[0]
		for _, b := range hvs {
			name := g.Label + " on " + b.Label
			t.Run("runtime "+name, func(t *testing.T) {
				checkRuntimeCell(t, booted[name], pinned, b.Release, want[g.Label][b.Label])
			})
		}
	}
}

var (
	kernelRun    = regexp.MustCompile(`xeno: kernel built for interface (\S+): (\S+) \(rule (\S+)\)`)
	kernelRefuse = regexp.MustCompile(`xeno: guest interface (\S+) refused by hv (\S+) \(rule (\S+)\)`)
	kernelHV     = regexp.MustCompile(`xeno: hypervisor (\S+) \(build`)
	initRun      = regexp.MustCompile(`xeno-init: running (?:in compat mode )?as interface (\S+) \((\S+)\)`)
)

// checkRuntimeCell checks one boot whose toolstack check was bypassed:
// the kernel's xeno: lines and xeno-init's name the guest's interface, the
// hv's release, the verdict and one rule, and the domain ends as the
// verdict says (a refusal is a crash: the guest reports it and halts).
func checkRuntimeCell(t *testing.T, bo *kvmlab.Booted, pinned, release string, verdict abi.Verdict) {
	out := bo.Output
	if verdict == abi.Refuse {
		m := kernelRefuse.FindStringSubmatch(out)
		if m == nil || m[1] != pinned || m[2] != release {
			t.Fatalf("want the kernel to refuse %s on hv %s; got %q (exit %d); console:\n%s", pinned, release, m, bo.Exit, out)
		}
		if bo.Exit != control.ExitCode(control.ReasonCrash) || strings.Contains(out, "xeno-init: running") {
			t.Fatalf("a refused guest must crash before init; exit %d; console:\n%s", bo.Exit, out)
		}
		return
	}
	h, k, i := kernelHV.FindStringSubmatch(out), kernelRun.FindStringSubmatch(out), initRun.FindStringSubmatch(out)
	if h == nil || k == nil || i == nil {
		t.Fatalf("missing xeno: or xeno-init lines (exit %d); console:\n%s", bo.Exit, out)
	}
	if h[1] != release || k[1] != pinned || k[2] != verdict.String() {
		t.Errorf("kernel says hv %s, built for %s, verdict %s; want %s, %s, %s", h[1], k[1], k[2], release, pinned, verdict)
	}
	if i[2] != k[3] {
		t.Errorf("xeno-init's rule %s is not the kernel's %s", i[2], k[3])
	}
	if (verdict == abi.Compat) != strings.Contains(out, "xeno-init: running in compat mode") {
		t.Errorf("xeno-init's compat mode does not match the verdict %s:\n%s", verdict, i[0])
	}
	if bo.Exit != 0 {
		t.Errorf("an admitted guest should power off (exit 0), exit %d; console:\n%s", bo.Exit, out)
	}
}

// manifestInterface is the interface the builder recorded for an image.
func manifestInterface(t *testing.T, dir string) string {
	t.Helper()
	m, err := os.ReadFile(filepath.Join(dir, "minimal.manifest.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(m), "\n") {
		if v, ok := strings.CutPrefix(l, "interface = "); ok {
			return strings.Trim(v, `"`)
		}
	}
	t.Fatalf("%s/minimal.manifest.toml records no interface", dir)
	return ""
}
