// Package uart emulates the 16550A serial port that Linux and the
// micro-guests use as their console (COM1, ports 0x3f8-0x3ff, IRQ 4).
//
// Transmission is instant: a byte written to THR goes straight to the host
// writer, so the transmitter is always empty (LSR.THRE and LSR.TEMT set).
// Host input is queued in a bounded receive FIFO. The interrupt output is a
// level: the owner gets irq(true) when an enabled interrupt becomes pending
// and irq(false) when none is, only on change.
package uart

import (
	"io"
	"sync"
)

// Register offsets from the base port.
const (
	RegData = 0 // RBR (read), THR (write), DLL when LCR.DLAB
	RegIER  = 1 // interrupt enable, DLM when LCR.DLAB
	RegIIR  = 2 // interrupt identification (read), FCR (write)
	RegLCR  = 3
	RegMCR  = 4
	RegLSR  = 5
	RegMSR  = 6
	RegSCR  = 7
)

// IER bits.
const (
	IERRxData     = 0x01 // ERBFI
	IERTHRE       = 0x02 // ETBEI
	IERLineStatus = 0x04 // ELSI
	IERModem      = 0x08 // EDSSI
)

// IIR values (bits 0-3) and the FIFO-enabled marker (bits 6-7).
const (
	IIRNone       = 0x01
	IIRModem      = 0x00
	IIRTHRE       = 0x02
	IIRRxData     = 0x04
	IIRLineStatus = 0x06
	IIRFIFO       = 0xc0
)

// FCR bits.
const (
	FCREnable  = 0x01
	FCRClearRx = 0x02
	FCRClearTx = 0x04
)

// LCR, MCR, LSR and MSR bits.
const (
	LCRDLAB = 0x80

	MCRDTR  = 0x01
	MCRRTS  = 0x02
	MCROut1 = 0x04
	MCROut2 = 0x08
	MCRLoop = 0x10

	LSRDataReady = 0x01
	LSROverrun   = 0x02
	LSRTHRE      = 0x20
	LSRTEMT      = 0x40

	MSRDeltaMask = 0x0f
	MSRCTS       = 0x10
	MSRDSR       = 0x20
	MSRRI        = 0x40
	MSRDCD       = 0x80
)

// RxFIFOSize bounds the host-to-guest queue; bytes beyond it are dropped
// and reported to the guest as an overrun.
const RxFIFOSize = 4096

// UART is one 16550A. Its methods are safe for concurrent use: the vCPU
// thread does port I/O while another goroutine feeds Input.
type UART struct {
	mu  sync.Mutex
	out io.Writer
	irq func(level bool)

	ier, lcr, mcr, scr, fcr byte
	dll, dlm                byte
	lsrErr                  byte // overrun, cleared by reading LSR
	msr                     byte // status bits (4-7) and deltas (0-3)
	thrPending              bool // THRE interrupt latched, see read(RegIIR)
	irqLevel                bool

	rx     [RxFIFOSize]byte
	rxHead int
	rxLen  int
}

// New returns a UART whose transmitted bytes go to out and whose interrupt
// line is driven through irq (nil for none). out must not call back into
// the UART: it is called with the UART's lock held so that output keeps the
// order in which vCPUs wrote it.
func New(out io.Writer, irq func(level bool)) *UART {
	if out == nil {
		out = io.Discard
	}
	if irq == nil {
		irq = func(bool) {}
	}
	u := &UART{out: out, irq: irq, dll: 12} // 9600 baud, as after a PC BIOS
	u.msr = u.modemStatus()
	return u
}

// Read serves a guest read at port offset off (0-7): the register in
// data[0], zeros in the bytes of a wider access.
func (u *UART) Read(off uint64, data []byte) {
	clear(data)
	data[0] = u.read(uint8(off))
}

func (u *UART) read(off uint8) byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	var v byte
	switch off & 7 {
	case RegData:
		if u.lcr&LCRDLAB != 0 {
			return u.dll
		}
		if u.rxLen > 0 {
			v = u.rx[u.rxHead]
			u.rxHead = (u.rxHead + 1) % RxFIFOSize
			u.rxLen--
		}
	case RegIER:
		if u.lcr&LCRDLAB != 0 {
			return u.dlm
		}
		v = u.ier
	case RegIIR:
		v = u.pendingIIR()
		// Reading IIR acknowledges a THRE interrupt only when it is the
		// source reported; Linux's THRE test and TX loop rely on this.
		if v == IIRTHRE {
			u.thrPending = false
		}
		if u.fcr&FCREnable != 0 {
			v |= IIRFIFO
		}
	case RegLCR:
		v = u.lcr
	case RegMCR:
		v = u.mcr
	case RegLSR:
		v = LSRTHRE | LSRTEMT | u.lsrErr
		if u.rxLen > 0 {
			v |= LSRDataReady
		}
		u.lsrErr = 0
	case RegMSR:
		v = u.msr
		u.msr &^= MSRDeltaMask
	case RegSCR:
		v = u.scr
	}
	u.update()
	return v
}

// Write serves a guest write at port offset off (0-7); only data[0]
// reaches the 8-bit register.
func (u *UART) Write(off uint64, data []byte) { u.write(uint8(off), data[0]) }

func (u *UART) write(off uint8, v byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch off & 7 {
	case RegData:
		if u.lcr&LCRDLAB != 0 {
			u.dll = v
			return
		}
		if u.mcr&MCRLoop != 0 {
			u.push(v)
		} else {
			// A console that cannot be written must not stop the guest.
			_, _ = u.out.Write([]byte{v})
		}
		// The byte left at once, so THR is empty again: the THRE interrupt
		// that writing THR cleared is immediately re-armed.
		u.thrPending = true
	case RegIER:
		if u.lcr&LCRDLAB != 0 {
			u.dlm = v
			return
		}
		old := u.ier
		u.ier = v & 0x0f
		// Enabling ETBEI while THR is empty raises THRE, as on the
		// real part; Linux's startup test (UART_BUG_THRE) checks this.
		if old&IERTHRE == 0 && u.ier&IERTHRE != 0 {
			u.thrPending = true
		}
	case RegIIR:
		u.writeFCR(v)
	case RegLCR:
		u.lcr = v
	case RegMCR:
		u.mcr = v & 0x1f
		u.setModemStatus(u.modemStatus())
	case RegLSR:
		// Read-only on the 16550A (factory test only).
	case RegMSR:
		// Read-only.
	case RegSCR:
		u.scr = v
	}
	u.update()
}

// Input queues host bytes for the guest. Bytes that do not fit in the
// receive FIFO are dropped and flagged as an overrun.
func (u *UART) Input(p []byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, b := range p {
		u.push(b)
	}
	u.update()
}

// Buffered reports how many received bytes wait for the guest.
func (u *UART) Buffered() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.rxLen
}

func (u *UART) push(b byte) {
	if u.rxLen == RxFIFOSize {
		u.lsrErr |= LSROverrun
		return
	}
	u.rx[(u.rxHead+u.rxLen)%RxFIFOSize] = b
	u.rxLen++
}

func (u *UART) writeFCR(v byte) {
	if (v^u.fcr)&FCREnable != 0 || v&FCRClearRx != 0 {
		// Toggling the FIFO mode or the clear bit empties the receiver.
		u.rxHead, u.rxLen = 0, 0
	}
	// Bits 1 and 2 self-clear; the trigger level (6-7) is kept for reads
	// of nothing but is harmless to remember.
	u.fcr = v &^ (FCRClearRx | FCRClearTx)
}

// modemStatus returns MSR bits 4-7: in loopback they mirror MCR's outputs;
// otherwise the host side looks like a connected, ready modem.
func (u *UART) modemStatus() byte {
	if u.mcr&MCRLoop == 0 {
		return MSRCTS | MSRDSR | MSRDCD
	}
	var s byte
	if u.mcr&MCRRTS != 0 {
		s |= MSRCTS
	}
	if u.mcr&MCRDTR != 0 {
		s |= MSRDSR
	}
	if u.mcr&MCROut1 != 0 {
		s |= MSRRI
	}
	if u.mcr&MCROut2 != 0 {
		s |= MSRDCD
	}
	return s
}

func (u *UART) setModemStatus(s byte) {
	old := u.msr &^ MSRDeltaMask
	d := u.msr & MSRDeltaMask
	changed := old ^ s
	d |= (changed >> 4) & (0x01 | 0x02 | 0x08) // DCTS, DDSR, DDCD on any change
	if old&MSRRI != 0 && s&MSRRI == 0 {
		d |= 0x04 // TERI: trailing edge of RI only
	}
	u.msr = s | d
}

// pendingIIR returns the highest-priority enabled pending interrupt.
func (u *UART) pendingIIR() byte {
	switch {
	case u.ier&IERLineStatus != 0 && u.lsrErr != 0:
		return IIRLineStatus
	case u.ier&IERRxData != 0 && u.rxLen > 0:
		return IIRRxData
	case u.ier&IERTHRE != 0 && u.thrPending:
		return IIRTHRE
	case u.ier&IERModem != 0 && u.msr&MSRDeltaMask != 0:
		return IIRModem
	}
	return IIRNone
}

// update drives the interrupt line to match the pending state; it is
// called with u.mu held so that level changes reach the owner in order.
func (u *UART) update() {
	level := u.pendingIIR() != IIRNone
	if level != u.irqLevel {
		u.irqLevel = level
		u.irq(level)
	}
}
