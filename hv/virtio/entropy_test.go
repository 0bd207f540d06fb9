package virtio

import (
	"io"
	"testing"
)

// entropy is virtio-rng (virtio 1.2 §5.4): device ID 4, no feature bits,
// no config space, one request queue whose writable buffers it fills from
// src. It lives in a test to show that a device type is one file: the
// transport and the queue do the rest, bounds checks included.
type entropy struct{ src io.Reader }

const deviceIDEntropy = 4

func (entropy) DeviceID() uint32 { return deviceIDEntropy }
func (entropy) Features() uint64 { return 0 }
func (entropy) Config() []byte   { return nil }

func (e entropy) Serve(c Chain) (uint32, error) {
	n := 0
	for _, b := range c.Writable {
		m, err := io.ReadFull(e.src, b)
		n += m
		if err != nil {
			break
		}
	}
	return uint32(n), nil
}

// counter is a predictable entropy source: 1, 2, 3, ...
type counter struct{ next byte }

func (c *counter) Read(p []byte) (int, error) {
	for i := range p {
		c.next++
		p[i] = c.next
	}
	return len(p), nil
}

func TestEntropyThroughTransport(t *testing.T) {
	r := newTransportRig(t, entropy{&counter{}}, "")
	if r.r32(RegDeviceID) != deviceIDEntropy || r.r32(RegMagic) != MagicValue {
		t.Fatalf("device id %d", r.r32(RegDeviceID))
	}
	if r.r32(RegDeviceFeatures) != 0 || r.r32(RegConfig) != 0 {
		t.Error("features or config space offered")
	}
	r.initDriver(FeatureVersion1)
	// One chain of two writable buffers, 16 and 8 bytes, by hand.
	r.setDesc(0, bufAt, 16, descFNext|descFWrite, 1)
	r.setDesc(1, bufAt+0x100, 8, descFWrite, 0)
	r.submit(0)
	if id, n := r.used(0); r.usedIdx() != 1 || id != 0 || n != 24 {
		t.Fatalf("used idx %d, elem id %d len %d", r.usedIdx(), id, n)
	}
	for i := 0; i < 24; i++ {
		at := bufAt + i
		if i >= 16 {
			at = bufAt + 0x100 + i - 16
		}
		if r.mem[at] != byte(i+1) {
			t.Fatalf("byte %d = %d, want %d", i, r.mem[at], i+1)
		}
	}
	if !r.irq || r.r32(RegInterruptStatus) != InterruptUsedRing {
		t.Fatal("no used-ring interrupt")
	}
	r.w32(RegInterruptACK, InterruptUsedRing)

	// A hostile chain is the transport's to catch: a loop asks for a reset.
	r.setDesc(2, bufAt, 16, descFNext|descFWrite, 2)
	r.submit(2)
	if r.r32(RegStatus)&StatusDeviceNeedsReset == 0 || r.usedIdx() != 1 {
		t.Fatal("a descriptor loop was served")
	}
}
