package images_test

import (
	"bytes"
	"context"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/images"
	"github.com/xeno-hv/xeno/internal/testenv"
	"github.com/xeno-hv/xeno/kernels/kerneltest"
)

const (
	ovmfPath = "/usr/share/ovmf/OVMF.fd"
	marker   = "XENO-IMAGES-INIT-OK"
	cmdline  = "console=ttyS0 panic=-1 xeno.test=images"
	// A TCG boot to init takes 5-25 s here (measured: see bootTimes in
	// docs/images.md); the bound catches a hang without failing a slow
	// CI machine.
	bootTimeout = 180 * time.Second
)

func mustRead(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		if os.Getenv("XENO_REQUIRE_TOOLS") == "1" {
			t.Fatalf("%s: %v (make deps installs it)", p, err)
		}
		t.Skipf("needs %s (run make deps): %v", p, err)
	}
	return b
}

// buildInit compiles testdata/init as a static binary.
func buildInit(t testing.TB) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "init")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./testdata/init")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the test init: %v\n%s", err, b)
	}
	return mustRead(t, out)
}

// bootSpec is a real kernel, an initramfs holding only the test init, and
// the Debian packages' bootloaders.
func bootSpec(t testing.TB, c images.Compression, extra ...images.File) images.BootSpec {
	t.Helper()
	if testing.Short() {
		t.Skip("boots QEMU under TCG for 10-30 s; skipped with -short")
	}
	k := kerneltest.Kernel(t, kerneltest.Cloud56, kerneltest.Cloud56Version)
	kernel, err := k.BzImage()
	if err != nil {
		t.Fatal(err)
	}
	var initrd bytes.Buffer
	tree := []images.File{
		{Path: "init", Mode: 0o755, Data: buildInit(t)},
		{Path: "dev", Mode: fs.ModeDir | 0o755},
		{Path: "proc", Mode: fs.ModeDir | 0o555},
	}
	tree = append(tree, extra...)
	if err := images.WriteInitramfs(&initrd, tree, c, time.Unix(1700000000, 0)); err != nil {
		t.Fatal(err)
	}
	return images.BootSpec{
		Kernel:         kernel,
		Initrd:         initrd.Bytes(),
		Cmdline:        cmdline,
		Label:          "xeno boot test",
		Epoch:          time.Unix(1700000000, 0),
		Seed:           "boot-test",
		IsolinuxBin:    mustRead(t, "/usr/lib/ISOLINUX/isolinux.bin"),
		LdlinuxC32:     mustRead(t, "/usr/lib/syslinux/modules/bios/ldlinux.c32"),
		IsohdpfxBin:    mustRead(t, "/usr/lib/ISOLINUX/isohdpfx.bin"),
		SystemdBootEFI: mustRead(t, "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"),
	}
}

// boot runs QEMU on the image until the guest powers off or the timeout,
// and returns the serial log.
func boot(t *testing.T, args ...string) string {
	t.Helper()
	qemu := testenv.RequireCmd(t, "qemu-system-x86_64")
	log := filepath.Join(t.TempDir(), "serial.log")
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	full := append([]string{"-accel", "tcg", "-m", "512", "-display", "none",
		"-serial", "file:" + log, "-no-reboot", "-monitor", "none", "-nodefaults", "-vga", "none"}, args...)
	cmd := exec.CommandContext(ctx, qemu, full...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	serial, _ := os.ReadFile(log)
	if ctx.Err() != nil {
		t.Fatalf("QEMU did not finish within %v; serial log:\n%s", bootTimeout, tail(serial))
	}
	if err != nil {
		t.Fatalf("qemu %s: %v\n%s\nserial log:\n%s", strings.Join(full, " "), err, out, tail(serial))
	}
	t.Logf("booted in %.1fs (TCG)", took.Seconds())
	return string(serial)
}

func tail(b []byte) string {
	const n = 6000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// The loaders leave their mark on the command line the kernel gets:
// isolinux prepends BOOT_IMAGE and its initrd= argument, systemd-boot its
// own initrd= (in EFI path form) before the entry's options. Checking it
// proves which path booted, not only that something did.
const (
	viaIsolinux    = "BOOT_IMAGE=/vmlinuz initrd=/initrd.img "
	viaSystemdBoot = `initrd=\initrd.img `
)

func requireInit(t *testing.T, serial, via string) {
	t.Helper()
	for _, line := range strings.Split(serial, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, marker) {
			continue
		}
		t.Log(line)
		if got, want := strings.TrimPrefix(line, marker+" cmdline="), via+cmdline; got != want {
			t.Errorf("init saw the command line %q, want %q", got, want)
		}
		if via == viaSystemdBoot && !strings.Contains(serial, "EFI stub: Loaded initrd") {
			t.Errorf("no \"EFI stub: Loaded initrd\" on the console: the kernel did not start through UEFI")
		}
		return
	}
	t.Fatalf("no %s on the serial console; log:\n%s", marker, tail([]byte(serial)))
}

func TestBootRawEFIUnderOVMF(t *testing.T) {
	mustRead(t, ovmfPath)
	spec := bootSpec(t, images.Zstd)
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := images.WriteRawEFI(img, spec); err != nil {
		t.Fatal(err)
	}
	serial := boot(t, "-bios", ovmfPath, "-drive", "format=raw,if=virtio,file="+img)
	requireInit(t, serial, viaSystemdBoot)
}

func writeISO(t *testing.T) string {
	spec := bootSpec(t, images.Gzip)
	iso := filepath.Join(t.TempDir(), "xeno.iso")
	if err := images.WriteISO(iso, spec); err != nil {
		t.Fatal(err)
	}
	return iso
}

func TestBootISOUnderSeaBIOS(t *testing.T) {
	iso := writeISO(t)
	serial := boot(t, "-cdrom", iso)
	requireInit(t, serial, viaIsolinux)
}

func TestBootISOUnderOVMF(t *testing.T) {
	mustRead(t, ovmfPath)
	iso := writeISO(t)
	serial := boot(t, "-bios", ovmfPath, "-cdrom", iso)
	requireInit(t, serial, viaSystemdBoot)
}

// The isohybrid MBR: the same ISO written to a USB stick boots as a hard
// disk, through isohdpfx and isolinux on BIOS, and through the 0xEF
// partition over efiboot.img on UEFI.
func TestBootISOAsDiskUnderSeaBIOS(t *testing.T) {
	iso := writeISO(t)
	serial := boot(t, "-drive", "format=raw,if=ide,file="+iso)
	requireInit(t, serial, viaIsolinux)
}

func TestBootISOAsDiskUnderOVMF(t *testing.T) {
	mustRead(t, ovmfPath)
	iso := writeISO(t)
	serial := boot(t, "-bios", ovmfPath, "-drive", "format=raw,if=ide,file="+iso)
	requireInit(t, serial, viaSystemdBoot)
}

// An efiboot.img over 32 MiB does not fit El Torito's 16-bit count of
// 512-byte sectors; WriteISO then stores 0 and puts the image last, and
// OVMF must still boot it.
func TestBootISOWithLargeEFIImageUnderOVMF(t *testing.T) {
	mustRead(t, ovmfPath)
	junk := make([]byte, 40<<20)
	rand.New(rand.NewSource(1)).Read(junk) // incompressible
	spec := bootSpec(t, images.Gzip, images.File{Path: "junk", Mode: 0o644, Data: junk})
	if len(spec.Initrd) < 40<<20 {
		t.Fatalf("initrd is only %d bytes; the test needs efiboot.img over 32 MiB", len(spec.Initrd))
	}
	iso := filepath.Join(t.TempDir(), "big.iso")
	if err := images.WriteISO(iso, spec); err != nil {
		t.Fatal(err)
	}
	requireInit(t, boot(t, "-bios", ovmfPath, "-cdrom", iso), viaSystemdBoot)
}
