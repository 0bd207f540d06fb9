package vm

import (
	"cmp"
	"fmt"
	"math"
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/hv/snapshot"
)

// A live save (xl migrate) sends RAM while the domain runs, then, round
// by round, the pages written since the previous round, and pauses the
// domain only for the last round and the small sections
// (docs/snapshot.md, "Live streams").
//
// Two writers change guest RAM, and each round must learn of both:
//
//   - the guest, and KVM on its behalf (kvmclock, steal time): KVM's
//     dirty log (KVM_MEM_LOG_DIRTY_PAGES on every slot, read with
//     KVM_GET_DIRTY_LOG each round and, where KVM offers manual
//     protection as QEMU uses it, cleared with KVM_CLEAR_DIRTY_LOG just
//     before the pages are read);
//   - the hv itself: the virtio devices write requests' buffers and the
//     used rings through Memory.Slice, which KVM never sees. They do so
//     only between taking a chain and pushing it back, and the push
//     records every writable buffer of the chain and the used-ring bytes
//     after writing them (virtio's Memory.Wrote, a bit per page here).
//
// A page written before its bit is taken is read by the round that
// takes it, or later; a page written after is set again and goes in a
// later round. The last round takes both records with the vCPUs parked
// and the devices frozen, when nothing writes, so the stream ends with
// RAM as the paused domain has it. Boot-time writes (kernel, ACPI) come
// before any save and are in round 0.

// pageSize is the unit of KVM's dirty log and of a snapshot's memory.
const pageSize = snapshot.PageSize

// pageBits is a bitmap of pages, set concurrently by the devices'
// goroutines and taken by a live save.
type pageBits []atomic.Uint64

func newPageBits(pages uint64) *pageBits {
	b := make(pageBits, (pages+63)/64)
	return &b
}

// set marks pages first to last, both included; pages past the
// bitmap's last word are ignored.
func (b pageBits) set(first, last uint64) {
	for p := first; p <= last; {
		i := p / 64
		if i >= uint64(len(b)) {
			return
		}
		lo := p % 64
		hi := min(lo+(last-p), 63)
		b[i].Or(^uint64(0) >> (63 - hi) &^ (1<<lo - 1))
		p += hi - lo + 1
	}
}

// take ORs the bits of pages from, from+1, ... into dst, a word per 64
// pages, and clears them; from is a multiple of 64.
func (b pageBits) take(from uint64, dst []uint64) {
	w := from / 64
	for i := range dst {
		if w+uint64(i) >= uint64(len(b)) {
			return
		}
		dst[i] |= b[w+uint64(i)].Swap(0)
	}
}

// dirtySet is the pages to send again, a bitmap per region in KVM's
// layout (bit i of word i/64 = page i), which Writer.MemoryDirty takes.
type dirtySet [][]uint64

func newDirtySet(regions []region) dirtySet {
	d := make(dirtySet, len(regions))
	for i, r := range regions {
		d[i] = make([]uint64, (uint64(len(r.mem))/pageSize+63)/64)
	}
	return d
}

func (d dirtySet) count() uint64 {
	n := 0
	for _, words := range d {
		for _, w := range words {
			n += bits.OnesCount64(w)
		}
	}
	return uint64(n)
}

// collectDirty adds to d the pages written since the last call: the
// guest's from KVM's log, the hv's from Memory.Wrote. KVM write-protects
// them again before this returns, so that the caller reads each page
// after the protection and a later write logs it anew.
func (v *VM) collectDirty(regions []region, d dirtySet) error {
	hv := v.mem.written.Load()
	for i, r := range regions {
		slot, pages := uint32(i), uint64(len(r.mem))/pageSize
		if !v.manualDirty {
			if err := v.vm.DirtyLog(slot, pages, d[i]); err != nil {
				return err
			}
		} else {
			got := make([]uint64, len(d[i]))
			if err := v.vm.DirtyLog(slot, pages, got); err != nil {
				return err
			}
			if hasBits(got) {
				if err := v.vm.ClearDirtyLog(slot, pages, got); err != nil {
					return err
				}
			}
			for j, w := range got {
				d[i][j] |= w
			}
		}
		if hv != nil {
			hv.take(r.off/pageSize, d[i])
		}
	}
	return nil
}

// dirtyLogging switches KVM's dirty log and the record of the hv's own
// writes on or off, for every slot. Off, it tries every slot whatever
// fails and reports the first error.
func (v *VM) dirtyLogging(regions []region, on bool) error {
	if on {
		for _, r := range regions {
			// Each region's bits must start a word of the hv's
			// bitmap: RAM is whole MiBs, so they do.
			if r.off%(64*pageSize) != 0 {
				return fmt.Errorf("RAM region at %#x starts %#x into RAM, not on a 256 KiB boundary", r.gpa, r.off)
			}
		}
		v.mem.trackWrites(true)
	}
	var first error
	for i, r := range regions {
		if err := v.vm.SetDirtyLogging(uint32(i), r.gpa, r.mem, on); err != nil {
			if on {
				return err
			}
			first = cmp.Or(first, err)
		}
	}
	if !on {
		v.mem.trackWrites(false)
	}
	return first
}

// Limits of the pre-copy: when the rounds stop while the domain runs.
const (
	// A dirty set of at most this many pages (1 MiB) is sent paused: a
	// round that small costs little downtime.
	precopySmall = 256
	// Live rounds at most, the first (all RAM) included.
	precopyMaxRounds = 30
	// Pages sent live at most, as a multiple of RAM's pages: a guest
	// that dirties faster than the stream carries is paused then. The
	// paused round's copy makes the stream's snapshot.MaxRAMCopies.
	precopyBudget = snapshot.MaxRAMCopies - 1
	// Rounds in a row whose dirty set did not shrink before the
	// pre-copy gives up on it shrinking.
	precopyStalls = 2
)

// precopy decides, after each live round, whether another is worth it.
type precopy struct {
	small     uint64
	maxRounds int
	budget    uint64
	rounds    int
	sent      uint64
	last      uint64 // the previous dirty set's size
	stalls    int
}

func newPrecopy(ramPages uint64) *precopy {
	return &precopy{small: precopySmall, maxRounds: precopyMaxRounds, budget: precopyBudget * ramPages, last: math.MaxUint64}
}

// sent records a live round of n pages.
func (p *precopy) round(n uint64) {
	p.rounds++
	p.sent += n
}

// next says whether a dirty set of n pages is sent live, in another
// round, or with the domain paused, as the last; then it says why.
func (p *precopy) next(n uint64) (bool, string) {
	if n >= p.last {
		p.stalls++
	} else {
		p.stalls = 0
	}
	p.last = n
	switch {
	case n <= p.small:
		return false, fmt.Sprintf("%d pages dirty, at most %d", n, p.small)
	case p.rounds >= p.maxRounds:
		return false, fmt.Sprintf("%d rounds, the most", p.rounds)
	case p.sent+n > p.budget:
		return false, fmt.Sprintf("%d pages sent and %d dirty, past %d times RAM", p.sent, n, precopyBudget)
	case p.stalls >= precopyStalls:
		return false, fmt.Sprintf("%d pages dirty: the dirty set stopped shrinking", n)
	}
	return true, ""
}

// saveLive writes the domain's snapshot to w while it runs: all RAM, then
// rounds of the dirtied pages until precopy says stop, then it pauses the
// domain and writes the last dirty pages and the small sections (Save's).
// It returns when the domain was paused, and leaves it paused on success;
// on failure the caller resumes it. Either way dirty logging is off again.
func (v *VM) saveLive(w *snapshot.Writer, st *control.SaveStats) (pausedAt time.Time, err error) {
	regions := v.mem.regions()
	if err := v.dirtyLogging(regions, true); err != nil {
		if oerr := v.dirtyLogging(regions, false); oerr != nil {
			v.logf("live save: switching dirty logging off: %v", oerr)
		}
		return time.Time{}, err
	}
	defer func() {
		if oerr := v.dirtyLogging(regions, false); oerr != nil {
			// The stream is whole or failed already; the domain only
			// runs slower while KVM keeps logging.
			v.logf("live save: switching dirty logging off: %v", oerr)
		}
	}()
	dirty := newDirtySet(regions)
	sendDirty := func() error {
		for i, r := range regions {
			if !hasBits(dirty[i]) {
				continue
			}
			if err := w.MemoryDirty(r.gpa, r.mem, dirty[i]); err != nil {
				return err
			}
			clear(dirty[i])
		}
		return nil
	}
	round := func(paused bool, send func() error) error {
		start, before := time.Now(), w.Pages()
		if err := send(); err != nil {
			return err
		}
		st.Rounds = append(st.Rounds, control.SaveRound{Pages: w.Pages() - before, TimeNS: time.Since(start).Nanoseconds(), Paused: paused})
		return nil
	}
	st.DirtyLog = "get"
	if v.manualDirty {
		st.DirtyLog = "manual"
		// The log starts with every page set and none protected: take
		// them all (protecting them) before round 0 reads all RAM.
		if err := v.collectDirty(regions, newDirtySet(regions)); err != nil {
			return time.Time{}, err
		}
	}
	p := newPrecopy(v.mem.Size() / pageSize)
	if err := round(false, func() error {
		for _, r := range regions {
			if err := w.Memory(r.gpa, r.mem); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return time.Time{}, err
	}
	for {
		p.round(st.Rounds[len(st.Rounds)-1].Pages)
		if err := v.collectDirty(regions, dirty); err != nil {
			return time.Time{}, err
		}
		more, why := p.next(dirty.count())
		if !more {
			st.Stop = why
			break
		}
		if err := round(false, sendDirty); err != nil {
			return time.Time{}, err
		}
	}
	pausedAt = time.Now()
	if err := v.Pause(); err != nil {
		return pausedAt, err
	}
	thaw, err := v.freeze()
	if err != nil {
		return pausedAt, err
	}
	defer thaw()
	small, err := v.machineState()
	if err != nil {
		return pausedAt, err
	}
	if err := v.collectDirty(regions, dirty); err != nil {
		return pausedAt, err
	}
	if err := round(true, sendDirty); err != nil {
		return pausedAt, err
	}
	return pausedAt, writeSections(w, small)
}

func hasBits(words []uint64) bool {
	for _, w := range words {
		if w != 0 {
			return true
		}
	}
	return false
}
