package virtio

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// ram is guest memory for unit tests: one []byte at guest-physical 0.
type ram []byte

func (r ram) Slice(gpa, n uint64) ([]byte, bool) {
	if gpa > uint64(len(r)) || n > uint64(len(r))-gpa {
		return nil, false
	}
	return r[gpa : gpa+n : gpa+n], true
}

// Test ring layout in ram.
const (
	ramSize   = 1 << 20
	descAt    = 0x1000
	availAt   = 0x3000
	usedAt    = 0x4000
	bufAt     = 0x10000
	testQueue = 16
)

type rig struct {
	t     testing.TB
	mem   ram
	track *tracked
	dev   *MMIO
	file  string
	irq   bool
	avail uint16
}

func (r *rig) r32(off uint64) uint32 {
	var b [4]byte
	r.dev.Read(off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

func (r *rig) w32(off uint64, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	r.dev.Write(off, b[:])
}

// newRig makes a disk of sectors sectors, each filled with its number, and
// a device over it.
func newRig(t testing.TB, sectors int, ro bool) *rig {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	img := make([]byte, sectors*SectorSize)
	for i := range img {
		img[i] = byte(i / SectorSize)
	}
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	flag := os.O_RDWR
	if ro {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	blk, err := NewBlock(f, ro)
	if err != nil {
		t.Fatal(err)
	}
	return newTransportRig(t, blk, path)
}

// newTransportRig puts dev on a transport over fresh test RAM.
func newTransportRig(t testing.TB, dev Device, file string) *rig {
	t.Helper()
	tr := newTracked(ramSize)
	r := &rig{t: t, mem: tr.ram, track: tr, file: file}
	var err error
	r.dev, err = NewMMIO(tr, dev, func(l bool) {
		if l == r.irq {
			t.Fatalf("irq(%v) without a change", l)
		}
		r.irq = l
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// initDriver performs the driver initialization of §3.1.1 and enables
// queue 0 with size testQueue.
func (r *rig) initDriver(features uint64) {
	r.t.Helper()
	r.w32(RegStatus, 0)
	r.w32(RegStatus, StatusAcknowledge)
	r.w32(RegStatus, StatusAcknowledge|StatusDriver)
	r.w32(RegDriverFeatSel, 0)
	r.w32(RegDriverFeatures, uint32(features))
	r.w32(RegDriverFeatSel, 1)
	r.w32(RegDriverFeatures, uint32(features>>32))
	r.w32(RegStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK)
	if r.r32(RegStatus)&StatusFeaturesOK == 0 {
		r.t.Fatal("FEATURES_OK refused")
	}
	r.w32(RegQueueSel, 0)
	r.w32(RegQueueNum, testQueue)
	r.w32(RegQueueDescLow, descAt)
	r.w32(RegQueueDriverLow, availAt)
	r.w32(RegQueueDeviceLow, usedAt)
	r.w32(RegQueueReady, 1)
	r.w32(RegStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK)
	r.avail = 0
}

func (r *rig) setDesc(i int, addr uint64, length uint32, flags, next uint16) {
	d := r.mem[descAt+16*i:]
	binary.LittleEndian.PutUint64(d, addr)
	binary.LittleEndian.PutUint32(d[8:], length)
	binary.LittleEndian.PutUint16(d[12:], flags)
	binary.LittleEndian.PutUint16(d[14:], next)
}

// submit makes head available and notifies.
func (r *rig) submit(heads ...uint16) {
	for _, h := range heads {
		binary.LittleEndian.PutUint16(r.mem[availAt+4+2*(int(r.avail)%testQueue):], h)
		r.avail++
	}
	binary.LittleEndian.PutUint16(r.mem[availAt+2:], r.avail)
	r.w32(RegQueueNotify, 0)
}

func (r *rig) usedIdx() uint16 { return binary.LittleEndian.Uint16(r.mem[usedAt+2:]) }

func (r *rig) used(i int) (id, length uint32) {
	e := r.mem[usedAt+4+8*(i%testQueue):]
	return binary.LittleEndian.Uint32(e), binary.LittleEndian.Uint32(e[4:])
}

// request builds a three-descriptor request (header, data, status) at
// descriptors base..base+2 and returns the status byte's address.
func (r *rig) request(base int, typ uint32, sector uint64, data uint64, n uint32, dataWrite bool) uint64 {
	hdr := uint64(bufAt + 0x100*base)
	binary.LittleEndian.PutUint32(r.mem[hdr:], typ)
	binary.LittleEndian.PutUint64(r.mem[hdr+8:], sector)
	st := hdr + 0x20
	r.mem[st] = 0xff
	r.setDesc(base, hdr, 16, descFNext, uint16(base+1))
	flags := uint16(descFNext)
	if dataWrite {
		flags |= descFWrite
	}
	r.setDesc(base+1, data, n, flags, uint16(base+2))
	r.setDesc(base+2, st, 1, descFWrite, 0)
	return st
}

func TestIdentification(t *testing.T) {
	r := newRig(t, 8, false)
	if r.r32(RegMagic) != MagicValue || r.r32(RegVersion) != 2 || r.r32(RegDeviceID) != DeviceIDBlock {
		t.Fatal("bad magic/version/device id")
	}
	r.w32(RegDeviceFeatSel, 1)
	if r.r32(RegDeviceFeatures)&1 == 0 {
		t.Error("VERSION_1 not offered")
	}
	r.w32(RegDeviceFeatSel, 0)
	if f := r.r32(RegDeviceFeatures); f&FeatureBlkRO != 0 || f&FeatureBlkFlush == 0 {
		t.Errorf("features %#x", f)
	}
	if r.r32(RegQueueNumMax) != QueueNumMax {
		t.Error("QueueNumMax")
	}
	r.w32(RegQueueSel, 1)
	if r.r32(RegQueueNumMax) != 0 {
		t.Error("queue 1 exists")
	}
	var capb [8]byte
	for i := range capb {
		r.dev.Read(RegConfig+uint64(i), capb[i:i+1]) // byte-wise, as allowed
	}
	if binary.LittleEndian.Uint64(capb[:]) != 8 {
		t.Errorf("capacity %d, want 8", binary.LittleEndian.Uint64(capb[:]))
	}
	if r.r32(RegConfig+0x14) != SectorSize {
		t.Error("blk_size")
	}
}

func TestFeatureNegotiation(t *testing.T) {
	r := newRig(t, 8, true)
	if r.r32(RegDeviceFeatures)&FeatureBlkRO == 0 {
		t.Error("RO not offered on a read-only disk")
	}
	// A legacy driver (no VERSION_1) is refused.
	r.w32(RegStatus, StatusAcknowledge|StatusDriver)
	r.w32(RegDriverFeatures, FeatureBlkRO)
	r.w32(RegStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK)
	if r.r32(RegStatus)&StatusFeaturesOK != 0 {
		t.Error("FEATURES_OK accepted without VERSION_1")
	}
	// A feature we do not offer is refused.
	r.w32(RegStatus, 0)
	r.w32(RegStatus, StatusAcknowledge|StatusDriver)
	r.w32(RegDriverFeatSel, 0)
	r.w32(RegDriverFeatures, 1<<28) // INDIRECT_DESC
	r.w32(RegDriverFeatSel, 1)
	r.w32(RegDriverFeatures, 1)
	r.w32(RegStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK)
	if r.r32(RegStatus)&StatusFeaturesOK != 0 {
		t.Error("FEATURES_OK accepted with an unoffered feature")
	}
}

func TestReadWriteFlushGetID(t *testing.T) {
	r := newRig(t, 16, false)
	r.initDriver(FeatureVersion1 | FeatureBlkFlush)
	// Read sectors 2 and 3.
	st := r.request(0, BlkTIn, 2, 0x20000, 1024, true)
	r.submit(0)
	if r.mem[st] != BlkSOK {
		t.Fatalf("read status %d", r.mem[st])
	}
	if r.mem[0x20000] != 2 || r.mem[0x20000+511] != 2 || r.mem[0x20000+512] != 3 {
		t.Error("read returned the wrong sectors")
	}
	if id, n := r.used(0); id != 0 || n != 1025 || r.usedIdx() != 1 {
		t.Errorf("used elem id %d len %d idx %d", id, n, r.usedIdx())
	}
	if !r.irq || r.r32(RegInterruptStatus) != InterruptUsedRing {
		t.Fatal("no used-ring interrupt")
	}
	r.w32(RegInterruptACK, InterruptUsedRing)
	if r.irq {
		t.Fatal("ACK did not lower the line")
	}
	// Write sector 5, flush, and check the host file.
	copy(r.mem[0x30000:], bytes.Repeat([]byte{0xab}, 512))
	st = r.request(3, BlkTOut, 5, 0x30000, 512, false)
	st2 := r.request(6, BlkTFlush, 0, 0x30000, 0, false)
	r.submit(3, 6)
	if r.mem[st] != BlkSOK || r.mem[st2] != BlkSOK {
		t.Fatalf("write/flush status %d/%d", r.mem[st], r.mem[st2])
	}
	img, _ := os.ReadFile(r.file)
	if !bytes.Equal(img[5*512:6*512], bytes.Repeat([]byte{0xab}, 512)) || img[4*512] != 4 || img[6*512] != 6 {
		t.Error("host file not updated exactly at sector 5")
	}
	if _, n := r.used(1); n != 1 {
		t.Errorf("write used len %d, want 1 (status only)", n)
	}
	// GET_ID.
	st = r.request(9, BlkTGetID, 0, 0x40000, 20, true)
	r.submit(9)
	if r.mem[st] != BlkSOK || !bytes.HasPrefix(r.mem[0x40000:], []byte("xeno:disk.img")) {
		t.Errorf("GET_ID status %d id %q", r.mem[st], r.mem[0x40000:0x40014])
	}
	// Unknown type.
	st = r.request(12, 0x1234, 0, 0x40000, 512, true)
	r.submit(12)
	if r.mem[st] != BlkSUnsupp {
		t.Errorf("unknown type status %d", r.mem[st])
	}
	if r.usedIdx() != 5 {
		t.Errorf("used idx %d, want 5", r.usedIdx())
	}
}

func TestIOErrors(t *testing.T) {
	r := newRig(t, 4, false)
	r.initDriver(FeatureVersion1)
	for _, c := range []struct {
		name   string
		sector uint64
		n      uint32
	}{
		{"past the end", 4, 512},
		{"straddling the end", 3, 1024},
		{"huge sector", 1 << 62, 512},
		{"sector*512 overflow", 1<<55 + 1, 512},
		{"partial sector", 0, 100},
	} {
		st := r.request(0, BlkTIn, c.sector, 0x20000, c.n, true)
		r.submit(0)
		if r.mem[st] != BlkSIOErr {
			t.Errorf("%s: status %d, want IOERR", c.name, r.mem[st])
		}
	}
	if r.dev.status&StatusDeviceNeedsReset != 0 {
		t.Error("an I/O error put the device in NEEDS_RESET")
	}
}

func TestReadOnly(t *testing.T) {
	r := newRig(t, 4, true)
	r.initDriver(FeatureVersion1 | FeatureBlkRO)
	copy(r.mem[0x30000:], bytes.Repeat([]byte{0xcd}, 512))
	st := r.request(0, BlkTOut, 1, 0x30000, 512, false)
	r.submit(0)
	if r.mem[st] != BlkSIOErr {
		t.Errorf("write to RO disk: status %d, want IOERR", r.mem[st])
	}
	img, _ := os.ReadFile(r.file)
	if img[512] != 1 {
		t.Error("RO disk was written")
	}
	st = r.request(3, BlkTIn, 1, 0x20000, 512, true)
	r.submit(3)
	if r.mem[st] != BlkSOK || r.mem[0x20000] != 1 {
		t.Error("read from RO disk failed")
	}
}

// TestHostileRings checks that each kind of malformed ring stops the
// device with NEEDS_RESET and a config interrupt, and that a reset brings
// it back.
func TestHostileRings(t *testing.T) {
	cases := []struct {
		name  string
		setup func(r *rig) []uint16
	}{
		{"head index out of range", func(r *rig) []uint16 { return []uint16{testQueue} }},
		{"next index out of range", func(r *rig) []uint16 {
			r.request(0, BlkTIn, 0, 0x20000, 512, true)
			r.setDesc(1, 0x20000, 512, descFNext|descFWrite, 999)
			return []uint16{0}
		}},
		{"descriptor loop", func(r *rig) []uint16 {
			r.setDesc(0, bufAt, 16, descFNext, 1)
			r.setDesc(1, bufAt, 16, descFNext, 0)
			return []uint16{0}
		}},
		{"self loop", func(r *rig) []uint16 {
			r.setDesc(4, bufAt, 16, descFNext, 4)
			return []uint16{4}
		}},
		{"buffer outside RAM", func(r *rig) []uint16 {
			r.request(0, BlkTIn, 0, ramSize-256, 512, true)
			return []uint16{0}
		}},
		{"huge length", func(r *rig) []uint16 {
			r.request(0, BlkTIn, 0, 0x20000, 0xffffffff, true)
			return []uint16{0}
		}},
		{"address wraps", func(r *rig) []uint16 {
			r.request(0, BlkTIn, 0, ^uint64(0)-10, 512, true)
			return []uint16{0}
		}},
		{"indirect descriptor", func(r *rig) []uint16 {
			r.request(0, BlkTIn, 0, 0x20000, 512, true)
			r.setDesc(1, 0x20000, 512, descFNext|descFWrite|descFIndirect, 2)
			return []uint16{0}
		}},
		{"readable after writable", func(r *rig) []uint16 {
			r.request(0, BlkTOut, 0, 0x20000, 512, false)
			r.setDesc(0, bufAt, 16, descFNext|descFWrite, 1)
			return []uint16{0}
		}},
		{"short header", func(r *rig) []uint16 {
			r.request(0, BlkTIn, 0, 0x20000, 512, true)
			r.setDesc(0, bufAt, 8, descFNext, 1)
			return []uint16{0}
		}},
		{"no status byte", func(r *rig) []uint16 {
			r.setDesc(0, bufAt, 16, 0, 0)
			return []uint16{0}
		}},
		{"avail idx jump", func(r *rig) []uint16 {
			r.request(0, BlkTIn, 0, 0x20000, 512, true)
			r.avail += testQueue
			return []uint16{0}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, 4, false)
			r.initDriver(FeatureVersion1)
			r.submit(c.setup(r)...)
			if r.r32(RegStatus)&StatusDeviceNeedsReset == 0 {
				t.Fatal("device did not ask for a reset")
			}
			if !r.irq || r.r32(RegInterruptStatus)&InterruptConfig == 0 {
				t.Fatal("no configuration-change interrupt")
			}
			if r.usedIdx() != 0 {
				t.Errorf("used idx %d after a bad chain", r.usedIdx())
			}
			// Further notifies are ignored; a reset recovers.
			r.w32(RegQueueNotify, 0)
			r.initDriver(FeatureVersion1)
			if r.irq || r.r32(RegStatus)&StatusDeviceNeedsReset != 0 {
				t.Fatal("reset did not clear NEEDS_RESET and the interrupt")
			}
			clear(r.mem[descAt:bufAt])
			st := r.request(0, BlkTIn, 1, 0x20000, 512, true)
			r.submit(0)
			if r.mem[st] != BlkSOK || r.mem[0x20000] != 1 {
				t.Fatal("device does not work after reset")
			}
		})
	}
}

func TestBadQueueSetup(t *testing.T) {
	for _, c := range []struct {
		name                string
		num                 uint32
		desc, avail, usedAt uint32
	}{
		{"size not a power of 2", 12, descAt, availAt, usedAt},
		{"size zero", 0, descAt, availAt, usedAt},
		{"size too big", 512, descAt, availAt, usedAt},
		{"desc misaligned", 16, descAt + 8, availAt, usedAt},
		{"used outside RAM", 16, descAt, availAt, ramSize - 16},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, 4, false)
			r.w32(RegStatus, StatusAcknowledge|StatusDriver)
			r.w32(RegQueueNum, c.num)
			r.w32(RegQueueDescLow, c.desc)
			r.w32(RegQueueDriverLow, c.avail)
			r.w32(RegQueueDeviceLow, c.usedAt)
			r.w32(RegQueueReady, 1)
			if r.r32(RegQueueReady) != 0 || r.r32(RegStatus)&StatusDeviceNeedsReset == 0 {
				t.Error("bad queue accepted")
			}
		})
	}
}

func TestNoInterruptFlag(t *testing.T) {
	r := newRig(t, 4, false)
	r.initDriver(FeatureVersion1)
	binary.LittleEndian.PutUint16(r.mem[availAt:], availFNoInterrupt)
	r.request(0, BlkTIn, 0, 0x20000, 512, true)
	r.submit(0)
	if r.usedIdx() != 1 {
		t.Fatal("request not completed")
	}
	if r.irq {
		t.Error("interrupt sent although the driver suppressed it")
	}
}

func TestRegisterWidths(t *testing.T) {
	r := newRig(t, 4, false)
	var b [2]byte
	r.dev.Read(RegMagic, b[:])
	if b != [2]byte{} {
		t.Error("16-bit register read returned data")
	}
	r.dev.Write(RegStatus, []byte{1})
	r.dev.Write(RegConfig, []byte{1, 2, 3, 4})
	r.dev.Read(WindowSize-1, b[:1])
	r.dev.Read(RegConfig+0x1000, b[:]) // beyond the window: zeros, no panic
	if r.r32(RegStatus) != 0 {
		t.Error("byte write changed Status")
	}
}
