package acpi

import "sync"

// PM1 register bits (ACPI 6.5 §4.8.3).
const (
	GblSts    = 1 << 5  // PM1_STS.GBL_STS, write 1 to clear
	PwrBtnSts = 1 << 8  // PM1_STS.PWRBTN_STS, write 1 to clear
	WakSts    = 1 << 15 // PM1_STS.WAK_STS
	GblEn     = 1 << 5  // PM1_EN.GBL_EN
	PwrBtnEn  = 1 << 8  // PM1_EN.PWRBTN_EN

	SCIEn       = 1 << 0 // PM1_CNT.SCI_EN, hard-wired to 1
	BmRld       = 1 << 1 // PM1_CNT.BM_RLD
	GblRls      = 1 << 2 // PM1_CNT.GBL_RLS, write-only
	SlpTypShift = 10
	SlpTypMask  = 7 << SlpTypShift
	SlpEn       = 1 << 13 // PM1_CNT.SLP_EN, write-only
)

// Which bits exist here. The global lock (in the FACS) is fixed hardware
// of every non-HW-reduced platform, and ACPICA enables GBL_EN at init and
// checks that it reads back ("Could not enable GlobalLock event"
// otherwise), so GBL_EN is a real, stored enable bit. Its status bit,
// GBL_STS, is set by hardware only when firmware releases a global lock
// the OS waited for; no firmware here ever takes the lock, so GBL_STS
// never becomes 1 and GBL_EN never raises the SCI. Likewise GBL_RLS (the
// OS telling firmware it released the lock) has no listener; it reads 0
// as the spec says.
const (
	stsImplemented = PwrBtnSts | WakSts | GblSts
	enImplemented  = PwrBtnEn | GblEn
	cntWritable    = SlpTypMask | BmRld
)

// PM is the PM1a event and control register blocks at the FADT's ports
// (PM1aEvt: PM1_STS then PM1_EN; PM1aCnt: PM1_CNT). It is safe for
// concurrent use: the vCPU does port I/O while the control socket presses
// the power button.
type PM struct {
	mu       sync.Mutex
	sci      func(level bool)
	onSleep  func(slpTyp int)
	evt, cnt uint16

	sts, en, ctl uint16
	sciLevel     bool
}

// NewPM returns the PM1 block at the default ports. sci drives the SCI
// line (level, active high; called only on change); onSleep is called,
// without the PM's lock held, when the guest writes SLP_EN with the
// SLP_TYP it wrote (S5SlpTyp for soft-off).
func NewPM(sci func(level bool), onSleep func(slpTyp int)) *PM {
	if sci == nil {
		sci = func(bool) {}
	}
	if onSleep == nil {
		onSleep = func(int) {}
	}
	return &PM{sci: sci, onSleep: onSleep, evt: PM1aEvt, cnt: PM1aCnt, ctl: SCIEn}
}

// Owns reports whether port belongs to the PM1 blocks.
func (p *PM) Owns(port uint16) bool {
	return port >= p.evt && port < p.evt+4 || port >= p.cnt && port < p.cnt+2
}

// Read returns size (1, 2 or 4) bytes from port, little-endian; bytes
// outside the blocks read as 0xff, like an unclaimed ISA port.
func (p *PM) Read(port uint16, size int) uint32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var v uint32
	for i := 0; i < size && i < 4; i++ {
		v |= uint32(p.readByte(port+uint16(i))) << (8 * i)
	}
	return v
}

// Write stores size bytes of v at port. A write of SLP_EN calls onSleep.
func (p *PM) Write(port uint16, size int, v uint32) {
	p.mu.Lock()
	sleep := -1
	for i := 0; i < size && i < 4; i++ {
		if typ := p.writeByte(port+uint16(i), byte(v>>(8*i))); typ >= 0 {
			sleep = typ
		}
	}
	p.update()
	p.mu.Unlock()
	if sleep >= 0 {
		p.onSleep(sleep)
	}
}

// PressPowerButton latches PWRBTN_STS; the SCI is raised if PWRBTN_EN is
// set and stays raised until the guest clears the status bit.
func (p *PM) PressPowerButton() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sts |= PwrBtnSts
	p.update()
}

// SCI reports the current level of the SCI line.
func (p *PM) SCI() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sciLevel
}

func byteOf(r uint16, hi bool) byte {
	if hi {
		return byte(r >> 8)
	}
	return byte(r)
}

func (p *PM) readByte(port uint16) byte {
	switch {
	case port >= p.evt && port < p.evt+2:
		return byteOf(p.sts, port == p.evt+1)
	case port >= p.evt+2 && port < p.evt+4:
		return byteOf(p.en, port == p.evt+3)
	case port >= p.cnt && port < p.cnt+2:
		return byteOf(p.ctl, port == p.cnt+1) // SLP_EN is never stored
	}
	return 0xff
}

// writeByte applies one byte and returns the SLP_TYP to enter, or -1.
func (p *PM) writeByte(port uint16, b byte) int {
	shift := uint16(0)
	if port == p.evt+1 || port == p.evt+3 || port == p.cnt+1 {
		shift = 8
	}
	v := uint16(b) << shift
	mask := uint16(0xff) << shift
	switch {
	case port >= p.evt && port < p.evt+2:
		p.sts &^= v & stsImplemented // write 1 to clear
	case port >= p.evt+2 && port < p.evt+4:
		p.en = p.en&^mask | v&mask&enImplemented
	case port >= p.cnt && port < p.cnt+2:
		p.ctl = p.ctl&^(mask&cntWritable) | v&mask&cntWritable | SCIEn
		if v&SlpEn != 0 {
			return int(p.ctl&SlpTypMask) >> SlpTypShift
		}
	}
	return -1
}

func (p *PM) update() {
	level := p.sts&p.en&stsImplemented != 0
	if level != p.sciLevel {
		p.sciLevel = level
		p.sci(level)
	}
}
