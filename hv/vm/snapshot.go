package vm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/hv/devstate"
	"github.com/xeno-hv/xeno/hv/kvm"
	"github.com/xeno-hv/xeno/hv/snapshot"
)

// Section kinds of a domain's snapshot besides the devices'
// (deviceStates) and "memory": docs/hv.md lists them all.
const (
	kindIRQChip = "irqchip"
	kindPIT     = "pit"
	kindClock   = "clock"
	kindVCPU    = "vcpu." // and the vCPU's index
)

const machineStateVersion = 1

// vcpuState is one vCPU in a snapshot. The KVM structs are kept as KVM
// gives them (kvm.Raw); XSave is absent where the host has no XSAVE,
// and FPU is then the legacy area.
type vcpuState struct {
	Version   int       `json:"version"`
	Regs      []byte    `json:"regs"`
	Sregs     []byte    `json:"sregs"`
	XSave     []byte    `json:"xsave,omitempty"`
	FPU       []byte    `json:"fpu,omitempty"`
	XCRs      []byte    `json:"xcrs,omitempty"`
	MSRs      []msrJSON `json:"msrs"`
	LAPIC     []byte    `json:"lapic"`
	Events    []byte    `json:"events"`
	MPState   uint32    `json:"mp_state"`
	DebugRegs []byte    `json:"debugregs,omitempty"`
	TSCKHz    uint32    `json:"tsc_khz,omitempty"`
}

type msrJSON struct {
	Index uint32 `json:"index"`
	Data  uint64 `json:"data"`
}

type irqchipState struct {
	Version   int    `json:"version"`
	PICMaster []byte `json:"pic_master"`
	PICSlave  []byte `json:"pic_slave"`
	IOAPIC    []byte `json:"ioapic"`
}

type pitState struct {
	Version int    `json:"version"`
	PIT     []byte `json:"pit"`
}

// clockState is the KVM clock and the domain's own clocks: its uptime
// goes on from where it was saved, and its boot timer stays fired.
type clockState struct {
	Version     int    `json:"version"`
	KVMClock    uint64 `json:"kvm_clock"`
	UptimeNS    int64  `json:"uptime_ns"`
	BootTimerNS int64  `json:"boot_timer_ns"`
}

// Header returns the snapshot header of this domain: the running hv's
// build, the admitted interface, the size.
func (v *VM) Header() snapshot.Header {
	b := v.cfg.Build
	return snapshot.Header{
		Release: b.Release.String(), BuildID: b.BuildID, Changeset: b.Changeset,
		Interface: v.cfg.Admitted.String(), Compat: v.cfg.Compat,
		MemoryMiB: v.cfg.MemoryMiB, VCPUs: v.cfg.VCPUs,
	}
}

// Save writes the domain's whole state to w: RAM, every vCPU, the
// in-kernel irqchip, PIT and clock, and every device. The domain must be
// paused (Pause); it stays paused. The devices' goroutines are frozen
// while it runs, so that nothing moves under it.
func (v *VM) Save(w *snapshot.Writer) error {
	thaw, err := v.freeze()
	if err != nil {
		return err
	}
	defer thaw()
	// The small sections are read first, at the moment of the pause,
	// and written after RAM, as a migration's last round is
	// (docs/snapshot.md): the clocks and TSCs they hold then do not run
	// on for as long as RAM takes to write.
	small, err := v.machineState()
	if err != nil {
		return err
	}
	for _, r := range v.mem.regions() {
		if err := w.Memory(r.gpa, r.mem); err != nil {
			return fmt.Errorf("vm: save: %w", err)
		}
	}
	return writeSections(w, small)
}

// freeze checks that the domain is paused and freezes the devices'
// goroutines (virtio's Freeze) until thaw.
func (v *VM) freeze() (thaw func(), err error) {
	v.mu.Lock()
	ok := v.paused && v.exit == nil && v.nParked == len(v.vcpus)
	v.mu.Unlock()
	if !ok {
		return nil, errors.New("vm: save: the domain is not paused")
	}
	for _, t := range v.dev.virtio {
		t.Freeze()
	}
	return func() {
		for _, t := range v.dev.virtio {
			t.Thaw()
		}
	}, nil
}

// section is one small section of a snapshot.
type section struct {
	kind string
	data []byte
}

// machineState reads the small sections of a paused and frozen domain:
// every vCPU, the irqchip, PIT and clock, and every device.
func (v *VM) machineState() ([]section, error) {
	var small []section
	put := func(kind string, b []byte) error {
		small = append(small, section{kind, b})
		return nil
	}
	msrList, err := v.sys.MSRIndexList()
	if err != nil {
		return nil, err
	}
	xsaveSize := v.vm.XSaveSize()
	for _, c := range v.vcpus {
		b, err := v.saveVCPU(c.c, msrList, xsaveSize)
		if err != nil {
			return nil, fmt.Errorf("vm: save: %w", err)
		}
		put(kindVCPU+strconv.Itoa(c.c.ID), b)
	}
	var ic irqchipState
	ic.Version = machineStateVersion
	for chip, dst := range []*[]byte{&ic.PICMaster, &ic.PICSlave, &ic.IOAPIC} {
		s, err := v.vm.IRQChip(uint32(chip))
		if err != nil {
			return nil, fmt.Errorf("vm: save: %w", err)
		}
		*dst = kvm.Raw(s)
	}
	pit, err := v.vm.PIT2()
	if err != nil {
		return nil, fmt.Errorf("vm: save: %w", err)
	}
	clk, err := v.vm.Clock()
	if err != nil {
		return nil, fmt.Errorf("vm: save: %w", err)
	}
	for _, s := range []struct {
		kind  string
		state any
	}{
		{kindIRQChip, &ic},
		{kindPIT, &pitState{Version: machineStateVersion, PIT: kvm.Raw(pit)}},
		{kindClock, &clockState{Version: machineStateVersion, KVMClock: clk.Clock,
			UptimeNS: time.Since(v.started).Nanoseconds(), BootTimerNS: v.bootTimer.Load()}},
	} {
		b, err := devstate.Encode(s.kind, s.state)
		if err != nil {
			return nil, err
		}
		put(s.kind, b)
	}
	if err := v.saveDevices(put); err != nil {
		return nil, err
	}
	return small, nil
}

func writeSections(w *snapshot.Writer, small []section) error {
	for _, s := range small {
		if err := w.Section(s.kind, s.data); err != nil {
			return fmt.Errorf("vm: save: %w", err)
		}
	}
	return nil
}

// saveVCPU reads one parked vCPU's state.
func (v *VM) saveVCPU(c *kvm.VCPU, msrList []uint32, xsaveSize int) ([]byte, error) {
	s := vcpuState{Version: machineStateVersion}
	regs, err := c.Regs()
	if err != nil {
		return nil, err
	}
	sregs, err := c.Sregs()
	if err != nil {
		return nil, err
	}
	s.Regs, s.Sregs = kvm.Raw(&regs), kvm.Raw(&sregs)
	if xsaveSize > 0 {
		if s.XSave, err = c.XSave(xsaveSize); err != nil {
			return nil, err
		}
	} else {
		f, err := c.FPU()
		if err != nil {
			return nil, err
		}
		s.FPU = kvm.Raw(&f)
	}
	if v.sys.Has(kvm.CapXCRs) {
		x, err := c.XCRs()
		if err != nil {
			return nil, err
		}
		s.XCRs = kvm.Raw(&x)
	}
	msrs, err := c.MSRs(msrList)
	if err != nil {
		return nil, err
	}
	for _, m := range msrs {
		s.MSRs = append(s.MSRs, msrJSON{m.Index, m.Data})
	}
	lapic, err := c.LAPIC()
	if err != nil {
		return nil, err
	}
	ev, err := c.VCPUEvents()
	if err != nil {
		return nil, err
	}
	s.LAPIC, s.Events = kvm.Raw(lapic), kvm.Raw(&ev)
	if s.MPState, err = c.MPState(); err != nil {
		return nil, err
	}
	if v.sys.Has(kvm.CapDebugRegs) {
		d, err := c.DebugRegs()
		if err != nil {
			return nil, err
		}
		s.DebugRegs = kvm.Raw(&d)
	}
	if v.sys.Has(kvm.CapGetTSCKHz) {
		if s.TSCKHz, err = c.TSCKHz(); err != nil {
			return nil, err
		}
	}
	return devstate.Encode(kindVCPU+strconv.Itoa(c.ID), &s)
}

// Restore builds a domain from a snapshot instead of loading a kernel:
// cfg gives the devices and the host side of each (files, taps, sockets)
// as for New, and its memory size and vCPU count must be the snapshot's.
// The snapshot is read whole, its trailer checked, before any state
// reaches KVM or a device: a truncated or corrupted one is refused with
// nothing started. The domain starts paused or running as cfg.Paused
// says, once Run is called.
func Restore(cfg Config, r *snapshot.Reader) (_ *VM, err error) {
	h := r.Header()
	if h.MemoryMiB != cfg.MemoryMiB {
		return nil, fmt.Errorf("vm: restore: the snapshot has %d MiB of memory, the domain's config %d", h.MemoryMiB, cfg.MemoryMiB)
	}
	if h.VCPUs != cfg.VCPUs {
		return nil, fmt.Errorf("vm: restore: the snapshot has %d vCPUs, the domain's config %d", h.VCPUs, cfg.VCPUs)
	}
	v, err := newMachine(cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			v.Close()
		}
	}()
	if err := v.addDevices(v.irq); err != nil {
		return nil, err
	}
	if err := v.createVCPUs(false); err != nil {
		return nil, err
	}
	sections, err := v.readSnapshot(r)
	if err != nil {
		return nil, fmt.Errorf("vm: restore: %w", err)
	}
	if err := v.restoreMachine(sections); err != nil {
		return nil, fmt.Errorf("vm: restore: %w", err)
	}
	v.logf("restored from a snapshot of hv %s (build %s), interface %s", h.Release, h.BuildID, h.Interface)
	return v, nil
}

// readSnapshot reads RAM into the domain's memory and returns the other
// sections by kind, each a kind this domain has, once; it returns only
// after the stream's trailer was checked.
func (v *VM) readSnapshot(r *snapshot.Reader) (map[string][]byte, error) {
	want := map[string]bool{kindIRQChip: true, kindPIT: true, kindClock: true}
	for i := range v.vcpus {
		want[kindVCPU+strconv.Itoa(i)] = true
	}
	for _, d := range v.deviceStates() {
		want[d.kind] = true
	}
	regions := v.mem.regions()
	loaded := make([]bool, len(regions))
	sections := map[string][]byte{}
	for {
		s, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if s.Kind == "memory" {
			i := slices.IndexFunc(regions, func(m region) bool { return m.gpa == s.GPA })
			// A region may come more than once (migration's pre-copy
			// rounds), each applied over the last.
			if i < 0 || uint64(len(regions[i].mem)) != s.Size {
				return nil, fmt.Errorf("memory section at %#x of %d bytes is no RAM region of this domain", s.GPA, s.Size)
			}
			if err := r.ReadMemory(regions[i].mem); err != nil {
				return nil, err
			}
			loaded[i] = true
			continue
		}
		if !want[s.Kind] {
			return nil, fmt.Errorf("section %q: this domain has no such part (other devices or vCPUs than the snapshot's?)", s.Kind)
		}
		if _, dup := sections[s.Kind]; dup {
			return nil, fmt.Errorf("section %q appears twice", s.Kind)
		}
		sections[s.Kind] = s.Data
	}
	for i, ok := range loaded {
		if !ok {
			return nil, fmt.Errorf("no memory section for RAM at %#x", regions[i].gpa)
		}
	}
	for k := range want {
		if _, ok := sections[k]; !ok {
			return nil, fmt.Errorf("no section %q", k)
		}
	}
	return sections, nil
}

// machine is a snapshot's KVM state, decoded and checked: everything a
// hostile snapshot could get wrong is refused here, before any of it
// reaches KVM, which then checks the contents itself.
type machine struct {
	chips [3]kvm.IRQChip
	pit   kvm.PITState
	clock clockState
	vcpus []*vcpuRestore
}

type vcpuRestore struct {
	regs   kvm.Regs
	sregs  kvm.Sregs
	lapic  kvm.LAPICState
	events kvm.Events
	xsave  []byte   // or fpu
	fpu    *kvm.FPU // where the saving host had no XSAVE
	xcrs   *kvm.XCRs
	msrs   []kvm.MSR
	debug  *kvm.DebugRegs
	mp     uint32
	tscKHz uint32
}

// decodeMachine decodes the KVM sections for vcpus vCPUs; msrList is
// this host's MSR index list, which every saved MSR must be in.
func decodeMachine(sections map[string][]byte, vcpus int, msrList []uint32) (*machine, error) {
	m := &machine{}
	var ic irqchipState
	if err := devstate.Decode(kindIRQChip, sections[kindIRQChip], machineStateVersion, &ic); err != nil {
		return nil, err
	}
	for chip, b := range [][]byte{ic.PICMaster, ic.PICSlave, ic.IOAPIC} {
		if err := kvm.FromRaw(b, &m.chips[chip]); err != nil {
			return nil, fmt.Errorf("irqchip %d: %w", chip, err)
		}
		if m.chips[chip].Chip != uint32(chip) {
			return nil, fmt.Errorf("irqchip %d: the state is chip %d's", chip, m.chips[chip].Chip)
		}
	}
	var p pitState
	if err := devstate.Decode(kindPIT, sections[kindPIT], machineStateVersion, &p); err != nil {
		return nil, err
	}
	if err := kvm.FromRaw(p.PIT, &m.pit); err != nil {
		return nil, fmt.Errorf("pit: %w", err)
	}
	if err := devstate.Decode(kindClock, sections[kindClock], machineStateVersion, &m.clock); err != nil {
		return nil, err
	}
	if m.clock.UptimeNS < 0 || m.clock.BootTimerNS < 0 {
		return nil, fmt.Errorf("clock: uptime %d ns, boot timer %d ns", m.clock.UptimeNS, m.clock.BootTimerNS)
	}
	for i := 0; i < vcpus; i++ {
		kind := kindVCPU + strconv.Itoa(i)
		c, err := decodeVCPU(sections[kind], msrList)
		if err != nil {
			return nil, fmt.Errorf("section %q: %w", kind, err)
		}
		m.vcpus = append(m.vcpus, c)
	}
	return m, nil
}

func decodeVCPU(b []byte, msrList []uint32) (*vcpuRestore, error) {
	var s vcpuState
	if err := devstate.Decode("vcpu", b, machineStateVersion, &s); err != nil {
		return nil, err
	}
	c := &vcpuRestore{mp: s.MPState, tscKHz: s.TSCKHz}
	for _, err := range []error{kvm.FromRaw(s.Regs, &c.regs), kvm.FromRaw(s.Sregs, &c.sregs),
		kvm.FromRaw(s.LAPIC, &c.lapic), kvm.FromRaw(s.Events, &c.events)} {
		if err != nil {
			return nil, err
		}
	}
	switch {
	case s.XSave != nil && s.FPU != nil:
		return nil, errors.New("both an XSAVE and a legacy FPU area")
	case s.XSave != nil:
		if len(s.XSave) < 4096 || len(s.XSave) > kvm.MaxXSave {
			return nil, fmt.Errorf("XSAVE area of %d bytes: want 4096 to %d", len(s.XSave), kvm.MaxXSave)
		}
		c.xsave = s.XSave
	case s.FPU != nil:
		c.fpu = new(kvm.FPU)
		if err := kvm.FromRaw(s.FPU, c.fpu); err != nil {
			return nil, err
		}
	default:
		return nil, errors.New("no FPU state")
	}
	if s.XCRs != nil {
		c.xcrs = new(kvm.XCRs)
		if err := kvm.FromRaw(s.XCRs, c.xcrs); err != nil {
			return nil, err
		}
		if c.xcrs.N > uint32(len(c.xcrs.XCRs)) {
			return nil, fmt.Errorf("%d XCRs, at most %d", c.xcrs.N, len(c.xcrs.XCRs))
		}
	}
	if s.DebugRegs != nil {
		c.debug = new(kvm.DebugRegs)
		if err := kvm.FromRaw(s.DebugRegs, c.debug); err != nil {
			return nil, err
		}
	}
	if len(s.MSRs) > len(msrList) {
		return nil, fmt.Errorf("%d MSRs, this host saves %d", len(s.MSRs), len(msrList))
	}
	for _, m := range s.MSRs {
		if !slices.Contains(msrList, m.Index) {
			return nil, fmt.Errorf("MSR %#x is not one this host's KVM saves and restores", m.Index)
		}
		c.msrs = append(c.msrs, kvm.MSR{Index: m.Index, Data: m.Data})
	}
	return c, nil
}

// restoreMachine applies the sections in the order KVM needs: the
// irqchip and PIT before the vCPUs, each vCPU's LAPIC after its special
// registers and its events and mp_state last, then the devices (whose
// interrupt lines reach restored LAPICs) and the clock.
func (v *VM) restoreMachine(sections map[string][]byte) error {
	msrList, err := v.sys.MSRIndexList()
	if err != nil {
		return err
	}
	m, err := decodeMachine(sections, len(v.vcpus), msrList)
	if err != nil {
		return err
	}
	for i := range m.chips {
		if err := v.vm.SetIRQChip(&m.chips[i]); err != nil {
			return err
		}
	}
	if err := v.vm.SetPIT2(&m.pit); err != nil {
		return err
	}
	xsaveSize := v.vm.XSaveSize()
	for i, c := range v.vcpus {
		if err := v.restoreVCPU(c.c, m.vcpus[i], xsaveSize); err != nil {
			return fmt.Errorf("section %q: %w", kindVCPU+strconv.Itoa(i), err)
		}
	}
	if err := v.restoreDevices(sections); err != nil {
		return err
	}
	if err := v.vm.SetClock(kvm.Clock{Clock: m.clock.KVMClock}); err != nil {
		return err
	}
	v.started = time.Now().Add(-time.Duration(m.clock.UptimeNS))
	v.bootTimer.Store(m.clock.BootTimerNS)
	return nil
}

// restoreVCPU sets one vCPU from its decoded state.
func (v *VM) restoreVCPU(c *kvm.VCPU, s *vcpuRestore, xsaveSize int) error {
	// The TSC rate first: the TSC MSR is then written at that rate.
	if s.tscKHz != 0 && v.sys.Has(kvm.CapGetTSCKHz) {
		if now, err := c.TSCKHz(); err == nil && now != s.tscKHz {
			if err := c.SetTSCKHz(s.tscKHz); err != nil {
				v.logf("vCPU %d: the snapshot's TSC runs at %d kHz, this host's at %d kHz and it cannot scale (%v): the guest's TSC changes rate", c.ID, s.tscKHz, now, err)
			}
		}
	}
	if err := c.SetSregs(s.sregs); err != nil {
		return err
	}
	if err := c.SetRegs(s.regs); err != nil {
		return err
	}
	switch {
	case s.xsave != nil && xsaveSize > 0:
		if err := c.SetXSave(s.xsave, xsaveSize); err != nil {
			return err
		}
	case s.fpu != nil:
		if err := c.SetFPU(*s.fpu); err != nil {
			return err
		}
	default:
		return errors.New("the snapshot's FPU state is XSAVE, which this host lacks")
	}
	if s.xcrs != nil && v.sys.Has(kvm.CapXCRs) {
		if err := c.SetXCRs(*s.xcrs); err != nil {
			return err
		}
	}
	if err := c.SetLAPIC(&s.lapic); err != nil {
		return err
	}
	// After the LAPIC: KVM drops a TSC deadline written while the LAPIC
	// timer is not in deadline mode.
	if err := c.SetMSRs(s.msrs); err != nil {
		return err
	}
	if s.debug != nil && v.sys.Has(kvm.CapDebugRegs) {
		if err := c.SetDebugRegs(*s.debug); err != nil {
			return err
		}
	}
	if err := c.SetMPState(s.mp); err != nil {
		return err
	}
	return c.SetVCPUEvents(s.events)
}

// SaveTo saves the domain to f (a file or a pipe) as xl save does:
// it pauses the domain, writes the snapshot with header config, and
// then leaves it paused (control.SavePause) or running
// (control.SaveResume); with control.SaveDestroy (or "") it stays paused
// for the caller to end it once the save is acknowledged. live makes it
// a live save (saveLive, xl migrate): the domain is paused only for the
// last round. A failure leaves the domain as it was before the save.
func (v *VM) SaveTo(f *os.File, after string, config json.RawMessage, live bool) (*control.SaveStats, error) {
	switch after {
	case "", control.SaveDestroy, control.SavePause, control.SaveResume:
	default:
		return nil, fmt.Errorf("save: after %q: want %s, %s or %s", after, control.SaveDestroy, control.SavePause, control.SaveResume)
	}
	if !v.saveMu.TryLock() {
		return nil, errors.New("save: another save is in progress")
	}
	defer v.saveMu.Unlock()
	v.mu.Lock()
	wasPaused := v.paused
	v.saving = true // from here no resume request unparks a vCPU
	v.mu.Unlock()
	st, err := v.writeSnapshot(f, config, live)
	v.mu.Lock()
	v.saving = false
	if err == nil && after == control.SaveResume || err != nil && !wasPaused {
		v.resumeLocked()
	}
	v.mu.Unlock()
	return st, err
}

// countingWriter counts what a save wrote, for its report.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (v *VM) writeSnapshot(f *os.File, config json.RawMessage, live bool) (*control.SaveStats, error) {
	start := time.Now()
	h := v.Header()
	h.Config = config
	out := &countingWriter{w: f}
	w, err := snapshot.NewWriter(out, h)
	if err != nil {
		return nil, fmt.Errorf("save: %w", err)
	}
	st := &control.SaveStats{Live: live}
	var pausedAt time.Time
	if live {
		pausedAt, err = v.saveLive(w, st)
	} else {
		pausedAt = time.Now()
		if err = v.Pause(); err == nil {
			before := w.Pages()
			err = v.Save(w)
			st.Rounds = []control.SaveRound{{Pages: w.Pages() - before, TimeNS: time.Since(pausedAt).Nanoseconds(), Paused: true}}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("save: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("save: %w", err)
	}
	// A saved domain that then ends exists only in this file: make it
	// durable. A pipe (migration) has nothing to sync.
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("save: fsync: %w", err)
		}
	}
	st.DowntimeNS = time.Since(pausedAt).Nanoseconds()
	st.Pages, st.Bytes = w.Pages(), out.n
	if live {
		v.logf("saved live in %.3f s: %d rounds, %d pages (%d bytes), downtime %.1f ms (%s; dirty log: %s)",
			time.Since(start).Seconds(), len(st.Rounds), st.Pages, st.Bytes, float64(st.DowntimeNS)/1e6, st.Stop, st.DirtyLog)
		for i, r := range st.Rounds {
			how := "running"
			if r.Paused {
				how = "paused"
			}
			v.logf("  round %d: %d pages in %.1f ms, %s", i, r.Pages, float64(r.TimeNS)/1e6, how)
		}
	} else {
		v.logf("saved to a snapshot in %.3f s", time.Since(start).Seconds())
	}
	return st, nil
}
