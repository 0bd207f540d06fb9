package vm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/hv/kvm"
	"github.com/xeno-hv/xeno/hv/virtio"
)

// fakeExit is kvm_run after an exit, as handleExit reads it.
type fakeExit struct {
	reason uint32
	io     kvm.IO
	ioBad  bool
	mmio   kvm.MMIO
	sub    uint32
	data   []uint64
	event  uint32
	fail   uint64
}

func (f *fakeExit) ExitReason() uint32                { return f.reason }
func (f *fakeExit) IO() (kvm.IO, bool)                { return f.io, !f.ioBad }
func (f *fakeExit) MMIO() kvm.MMIO                    { return f.mmio }
func (f *fakeExit) InternalError() (uint32, []uint64) { return f.sub, f.data }
func (f *fakeExit) SystemEvent() uint32               { return f.event }
func (f *fakeExit) FailEntry() uint64                 { return f.fail }

// mmioRec is an MMIO device that records writes and reads back a pattern.
type mmioRec struct {
	offs   []uint64
	writes [][]byte
}

func (m *mmioRec) Read(off uint64, d []byte) {
	m.offs = append(m.offs, off)
	for i := range d {
		d[i] = byte(off) + byte(i)
	}
}

func (m *mmioRec) Write(off uint64, d []byte) {
	m.offs = append(m.offs, off)
	m.writes = append(m.writes, append([]byte(nil), d...))
}

func TestHandleExitPIO(t *testing.T) {
	var con, log bytes.Buffer
	v := testVM(t, abi.Interface{Major: 1, Minor: 2})
	v.cfg.Console, v.unk.log = &con, &log
	// OUT to the console port, twice through a rep outsb (Count 2).
	r := v.handleExit(&fakeExit{reason: kvm.ExitIO, io: kvm.IO{Out: true, Size: 1, Port: abi.PortConsole, Count: 2, Data: []byte("ok")}})
	if r.action != exitContinue || con.String() != "ok" {
		t.Fatalf("console OUT: %+v, console %q", r, con.String())
	}
	// IN from the UART's LSR: THRE|TEMT in the low byte, zeros above.
	d := []byte{0xaa, 0xaa}
	v.portIn(com1Base+5, d)
	if d[0] != 0x60 || d[1] != 0 {
		t.Errorf("16-bit IN from LSR = % x", d)
	}
	// An unknown port reads all ones and is logged once per port,
	// whatever the direction.
	for range 2 {
		d = []byte{0, 0, 0, 0}
		v.portIn(0x510, d)
		if !bytes.Equal(d, []byte{0xff, 0xff, 0xff, 0xff}) {
			t.Errorf("unknown port read % x", d)
		}
	}
	v.portOut(0x510, []byte{1, 2})
	v.portOut(0x512, []byte{1, 2})
	want := "hv: ignoring 4-byte port read at 0x510 (no device; logged once)\n" +
		"hv: ignoring 2-byte port write at 0x512 (no device; logged once)\n"
	if log.String() != want {
		t.Errorf("log:\n%s\nwant:\n%s", log.String(), want)
	}
	// Silent ports read all ones without a log line.
	log.Reset()
	v.portIn(0xcfc, d)
	if d[0] != 0xff || log.Len() != 0 {
		t.Errorf("PCI config read %#x, log %q", d[0], log.String())
	}
	// The shutdown port ends the domain through its callback; the loop
	// sees it when it parks.
	r = v.handleExit(&fakeExit{reason: kvm.ExitIO, io: kvm.IO{Out: true, Size: 1, Port: abi.PortShutdown, Count: 1, Data: []byte{abi.ShutdownReboot}}})
	if r.action != exitContinue || v.exit == nil || v.exit.Reason != control.ReasonReboot {
		t.Errorf("shutdown port: %+v, exit %+v", r, v.exit)
	}
	if r := v.handleExit(&fakeExit{reason: kvm.ExitIO, ioBad: true}); r.action != exitCrash {
		t.Errorf("IO window outside kvm_run: %+v", r)
	}
}

func TestHandleExitMMIO(t *testing.T) {
	var log bytes.Buffer
	v := testVM(t, abi.Interface{Major: 1, Minor: 2})
	v.unk.log = &log
	dev := &mmioRec{}
	if err := v.dev.mmio.Add("rec", virtioAddr(0), virtioSize, dev); err != nil {
		t.Fatal(err)
	}
	mmio := func(addr uint64, d []byte, write bool) exitResult {
		return v.handleExit(&fakeExit{reason: kvm.ExitMMIO, mmio: kvm.MMIO{Addr: addr, Data: d, Write: write}})
	}
	d := make([]byte, 4)
	if r := mmio(virtioAddr(0)+0x70, d, false); r.action != exitContinue || !bytes.Equal(d, []byte{0x70, 0x71, 0x72, 0x73}) {
		t.Errorf("read: %+v, % x", r, d)
	}
	mmio(virtioAddr(0)+0x100, []byte{1, 2, 3, 4, 5, 6, 7, 8}, true)
	if len(dev.writes) != 1 || dev.offs[1] != 0x100 || len(dev.writes[0]) != 8 {
		t.Errorf("write: offsets %x, writes %x", dev.offs, dev.writes)
	}
	// Beyond the device, in the MMIO hole: all ones, logged once.
	d = make([]byte, 2)
	mmio(virtioAddr(1), d, false)
	mmio(virtioAddr(1), d, false)
	mmio(0xfee00000-8, []byte{0}, true)
	if d[0] != 0xff || d[1] != 0xff {
		t.Errorf("unknown MMIO read % x", d)
	}
	want := "hv: ignoring 2-byte mmio read at 0xd0001000 (no device; logged once)\n" +
		"hv: ignoring 1-byte mmio write at 0xfedffff8 (no device; logged once)\n"
	if log.String() != want {
		t.Errorf("log:\n%s\nwant:\n%s", log.String(), want)
	}
	if len(dev.offs) != 2 {
		t.Errorf("the device saw stray accesses at %x", dev.offs)
	}
}

func TestHandleExitEnds(t *testing.T) {
	v := testVM(t, abi.Interface{Major: 1, Minor: 2})
	for _, c := range []struct {
		name   string
		exit   fakeExit
		action exitAction
		reason string
		detail string
	}{
		{"interrupted", fakeExit{reason: kvm.ExitIntr}, exitContinue, "", ""},
		{"HLT", fakeExit{reason: kvm.ExitHLT}, exitCrash, "", "halted"},
		{"triple fault", fakeExit{reason: kvm.ExitShutdown}, exitCrash, "", "triple fault"},
		{"entry failure", fakeExit{reason: kvm.ExitFailEntry, fail: 0x21}, exitCrash, "", "hardware reason 0x21"},
		{"emulation", fakeExit{reason: kvm.ExitInternalError, sub: kvm.InternalErrorEmulation, data: []uint64{0xcc}},
			exitEmulation, "", "rejected by KVM's emulator (KVM_INTERNAL_ERROR_EMULATION), data [cc]"},
		{"other internal error", fakeExit{reason: kvm.ExitInternalError, sub: 3}, exitCrash, "", "suberror 3"},
		{"system shutdown", fakeExit{reason: kvm.ExitSystemEvent, event: 1}, exitStop, control.ReasonPoweroff, "shutdown"},
		{"system reset", fakeExit{reason: kvm.ExitSystemEvent, event: 2}, exitStop, control.ReasonReboot, "reset"},
		{"system crash", fakeExit{reason: kvm.ExitSystemEvent, event: 5}, exitCrash, "", "system event 5"},
		{"unknown", fakeExit{reason: 99}, exitCrash, "", "exit reason 99"},
	} {
		r := v.handleExit(&c.exit)
		if r.action != c.action || r.reason != c.reason || !strings.Contains(r.detail, c.detail) {
			t.Errorf("%s: %+v, want action %d reason %q detail ~%q", c.name, r, c.action, c.reason, c.detail)
		}
	}
	if v.exit != nil {
		t.Errorf("handleExit ended the domain itself: %+v", v.exit)
	}
}

// TestVirtioOnBus: a virtio device added to the domain answers on its
// window through handleExit, the next window is free, and an overlap with
// a window already taken is refused.
func TestVirtioOnBus(t *testing.T) {
	v := testVM(t, abi.Interface{Major: 1, Minor: 2})
	var err error
	if v.mem, err = NewMemory(16 << 20); err != nil {
		t.Fatal(err)
	}
	defer v.mem.Close()
	f, err := os.Create(filepath.Join(t.TempDir(), "disk"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	blk, err := virtio.NewBlock(f, false)
	if err != nil {
		t.Fatal(err)
	}
	noIRQ := func(uint32) func(bool) { return func(bool) {} }
	if err := v.addVirtio("test disk", blk, noIRQ); err != nil {
		t.Fatal(err)
	}
	d := make([]byte, 4)
	v.handleExit(&fakeExit{reason: kvm.ExitMMIO, mmio: kvm.MMIO{Addr: virtioAddr(0) + virtio.RegDeviceID, Data: d}})
	if binary.LittleEndian.Uint32(d) != virtio.DeviceIDBlock {
		t.Errorf("device ID register read % x", d)
	}
	if _, _, ok := v.dev.mmio.Find(virtioAddr(1)); ok {
		t.Error("a device behind the second window")
	}
	err = v.dev.mmio.Add("intruder", virtioAddr(0)+0x800, 0x1000, &mmioRec{})
	if err == nil || !strings.Contains(err.Error(), "virtio-mmio 0 (test disk)") {
		t.Errorf("overlap: %v", err)
	}
}

// A guest that sprays a million distinct unknown addresses gets the first
// unknownTable logged, one "table full" line, a summary per period and a
// last one when the domain ends: a bounded log and table. Each address
// was a map entry and a log line (8.4 MB/s of hv.log, 5 MB/s of RSS).
func TestUnknownAccessesBounded(t *testing.T) {
	var log bytes.Buffer
	v := testVM(t, abi.Interface{Major: 1, Minor: 2})
	clock := time.Unix(1000, 0)
	v.unk.log, v.unk.now = &log, func() time.Time { return clock }
	const spray = 1_000_000
	d := make([]byte, 4)
	for i := range uint64(spray) {
		if i%100_000 == 0 {
			clock = clock.Add(3 * time.Second)
		}
		// Ports up to 0xffff, each once; then addresses only.
		port := uint16(i)
		if _, _, taken := v.dev.pio.Find(uint64(port)); i%2 == 0 || i > 0xffff || taken {
			v.handleExit(&fakeExit{reason: kvm.ExitMMIO, mmio: kvm.MMIO{Addr: 0x10000000 + 8*i, Data: d}})
		} else {
			v.portIn(port, d[:1])
		}
	}
	v.unk.flush()
	lines := strings.Split(strings.TrimSuffix(log.String(), "\n"), "\n")
	if len(v.unk.seen) != unknownTable {
		t.Errorf("table holds %d addresses, want the cap %d", len(v.unk.seen), unknownTable)
	}
	// 30 s of clock: the full line, a summary per 10 s, the final one.
	if len(lines) > unknownTable+1+3+1 {
		t.Fatalf("%d log lines for %d accesses; want at most %d", len(lines), spray, unknownTable+5)
	}
	var counted uint64
	for _, l := range lines[unknownTable+1:] {
		var n uint64
		var s float64
		if _, err := fmt.Sscanf(l, "hv: %d more unknown accesses suppressed in the last %g s", &n, &s); err != nil {
			t.Fatalf("summary line %q: %v", l, err)
		}
		counted += n
	}
	if want := uint64(spray - unknownTable); counted != want {
		t.Errorf("summaries count %d suppressed accesses, want %d:\n%s", counted, want, strings.Join(lines[unknownTable:], "\n"))
	}
	if !strings.Contains(lines[unknownTable], "further ones are counted") {
		t.Errorf("no table-full line: %q", lines[unknownTable])
	}
	// An address already in the table stays quiet and uncounted.
	log.Reset()
	v.handleExit(&fakeExit{reason: kvm.ExitMMIO, mmio: kvm.MMIO{Addr: 0x10000000, Data: d}})
	v.unk.flush()
	if log.Len() != 0 {
		t.Errorf("a logged address was counted again: %q", log.String())
	}
}
