package acpi

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/xeno-hv/xeno/internal/testenv"
)

const testBase = 0xe0000

func testConfig(cpus int) Config {
	return Config{
		CPUs: cpus,
		Virtio: []MMIODevice{
			{Base: 0xd0000000, Size: 0x1000, IRQ: 5},
			{Base: 0xd0001000, Size: 0x1000, IRQ: 16},
		},
	}
}

// tables walks the blob from the RSDP as an OS does and returns every
// table by signature, checking checksums and bounds on the way.
func tables(t *testing.T, blob []byte, base, rsdp uint64) map[string][]byte {
	t.Helper()
	le := binary.LittleEndian
	at := func(addr uint64, n int) []byte {
		if addr < base || addr-base+uint64(n) > uint64(len(blob)) {
			t.Fatalf("address %#x+%d outside the blob", addr, n)
		}
		return blob[addr-base : addr-base+uint64(n)]
	}
	r := at(rsdp, 36)
	if string(r[:8]) != "RSD PTR " || r[15] != 2 {
		t.Fatalf("bad RSDP %q rev %d", r[:8], r[15])
	}
	if checksum(r[:20]) != 0 || checksum(r) != 0 {
		t.Fatal("RSDP checksums wrong")
	}
	if rsdp%16 != 0 {
		t.Fatal("RSDP not 16-byte aligned")
	}
	out := map[string][]byte{}
	table := func(addr uint64) []byte {
		h := at(addr, 36)
		tb := at(addr, int(le.Uint32(h[4:])))
		if checksum(tb) != 0 {
			t.Fatalf("%s checksum wrong", tb[:4])
		}
		out[string(tb[:4])] = tb
		return tb
	}
	x := table(le.Uint64(r[24:]))
	if string(x[:4]) != "XSDT" {
		t.Fatalf("XSDT pointer leads to %q", x[:4])
	}
	for p := 36; p < len(x); p += 8 {
		table(le.Uint64(x[p:]))
	}
	rs := table(uint64(le.Uint32(r[16:])))
	if string(rs[:4]) != "RSDT" || len(rs) != 36+4*(len(x)-36)/8 {
		t.Fatal("RSDT does not match XSDT")
	}
	f := out["FACP"]
	if f == nil {
		t.Fatal("no FADT")
	}
	if le.Uint64(f[140:]) != uint64(le.Uint32(f[40:])) {
		t.Fatal("FADT DSDT and X_DSDT differ")
	}
	if le.Uint64(f[132:]) != 0 {
		t.Fatal("X_FIRMWARE_CTRL set beside FIRMWARE_CTRL (Linux maps the FACS twice)")
	}
	table(le.Uint64(f[140:]))
	facsAt := uint64(le.Uint32(f[36:]))
	facs := at(facsAt, 64)
	if string(facs[:4]) != "FACS" || facsAt%64 != 0 {
		t.Fatal("FACS missing or misaligned")
	}
	return out
}

func TestBuildStructure(t *testing.T) {
	blob, rsdp, err := Build(testConfig(4), testBase)
	if err != nil {
		t.Fatal(err)
	}
	if rsdp != testBase {
		t.Errorf("RSDP at %#x, want the base", rsdp)
	}
	if len(blob) > 128<<10 {
		t.Errorf("blob %d bytes exceeds the 128 KiB room", len(blob))
	}
	tb := tables(t, blob, testBase, rsdp)
	for _, sig := range []string{"XSDT", "RSDT", "FACP", "APIC", "DSDT"} {
		if tb[sig] == nil {
			t.Errorf("no %s", sig)
		}
	}
	f := tb["FACP"]
	le := binary.LittleEndian
	if le.Uint16(f[46:]) != SCIIRQ || le.Uint32(f[48:]) != 0 || le.Uint32(f[56:]) != PM1aEvt || le.Uint32(f[64:]) != PM1aCnt {
		t.Error("FADT SCI/SMI_CMD/PM1 fields wrong")
	}
	if le.Uint32(f[112:])&(1<<4) != 0 || le.Uint32(f[112:])&(1<<20) != 0 {
		t.Error("FADT claims no fixed power button or HW-reduced ACPI")
	}
	madt := tb["APIC"]
	lapics := 0
	for p := 44; p < len(madt); p += int(madt[p+1]) {
		if madt[p+1] < 2 {
			t.Fatal("MADT entry with length < 2")
		}
		if madt[p] == madtLAPIC {
			if int(madt[p+3]) != lapics || madt[p+4]&1 == 0 {
				t.Errorf("LAPIC %d: id %d flags %#x", lapics, madt[p+3], madt[p+4])
			}
			lapics++
		}
	}
	if lapics != 4 {
		t.Errorf("%d LAPICs, want 4", lapics)
	}
	d := tb["DSDT"]
	if n := bytes.Count(d, []byte("LNRO0005")); n != 2 {
		t.Errorf("%d LNRO0005 devices, want 2", n)
	}
}

func TestBuildBounds(t *testing.T) {
	bad := []Config{
		{CPUs: 0},
		{CPUs: MaxCPUs + 1},
		{CPUs: 1, Virtio: make([]MMIODevice, MaxVirtio+1)},
		{CPUs: 1, Virtio: []MMIODevice{{Base: 0xd0000000, Size: 0x1000, IRQ: 24}}},
		{CPUs: 1, Virtio: []MMIODevice{{Base: 0xd0000000, Size: 0x1000, IRQ: 9}}},
		{CPUs: 1, Virtio: []MMIODevice{{Base: 0xfffff000, Size: 0x2000, IRQ: 5}}},
		{CPUs: 1, OEMID: "TOOLONGID"},
	}
	for i, cfg := range bad {
		if _, _, err := Build(cfg, testBase); err == nil {
			t.Errorf("config %d (%+v) accepted", i, cfg)
		}
	}
	if _, _, err := Build(Config{CPUs: 1}, testBase+8); err == nil {
		t.Error("unaligned base accepted")
	}
	if _, _, err := Build(Config{CPUs: MaxCPUs, Virtio: make([]MMIODevice, MaxVirtio)}, testBase); err == nil {
		t.Fatal("zero-sized virtio windows accepted")
	}
	vs := make([]MMIODevice, MaxVirtio)
	for i := range vs {
		vs[i] = MMIODevice{Base: 0xd0000000 + uint64(i)*0x1000, Size: 0x1000, IRQ: 16 + uint32(i%8)}
	}
	blob, rsdp, err := Build(Config{CPUs: MaxCPUs, Virtio: vs}, testBase)
	if err != nil {
		t.Fatal(err)
	}
	if len(blob) > 128<<10 {
		t.Errorf("largest config is %d bytes, more than the 128 KiB room", len(blob))
	}
	tables(t, blob, testBase, rsdp)
}

func TestAMLEncodings(t *testing.T) {
	if got := eisaID("PNP0501"); got != 0x0105d041 {
		t.Errorf("EisaId(PNP0501) = %#x", got)
	}
	if got := eisaID("PNP0A03"); got != 0x030ad041 {
		t.Errorf("EisaId(PNP0A03) = %#x", got)
	}
	for _, c := range []struct {
		n    int
		want []byte
	}{
		{0x3e, []byte{0x3f}},
		{0x3f, []byte{0x41, 0x04}},
		{0xffd, []byte{0x4f, 0xff}},
		{0xffe, []byte{0x81, 0x00, 0x01}},
	} {
		if got := amlPkgLength(c.n); !bytes.Equal(got, c.want) {
			t.Errorf("PkgLength(%#x) = % x, want % x", c.n, got, c.want)
		}
	}
}

// TestIASLDisassembly hands every table to ACPICA's iasl, an independent
// parser, and checks what it decoded.
func TestIASLDisassembly(t *testing.T) {
	testenv.RequireCmd(t, "iasl")
	const cpus = 3
	blob, rsdp, err := Build(testConfig(cpus), testBase)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dsl := map[string]string{}
	tbs := tables(t, blob, testBase, rsdp)
	// The FACS is not in the XSDT and has no checksum; the FADT points at it.
	facsAt := uint64(binary.LittleEndian.Uint32(tbs["FACP"][36:]))
	tbs["FACS"] = blob[facsAt-testBase:][:facsLen]
	for sig, tb := range tbs {
		name := strings.ToLower(sig)
		if err := os.WriteFile(filepath.Join(dir, name+".dat"), tb, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("iasl", "-d", name+".dat")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("iasl -d %s: %v\n%s", sig, err, out)
		}
		if bytes.Contains(bytes.ToLower(out), []byte("error")) && !bytes.Contains(out, []byte("0 Errors")) {
			t.Errorf("iasl -d %s reported errors:\n%s", sig, out)
		}
		text, err := os.ReadFile(filepath.Join(dir, name+".dsl"))
		if err != nil {
			t.Fatalf("iasl wrote no disassembly for %s: %v\n%s", sig, err, out)
		}
		// Drop iasl's explanatory comments so that patterns see the ASL.
		dsl[sig] = regexp.MustCompile(`//[^\n]*|/\*[^*]*\*/`).ReplaceAllString(string(text), "")
	}
	// Round trip: iasl compiles its own disassembly of our DSDT back to AML,
	// and that must disassemble to the same ASL: our encoding means what
	// the disassembly says.
	cmd := exec.Command("iasl", "-p", "rt", "dsdt.dsl")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("iasl cannot recompile the DSDT disassembly: %v\n%s", err, out)
	}
	cmd = exec.Command("iasl", "-d", "rt.aml")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("iasl -d rt.aml: %v\n%s", err, out)
	}
	rt, err := os.ReadFile(filepath.Join(dir, "rt.dsl"))
	if err != nil {
		t.Fatal(err)
	}
	body := func(s string) string {
		s = regexp.MustCompile(`//[^\n]*|/\*[^*]*\*/`).ReplaceAllString(s, "")
		_, after, _ := strings.Cut(s, "{")
		// iasl drops the root prefix of a name used at the root.
		return strings.ReplaceAll(after, `Scope (\_SB)`, `Scope (_SB)`)
	}
	if body(string(rt)) != body(dsl["DSDT"]) {
		t.Errorf("DSDT differs after an iasl round trip:\nours:\n%s\niasl's:\n%s", dsl["DSDT"], rt)
	}
	count := func(sig, re string) int {
		return len(regexp.MustCompile(re).FindAllString(dsl[sig], -1))
	}
	if n := count("APIC", `Subtable Type : 00 \[Processor Local APIC\]`); n != cpus {
		t.Errorf("iasl sees %d local APICs, want %d:\n%s", n, cpus, dsl["APIC"])
	}
	if n := count("APIC", `Subtable Type : 01 \[I/O APIC\]`); n != 1 {
		t.Errorf("iasl sees %d I/O APICs", n)
	}
	if n := count("APIC", `Subtable Type : 02 \[Interrupt Source Override\]`); n != 3 {
		t.Errorf("iasl sees %d overrides, want 3 (timer, SCI, virtio IRQ 5)", n)
	}
	for _, re := range []string{
		`Name \(_S5, Package \(0x04\)`,
		`Device \(VR00\)`, `Device \(VR01\)`,
		`Memory32Fixed \(ReadWrite,\s*0xD0000000,\s*0x00001000`,
		`Interrupt \(ResourceConsumer, Level, ActiveHigh, Exclusive, ,, \)\s*\{\s*0x00000010`,
		`Name \(_HID, EisaId \("PNP0501"\)\s*\)`,
	} {
		if count("DSDT", re) == 0 {
			t.Errorf("DSDT disassembly lacks %s:\n%s", re, dsl["DSDT"])
		}
	}
	if n := count("DSDT", `Name \(_HID, "LNRO0005"\)`); n != 2 {
		t.Errorf("DSDT has %d LNRO0005 devices, want 2", n)
	}
	for _, re := range []string{
		`PM1A Event Block Address : 00000600`,
		`PM1A Control Block Address : 00000604`,
		`SCI Interrupt : 0009`,
		`SMI Command Port : 00000000`,
		`Control Method Power Button \(V1\) : 0`,
		`Reset Register Supported \(V2\) : 1`,
		`Hardware Reduced \(V5\) : 0`,
		`VGA Not Present \(V4\) : 1`,
	} {
		if count("FACP", re) == 0 {
			t.Errorf("FADT disassembly lacks %s:\n%s", re, dsl["FACP"])
		}
	}
	// The global lock starts free (neither pending nor owned): no
	// firmware ever takes it, and PM's GBL_EN lets ACPICA install its
	// handler. No S4BIOS.
	for _, re := range []string{
		`Global Lock : 00000000`,
		`S4BIOS Support Present : 0`,
		`Version : 02`,
	} {
		if count("FACS", re) == 0 {
			t.Errorf("FACS disassembly lacks %s:\n%s", re, dsl["FACS"])
		}
	}
}

// FuzzBuild feeds arbitrary machine shapes to Build: it must either refuse
// them or produce tables that walk cleanly with right checksums.
func FuzzBuild(f *testing.F) {
	f.Add(uint8(1), uint8(1), uint32(0xd0000000), uint32(0x1000), uint8(5), uint8(9))
	f.Add(uint8(254), uint8(32), uint32(0xd0000000), uint32(0x200), uint8(16), uint8(0))
	f.Fuzz(func(t *testing.T, cpus, nvirtio uint8, base, size uint32, irq, sci uint8) {
		vs := make([]MMIODevice, int(nvirtio)%(MaxVirtio+4))
		for i := range vs {
			vs[i] = MMIODevice{Base: uint64(base) + uint64(i)*uint64(size), Size: uint64(size), IRQ: uint32(irq) + uint32(i%3)}
		}
		blob, rsdp, err := Build(Config{CPUs: int(cpus), SCIIRQ: sci, Virtio: vs}, testBase)
		if err != nil {
			return
		}
		tables(t, blob, testBase, rsdp)
	})
}
