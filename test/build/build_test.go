// Package build holds the end-to-end tests of `xeno lock/build/verify`:
// they run the real binary on the shipped recipes, read the outputs back
// with independent tools (cpio, sha256 of the bytes) and boot them in QEMU.
package build

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/xeno-hv/xeno/builder"
	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/internal/kvmlab"
	"github.com/xeno-hv/xeno/internal/testenv"
)

// root is the source tree: xeno build compiles xeno-init from it.
func root(t testing.TB) string {
	t.Helper()
	r, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// cacheDir is shared by the tests of one run, so the kernel is fetched
// once; XENO_CACHE from the environment is honoured.
func cacheDir(t testing.TB) string {
	if d := os.Getenv("XENO_CACHE"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "xeno")
}

// xeno runs bin/xeno with extra environment and an optional umask.
func xeno(t testing.TB, env []string, umask string, args ...string) (string, string, error) {
	t.Helper()
	bin := testenv.Bin(t, "xeno")
	if umask == "" {
		umask = "022"
	}
	argv := append([]string{"-c", `umask "$0" && exec "$@"`, umask, bin}, args...)
	cmd := exec.Command("sh", argv...)
	cmd.Dir = root(t)
	cmd.Env = append(append(os.Environ(), "XENO_CACHE="+cacheDir(t)), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func hashDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(b)
		out[e.Name()] = hex.EncodeToString(s[:])
	}
	return out
}

type manifest struct {
	Name      string `toml:"name"`
	Interface string `toml:"interface"`
	HVRelease string `toml:"hv_release"`
	Inputs    []struct {
		Kind   string `toml:"kind"`
		Name   string `toml:"name"`
		SHA256 string `toml:"sha256"`
	} `toml:"inputs"`
	Outputs []struct {
		File   string `toml:"file"`
		Format string `toml:"format"`
		Size   int64  `toml:"size"`
		SHA256 string `toml:"sha256"`
	} `toml:"outputs"`
}

// buildMinimal builds recipes/minimal.toml into a fresh directory.
func buildMinimal(t *testing.T) (string, manifest) {
	t.Helper()
	out := t.TempDir()
	stdout, stderr, err := xeno(t, nil, "", "build", "-o", out, "recipes/minimal.toml")
	if err != nil {
		t.Fatalf("xeno build: %v\n%s", err, stderr)
	}
	want := []string{"minimal.vmlinuz", "minimal.initrd", "minimal.iso", "minimal.img", "minimal.manifest.toml"}
	for _, w := range want {
		if !strings.Contains(stdout, filepath.Join(out, w)) {
			t.Errorf("xeno build did not report %s:\n%s", w, stdout)
		}
	}
	var m manifest
	if _, err := toml.DecodeFile(filepath.Join(out, "minimal.manifest.toml"), &m); err != nil {
		t.Fatal(err)
	}
	sums := hashDir(t, out)
	if len(sums) != len(want) {
		t.Errorf("output directory holds %d files, want %d (no staging left over): %v", len(sums), len(want), sums)
	}
	if len(m.Outputs) != 4 {
		t.Errorf("manifest lists %d outputs, want 4", len(m.Outputs))
	}
	for _, o := range m.Outputs {
		if sums[o.File] != o.SHA256 {
			t.Errorf("manifest says %s has sha256 %s, the file has %s", o.File, o.SHA256, sums[o.File])
		}
	}
	return out, m
}

func TestBuildMinimalContents(t *testing.T) {
	cpio := testenv.RequireCmd(t, "cpio")
	out, m := buildMinimal(t)
	if m.Interface != "1.2" && !strings.HasPrefix(m.Interface, "1.") {
		t.Errorf("manifest interface %q", m.Interface)
	}
	// Read the initramfs back with GNU cpio, which shares no code with
	// the writer.
	dir := extractInitrd(t, cpio, filepath.Join(out, "minimal.initrd"))
	st, err := os.Stat(filepath.Join(dir, "init"))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("/init: %v %v", st, err)
	}
	if l, err := os.Readlink(filepath.Join(dir, "bin/sh")); err != nil || l != "busybox" {
		t.Errorf("/bin/sh -> %q, %v; want busybox", l, err)
	}
	if st.ModTime().Unix() != 1735689600 {
		t.Errorf("/init mtime %v, want the recipe's epoch", st.ModTime().UTC())
	}
	inner, err := os.ReadFile(filepath.Join(dir, "etc/xeno/manifest.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(inner), fmt.Sprintf("interface = %q", m.Interface)) {
		t.Errorf("/etc/xeno/manifest.toml does not record interface %s:\n%s", m.Interface, inner)
	}
	initToml, err := os.ReadFile(filepath.Join(dir, "etc/xeno/init.toml"))
	if err != nil {
		t.Fatal(err)
	}
	// The xeno kernel has its drivers built in: nothing to load.
	if strings.Contains(string(initToml), ".ko") {
		t.Errorf("init.toml names modules, but the xeno kernel has none:\n%s", initToml)
	}
	// The manifest records every input of the kernel build with its hash.
	for _, want := range []string{"xeno.config", "0001-x86-xeno-guest-interface.patch", "0002-x86-mm-kvm-pvm-syscall-fixup.patch", "linux-source-6.1=6.1.192-2"} {
		found := false
		for _, in := range m.Inputs {
			if in.Name == want && len(in.SHA256) == 64 {
				found = true
			}
		}
		if !found {
			t.Errorf("manifest lacks kernel input %s with its sha256: %+v", want, m.Inputs)
		}
	}
	// The pinned interface stamped into xeno-init is the manifest's.
	ver, err := exec.Command(filepath.Join(dir, "init"), "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(ver)); got != "xeno-init pinned interface "+m.Interface {
		t.Errorf("/init --version = %q, want pinned interface %s", got, m.Interface)
	}
}

// TestReproducibleAcrossTZAndUmask builds twice as separate processes,
// with different time zones, umasks and locales, the second rebuilding
// everything (no xeno build cache, a fresh Go build cache), and compares
// the sha256 of every output.
func TestReproducibleAcrossTZAndUmask(t *testing.T) {
	if testing.Short() {
		t.Skip("two full builds")
	}
	// Both builds compile one snapshot of the tree: an edit made while the
	// test runs must not look like non-determinism.
	src := t.TempDir()
	if err := builder.Snapshot(root(t), src); err != nil {
		t.Fatal(err)
	}
	recipe := filepath.Join(src, "recipes/minimal.toml")
	srcArgs := []string{"--src", src, "--changeset", builder.Changeset(root(t))}
	a, b := t.TempDir(), t.TempDir()
	if _, e, err := xeno(t, []string{"TZ=UTC", "LC_ALL=C"}, "022", append(append([]string{"build", "-o", a}, srcArgs...), recipe)...); err != nil {
		t.Fatalf("build a: %v\n%s", err, e)
	}
	env := []string{"TZ=Asia/Kathmandu", "LC_ALL=C.UTF-8", "GOCACHE=" + t.TempDir()}
	if _, e, err := xeno(t, env, "077", append(append([]string{"build", "--no-build-cache", "-o", b}, srcArgs...), recipe)...); err != nil {
		t.Fatalf("build b: %v\n%s", err, e)
	}
	ha, hb := hashDir(t, a), hashDir(t, b)
	if len(ha) != 5 {
		t.Fatalf("build a wrote %d files", len(ha))
	}
	for name, sum := range ha {
		if hb[name] != sum {
			t.Errorf("%s: sha256 %s (TZ=UTC umask 022) vs %s (TZ=Asia/Kathmandu umask 077)", name, sum, hb[name])
		}
	}
	// The umask must not reach the outputs' modes either.
	for name := range ha {
		sa, _ := os.Stat(filepath.Join(a, name))
		sb, _ := os.Stat(filepath.Join(b, name))
		if sa.Mode() != sb.Mode() {
			t.Errorf("%s: mode %v vs %v", name, sa.Mode(), sb.Mode())
		}
	}
}

func TestVerifyMinimal(t *testing.T) {
	if testing.Short() {
		t.Skip("two full builds")
	}
	out, e, err := xeno(t, nil, "", "verify", "recipes/minimal.toml")
	if err != nil {
		t.Fatalf("xeno verify: %v\n%s\n%s", err, out, e)
	}
	if !strings.Contains(out, "5 outputs byte for byte identical") {
		t.Errorf("verify output:\n%s", out)
	}
}

// TestBootMinimalQEMU boots the kernel+initrd output under QEMU (TCG; no
// xeno hv, so no info port) and checks that xeno-init starts, says which
// interface it is pinned to, notices there is no info port, runs the
// recipe's command and powers the machine off by itself.
func TestBootMinimalQEMU(t *testing.T) {
	qemu := testenv.RequireCmd(t, "qemu-system-x86_64")
	out, m := buildMinimal(t)
	log := filepath.Join(t.TempDir(), "serial.log")
	start := time.Now()
	cmd := exec.Command("timeout", "120", qemu, "-M", "pc", "-accel", "tcg", "-m", "512",
		"-kernel", filepath.Join(out, "minimal.vmlinuz"), "-initrd", filepath.Join(out, "minimal.initrd"),
		"-append", "console=ttyS0 panic=-1", "-nodefaults", "-serial", "file:"+log,
		"-display", "none", "-no-reboot")
	b, err := cmd.CombinedOutput()
	serial, _ := os.ReadFile(log)
	if err != nil {
		t.Fatalf("qemu did not power off by itself within 120 s (%v): %s\nserial:\n%s", err, b, tail(serial))
	}
	for _, want := range []string{
		"xeno-init: started",
		"xeno-init: pinned guest interface " + m.Interface,
		"xeno-init: no xeno info port: not running under xeno hv",
		"xeno-minimal: up",
		"6.1.192-xeno-" + m.Interface, // uname -r
		"no /sys/hypervisor: not under xeno hv",
		"xeno-init: /bin/sh exited (status 0); powering off",
		"reboot: Power down",
	} {
		if !bytes.Contains(serial, []byte(want)) {
			t.Errorf("serial console lacks %q:\n%s", want, tail(serial))
		}
	}
	t.Logf("QEMU TCG boot to poweroff: %v", time.Since(start))
}

// TestBootMinimalISO boots the hybrid ISO through SeaBIOS and isolinux.
func TestBootMinimalISO(t *testing.T) {
	qemu := testenv.RequireCmd(t, "qemu-system-x86_64")
	out, _ := buildMinimal(t)
	log := filepath.Join(t.TempDir(), "serial.log")
	cmd := exec.Command("timeout", "180", qemu, "-M", "pc", "-accel", "tcg", "-m", "512",
		"-drive", "file="+filepath.Join(out, "minimal.iso")+",format=raw,media=cdrom,readonly=on",
		"-boot", "d", "-nodefaults", "-vga", "none", "-serial", "file:"+log, "-display", "none", "-no-reboot")
	b, err := cmd.CombinedOutput()
	serial, _ := os.ReadFile(log)
	if err != nil {
		t.Fatalf("qemu did not power off by itself within 180 s (%v): %s\nserial:\n%s", err, b, tail(serial))
	}
	for _, want := range []string{"xeno-init: started", "xeno-minimal: up", "reboot: Power down"} {
		if !bytes.Contains(serial, []byte(want)) {
			t.Errorf("serial console lacks %q:\n%s", want, tail(serial))
		}
	}
}

// extractInitrd unpacks a gzip initramfs (only paths, if given) into a
// new directory with GNU cpio, which shares no code with our writer.
func extractInitrd(t *testing.T, cpio, initrd string, paths ...string) string {
	t.Helper()
	dir := t.TempDir()
	args := append([]string{"-idm", "--quiet", "--no-absolute-filenames"}, paths...)
	unzip := exec.Command("gzip", "-dc", initrd)
	cmd := exec.Command(cpio, args...)
	cmd.Dir = dir
	pipe, err := unzip.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin = pipe
	if err := unzip.Start(); err != nil {
		t.Fatalf("gzip -dc %s: %v", initrd, err)
	}
	b, err := cmd.CombinedOutput()
	if werr := unzip.Wait(); err == nil && werr != nil {
		err = fmt.Errorf("gzip -dc: %w", werr)
	}
	if err != nil {
		t.Fatalf("cpio %s: %v\n%s", initrd, err, b)
	}
	return dir
}

func tail(b []byte) string {
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// TestBootMinimalRawEFI boots the raw GPT disk through OVMF and
// systemd-boot.
func TestBootMinimalRawEFI(t *testing.T) {
	qemu := testenv.RequireCmd(t, "qemu-system-x86_64")
	const ovmf = "/usr/share/ovmf/OVMF.fd"
	if _, err := os.Stat(ovmf); err != nil {
		if os.Getenv("XENO_REQUIRE_TOOLS") != "" {
			t.Fatalf("%s: %v (make deps installs ovmf)", ovmf, err)
		}
		t.Skipf("needs %s (Debian package ovmf)", ovmf)
	}
	out, _ := buildMinimal(t)
	dir := t.TempDir()
	log := filepath.Join(dir, "serial.log")
	cmd := exec.Command("timeout", "240", qemu, "-M", "q35", "-accel", "tcg", "-m", "512", "-bios", ovmf,
		"-drive", "file="+filepath.Join(out, "minimal.img")+",format=raw,snapshot=on",
		"-nodefaults", "-serial", "file:"+log, "-display", "none", "-no-reboot")
	b, err := cmd.CombinedOutput()
	serial, _ := os.ReadFile(log)
	if err != nil {
		t.Fatalf("qemu did not power off by itself within 240 s (%v): %s\nserial:\n%s", err, b, tail(serial))
	}
	for _, want := range []string{"xeno-init: started", "xeno-minimal: up", "reboot: Power down"} {
		if !bytes.Contains(serial, []byte(want)) {
			t.Errorf("serial console lacks %q:\n%s", want, tail(serial))
		}
	}
}

// TestBootMinimalHV boots the kernel+initrd output under hv (its gzip
// initramfs unpacked by hv in Go): the xeno kernel's interface line,
// xeno-init reading /sys/hypervisor and the info port, its decision, the
// recipe's command and the poweroff. Without /dev/kvm it runs in the
// nested lab.
func TestBootMinimalHV(t *testing.T) {
	why := kvmlab.Need(t)
	out, m := buildMinimal(t)
	b := abi.Current()
	runs := kvmlab.BootAll(t, why, []kvmlab.Boot{{Name: "minimal",
		Kernel: filepath.Join(out, "minimal.vmlinuz"), Initrd: filepath.Join(out, "minimal.initrd"),
		Cmdline: "console=ttyS0 panic=-1", Args: []string{"--memory", "256", "--vcpus", "2"}}})
	r := runs["minimal"]
	if r.Exit != 0 {
		t.Errorf("hv exit %d, want 0", r.Exit)
	}
	for _, want := range []string{
		"hv: initrd: ",
		fmt.Sprintf("xeno: hypervisor %s (build %.12s), interface %s", b.Release, b.BuildID, m.Interface),
		fmt.Sprintf("xeno-init: /sys/hypervisor: xeno %s build %.12s, admitted as %s; the kernel is built for %s", b.Release, b.BuildID, m.Interface, m.Interface),
		"xeno-init: hv release " + b.Release.String(),
		"xeno-init: running as interface " + m.Interface + " (stable-same-line)",
		"xeno-minimal: up",
		// The recipe's own line, from /sys/hypervisor.
		fmt.Sprintf("hypervisor xeno %s, interface %s", b.Release, m.Interface),
		"xeno-init: /bin/sh exited (status 0); powering off",
		"hv: domain ended: poweroff",
	} {
		if !strings.Contains(r.Output, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if strings.Contains(r.Output, "xeno-init: warning") {
		t.Errorf("xeno-init found /sys/hypervisor and the info port disagreeing")
	}
	if t.Failed() {
		t.Logf("console:\n%s", r.Output)
	}
}
