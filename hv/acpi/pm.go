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

// PM is the PM1a event and control register blocks at the FADT's ports,
// as one window of PM1aLen bytes from PM1aEvt: PM1_STS, PM1_EN, PM1_CNT.
// It is safe for concurrent use: the vCPU does port I/O while the control
// socket presses the power button.
type PM struct {
	mu      sync.Mutex
	sci     func(level bool)
	onSleep func(slpTyp int)

	sts, en, ctl uint16
	sciLevel     bool
}

// Offsets in the window.
const (
	offSts = 0
	offEn  = 2
	offCnt = PM1aCnt - PM1aEvt
)

// NewPM returns the PM1 block. sci drives the SCI line (level, active
// high; called only on change); onSleep is called, without the PM's lock
// held, when the guest writes SLP_EN with the SLP_TYP it wrote (S5SlpTyp
// for soft-off).
func NewPM(sci func(level bool), onSleep func(slpTyp int)) *PM {
	if sci == nil {
		sci = func(bool) {}
	}
	if onSleep == nil {
		onSleep = func(int) {}
	}
	return &PM{sci: sci, onSleep: onSleep, ctl: SCIEn}
}

// Read serves a guest read of len(data) bytes at offset off of the
// window, decoded byte by byte; bytes beyond the window read as 0xff,
// like an unclaimed ISA port.
func (p *PM) Read(off uint64, data []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range data {
		data[i] = p.readByte(off + uint64(i))
	}
}

// Write serves a guest write at offset off of the window. A write of
// SLP_EN calls onSleep.
func (p *PM) Write(off uint64, data []byte) {
	p.mu.Lock()
	sleep := -1
	for i, b := range data {
		if typ := p.writeByte(off+uint64(i), b); typ >= 0 {
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

func (p *PM) readByte(off uint64) byte {
	switch off {
	case offSts, offSts + 1:
		return byteOf(p.sts, off == offSts+1)
	case offEn, offEn + 1:
		return byteOf(p.en, off == offEn+1)
	case offCnt, offCnt + 1:
		return byteOf(p.ctl, off == offCnt+1) // SLP_EN is never stored
	}
	return 0xff
}

// writeByte applies one byte and returns the SLP_TYP to enter, or -1.
func (p *PM) writeByte(off uint64, b byte) int {
	shift := uint16(0)
	if off == offSts+1 || off == offEn+1 || off == offCnt+1 {
		shift = 8
	}
	v := uint16(b) << shift
	mask := uint16(0xff) << shift
	switch off {
	case offSts, offSts + 1:
		p.sts &^= v & stsImplemented // write 1 to clear
	case offEn, offEn + 1:
		p.en = p.en&^mask | v&mask&enImplemented
	case offCnt, offCnt + 1:
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
