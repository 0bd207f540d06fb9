package toolstack

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
	"github.com/klauspost/compress/zstd"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/internal/testenv"
	"github.com/xeno-hv/xeno/kernels/kformat"
)

// fakeBzImage builds the smallest file that passes the boot-protocol
// checks, with the given protocol version and xloadflags; the values
// come from the Linux boot protocol document, not from our parser.
func fakeBzImage(version, xloadflags uint16) []byte {
	b := make([]byte, 0x1000)
	le := binary.LittleEndian
	b[0x1f1] = 1 // setup_sects: protected-mode code at 0x400
	le.PutUint16(b[0x1fe:], 0xaa55)
	copy(b[0x202:], "HdrS")
	le.PutUint16(b[0x206:], version)
	le.PutUint16(b[0x236:], xloadflags)
	le.PutUint32(b[0x248:], 0x10)  // payload_offset
	le.PutUint32(b[0x24c:], 0x100) // payload_length
	copy(b[0x410:], []byte{0x28, 0xb5, 0x2f, 0xfd})
	return b
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func build(rel, id string) abi.Build {
	r, err := abi.ParseRelease(rel)
	if err != nil {
		panic(err)
	}
	return abi.Build{Release: r, BuildID: id}
}

var bigHost = Host{TotalMiB: 1 << 20, FreeMiB: 1 << 19, CPUs: 64}

func TestCheckKernel(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good", fakeBzImage(0x020f, 1))
	if d, err := CheckKernel(good); err != nil || !strings.Contains(d, "protocol 2.15") || !strings.Contains(d, "zstd") {
		t.Errorf("good kernel: %q %v", d, err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		rule string
		is   error
	}{
		{"elf", append([]byte("\x7fELF"), make([]byte, 0x1000)...), "bzimage-magic", kformat.ErrBadMagic},
		{"old", fakeBzImage(0x020a, 1), "boot-protocol", kformat.ErrOldProtocol},
		{"no64", fakeBzImage(0x020f, 0), "64bit-entry", kformat.ErrNo64BitEntry},
	} {
		p := writeFile(t, dir, tc.name, tc.data)
		_, err := CheckKernel(p)
		var r *Refusal
		if !errors.As(err, &r) || r.Rule != tc.rule || r.File != p || !errors.Is(err, tc.is) {
			t.Errorf("%s: got %v, want rule %s naming %s", tc.name, err, tc.rule, p)
		}
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %q does not name the file", tc.name, err)
		}
	}
	if _, err := CheckKernel(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing kernel accepted")
	}
}

func newcArchive(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := cpio.NewWriter(&buf)
	for _, name := range []string{"etc", "etc/xeno", "init", "etc/xeno/manifest.toml"} {
		body, ok := files[name]
		if !ok && name != "etc" && name != "etc/xeno" {
			continue
		}
		mode := cpio.FileMode(0o644)
		if !ok {
			mode = cpio.FileMode(0o755) | cpio.TypeDir
		}
		if err := w.WriteHeader(&cpio.Header{Name: name, Mode: mode, Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestGuestInterfaceSources(t *testing.T) {
	dir := t.TempDir()
	k := writeFile(t, dir, "vmlinuz", fakeBzImage(0x020f, 1))
	hv := build("1.2.0", "b1")
	archive := newcArchive(t, map[string]string{"init": "#!/bin/sh\n", "etc/xeno/manifest.toml": "name = \"x\"\ninterface = \"1.1\"\n"})
	var gz, zs bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write(archive)
	gw.Close()
	zw, _ := zstd.NewWriter(&zs)
	zw.Write(archive)
	zw.Close()
	for name, data := range map[string][]byte{"plain.cpio": archive, "initrd.gz": gz.Bytes(), "initrd.zst": zs.Bytes()} {
		rd := writeFile(t, dir, name, data)
		in, from, warn, err := GuestInterface(&Config{Kernel: k, Ramdisk: rd}, hv)
		if err != nil || in.String() != "1.1" || from != rd+":/etc/xeno/manifest.toml" || warn != "" {
			t.Errorf("%s: %v %q %q %v", name, in, from, warn, err)
		}
	}
	// A manifest beside the ramdisk wins over the initramfs's.
	rd := filepath.Join(dir, "initrd.gz")
	m := writeFile(t, dir, "initrd.manifest.toml", []byte("interface = \"1.0\"\n"))
	in, from, _, err := GuestInterface(&Config{Kernel: k, Ramdisk: rd}, hv)
	if err != nil || in.String() != "1.0" || from != m {
		t.Errorf("beside: %v %q %v", in, from, err)
	}
	// And the config's interface= wins over everything.
	in, from, _, err = GuestInterface(&Config{Source: "g.cfg", Kernel: k, Ramdisk: rd, Interface: "1.2"}, hv)
	if err != nil || in.String() != "1.2" || !strings.HasPrefix(from, "g.cfg") {
		t.Errorf("config: %v %q %v", in, from, err)
	}
	// Nothing declared: native, with a warning.
	in, from, warn, err := GuestInterface(&Config{Kernel: k}, hv)
	if err != nil || in.String() != "1.2" || !strings.Contains(from, "assumed native") || !strings.Contains(warn, "declares no interface") {
		t.Errorf("undeclared: %v %q %q %v", in, from, warn, err)
	}
	// A bad manifest is a refusal naming it.
	bad := writeFile(t, dir, "vmlinuz.manifest.toml", []byte("interface = 1.2\n"))
	_, _, _, err = GuestInterface(&Config{Kernel: k}, hv)
	var r *Refusal
	if !errors.As(err, &r) || r.File != bad {
		t.Errorf("bad manifest: %v", err)
	}
	// A ramdisk that is not a cpio is a refusal naming it.
	os.Remove(bad)
	junk := writeFile(t, dir, "junk.img", []byte("not an archive at all"))
	_, _, _, err = GuestInterface(&Config{Kernel: k, Ramdisk: junk}, hv)
	if !errors.As(err, &r) || r.File != junk {
		t.Errorf("junk initramfs: %v", err)
	}
}

// The policy cases of the brief, through Check (which must call
// abi.Admit, not a copy of it): newer refused, older stable admitted as
// compat, dev admitted only on the identical build.
func TestCheckInterfacePolicy(t *testing.T) {
	dir := t.TempDir()
	k := writeFile(t, dir, "vmlinuz", fakeBzImage(0x020f, 1))
	for _, tc := range []struct {
		hv      abi.Build
		guest   string
		verdict string
		rule    string
	}{
		{build("1.2.3", "x"), "1.3", "refuse", abi.RuleNewer},
		{build("1.2.0", "x"), "1.1", "compat", abi.RuleCompatTable},
		{build("1.2.0", "x"), "1.2", "run", abi.RuleStableSame},
		{build("1.3.0-dev", "abc"), "1.3-dev@abc", "run", abi.RuleDevSameBuild},
		{build("1.3.0-dev", "abc"), "1.3-dev@abd", "refuse", abi.RuleDevOtherBuild},
		{build("1.3.0-dev", "abc"), "1.0", "refuse", abi.RuleNotInTable},
	} {
		cfg := &Config{Source: "g.cfg", Kernel: k, MemoryMiB: 64, VCPUs: 1, Interface: tc.guest}
		p, err := Check(cfg, CheckOptions{Build: tc.hv, Host: bigHost})
		if p.Verdict != tc.verdict || p.Rule != tc.rule {
			t.Errorf("%s on %s: %s/%s, want %s/%s", tc.guest, tc.hv.Release, p.Verdict, p.Rule, tc.verdict, tc.rule)
		}
		if (tc.verdict == "refuse") != (err != nil) {
			t.Errorf("%s on %s: err %v", tc.guest, tc.hv.Release, err)
		}
		if err != nil {
			msg := err.Error()
			guestShort := strings.SplitN(tc.guest, "@", 2)[0]
			for _, want := range []string{"g.cfg", guestShort, tc.hv.Release.String(), tc.rule} {
				if !strings.Contains(msg, want) {
					t.Errorf("refusal %q lacks %q", msg, want)
				}
			}
			// The bypass records the decision but does not refuse.
			p, err := Check(cfg, CheckOptions{Build: tc.hv, Host: bigHost, Unchecked: true})
			if err != nil || p.Verdict != "refuse" || len(p.Warnings) == 0 {
				t.Errorf("unchecked: %v %+v", err, p)
			}
		}
		if tc.verdict == "compat" && !p.Compat {
			t.Errorf("compat flag not set")
		}
	}
}

func TestCheckHostAndFiles(t *testing.T) {
	dir := t.TempDir()
	k := writeFile(t, dir, "vmlinuz", fakeBzImage(0x020f, 1))
	hv := build("1.2.0", "x")
	cfg := &Config{Kernel: k, MemoryMiB: 4096, VCPUs: 1}
	_, err := Check(cfg, CheckOptions{Build: hv, Host: Host{FreeMiB: 1024, CPUs: 2}})
	if err == nil || !strings.Contains(err.Error(), "memory-fits") {
		t.Errorf("memory: %v", err)
	}
	cfg = &Config{Kernel: k, MemoryMiB: 64, VCPUs: 3}
	if _, err = Check(cfg, CheckOptions{Build: hv, Host: Host{FreeMiB: 1024, CPUs: 2}}); err == nil || !strings.Contains(err.Error(), "vcpus-fit") {
		t.Errorf("vcpus: %v", err)
	}
	cfg = &Config{Kernel: k, MemoryMiB: 64, VCPUs: 1, Disks: []Disk{{Target: filepath.Join(dir, "none.img"), Vdev: "xvda"}}}
	p, err := Check(cfg, CheckOptions{Build: hv, Host: bigHost})
	if err == nil || !strings.Contains(err.Error(), "none.img") {
		t.Errorf("missing disk: %v", err)
	}
	// Every check is reported, not only the first failure.
	if len(p.Checks) != 4 {
		t.Errorf("checks: %+v", p.Checks)
	}
}

func TestReadHost(t *testing.T) {
	h, err := ReadHost()
	if err != nil {
		t.Fatal(err)
	}
	if h.TotalMiB <= 0 || h.FreeMiB <= 0 || h.FreeMiB > h.TotalMiB || h.CPUs < 1 {
		t.Errorf("host %+v", h)
	}
}

// Kernel, ramdisk and disks that are not files, or too big, are refused
// quickly, each naming the file and the rule, and nothing is read from
// them: no hang on a FIFO, no endless read of /dev/zero.
func TestCheckRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	k := writeFile(t, dir, "vmlinuz", fakeBzImage(0x020f, 1))
	fifo, sparse := testenv.HostileFiles(t)
	hv := build("1.2.0", "x")
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // check, rule and file, as the refusal prints them
	}{
		{"kernel-zero", Config{Kernel: "/dev/zero"}, "(kernel, rule regular-file): /dev/zero: a character device"},
		{"kernel-fifo", Config{Kernel: fifo}, "(kernel, rule regular-file): " + fifo + ": a FIFO"},
		{"kernel-proc", Config{Kernel: "/proc/self/mem"}, "(kernel, rule regular-file): /proc/self/mem: on proc"},
		{"ramdisk-zero", Config{Kernel: k, Ramdisk: "/dev/zero"}, "(ramdisk, rule regular-file): /dev/zero: a character device"},
		{"ramdisk-fifo", Config{Kernel: k, Ramdisk: fifo}, "(ramdisk, rule regular-file): " + fifo + ": a FIFO"},
		{"ramdisk-sparse", Config{Kernel: k, Ramdisk: sparse}, "(ramdisk, rule size): " + sparse + ": 4294967296 bytes, over the limit of 32 MiB"},
		{"disk-null", Config{Kernel: k, Disks: []Disk{{Target: "/dev/null", Vdev: "xvda"}}}, "(disk, rule disk-type): /dev/null: a character device"},
		{"disk-zero-ro", Config{Kernel: k, Disks: []Disk{{Target: "/dev/zero", Vdev: "xvda", ReadOnly: true}}}, "(disk, rule disk-type): /dev/zero: a character device"},
		{"disk-fifo-ro", Config{Kernel: k, Disks: []Disk{{Target: fifo, Vdev: "xvda", ReadOnly: true}}}, "(disk, rule disk-type): " + fifo + ": a FIFO"},
		{"disk-proc-mem", Config{Kernel: k, Disks: []Disk{{Target: "/proc/self/mem", Vdev: "xvda"}}}, "(disk, rule disk-type): /proc/self/mem: on proc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.MemoryMiB, cfg.VCPUs, cfg.Interface = 32, 1, "1.2"
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := testenv.Within(t, 5*time.Second, func() error { _, err := Check(&cfg, CheckOptions{Build: hv, Host: bigHost}); return err })
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want %q", err, tc.want)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
				t.Errorf("allocated %d bytes to refuse", alloc)
			}
		})
	}
}

// The ramdisk limit is the guest's RAM: the same file fits a bigger
// guest.
func TestRamdiskLimitIsGuestRAM(t *testing.T) {
	dir := t.TempDir()
	k := writeFile(t, dir, "vmlinuz", fakeBzImage(0x020f, 1))
	rd := writeFile(t, dir, "initrd", nil)
	if err := os.Truncate(rd, 17<<20); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{Kernel: k, Ramdisk: rd, MemoryMiB: 16, VCPUs: 1, Interface: "1.2"}
	if _, err := Check(cfg, CheckOptions{Build: build("1.2.0", "x"), Host: bigHost}); err == nil || !strings.Contains(err.Error(), "rule size") {
		t.Errorf("17 MiB ramdisk, 16 MiB guest: %v", err)
	}
	cfg.MemoryMiB = 32
	if _, err := Check(cfg, CheckOptions{Build: build("1.2.0", "x"), Host: bigHost}); err != nil {
		t.Errorf("17 MiB ramdisk, 32 MiB guest: %v", err)
	}
	if got := RamdiskLimit(&Config{MemoryMiB: abi.MaxMemoryMiB}); got != 1<<30 {
		t.Errorf("limit for the largest guest: %d, want the 1 GiB cap", got)
	}
}

// The memory check counts the domains already there: five domains of
// 20000 MiB each were all accepted on a 24 GiB host.
func TestReserveCountsEveryDomainsMemory(t *testing.T) {
	withMem := func(name string, mib int64, h Host) *Plan {
		p := plan(name)
		p.Config.MemoryMiB, p.Host = mib, h
		return p
	}
	refused := func(t *testing.T, err error, want ...string) {
		t.Helper()
		if err == nil {
			t.Fatal("accepted")
		}
		for _, w := range append(want, "rule memory-fits") {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("refusal %q lacks %q", err, w)
			}
		}
	}
	// The host: the second domain no longer fits.
	ts := newToolstack(t)
	small := Host{TotalMiB: 24105, FreeMiB: 23404, CPUs: 2}
	a, err := ts.Reserve(withMem("a", 20000, small))
	if err != nil {
		t.Fatal(err)
	}
	_, err = ts.Reserve(withMem("b", 20000, small))
	refused(t, err, "memory = 20000 MiB but only 3404 MiB are left", "23404 MiB available", "MemTotal 24105 MiB", fmt.Sprintf("less 20000 MiB that domain %d may still take", a.ID))

	// A host with room for four: the fifth is refused, and the refusal
	// names the numbers.
	ts = newToolstack(t)
	big := Host{TotalMiB: 100000, FreeMiB: 96000, CPUs: 2}
	var ids []string
	for _, n := range []string{"d1", "d2", "d3", "d4"} {
		r, err := ts.Reserve(withMem(n, 20000, big))
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		ids = append(ids, strconv.Itoa(r.ID))
	}
	_, err = ts.Reserve(withMem("d5", 20000, big))
	refused(t, err, "only 16000 MiB are left", "less 80000 MiB that domains "+strings.Join(ids, ", ")+" may still take")
	if recs, _ := ts.State.Records(); len(recs) != 4 {
		t.Errorf("the refusal left %d records, want 4", len(recs))
	}

	// What a running hv has touched is already gone from MemAvailable: a
	// running domain owes only the rest. This test process stands in for
	// their hvs.
	recs, err := ts.State.Records()
	if err != nil {
		t.Fatal(err)
	}
	self := os.Getpid()
	if residentMiB(self) < 1 {
		t.Fatalf("resident size of this process: %d MiB", residentMiB(self))
	}
	for _, r := range recs {
		r.State, r.HVPid, r.HVStart = StateRunning, self, procStart(self)
		if err := ts.State.Save(r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ts.Reserve(withMem("d5", 16001, big)); err != nil {
		t.Errorf("16001 MiB beside four running domains that touched some of theirs: %v", err)
	}

	// A stopped, preserved domain holds nothing.
	recs, _ = ts.State.Records()
	for _, r := range recs {
		r.State, r.HVPid, r.HVStart = StateShutdown, 0, 0
		ts.State.Save(r)
	}
	if _, err := ts.Reserve(withMem("d6", 90000, big)); err != nil {
		t.Errorf("90000 MiB beside preserved domains only: %v", err)
	}
	// A plan with no host reading (as in tests that build one by hand) is
	// not checked.
	if _, err := ts.Reserve(withMem("d7", 1<<20, Host{})); err != nil {
		t.Errorf("no host reading: %v", err)
	}
}
