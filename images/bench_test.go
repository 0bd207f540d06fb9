package images

import (
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/xeno-hv/xeno/internal/atomicfile"
)

// benchSpec has a kernel and initrd the size of the default recipe's
// (8 MiB and 32 MiB), filled with incompressible bytes.
func benchSpec(b *testing.B) BootSpec {
	spec := testSpec(b)
	r := rand.New(rand.NewSource(1))
	spec.Kernel = make([]byte, 8<<20)
	spec.Initrd = make([]byte, 32<<20)
	r.Read(spec.Kernel)
	r.Read(spec.Initrd)
	return spec
}

func writeFiles(b *testing.B, dir string, files []fatFile) {
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

func mustRun(b *testing.B, name string, args ...string) {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		b.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// mkfsESP is the peer's way to make a FAT image of files: mkfs.vfat, then
// mmd and mcopy from the staged tree.
func mkfsESP(b *testing.B, img string, size int64, fat32 bool, stage string, files []fatFile) {
	os.Remove(img)
	fatBits := "16"
	if fat32 {
		fatBits = "32"
	}
	mustRun(b, "mkfs.vfat", "-C", "-F", fatBits, "-n", "XENO", img, "--", // size in KiB
		itoa(size/1024))
	made := map[string]bool{}
	for _, f := range files {
		dir := filepath.Dir(f.path)
		for _, d := range ancestors(dir) {
			if !made[d] {
				mustRun(b, "mmd", "-i", img, "::/"+d)
				made[d] = true
			}
		}
		mustRun(b, "mcopy", "-i", img, filepath.Join(stage, f.path), "::/"+f.path)
	}
}

func ancestors(dir string) []string {
	if dir == "." {
		return nil
	}
	return append(ancestors(filepath.Dir(dir)), dir)
}

func itoa(n int64) string { return string(appendInt(nil, n)) }

func appendInt(b []byte, n int64) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

// BenchmarkWriteESP compares writing the ESP of a raw-efi image (FAT32,
// systemd-boot, entries, kernel, initrd) with mkfs.vfat + mcopy writing
// the same files into a filesystem of the same size.
func BenchmarkWriteESP(b *testing.B) {
	spec := benchSpec(b)
	files := spec.espFiles()
	size := fatSize(files, true)
	dir := b.TempDir()
	var total int64
	for _, f := range files {
		total += int64(len(f.data))
	}
	b.Run("xeno", func(b *testing.B) {
		b.SetBytes(total)
		for i := 0; i < b.N; i++ {
			err := atomicfile.Write(filepath.Join(dir, "esp.img"), 0o644, func(f *os.File) error {
				return writeFAT(f, 0, size, true, "XENO", 1, testEpoch, files, 0)
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("mkfs.vfat+mcopy", func(b *testing.B) {
		for _, tool := range []string{"mkfs.vfat", "mcopy", "mmd"} {
			if _, err := exec.LookPath(tool); err != nil {
				b.Skipf("needs %s", tool)
			}
		}
		stage := filepath.Join(dir, "stage")
		writeFiles(b, stage, files)
		b.SetBytes(total)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			mkfsESP(b, filepath.Join(dir, "peer.img"), size, true, stage, files)
		}
	})
}

// BenchmarkWriteISO compares WriteISO with the peer pipeline that makes
// an equivalent hybrid ISO from the same files: mkfs.vfat + mcopy for
// efiboot.img, then xorriso -as mkisofs with isolinux, the UEFI entry and
// the isohybrid MBR.
func BenchmarkWriteISO(b *testing.B) {
	spec := benchSpec(b)
	dir := b.TempDir()
	total := int64(2 * (len(spec.Kernel) + len(spec.Initrd))) // each is on the ISO and in efiboot.img
	b.Run("xeno", func(b *testing.B) {
		b.SetBytes(total)
		for i := 0; i < b.N; i++ {
			if err := WriteISO(filepath.Join(dir, "xeno.iso"), spec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("xorriso", func(b *testing.B) {
		for _, tool := range []string{"xorriso", "mkfs.vfat", "mcopy", "mmd"} {
			if _, err := exec.LookPath(tool); err != nil {
				b.Skipf("needs %s", tool)
			}
		}
		stage := filepath.Join(dir, "stage")
		espStage := filepath.Join(dir, "espstage")
		files := spec.espFiles()
		writeFiles(b, espStage, files)
		writeFiles(b, stage, []fatFile{
			{"isolinux/isolinux.bin", spec.IsolinuxBin},
			{"isolinux/ldlinux.c32", spec.LdlinuxC32},
			{"isolinux/isolinux.cfg", spec.isolinuxCfg()},
			{kernelName, spec.Kernel},
			{initrdName, spec.Initrd},
		})
		mbr := filepath.Join(dir, "isohdpfx.bin")
		if err := os.WriteFile(mbr, spec.IsohdpfxBin, 0o644); err != nil {
			b.Fatal(err)
		}
		xorriso := func() {
			mustRun(b, "xorriso", "-as", "mkisofs", "-quiet", "-o", filepath.Join(dir, "peer.iso"),
				"-V", "XENO", "-isohybrid-mbr", mbr,
				"-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat",
				"-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
				"-eltorito-alt-boot", "-e", "efiboot.img", "-no-emul-boot", "-isohybrid-gpt-basdat",
				stage)
		}
		b.Run("with-efiboot", func(b *testing.B) {
			b.SetBytes(total)
			for i := 0; i < b.N; i++ {
				mkfsESP(b, filepath.Join(stage, "efiboot.img"), fatSize(files, false), false, espStage, files)
				xorriso()
			}
		})
		// xorriso alone, with efiboot.img already made: the ISO step only.
		b.Run("iso-only", func(b *testing.B) {
			mkfsESP(b, filepath.Join(stage, "efiboot.img"), fatSize(files, false), false, espStage, files)
			b.SetBytes(total)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				xorriso()
			}
		})
	})
}

// BenchmarkWriteInitramfs compares WriteInitramfs (gzip) with GNU cpio
// piped into gzip -9 on the same staged tree: 300 files, 24 MiB, half
// text-like and half random, the mix of a modules initramfs.
func BenchmarkWriteInitramfs(b *testing.B) {
	r := rand.New(rand.NewSource(2))
	var tree []File
	var total int64
	for i := 0; i < 300; i++ {
		data := make([]byte, 80<<10+r.Intn(8<<10))
		if i%2 == 0 {
			r.Read(data)
		} else {
			for j := range data {
				data[j] = "kernel module text "[j%19]
			}
		}
		total += int64(len(data))
		tree = append(tree, File{Path: "lib/modules/" + itoa(int64(i%10)) + "/m" + itoa(int64(i)) + ".ko", Mode: 0o644, Data: data})
	}
	dir := b.TempDir()
	b.Run("xeno-gzip", func(b *testing.B) {
		b.SetBytes(total)
		for i := 0; i < b.N; i++ {
			err := atomicfile.Write(filepath.Join(dir, "initrd.img"), 0o644, func(f *os.File) error {
				return WriteInitramfs(f, tree, Gzip, testEpoch)
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cpio|gzip-9", func(b *testing.B) {
		for _, tool := range []string{"cpio", "gzip", "find", "sort"} {
			if _, err := exec.LookPath(tool); err != nil {
				b.Skipf("needs %s", tool)
			}
		}
		stage := filepath.Join(dir, "stage")
		var files []fatFile
		for _, f := range tree {
			files = append(files, fatFile{f.Path, f.Data})
		}
		writeFiles(b, stage, files)
		out := filepath.Join(dir, "peer.img")
		b.SetBytes(total)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			cmd := exec.Command("sh", "-c", `find . | LC_ALL=C sort | cpio --quiet -o -H newc --reproducible -R 0:0 | gzip -9 -n > "$1"`, "sh", out)
			cmd.Dir = stage
			if o, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%v\n%s", err, o)
			}
		}
	})
}
