package uart

import (
	"fmt"

	"github.com/xeno-hv/xeno/hv/devstate"
)

const stateVersion = 1

// state is what a snapshot keeps of a UART: its registers and the bytes
// waiting in the receive FIFO. The transmitter is always empty.
type state struct {
	Version    int    `json:"version"`
	IER        byte   `json:"ier"`
	LCR        byte   `json:"lcr"`
	MCR        byte   `json:"mcr"`
	SCR        byte   `json:"scr"`
	FCR        byte   `json:"fcr"`
	DLL        byte   `json:"dll"`
	DLM        byte   `json:"dlm"`
	LSRErr     byte   `json:"lsr_err"`
	MSR        byte   `json:"msr"`
	THRPending bool   `json:"thr_pending"`
	RX         []byte `json:"rx"`
}

// SaveState encodes the UART's state (docs/devices.md).
func (u *UART) SaveState() ([]byte, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := state{Version: stateVersion, IER: u.ier, LCR: u.lcr, MCR: u.mcr, SCR: u.scr, FCR: u.fcr,
		DLL: u.dll, DLM: u.dlm, LSRErr: u.lsrErr, MSR: u.msr, THRPending: u.thrPending,
		RX: make([]byte, u.rxLen)}
	for i := range s.RX {
		s.RX[i] = u.rx[(u.rxHead+i)%RxFIFOSize]
	}
	return devstate.Encode("uart", &s)
}

// RestoreState sets the UART to a state SaveState encoded and drives
// its interrupt line to match. On error the UART is unchanged.
func (u *UART) RestoreState(b []byte) error {
	var s state
	if err := devstate.Decode("uart", b, stateVersion, &s); err != nil {
		return err
	}
	if len(s.RX) > RxFIFOSize {
		return fmt.Errorf("uart state: %d received bytes, the FIFO holds %d", len(s.RX), RxFIFOSize)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.ier, u.lcr, u.mcr, u.scr, u.fcr = s.IER, s.LCR, s.MCR, s.SCR, s.FCR
	u.dll, u.dlm, u.lsrErr, u.msr, u.thrPending = s.DLL, s.DLM, s.LSRErr, s.MSR, s.THRPending
	u.rxHead, u.rxLen = 0, copy(u.rx[:], s.RX)
	// The line's level in KVM is not part of the irqchip's state: drive
	// it again from what is pending.
	u.irqLevel = false
	u.update()
	return nil
}
