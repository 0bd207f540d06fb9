package virtio

import (
	"fmt"
	"time"
)

// RateLimit configures a device's rate limiter: bytes per second with a
// burst, and packets per second. A zero rate is unlimited.
type RateLimit struct {
	Bytes uint64 // bytes per second
	Burst uint64 // bytes the bucket holds; 0: a tenth of a second's worth
	Ops   uint64 // packets per second
}

// Enabled reports whether anything is limited.
func (r RateLimit) Enabled() bool { return r.Bytes > 0 || r.Ops > 0 }

func (r RateLimit) String() string {
	return fmt.Sprintf("rate=%d,burst=%d,pps=%d", r.Bytes, r.Burst, r.Ops)
}

// bucket is a token bucket: tokens accrue at rate per second up to size.
// A take larger than what the bucket holds is allowed once the bucket is
// full and leaves it in debt, so that a frame bigger than the burst still
// passes, at the configured average rate.
type bucket struct {
	rate   float64 // tokens per second; 0: unlimited
	size   float64
	tokens float64
	last   time.Time
}

func newBucket(rate, size uint64, now time.Time) bucket {
	if size == 0 {
		size = max(rate/10, 1)
	}
	return bucket{rate: float64(rate), size: float64(size), tokens: float64(size), last: now}
}

func (b *bucket) refill(now time.Time) {
	if dt := now.Sub(b.last); dt > 0 {
		b.tokens = min(b.size, b.tokens+dt.Seconds()*b.rate)
	}
	b.last = now
}

// wait is how long until n tokens can be taken, 0 if now.
func (b *bucket) wait(n float64, now time.Time) time.Duration {
	if b.rate == 0 {
		return 0
	}
	b.refill(now)
	need := min(n, b.size) - b.tokens
	if need <= 0 {
		return 0
	}
	// Round up, so that the wake-up finds the tokens there.
	return time.Duration(need/b.rate*float64(time.Second)) + time.Microsecond
}

func (b *bucket) take(n float64) {
	if b.rate > 0 {
		b.tokens -= n
	}
}

// limiter is one direction's byte and packet buckets. It is used by one
// goroutine at a time.
type limiter struct {
	bytes, ops bucket
	on         bool
}

func newLimiter(r RateLimit, now time.Time) *limiter {
	return &limiter{
		bytes: newBucket(r.Bytes, r.Burst, now),
		ops:   newBucket(r.Ops, 0, now),
		on:    r.Enabled(),
	}
}

// reserve takes one packet of n bytes from both buckets if both have
// them, and otherwise takes nothing and returns how long to wait before
// asking again.
func (l *limiter) reserve(n int, now time.Time) time.Duration {
	if !l.on {
		return 0
	}
	w := max(l.bytes.wait(float64(n), now), l.ops.wait(1, now))
	if w > 0 {
		return w
	}
	l.bytes.take(float64(n))
	l.ops.take(1)
	return 0
}
