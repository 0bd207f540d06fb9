package virtio

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// Wrote of the plain test RAM: nothing tracks it.
func (ram) Wrote([]byte) {}

// tracked is test RAM that records which bytes the device said it wrote
// (Memory.Wrote), so that a test can check that every byte the device
// changed was recorded: a byte it missed is one a live save would not
// send again.
type tracked struct {
	ram
	mu     sync.Mutex
	marked []bool
	bad    []string // Wrote calls outside the RAM
}

func newTracked(size int) *tracked {
	return &tracked{ram: make(ram, size), marked: make([]bool, size)}
}

func (m *tracked) Wrote(b []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(b) == 0 {
		return
	}
	off := uintptr(unsafe.Pointer(unsafe.SliceData(b))) - uintptr(unsafe.Pointer(unsafe.SliceData(m.ram)))
	if off >= uintptr(len(m.ram)) || uintptr(len(b)) > uintptr(len(m.ram))-off {
		m.bad = append(m.bad, fmt.Sprintf("%d bytes at %#x", len(b), off))
		return
	}
	for i := range b {
		m.marked[off+uintptr(i)] = true
	}
}

// snap forgets what was recorded and returns a copy of the RAM.
func (m *tracked) snap() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.marked)
	return bytes.Clone(m.ram)
}

// check fails t for every byte changed since before that Wrote did not
// cover, and for any Wrote outside the RAM; it returns how many bytes
// were recorded, for the caller to check that the device wrote at all.
// driver is the range [from, to) the test's driver writes (an avail
// ring), which is not the device's to record.
func (m *tracked) check(t *testing.T, before []byte, driver [2]int) int {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	missed := 0
	for i := range m.ram {
		if i >= driver[0] && i < driver[1] {
			continue
		}
		if m.ram[i] != before[i] && !m.marked[i] {
			if missed < 5 {
				t.Errorf("byte %#x changed (%#x to %#x) and was not recorded", i, before[i], m.ram[i])
			}
			missed++
		}
	}
	if missed > 0 {
		t.Errorf("%d changed bytes not recorded in all", missed)
	}
	for _, b := range m.bad {
		t.Errorf("Wrote outside guest RAM: %s", b)
	}
	n := 0
	for _, ok := range m.marked {
		if ok {
			n++
		}
	}
	return n
}

func TestBlockWritesRecorded(t *testing.T) {
	r := newRig(t, 16, false)
	r.initDriver(FeatureVersion1 | FeatureBlkFlush)
	st := r.request(0, BlkTIn, 2, 0x20000, 1024, true)
	// A malformed chain (no room for the status) after a good one: the
	// device may write before it finds out.
	r.request(3, BlkTIn, 4, 0x28000, 512, true)
	r.setDesc(4, 0x28000, 512, descFWrite, 0)
	before := r.track.snap()
	r.submit(0)
	if r.mem[st] != BlkSOK {
		t.Fatalf("read status %d", r.mem[st])
	}
	avail := [2]int{availAt, availAt + 0x1000}
	if n := r.track.check(t, before, avail); n < 1024+1+8+2 {
		t.Errorf("%d bytes recorded, want the data, the status and the used ring's", n)
	}
	before = r.track.snap()
	r.submit(3)
	r.track.check(t, before, avail)
}

func TestNetRxWritesRecorded(t *testing.T) {
	r := newNetRig(t, RateLimit{})
	r.start(FeatureVersion1 | NetFMrgRxbuf)
	r.rxPost(0, 4, 1500)
	before := r.track.snap()
	r.hostSend([NetHdrLen]byte{}, frame(4000, 1))
	r.waitUsed(netRxQ, 3)
	settle()
	if n := r.track.check(t, before, [2]int{}); n < 4000+NetHdrLen {
		t.Errorf("%d bytes recorded for a frame of %d", n, 4000+NetHdrLen)
	}
}

func TestVsockWritesRecorded(t *testing.T) {
	r := newVsockRig(t)
	r.postRX(4)
	before := r.track.snap()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: r.uds, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT %d\n", 1024)
	deadline := time.Now().Add(5 * time.Second)
	for {
		var idx uint16
		r.locked(func() { idx = binary.LittleEndian.Uint16(r.mem[vqUsed(vsockRX)+2:]) })
		if idx != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no packet for the guest within 5 s")
		}
		time.Sleep(time.Millisecond)
	}
	var n int
	r.locked(func() { n = r.track.check(t, before, [2]int{}) })
	if n < VsockHdrSize {
		t.Errorf("%d bytes recorded for a REQUEST packet", n)
	}
}
