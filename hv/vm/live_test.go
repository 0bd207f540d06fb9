package vm

import (
	"math/bits"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
)

// TestPageBitsSet checks set against a plain bitmap, for ranges within
// a word, across words and up to the bitmap's end.
func TestPageBitsSet(t *testing.T) {
	const pages = 320 // five words
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		b := *newPageBits(pages)
		want := make([]bool, pages)
		for k := 0; k < 1+rng.IntN(3); k++ {
			first := uint64(rng.IntN(pages))
			last := first + uint64(rng.IntN(200))
			b.set(first, last)
			for p := first; p <= last && p < pages; p++ {
				want[p] = true
			}
		}
		for p := 0; p < len(b)*64; p++ {
			got := b[p/64].Load()>>(p%64)&1 == 1
			if w := want[p]; got != w {
				t.Fatalf("case %d: page %d is %v, want %v", i, p, got, w)
			}
		}
	}
}

// TestPageBitsTakeMerges: take ORs into what KVM's log put in the
// round's bitmap, keeping both, and clears the hv's bits so that the
// next round gets only what was written since.
func TestPageBitsTakeMerges(t *testing.T) {
	b := *newPageBits(512)
	b.set(3, 3)
	b.set(64+10, 64+12) // region 0's second word
	b.set(256+1, 256+1) // region 1 (from page 256)
	region0 := []uint64{1 << 5, 0, 0, 0}
	b.take(0, region0)
	if region0[0] != 1<<5|1<<3 || region0[1] != 7<<10 || region0[2] != 0 {
		t.Errorf("region 0 after take: %#x", region0)
	}
	region1 := make([]uint64, 4)
	b.take(256, region1)
	if region1[0] != 1<<1 {
		t.Errorf("region 1 after take: %#x", region1)
	}
	again := make([]uint64, 4)
	b.take(0, again)
	b.take(256, again)
	if hasBits(again) {
		t.Errorf("a second take found %#x: take did not clear", again)
	}
	// A region past the bitmap takes nothing and does not panic.
	b.take(1024, again)
}

// TestWroteMarksPages maps slices of both RAM regions back to their
// pages, ignores what is not guest RAM, and records nothing unless a
// live save tracks writes.
func TestWroteMarksPages(t *testing.T) {
	m, err := NewMemory(3<<30 + 256<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	lowPages := uint64(3<<30) / pageSize
	b, _ := m.Slice(0x5000, 16)
	m.Wrote(b) // not tracking: nothing to record, nothing to crash
	m.trackWrites(true)
	for _, c := range []struct {
		gpa, n      uint64
		first, last uint64 // pages of ram
	}{
		{0x5000, 16, 5, 5},
		{0x5ff8, 16, 5, 6},
		{3<<30 - 8, 8, lowPages - 1, lowPages - 1},
		{4 << 30, 1, lowPages, lowPages},
		{4<<30 + 0x1fff, 0x3001, lowPages + 1, lowPages + 4},
		{4<<30 + 0x1fff, 0x3002, lowPages + 1, lowPages + 5},
	} {
		s, ok := m.Slice(c.gpa, c.n)
		if !ok {
			t.Fatalf("Slice(%#x, %d) failed", c.gpa, c.n)
		}
		m.Wrote(s)
		w := m.written.Load()
		for p := c.first - 1; p <= c.last+1; p++ {
			got := (*w)[p/64].Load()>>(p%64)&1 == 1
			if want := p >= c.first && p <= c.last; got != want {
				t.Errorf("Wrote(%d bytes at %#x): page %d is %v, want %v", c.n, c.gpa, p, got, want)
			}
		}
		clear(*w)
	}
	// Not guest RAM: a slice of another mapping, an empty one.
	m.Wrote(make([]byte, 4096))
	m.Wrote(nil)
	w := m.written.Load()
	for i := range *w {
		if (*w)[i].Load() != 0 {
			t.Fatalf("a slice outside guest RAM set word %d", i)
		}
	}
	m.trackWrites(false)
	m.Wrote(b)
	if m.written.Load() != nil {
		t.Error("still tracking after trackWrites(false)")
	}
}

// TestWroteConcurrent sets bits from many goroutines while a round
// takes them: no bit is lost between the rounds.
func TestWroteConcurrent(t *testing.T) {
	m, err := NewMemory(64 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.trackWrites(true)
	regions := m.regions()
	d := newDirtySet(regions)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := uint64(g); p < uint64(len(regions[0].mem))/pageSize; p += 8 {
				s, _ := m.Slice(p*pageSize, 8)
				m.Wrote(s)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		m.written.Load().take(0, d[0])
	}
	if n, want := d.count(), uint64(64<<20)/pageSize; n != want {
		t.Errorf("%d pages recorded, want every one of %d", n, want)
	}
}

func TestDirtySetCount(t *testing.T) {
	d := dirtySet{{1, 3, 0}, {^uint64(0)}}
	if n := d.count(); n != 3+64 {
		t.Errorf("count %d", n)
	}
	if bits.OnesCount64(d[1][0]) != 64 {
		t.Fatal("count changed the set")
	}
}

// TestPrecopyRounds drives the round logic with the dirty-set sizes a
// guest would produce and checks where it stops and why.
func TestPrecopyRounds(t *testing.T) {
	const ram = 16384 // 64 MiB
	for _, c := range []struct {
		name   string
		dirty  []uint64 // the dirty set after each live round
		rounds int      // live rounds sent, round 0 included
		why    string
	}{
		{"quiet guest", []uint64{12}, 1, "at most 256"},
		{"shrinking", []uint64{5000, 2000, 800, 300, 100}, 5, "at most 256"},
		{"steady", []uint64{1000, 1000, 1000}, 3, "stopped shrinking"},
		{"one bump", []uint64{4000, 5000, 3000, 3500, 200}, 5, "at most 256"},
		{"faster than the stream", []uint64{16000, 15000, 14000}, 3, "past 3 times RAM"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPrecopy(ram)
			p.round(ram) // round 0: all of RAM
			var why string
			for i, n := range c.dirty {
				more, w := p.next(n)
				if !more {
					why = w
					if i != len(c.dirty)-1 {
						t.Fatalf("stopped after %d live rounds at %d dirty pages (%s), want more", p.rounds, n, w)
					}
					break
				}
				p.round(n)
			}
			if p.rounds != c.rounds || !strings.Contains(why, c.why) {
				t.Errorf("%d live rounds, stop %q; want %d, %q", p.rounds, why, c.rounds, c.why)
			}
		})
	}
	// A guest that keeps dirtying a little less each round still stops.
	p := newPrecopy(1 << 30)
	p.round(1 << 30)
	n := uint64(1 << 20)
	for {
		more, why := p.next(n)
		if !more {
			if p.rounds != precopyMaxRounds || !strings.Contains(why, "rounds") {
				t.Errorf("stopped after %d rounds (%s), want %d", p.rounds, why, precopyMaxRounds)
			}
			break
		}
		p.round(n)
		n--
	}
}
