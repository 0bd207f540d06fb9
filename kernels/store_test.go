package kernels_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/debs"
	"github.com/xeno-hv/xeno/internal/testenv"
	"github.com/xeno-hv/xeno/kernels"
	"github.com/xeno-hv/xeno/kernels/kerneltest"
	"github.com/xeno-hv/xeno/kernels/kformat"
)

type pinned struct {
	pkg, version, release string
	compression           kformat.Compression
}

var pins = []pinned{
	{kerneltest.Cloud56, kerneltest.Cloud56Version, kerneltest.Cloud56Release, kformat.LZ4},
	{kerneltest.Cloud55, kerneltest.Cloud55Version, kerneltest.Cloud55Release, kformat.LZ4},
	{kerneltest.Cloud612, kerneltest.Cloud612Version, kerneltest.Cloud612Release, kformat.Zstd},
}

// cachedDeb is the .deb the default store fetched for k.
func cachedDeb(t *testing.T, k *kernels.Kernel) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(kernels.DefaultCacheDir(), "debs", k.Package+"_*.deb"))
	for _, p := range m {
		if pkg, err := debs.Open(p); err == nil && pkg.SHA256 == k.DebSHA256 {
			return p
		}
	}
	t.Fatalf("no cached .deb with sha256 %s for %s", k.DebSHA256, k.Package)
	return ""
}

func TestRealKernels(t *testing.T) {
	var shas []string
	for _, pin := range pins {
		t.Run(pin.release, func(t *testing.T) {
			k := kerneltest.Kernel(t, pin.pkg, pin.version)
			shas = append(shas, k.SHA256)
			if k.Release != pin.release || k.Package != pin.pkg || k.Version != pin.version {
				t.Errorf("kernel = %s %s %s", k.Release, k.Package, k.Version)
			}
			// uname -r is what the package name is built from.
			if k.Package != "linux-image-"+k.Release+"-unsigned" {
				t.Errorf("release %s does not match package %s", k.Release, k.Package)
			}
			if !strings.Contains(k.Banner, pin.version) {
				t.Errorf("banner %q does not name Debian version %s", k.Banner, pin.version)
			}
			h, err := k.Header()
			if err != nil {
				t.Fatal(err)
			}
			if k.Protocol != "2.15" || h.XLoadFlags&kformat.XLFKernel64 == 0 || !h.RelocatableKernel ||
				h.KernelAlignment != 2<<20 || h.InitSize < 32<<20 || h.InitSize > 128<<20 {
				t.Errorf("header: protocol %s xloadflags %#x relocatable %v align %#x init_size %#x",
					k.Protocol, h.XLoadFlags, h.RelocatableKernel, h.KernelAlignment, h.InitSize)
			}
			if k.Compression != pin.compression {
				t.Errorf("compression %s, want %s", k.Compression, pin.compression)
			}
			checkVmlinux(t, k, h)
			checkConfig(t, k)
			checkModules(t, k)
		})
	}
	if len(shas) == len(pins) {
		sorted := slices.Clone(shas)
		sort.Strings(sorted)
		if len(slices.Compact(sorted)) != len(pins) {
			t.Errorf("distinct packages gave equal bzImages: %v", shas)
		}
	}
}

func checkVmlinux(t *testing.T, k *kernels.Kernel, h *kformat.SetupHeader) {
	p, err := k.Vmlinux()
	if err != nil {
		t.Fatal(err)
	}
	v, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	// vmlinux must fit in what the decompressor reserves for it.
	if len(v) > int(h.InitSize) {
		t.Errorf("vmlinux is %d bytes, more than init_size %d", len(v), h.InitSize)
	}
	info, err := kformat.ParseELF(v)
	if err != nil {
		t.Fatal(err)
	}
	inLoad := func(paddr uint64) bool {
		for _, s := range info.Segments {
			if paddr >= s.Paddr && paddr < s.Paddr+s.Memsz && strings.Contains(s.Flags, "X") {
				return true
			}
		}
		return false
	}
	// startup_64 lies in the text linked at pref_address (16 MiB).
	if info.Entry < h.PrefAddress || !inLoad(info.Entry) {
		t.Errorf("entry %#x (pref_address %#x) not in an executable PT_LOAD", info.Entry, h.PrefAddress)
	}
	pvh, ok := info.Phys32Entry()
	if !ok || !inLoad(uint64(pvh)) {
		t.Errorf("PHYS32_ENTRY %#x (present %v) not in an executable PT_LOAD", pvh, ok)
	}
	if n, _ := info.Note(kformat.XenElfnoteXenVersion); n.Str != "xen-3.0" {
		t.Errorf("XEN_VERSION note %q", n.Str)
	}
	if n, _ := info.Note(kformat.XenElfnoteGuestOS); n.Str != "linux" {
		t.Errorf("GUEST_OS note %q", n.Str)
	}
	// The peer decompressor must agree byte for byte.
	b, err := k.BzImage()
	if err != nil {
		t.Fatal(err)
	}
	payload := h.Payload(b)
	tool := map[kformat.Compression]string{kformat.LZ4: "lz4", kformat.Zstd: "zstd"}[k.Compression]
	testenv.RequireCmd(t, tool)
	in := filepath.Join(t.TempDir(), "payload")
	// The kernel appends the uncompressed size; the tools call it garbage.
	if err := os.WriteFile(in, payload[:len(payload)-4], 0o644); err != nil {
		t.Fatal(err)
	}
	want, err := exec.Command(tool, "-dc", in).Output()
	if err != nil {
		t.Fatalf("%s -dc: %v", tool, err)
	}
	if !bytes.Equal(v, want) {
		t.Errorf("our vmlinux (%d bytes) differs from %s -d (%d bytes)", len(v), tool, len(want))
	}
	if got := binary.LittleEndian.Uint32(payload[len(payload)-4:]); int(got) != len(want) {
		t.Errorf("size trailer %d, %s gave %d bytes", got, tool, len(want))
	}
}

func checkConfig(t *testing.T, k *kernels.Kernel) {
	c, err := k.Config()
	if err != nil {
		t.Fatal(err)
	}
	// Facts measured on Debian's cloud kernels (docs/kernels.md).
	for opt, want := range map[string]string{"VIRTIO_MMIO": "m", "VIRTIO_BLK": "m", "ACPI": "y", "SERIAL_8250_CONSOLE": "y", "PVH": "y", "X86_64": "y"} {
		if got := c.State(opt); got != want {
			t.Errorf("CONFIG_%s = %s, want %s", opt, got, want)
		}
	}
	if strings.HasPrefix(k.Release, "6.1.0-") && c.State("X86_MPPARSE") != "n" {
		t.Errorf("6.1 cloud: CONFIG_X86_MPPARSE = %s, want n", c.State("X86_MPPARSE"))
	}
	if n := c.Needs(); len(n) == 0 || !strings.Contains(n[0].What, "MADT") {
		t.Errorf("Needs does not start with the MADT: %v", n)
	}
}

func checkModules(t *testing.T, k *kernels.Kernel) {
	dir := k.ModulesDir()
	if dir == "" || k.Modules < 100 {
		t.Fatalf("modules dir %q with %d modules", dir, k.Modules)
	}
	// 6.1 ships plain .ko files, 6.12 .ko.xz.
	if m, _ := filepath.Glob(filepath.Join(dir, "kernel/drivers/virtio/virtio_mmio.ko*")); len(m) != 1 {
		t.Errorf("virtio_mmio.ko*: %v", m)
	}
	got, err := k.ModuleClosure([]string{"virtio_blk", "virtio-mmio"})
	if err != nil {
		t.Fatal(err)
	}
	if plain, err := kernels.ModuleClosure(dir, []string{"virtio_blk", "virtio-mmio"}); err != nil || !slices.Equal(plain, got) {
		t.Errorf("ModuleClosure = %v, %v; the verified one gave %v", plain, err, got)
	}
	var names []string
	for _, p := range got {
		n := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(p), ".xz"), ".zst")
		names = append(names, n)
	}
	pos := func(n string) int { return slices.Index(names, n) }
	want := []string{"virtio_blk.ko", "virtio_mmio.ko"}
	cfg, err := k.Config()
	if err != nil {
		t.Fatal(err)
	}
	// 6.1 cloud builds the virtio core as modules, 6.12 builds it in.
	modular := cfg.State("VIRTIO") == "m"
	if modular {
		want = append(want, "virtio.ko", "virtio_ring.ko")
	}
	for _, n := range want {
		if pos(n) < 0 {
			t.Errorf("closure %v lacks %s", names, n)
		}
	}
	if len(names) != len(want) {
		t.Errorf("closure %v, want exactly %v", names, want)
	}
	if modular && (pos("virtio_ring.ko") > pos("virtio_blk.ko") || pos("virtio.ko") > pos("virtio_mmio.ko")) {
		t.Errorf("closure %v does not put dependencies first", names)
	}
	// kmod's modinfo reads the same section independently.
	if modinfo, err := exec.LookPath("modinfo"); err == nil {
		for _, p := range got {
			out, err := exec.Command(modinfo, "-F", "depends", p).Output()
			if err != nil {
				t.Fatalf("modinfo %s: %v", p, err)
			}
			for _, d := range strings.Split(strings.TrimSpace(string(out)), ",") {
				if d != "" && pos(d+".ko") < 0 {
					t.Errorf("%s depends on %s (modinfo), missing from %v", filepath.Base(p), d, names)
				}
			}
		}
	} else {
		testenv.RequireCmd(t, "modinfo")
	}
	// coreutils checks the whole manifest the store will verify against.
	cmd := exec.Command("sha256sum", "--quiet", "-c", filepath.Join(k.Dir(), "modules.sha256"))
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c modules.sha256: %v\n%.500s", err, out)
	}
	if _, err := kernels.ModuleClosure(dir, []string{"no_such_module"}); err == nil || !strings.Contains(err.Error(), "no_such_module") {
		t.Errorf("unknown module: %v", err)
	}
}

// A private store imports the cached .deb; damage is then refused with
// distinct errors.
func TestStoreDamage(t *testing.T) {
	k0 := kerneltest.Kernel(t, kerneltest.Cloud56, kerneltest.Cloud56Version)
	deb := cachedDeb(t, k0)
	s, err := kernels.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.ImportDeb(deb)
	if err != nil {
		t.Fatal(err)
	}
	if k.SHA256 != k0.SHA256 || k.DebSHA256 != k0.DebSHA256 || k.Modules != k0.Modules {
		t.Fatalf("second import differs: %+v vs %+v", k, k0)
	}
	for _, name := range []string{k.Release, k.Package, k.Package + "=" + k.Version, k.SHA256[:8]} {
		if g, err := s.Get(name); err != nil || g.SHA256 != k.SHA256 {
			t.Errorf("Get(%q) = %v, %v", name, g, err)
		}
	}
	if _, err := s.Get("6.1.0-0-nothing"); err == nil {
		t.Error("Get of an unknown release succeeded")
	}
	// Importing again is a no-op that returns the same kernel.
	if again, err := s.ImportDeb(deb); err != nil || again.Dir() != k.Dir() {
		t.Errorf("re-import: %v %v", again, err)
	}

	vm, err := k.Vmlinux()
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, vm, 1<<20)
	if _, err := k.Vmlinux(); !errors.Is(err, kernels.ErrHashMismatch) || !strings.Contains(err.Error(), vm) {
		t.Errorf("corrupt cached vmlinux: %v", err)
	}

	mods, err := k.ModuleClosure([]string{"virtio_blk"})
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, mods[0], 100)
	if _, err := k.ModuleClosure([]string{"virtio_blk"}); !errors.Is(err, kernels.ErrHashMismatch) || !strings.Contains(err.Error(), mods[0]) {
		t.Errorf("corrupt module %s: %v", mods[0], err)
	}

	flipByte(t, k.BzImagePath(), 5<<20)
	for what, err := range map[string]error{
		"Get":     func() error { _, err := s.Get(k.Release); return err }(),
		"Header":  func() error { _, err := k.Header(); return err }(),
		"BzImage": func() error { _, err := k.BzImage(); return err }(),
	} {
		if !errors.Is(err, kernels.ErrHashMismatch) || !strings.Contains(err.Error(), k.BzImagePath()) || !strings.Contains(err.Error(), k.SHA256) {
			t.Errorf("%s of a corrupt bzImage: %v", what, err)
		}
	}
}

func flipByte(t *testing.T, p string, off int64) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x10
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// Damaged copies of the real bzImage and .deb are refused at import, each
// with its own message naming the file.
func TestImportDamaged(t *testing.T) {
	k := kerneltest.Kernel(t, kerneltest.Cloud56, kerneltest.Cloud56Version)
	bz, err := k.BzImage()
	if err != nil {
		t.Fatal(err)
	}
	debBytes, err := os.ReadFile(cachedDeb(t, k))
	if err != nil {
		t.Fatal(err)
	}
	h, err := kformat.ParseSetupHeader(bz)
	if err != nil {
		t.Fatal(err)
	}
	payloadStart := h.SetupLen() + int(h.PayloadOffset)
	patch := func(b []byte, off int, v ...byte) []byte {
		c := bytes.Clone(b)
		copy(c[off:], v)
		return c
	}
	dir := t.TempDir()
	s, err := kernels.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, file string
		b          []byte
		want       string
		import_    func(string) (*kernels.Kernel, error)
	}{
		{"truncated bzImage", "vmlinuz", bz[:len(bz)/2], "truncated setup header", s.ImportBzImage},
		{"bzImage cut in header", "vmlinuz", bz[:0x230], "truncated setup header", s.ImportBzImage},
		{"bzImage boot flag", "vmlinuz", patch(bz, 0x1fe, 0x55, 0xab), "bad magic", s.ImportBzImage},
		{"bzImage HdrS", "vmlinuz", patch(bz, 0x202, 'h'), "bad magic", s.ImportBzImage},
		{"bzImage protocol 2.11", "vmlinuz", patch(bz, 0x206, 0x0b, 0x02), "boot protocol older than 2.12", s.ImportBzImage},
		{"bzImage 32-bit only", "vmlinuz", patch(bz, 0x236, 0x7e), "no 64-bit entry point", s.ImportBzImage},
		{"not a kernel", "notes.txt", []byte(strings.Repeat("hello\n", 200)), "bad magic", s.ImportBzImage},
		{"truncated deb", "k.deb", debBytes[:len(debBytes)/2], "truncated ar member", s.ImportDeb},
		{"deb ar magic", "k.deb", patch(debBytes, 1, 'X'), "not a .deb (bad ar magic)", s.ImportDeb},
		{"deb data flipped", "k.deb", patch(debBytes, len(debBytes)/2, debBytes[len(debBytes)/2]^0xff), "data.tar.xz", s.ImportDeb},
		{"bzImage as deb", "k.deb", bz, "not a .deb (bad ar magic)", s.ImportDeb},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.file)
			if err := os.WriteFile(p, c.b, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := c.import_(p)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
				t.Errorf("import: %v\nwant an error naming %s and %q", err, p, c.want)
			}
		})
	}
	// A corrupt LZ4 block size is refused by Decompress, not decoded.
	bad := bytes.Clone(bz)
	binary.LittleEndian.PutUint32(bad[payloadStart+4:], 0x7fffffff)
	if _, err := kformat.Decompress(bad); err == nil || !strings.Contains(err.Error(), "lz4") {
		t.Errorf("Decompress with a forged block size: %v", err)
	}
	// Nothing half-imported is left behind.
	list, err := s.List()
	if err != nil || len(list) != 0 {
		t.Errorf("store after failed imports: %v %v", list, err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "store", "kernels", ".import-*"))
	if len(left) != 0 {
		t.Errorf("staging left behind: %v", left)
	}
	// The intact bzImage imports bare: no config, no modules.
	p := filepath.Join(dir, "vmlinuz-ok")
	if err := os.WriteFile(p, bz, 0o644); err != nil {
		t.Fatal(err)
	}
	bare, err := s.ImportBzImage(p)
	if err != nil {
		t.Fatal(err)
	}
	if bare.Release != k.Release || bare.SHA256 != k.SHA256 || bare.ModulesDir() != "" || bare.Package != "" {
		t.Errorf("bare import: %+v", bare)
	}
}

// go test runs packages in parallel against one default store; imports of
// the same package must end with one kernel and nothing half-written.
func TestConcurrentImport(t *testing.T) {
	k0 := kerneltest.Kernel(t, kerneltest.Cloud55, kerneltest.Cloud55Version)
	deb := cachedDeb(t, k0)
	dir := t.TempDir()
	const n = 3
	errs := make(chan error, n)
	shas := make(chan string, n)
	for i := 0; i < n; i++ {
		go func() {
			// A Store per goroutine, as separate processes would have.
			s, err := kernels.Open(dir)
			if err == nil {
				var k *kernels.Kernel
				if k, err = s.ImportDeb(deb); err == nil {
					shas <- k.SHA256
				}
			}
			errs <- err
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		if sha := <-shas; sha != k0.SHA256 {
			t.Errorf("import gave %s, want %s", sha, k0.SHA256)
		}
	}
	ents, err := os.ReadDir(filepath.Join(dir, "kernels"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{".lock", k0.SHA256}) {
		t.Errorf("store holds %v", names)
	}
}

// Import checks the whole image, not only its header: a copy truncated by
// one byte, copies with flipped payload bits and copies whose header
// sizes disagree with the file are refused with the reason. Where a test
// rewrites the image's CRC32 trailer to match, the check behind it
// (sizes, the payload's own checksum, the ELF, init_size) has to catch
// the damage on its own.
func TestImportChecksWholeImage(t *testing.T) {
	le := binary.LittleEndian
	fixCRC := func(b []byte) []byte {
		le.PutUint32(b[len(b)-4:], ^crc32.ChecksumIEEE(b[:len(b)-4]))
		return b
	}
	flip := func(b []byte, off int) []byte {
		c := bytes.Clone(b)
		c[off] ^= 0x10
		return c
	}
	put32 := func(b []byte, off int, f func(uint32) uint32) []byte {
		c := bytes.Clone(b)
		le.PutUint32(c[off:], f(le.Uint32(c[off:])))
		return c
	}
	try := func(t *testing.T, s *kernels.Store, dir, name string, b []byte, want string) {
		t.Helper()
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		k, err := s.ImportBzImage(p)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: import gave %v, %v\nwant an error naming %s and %q", name, k, err, p, want)
		}
	}
	setup := func(t *testing.T, k *kernels.Kernel) ([]byte, *kformat.SetupHeader, *kernels.Store, string) {
		bz, err := k.BzImage()
		if err != nil {
			t.Fatal(err)
		}
		h, err := kformat.ParseSetupHeader(bz)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		s, err := kernels.Open(filepath.Join(dir, "store"))
		if err != nil {
			t.Fatal(err)
		}
		return bz, h, s, dir
	}

	t.Run("lz4 6.1", func(t *testing.T) {
		bz, h, s, dir := setup(t, kerneltest.Kernel(t, kerneltest.Cloud56, kerneltest.Cloud56Version))
		start := h.SetupLen() + int(h.PayloadOffset)
		end := start + int(h.PayloadLength)
		try(t, s, dir, "truncated by one byte", bz[:len(bz)-1], "the header declares")
		for _, off := range []int{start + 64, (start + end) / 2, end - 64} {
			try(t, s, dir, fmt.Sprintf("payload bit flipped at %#x", off), flip(bz, off), "image CRC32")
		}
		try(t, s, dir, "setup code bit flipped", flip(bz, 0x400), "image CRC32")
		try(t, s, dir, "syssize one more", fixCRC(put32(bz, 0x1f4, func(v uint32) uint32 { return v + 1 })), "the header declares")
		try(t, s, dir, "syssize 0", fixCRC(put32(bz, 0x1f4, func(uint32) uint32 { return 0 })), "syssize is 0")
		try(t, s, dir, "setup_sects one more", fixCRC(flip(bz, 0x1f1)), "truncated")
		try(t, s, dir, "payload_length past the image", fixCRC(put32(bz, 0x24c, func(v uint32) uint32 { return v + uint32(len(bz)-end) + 16 })), "beyond")
		try(t, s, dir, "payload_length short", fixCRC(put32(bz, 0x24c, func(v uint32) uint32 { return v - 4096 })), "lz4 payload")
		try(t, s, dir, "payload_offset moved", fixCRC(put32(bz, 0x248, func(v uint32) uint32 { return v + 1 })), "payload")
		try(t, s, dir, "init_size too small", fixCRC(put32(bz, 0x260, func(uint32) uint32 { return 1 << 20 })), "init_size")
		if list, err := s.List(); err != nil || len(list) != 0 {
			t.Errorf("store after refused imports: %v %v", list, err)
		}
		p := filepath.Join(dir, "intact")
		if err := os.WriteFile(p, bz, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ImportBzImage(p); err != nil {
			t.Errorf("intact bzImage refused: %v", err)
		}

		// Signed by sbsign, as Debian's signed kernels are: the appended
		// signature and the PE fields it fills do not break the CRC
		// check, which still guards the LZ4 payload (no checksum of its
		// own) against a flipped bit.
		signed := sbsign(t, p)
		try(t, s, dir, "signed, payload bit flipped", flip(signed, (start+end)/2), "PE signature fields zeroed")
		ps := filepath.Join(dir, "signed")
		if err := os.WriteFile(ps, signed, 0o644); err != nil {
			t.Fatal(err)
		}
		// A fresh store: this one holds the unsigned image's release.
		s2, err := kernels.Open(filepath.Join(dir, "store2"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s2.ImportBzImage(ps); err != nil {
			t.Errorf("signed intact bzImage refused: %v", err)
		}
	})

	// zstd carries its own checksum: bit flips in the payload are found
	// by decompression even with the image CRC made to match.
	t.Run("zstd 6.12", func(t *testing.T) {
		bz, h, s, dir := setup(t, kerneltest.Kernel(t, kerneltest.Cloud612, kerneltest.Cloud612Version))
		start := h.SetupLen() + int(h.PayloadOffset)
		end := start + int(h.PayloadLength)
		for _, off := range []int{start + 4096, (start + end) / 2, end - 4096} {
			try(t, s, dir, fmt.Sprintf("payload bit flipped at %#x, CRC fixed", off), fixCRC(flip(bz, off)), "zstd payload")
		}
		p := filepath.Join(dir, "intact")
		if err := os.WriteFile(p, bz, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ImportBzImage(p); err != nil {
			t.Errorf("intact bzImage refused: %v", err)
		}
	})
}

// A FIFO or a device named as the bzImage or the .deb is refused at once:
// the import neither waits for a writer nor reads /dev/zero without end.
func TestImportRefusesNonFiles(t *testing.T) {
	dir := t.TempDir()
	s, err := kernels.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	fifo, _ := testenv.HostileFiles(t)
	imports := map[string]func(string) (*kernels.Kernel, error){"bzImage": s.ImportBzImage, "deb": s.ImportDeb}
	for kind, importFn := range imports {
		for path, want := range map[string]string{fifo: "a FIFO, not a regular file", "/dev/zero": "a character device, not a regular file"} {
			err := testenv.Within(t, 10*time.Second, func() error {
				_, err := importFn(path)
				return err
			})
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("import %s %s: %v, want %q", kind, path, err, want)
			}
		}
	}
}

// sbsign signs the bzImage at path with a throw-away key, with the tool
// Debian's signed kernels go through.
func sbsign(t *testing.T, path string) []byte {
	t.Helper()
	openssl := testenv.RequireCmd(t, "openssl")
	sb := testenv.RequireCmd(t, "sbsign")
	dir := t.TempDir()
	key, cert, out := filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "signed")
	for _, c := range [][]string{
		{openssl, "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=xeno test", "-days", "1", "-keyout", key, "-out", cert},
		{sb, "--key", key, "--cert", cert, "--output", out, path},
	} {
		if b, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(c, " "), err, b)
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
