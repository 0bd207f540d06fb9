package kernels_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xeno-hv/xeno/internal/testenv"
	"github.com/xeno-hv/xeno/kernels"
	"github.com/xeno-hv/xeno/kernels/kerneltest"
)

// xenoCmd runs the built xeno binary against the store in cache.
func xenoCmd(t *testing.T, cache string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(testenv.Bin(t, "xeno"), args...)
	cmd.Env = append(os.Environ(), "XENO_CACHE="+cache)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func mustXeno(t *testing.T, cache string, args ...string) string {
	t.Helper()
	out, errOut, err := xenoCmd(t, cache, args...)
	if err != nil {
		t.Fatalf("xeno %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

func failXeno(t *testing.T, cache string, want []string, args ...string) {
	t.Helper()
	_, errOut, err := xenoCmd(t, cache, args...)
	if err == nil {
		t.Fatalf("xeno %s succeeded", strings.Join(args, " "))
	}
	for _, w := range want {
		if !strings.Contains(errOut, w) {
			t.Errorf("xeno %s: stderr %q lacks %q", strings.Join(args, " "), errOut, w)
		}
	}
}

// TestXenoKernelCLI drives `xeno kernel` as the demo does, in a fresh
// store seeded with the .debs the default store already downloaded, so
// that it needs no network.
func TestXenoKernelCLI(t *testing.T) {
	testenv.Bin(t, "xeno")
	k56 := kerneltest.Kernel(t, kerneltest.Cloud56, kerneltest.Cloud56Version)
	k55 := kerneltest.Kernel(t, kerneltest.Cloud55, kerneltest.Cloud55Version)
	cache := t.TempDir()

	// fetch finds the package in CACHE/debs, checks it against the
	// recorded hash and imports it: exactly the demo's command.
	deb56 := cachedDeb(t, k56)
	if err := os.MkdirAll(filepath.Join(cache, "debs"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{deb56, deb56 + ".sha256"} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cache, "debs", filepath.Base(p)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := mustXeno(t, cache, "kernel", "fetch", kerneltest.Cloud56+"="+kerneltest.Cloud56Version)
	if !strings.Contains(out, k56.Release) || !strings.Contains(out, k56.SHA256) {
		t.Errorf("fetch printed %q", out)
	}
	out = mustXeno(t, cache, "kernel", "import", cachedDeb(t, k55))
	if !strings.Contains(out, k55.Release) {
		t.Errorf("import printed %q", out)
	}

	out = mustXeno(t, cache, "kernel", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "RELEASE") {
		t.Fatalf("list:\n%s", out)
	}
	for i, k := range []*kernels.Kernel{k55, k56} {
		f := strings.Fields(lines[i+1])
		if len(f) != 7 || f[0] != k.Release || f[1] != k.Version || f[3] != "2.15" || f[4] != "lz4" || !strings.HasPrefix(k.SHA256, f[6]) {
			t.Errorf("list row %q for %s", lines[i+1], k.Release)
		}
	}

	out = mustXeno(t, cache, "kernel", "inspect", k56.Release)
	for _, w := range []string{"boot protocol", "2.15", "KERNEL_64", "64-bit entry", "yes", "payload", "lz4",
		"PHYS32_ENTRY", "XEN_VERSION", `"xen-3.0"`, "CONFIG_VIRTIO_MMIO", "CONFIG_X86_MPPARSE"} {
		if !strings.Contains(out, w) {
			t.Errorf("inspect lacks %q:\n%s", w, out)
		}
	}
	var in struct {
		Protocol    string `json:"protocol"`
		Compression string `json:"compression"`
		Entry64     bool   `json:"entry_64"`
		Header      struct {
			Version    uint16 `json:"version"`
			XLoadFlags uint16 `json:"xloadflags"`
			InitSize   uint32 `json:"init_size"`
		} `json:"setup_header"`
		ELF struct {
			Entry    uint64 `json:"entry"`
			XenNotes []struct {
				Name  string `json:"name"`
				Value uint64 `json:"value"`
			} `json:"xen_notes"`
		} `json:"vmlinux"`
		Config map[string]string `json:"config"`
	}
	out = mustXeno(t, cache, "kernel", "inspect", k56.Release, "--json")
	if err := json.Unmarshal([]byte(out), &in); err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, out)
	}
	if in.Protocol != "2.15" || in.Header.Version != 0x020f || !in.Entry64 || in.Compression != "lz4" ||
		in.Config["VIRTIO_MMIO"] != "m" || in.Config["X86_MPPARSE"] != "n" || in.ELF.Entry == 0 || len(in.ELF.XenNotes) == 0 {
		t.Errorf("inspect --json: %+v", in)
	}

	// inspect reads a .deb directly, without importing it.
	out = mustXeno(t, t.TempDir(), "kernel", "inspect", "--json", deb56)
	if !strings.Contains(out, `"protocol": "2.15"`) || !strings.Contains(out, "PHYS32_ENTRY") {
		t.Errorf("inspect of a .deb:\n%.400s", out)
	}

	junk := filepath.Join(t.TempDir(), "junk")
	if err := os.WriteFile(junk, bytes.Repeat([]byte("junk"), 300), 0o644); err != nil {
		t.Fatal(err)
	}
	failXeno(t, cache, []string{junk, "bad magic"}, "kernel", "import", junk)
	failXeno(t, cache, []string{"no kernel", "nothing"}, "kernel", "inspect", "nothing")
	failXeno(t, cache, []string{"package not found by apt"}, "kernel", "fetch", "xeno-no-such-kernel=1.0")

	out = mustXeno(t, cache, "kernel", "modules", k56.Release, "virtio_blk")
	// modinfo: virtio_blk depends on virtio and virtio_ring, virtio on virtio_ring.
	if out != "kernel/drivers/virtio/virtio_ring.ko\nkernel/drivers/virtio/virtio.ko\nkernel/drivers/block/virtio_blk.ko\n" {
		t.Errorf("modules virtio_blk:\n%s", out)
	}
	failXeno(t, cache, []string{"no_such_mod", "not found"}, "kernel", "modules", k56.Release, "no_such_mod")

	out = mustXeno(t, cache, "kernel", "verify")
	if strings.Count(out, "\nok ")+strings.Count(out[:3], "ok ") != 2 {
		t.Errorf("verify:\n%s", out)
	}

	// A damaged store is reported, not used.
	ko := filepath.Join(cache, "kernels", k55.SHA256, "modules", "kernel", "drivers", "virtio", "virtio_mmio.ko")
	flipByte(t, ko, 200)
	failXeno(t, cache, []string{"hash mismatch", ko, "1 of 2 kernels damaged"}, "kernel", "verify")
	flipByte(t, filepath.Join(cache, "kernels", k56.SHA256, "bzImage"), 1<<20)
	failXeno(t, cache, []string{"hash mismatch", k56.SHA256}, "kernel", "inspect", k56.Release)
	failXeno(t, cache, []string{"hash mismatch", "2 of 2 kernels damaged"}, "kernel", "verify")
}
