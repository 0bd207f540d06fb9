package virtio

import (
	"testing"
	"time"
)

// fakeClock is a time that moves only when told.
type fakeClock struct{ now time.Time }

func (c *fakeClock) advance(d time.Duration) time.Time { c.now = c.now.Add(d); return c.now }

func TestBucketBurstThenRate(t *testing.T) {
	c := &fakeClock{now: time.Unix(1000, 0)}
	l := newLimiter(RateLimit{Bytes: 1000, Burst: 3000}, c.now)
	// The full burst passes at once, then nothing more.
	for i := 0; i < 3; i++ {
		if w := l.reserve(1000, c.now); w != 0 {
			t.Fatalf("packet %d of the burst waits %v", i, w)
		}
	}
	w := l.reserve(1000, c.now)
	if w < 990*time.Millisecond || w > 1010*time.Millisecond {
		t.Fatalf("after the burst, wait %v, want about 1 s", w)
	}
	// A refused reserve takes nothing: half-way, still half a second.
	if w := l.reserve(1000, c.advance(500*time.Millisecond)); w < 490*time.Millisecond || w > 510*time.Millisecond {
		t.Fatalf("half-way, wait %v", w)
	}
	if w := l.reserve(1000, c.advance(500*time.Millisecond+time.Millisecond)); w != 0 {
		t.Fatalf("after 1 s, wait %v", w)
	}
	// Over 10 s of steady sending, 1000 bytes/s get through.
	sent := 0
	end := c.now.Add(10 * time.Second)
	for c.now.Before(end) {
		if w := l.reserve(100, c.now); w == 0 {
			sent += 100
		} else {
			c.advance(w)
		}
	}
	if sent < 9900 || sent > 10100 {
		t.Fatalf("sent %d bytes in 10 s at 1000 B/s", sent)
	}
}

func TestBucketNeverRefillsPastSize(t *testing.T) {
	c := &fakeClock{now: time.Unix(0, 0)}
	l := newLimiter(RateLimit{Bytes: 1000, Burst: 500}, c.now)
	c.advance(time.Hour)
	if w := l.reserve(500, c.now); w != 0 {
		t.Fatal("a full bucket refused its size")
	}
	if w := l.reserve(1, c.now); w == 0 {
		t.Fatal("an hour idle gave more than the burst")
	}
}

// A frame larger than the burst must still pass (once the bucket is
// full) or a small burst would stall the queue for good; the debt it
// leaves keeps the average rate.
func TestBucketOversizedFrame(t *testing.T) {
	c := &fakeClock{now: time.Unix(0, 0)}
	l := newLimiter(RateLimit{Bytes: 1000, Burst: 100}, c.now)
	if w := l.reserve(65550, c.now); w != 0 {
		t.Fatalf("a 64 KiB frame with a full 100-byte bucket waits %v", w)
	}
	w := l.reserve(10, c.now)
	if w < 65*time.Second || w > 66*time.Second {
		t.Fatalf("after a 64 KiB frame at 1000 B/s, wait %v, want about 65.5 s", w)
	}
}

func TestBucketPackets(t *testing.T) {
	c := &fakeClock{now: time.Unix(0, 0)}
	// 100 packets/s: the default burst is a tenth of a second, 10 packets.
	l := newLimiter(RateLimit{Ops: 100}, c.now)
	n := 0
	for l.reserve(1<<16, c.now) == 0 {
		n++
	}
	if n != 10 {
		t.Fatalf("burst of %d packets, want 10", n)
	}
	if w := l.reserve(1, c.now); w < 9*time.Millisecond || w > 11*time.Millisecond {
		t.Fatalf("next packet waits %v, want 10 ms", w)
	}
	// Bytes unlimited, packets limited: byte sizes do not matter.
	if l.bytes.wait(1e12, c.now) != 0 {
		t.Fatal("an unlimited byte bucket waits")
	}
}

func TestLimiterOff(t *testing.T) {
	l := newLimiter(RateLimit{}, time.Unix(0, 0))
	for i := 0; i < 1000; i++ {
		if l.reserve(1<<20, time.Unix(0, 0)) != 0 {
			t.Fatal("an unconfigured limiter waits")
		}
	}
}
