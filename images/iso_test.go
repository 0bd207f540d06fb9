package images

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/internal/testenv"
)

// TestISOValidators has xorriso (libisofs), fsck.vfat and mtools, which
// share no code with the writer, read the ISO back.
func TestISOValidators(t *testing.T) {
	xorriso := testenv.RequireCmd(t, "xorriso")
	fsck := testenv.RequireCmd(t, "fsck.vfat")
	mtype := testenv.RequireCmd(t, "mtype")
	spec := testSpec(t)
	dir := t.TempDir()
	iso := filepath.Join(dir, "xeno.iso")
	if err := WriteISO(iso, spec); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(iso)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size()%(1<<20) != 0 {
		t.Errorf("ISO is %d bytes, not a whole number of 1 MiB cylinders", st.Size())
	}
	out := run(t, xorriso, "-indev", iso, "-report_el_torito", "plain", "-report_system_area", "plain", "-pvd_info",
		"-find", "/", "-exec", "lsdl")
	norm := regexp.MustCompile(`[ \t]+`).ReplaceAllString(out, " ")
	for _, want := range []string{
		"Boot record : El Torito , MBR isohybrid cyl-align-on",
		"Volume id : 'XENO_TEST'",
		fmt.Sprintf("Volume Set Id: XENO_%X", derive(spec.Seed, "iso-volume-set", 8)),
		"Creation Time: " + testEpoch.UTC().Format("20060102150405") + "00",
		"Modif. Time : " + testEpoch.UTC().Format("20060102150405") + "00",
		"El Torito img path : 1 /ISOLINUX/ISOLINUX.BIN",
		"El Torito img opts : 1 boot-info-table isohybrid-suitable",
		"El Torito img path : 2 /EFIBOOT.IMG",
		"MBR partition path : 2 /EFIBOOT.IMG",
		"-r-xr-xr-x 1 0 0 1200000 Nov 14 2023 '/VMLINUZ'",
		"-r-xr-xr-x 1 0 0 300000 Nov 14 2023 '/INITRD.IMG'",
		"'/ISOLINUX/LDLINUX.C32'",
	} {
		if !strings.Contains(norm, want) {
			t.Errorf("xorriso report lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`El Torito boot img : 1 BIOS y none 0x0000 0x00 4 \d+`).MatchString(norm) ||
		!regexp.MustCompile(`El Torito boot img : 2 UEFI y none 0x0000 0x00 \d+ \d+`).MatchString(norm) {
		t.Errorf("xorriso does not list a BIOS and a UEFI no-emulation entry:\n%s", out)
	}
	if !regexp.MustCompile(`MBR partition : 1 0x80 0x17 0 \d+`).MatchString(norm) ||
		!regexp.MustCompile(`MBR partition : 2 0x00 0xef \d+ \d+`).MatchString(norm) {
		t.Errorf("xorriso does not see the isohybrid partitions:\n%s", out)
	}

	extract := func(isoPath string) []byte {
		dst := filepath.Join(dir, filepath.Base(isoPath))
		run(t, xorriso, "-osirrox", "on", "-indev", iso, "-extract", isoPath, dst)
		b, err := os.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if !bytes.Equal(extract("/VMLINUZ"), spec.Kernel) || !bytes.Equal(extract("/INITRD.IMG"), spec.Initrd) {
		t.Error("kernel or initrd read back from the ISO differs from the input")
	}
	if cfg := string(extract("/ISOLINUX/ISOLINUX.CFG")); !strings.Contains(cfg, "APPEND initrd=/initrd.img console=ttyS0 panic=-1\n") {
		t.Errorf("isolinux.cfg:\n%s", cfg)
	}
	extract("/EFIBOOT.IMG")
	efiboot := filepath.Join(dir, "EFIBOOT.IMG")
	if out := run(t, fsck, "-n", "-v", efiboot); !strings.Contains(out, "16 bit entries") {
		t.Errorf("efiboot.img is not FAT16:\n%s", out)
	}
	for name, want := range map[string][]byte{"vmlinuz": spec.Kernel, "initrd.img": spec.Initrd, "EFI/BOOT/BOOTX64.EFI": spec.SystemdBootEFI} {
		if got := run(t, mtype, "-i", efiboot, "::/"+name); got != string(want) {
			t.Errorf("%s in efiboot.img differs from the input (%d bytes, want %d)", name, len(got), len(want))
		}
	}
	if got := run(t, mtype, "-i", efiboot, "::/loader/entries/xeno.conf"); got != "title xeno test\nlinux /vmlinuz\ninitrd /initrd.img\noptions console=ttyS0 panic=-1\n" {
		t.Errorf("loader entry:\n%s", got)
	}
}

func TestBootSpecRefused(t *testing.T) {
	dir := t.TempDir()
	good := testSpec(t)
	for _, tc := range []struct {
		name string
		mod  func(*BootSpec)
		want string
	}{
		{"no kernel", func(s *BootSpec) { s.Kernel = nil }, "lacks Kernel"},
		{"no systemd-boot", func(s *BootSpec) { s.SystemdBootEFI = nil }, "lacks SystemdBootEFI"},
		{"short isohdpfx", func(s *BootSpec) { s.IsohdpfxBin = s.IsohdpfxBin[:100] }, "IsohdpfxBin (need at least 432 bytes)"},
		{"newline", func(s *BootSpec) { s.Cmdline = "a\nb" }, "newline"},
		{"label newline", func(s *BootSpec) { s.Label = "x\nlinux /evil" }, "label holds a newline"},
		{"no epoch", func(s *BootSpec) { s.Epoch = time.Time{} }, "no Epoch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := good
			tc.mod(&spec)
			p := filepath.Join(dir, "out.iso")
			err := WriteISO(p, spec)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("got %v, want an error naming %s with %q", err, p, tc.want)
			}
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("a refused spec left %s behind", p)
			}
		})
	}
}
