package images

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xeno-hv/xeno/internal/testenv"
)

// Bootloader binaries from the Debian packages make deps installs.
const (
	isolinuxPath = "/usr/lib/ISOLINUX/isolinux.bin"
	isohdpfxPath = "/usr/lib/ISOLINUX/isohdpfx.bin"
	ldlinuxPath  = "/usr/lib/syslinux/modules/bios/ldlinux.c32"
	sdbootPath   = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
)

func readOrSkip(t testing.TB, p string) []byte {
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

// testSpec is a spec with real bootloaders and stand-in kernel and initrd
// bytes: enough for the structural checks, which do not boot.
func testSpec(t testing.TB) BootSpec {
	return BootSpec{
		Kernel:         bytes.Repeat([]byte("kernel"), 200000),
		Initrd:         bytes.Repeat([]byte("initrd"), 50000),
		Cmdline:        "console=ttyS0 panic=-1",
		Label:          "xeno test",
		Epoch:          testEpoch,
		Seed:           "test-seed",
		IsolinuxBin:    readOrSkip(t, isolinuxPath),
		LdlinuxC32:     readOrSkip(t, ldlinuxPath),
		IsohdpfxBin:    readOrSkip(t, isohdpfxPath),
		SystemdBootEFI: readOrSkip(t, sdbootPath),
	}
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "TZ=UTC") // UTF-8 for long FAT names
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestRawEFIValidators(t *testing.T) {
	sgdisk := testenv.RequireCmd(t, "sgdisk")
	fsck := testenv.RequireCmd(t, "fsck.vfat")
	mdir := testenv.RequireCmd(t, "mdir")
	mtype := testenv.RequireCmd(t, "mtype")
	spec := testSpec(t)
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := WriteRawEFI(img, spec); err != nil {
		t.Fatal(err)
	}
	out := run(t, sgdisk, "-v", img)
	if !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v:\n%s", out)
	}
	out = run(t, sgdisk, "-p", "-i", "1", img)
	for _, want := range []string{
		"Disk identifier (GUID): " + deriveGUID(spec.Seed, "gpt-disk"),
		"Partition GUID code: C12A7328-F81F-11D2-BA4B-00A0C93EC93B (EFI system partition)",
		"Partition unique GUID: " + deriveGUID(spec.Seed, "gpt-esp"),
		"First sector: 2048",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("sgdisk output lacks %q:\n%s", want, out)
		}
	}
	esp := img + "@@1M"
	out = run(t, fsck, "-n", "-v", extractESP(t, img))
	if !strings.Contains(out, "32 bit entries") {
		t.Errorf("fsck.vfat does not see FAT32:\n%s", out)
	}
	volid := deriveUint32(spec.Seed, "esp-volume-id")
	out = run(t, mdir, "-i", esp, "-/", "::")
	for _, want := range []string{
		"Volume in drive : is XENO_TEST",
		fmt.Sprintf("Volume Serial Number is %04X-%04X", volid>>16, volid&0xffff),
		"BOOTX64  EFI", "vmlinuz", "initrd   img", " loader.conf", " xeno.conf",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("mdir lacks %q:\n%s", want, out)
		}
	}
	if got := run(t, mtype, "-i", esp, "::/loader/entries/xeno.conf"); !strings.Contains(got, "options console=ttyS0 panic=-1\n") {
		t.Errorf("loader entry:\n%s", got)
	}
	for name, want := range map[string][]byte{"vmlinuz": spec.Kernel, "initrd.img": spec.Initrd, "EFI/BOOT/BOOTX64.EFI": spec.SystemdBootEFI} {
		if got := run(t, mtype, "-i", esp, "::/"+name); got != string(want) {
			t.Errorf("%s on the ESP differs from the input (%d bytes, want %d)", name, len(got), len(want))
		}
	}
}

// extractESP copies partition 1 out with dd, so that fsck.vfat checks
// exactly the bytes at the offset the GPT names.
func extractESP(t testing.TB, img string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "esp.img")
	run(t, "sh", "-c", `set -e
start=$(sgdisk -i 1 "$1" | sed -n 's/^First sector: \([0-9]*\).*/\1/p')
end=$(sgdisk -i 1 "$1" | sed -n 's/^Last sector: \([0-9]*\).*/\1/p')
dd if="$1" of="$2" bs=512 skip=$start count=$((end - start + 1)) status=none`, "sh", img, out)
	return out
}
