package bus

import (
	"strings"
	"testing"
)

// rec records the accesses a device sees and reads back its offset.
type rec struct {
	reads, writes []access
}

type access struct {
	off  uint64
	n    int
	data string // written bytes
}

func (r *rec) Read(off uint64, data []byte) {
	r.reads = append(r.reads, access{off: off, n: len(data)})
	for i := range data {
		data[i] = byte(off) + byte(i)
	}
}

func (r *rec) Write(off uint64, data []byte) {
	r.writes = append(r.writes, access{off: off, n: len(data), data: string(data)})
}

func TestAddRefusesOverlaps(t *testing.T) {
	var b Bus
	for _, d := range []struct {
		name       string
		base, size uint64
	}{{"com1", 0x3f8, 8}, {"i8042", 0x60, 1}, {"rtc", 0x70, 2}, {"pm", 0x600, 6}} {
		if err := b.Add(d.name, d.base, d.size, &rec{}); err != nil {
			t.Fatalf("add %s: %v", d.name, err)
		}
	}
	for _, c := range []struct {
		name       string
		base, size uint64
		other      string
	}{
		{"same base", 0x3f8, 1, "com1"},
		{"inside", 0x3fa, 2, "com1"},
		{"covers", 0x3f0, 0x20, "com1"},
		{"runs into", 0x3f0, 9, "com1"},
		{"starts in the last byte", 0x3ff, 4, "com1"},
		{"between two, touching the second", 0x61, 0x10, "rtc"},
		{"touches the first's last byte", 0x71, 1, "rtc"},
		{"spans all", 0, 1 << 16, "i8042"},
	} {
		err := b.Add("new", c.base, c.size, &rec{})
		if err == nil {
			t.Errorf("%s: overlap accepted", c.name)
			continue
		}
		if !strings.Contains(err.Error(), "new at") || !strings.Contains(err.Error(), c.other+" at") {
			t.Errorf("%s: error %q does not name both devices", c.name, err)
		}
	}
	for _, c := range []struct{ base, size uint64 }{{0x100, 0}, {^uint64(0), 2}} {
		if err := b.Add("bad", c.base, c.size, &rec{}); err == nil {
			t.Errorf("window of %#x bytes at %#x accepted", c.size, c.base)
		}
	}
	// Neighbours that touch without overlapping are fine, and so is a
	// window ending at the top of the address space.
	for _, c := range []struct{ base, size uint64 }{{0x3f0, 8}, {0x400, 1}, {0x62, 0xe}, {^uint64(0), 1}} {
		if err := b.Add("ok", c.base, c.size, &rec{}); err != nil {
			t.Errorf("[%#x, +%#x): %v", c.base, c.size, err)
		}
	}
}

func TestDispatch(t *testing.T) {
	var b Bus
	uart, pm := &rec{}, &rec{}
	if err := b.Add("com1", 0x3f8, 8, uart); err != nil {
		t.Fatal(err)
	}
	if err := b.Add("pm", 0x600, 6, pm); err != nil {
		t.Fatal(err)
	}
	d := make([]byte, 1)
	if !b.Read(0x3fd, d) || d[0] != 5 || uart.reads[0] != (access{off: 5, n: 1}) {
		t.Fatalf("read at com1+5: %x, device saw %v", d, uart.reads)
	}
	if !b.Write(0x3f8, []byte("x")) || uart.writes[0] != (access{off: 0, n: 1, data: "x"}) {
		t.Fatalf("write at com1+0: device saw %v", uart.writes)
	}
	if !b.Write(0x600, []byte{1, 2, 3, 4}) || pm.writes[0] != (access{off: 0, n: 4, data: "\x01\x02\x03\x04"}) {
		t.Fatalf("dword write at pm: device saw %v", pm.writes)
	}
	// Unknown addresses: just outside each window, below, between, above.
	for _, a := range []uint64{0, 0x3f7, 0x400, 0x5ff, 0x606, ^uint64(0)} {
		d := []byte{0xaa}
		if b.Read(a, d) || b.Write(a, d) || d[0] != 0xaa {
			t.Errorf("%#x: served, read %#x", a, d[0])
		}
		if _, _, ok := b.Find(a); ok {
			t.Errorf("%#x: Find found a device", a)
		}
	}
	if len(uart.reads)+len(pm.reads) != 1 || len(uart.writes)+len(pm.writes) != 2 {
		t.Errorf("stray accesses: %v %v %v %v", uart.reads, uart.writes, pm.reads, pm.writes)
	}
}

// TestAccessWidths: an access goes whole to the device that holds its
// first byte, even when it runs past the window; the device decides.
func TestAccessWidths(t *testing.T) {
	var b Bus
	dev := &rec{}
	if err := b.Add("dev", 0x1000, 0x10, dev); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 2, 4, 8} {
		dev.reads = nil
		d := make([]byte, n)
		if !b.Read(0x100f, d) {
			t.Fatalf("%d-byte read at the last byte not served", n)
		}
		if dev.reads[0] != (access{off: 0xf, n: n}) {
			t.Errorf("%d-byte read: device saw %v", n, dev.reads)
		}
		for i := range d {
			if d[i] != byte(0xf+i) {
				t.Errorf("%d-byte read: %x", n, d)
				break
			}
		}
	}
	if b.Read(0x0ffe, make([]byte, 4)) {
		t.Error("an access starting below the window reached the device")
	}
}
