package vm

import (
	"fmt"
	"sync"
	"time"

	"github.com/xeno-hv/xeno/hv/devstate"
)

// i8042 is the PS/2 controller as far as Linux's probe and reset go: the
// self-test, the command byte, and the reset pulse (0xfe to port 0x64,
// or an output-port write with bit 0 clear) which reboots the domain. No
// keyboard or mouse is attached.
type i8042 struct {
	mu      sync.Mutex
	out     []byte // bytes for the guest on port 0x60
	ctr     byte   // controller command byte
	pending byte   // command awaiting its data byte on port 0x60
	reset   func()
}

const (
	i8042StatusOBF    = 0x01
	i8042StatusSystem = 0x04
	i8042StatusCmd    = 0x08
)

func (k *i8042) read(port uint16) byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	if port == 0x64 {
		s := byte(i8042StatusSystem)
		if len(k.out) > 0 {
			s |= i8042StatusOBF
		}
		return s
	}
	if len(k.out) == 0 {
		return 0
	}
	b := k.out[0]
	k.out = k.out[1:]
	return b
}

func (k *i8042) write(port uint16, v byte) {
	k.mu.Lock()
	if port == 0x60 {
		cmd := k.pending
		k.pending = 0
		switch cmd {
		case 0x60:
			k.ctr = v
		case 0xd1: // write output port: bit 0 low holds the CPU in reset
			if v&1 == 0 {
				k.mu.Unlock()
				k.reset()
				return
			}
		}
		k.mu.Unlock()
		return
	}
	switch {
	case v == 0x20:
		k.out = append(k.out[:0], k.ctr)
	case v == 0x60 || v == 0xd1:
		k.pending = v
	case v == 0xaa: // controller self-test
		k.out = append(k.out[:0], 0x55)
	case v == 0xab || v == 0xa9: // port tests: passed
		k.out = append(k.out[:0], 0x00)
	case v == 0xfe || (v >= 0xf0 && v&1 == 0): // pulse output bit 0: reset
		k.mu.Unlock()
		k.reset()
		return
	}
	k.mu.Unlock()
}

// i8042Port is one of the controller's two ports on the port bus. They
// are not adjacent (0x61 between them is the PC speaker's), so each is a
// window of its own.
type i8042Port struct {
	k    *i8042
	port uint16
}

func (p i8042Port) Read(_ uint64, d []byte) {
	clear(d)
	d[0] = p.k.read(p.port)
}

func (p i8042Port) Write(_ uint64, d []byte) { p.k.write(p.port, d[0]) }

// rtc is a read-only MC146818 CMOS clock giving the host's UTC time, so
// that Linux's clock read does not spin on a missing chip. Its window is
// the index port (0x70) and the data port (0x71).
type rtc struct {
	mu  sync.Mutex
	idx byte
}

const rtcIndex, rtcData = 0, 1 // offsets in the window

func (r *rtc) Write(off uint64, d []byte) {
	if off == rtcIndex {
		r.mu.Lock()
		r.idx = d[0] & 0x7f
		r.mu.Unlock()
	}
}

func (r *rtc) Read(off uint64, d []byte) {
	clear(d)
	d[0] = r.read(off)
}

func (r *rtc) read(off uint64) byte {
	r.mu.Lock()
	idx := r.idx
	r.mu.Unlock()
	if off != rtcData {
		return 0xff
	}
	bcd := func(n int) byte { return byte(n/10<<4 | n%10) }
	now := time.Now().UTC()
	switch idx {
	case 0x00:
		return bcd(now.Second())
	case 0x02:
		return bcd(now.Minute())
	case 0x04:
		return bcd(now.Hour())
	case 0x06:
		return bcd(int(now.Weekday()) + 1)
	case 0x07:
		return bcd(now.Day())
	case 0x08:
		return bcd(int(now.Month()))
	case 0x09:
		return bcd(now.Year() % 100)
	case 0x32:
		return bcd(now.Year() / 100)
	case 0x0a:
		return 0x26 // divider set, update not in progress
	case 0x0b:
		return 0x02 // 24-hour, BCD
	case 0x0d:
		return 0x80 // battery good
	}
	return 0
}

const legacyStateVersion = 1

// i8042Max bounds the controller's output bytes in a snapshot: each
// command answers with one.
const i8042Max = 16

type i8042State struct {
	Version int    `json:"version"`
	Out     []byte `json:"out"`
	CTR     byte   `json:"ctr"`
	Pending byte   `json:"pending"`
}

// SaveState encodes the controller's state (docs/devices.md).
func (k *i8042) SaveState() ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return devstate.Encode("i8042", &i8042State{Version: legacyStateVersion, Out: k.out, CTR: k.ctr, Pending: k.pending})
}

// RestoreState sets the state SaveState encoded.
func (k *i8042) RestoreState(b []byte) error {
	var s i8042State
	if err := devstate.Decode("i8042", b, legacyStateVersion, &s); err != nil {
		return err
	}
	if len(s.Out) > i8042Max {
		return fmt.Errorf("i8042 state: %d output bytes, at most %d", len(s.Out), i8042Max)
	}
	if s.Pending != 0 && s.Pending != 0x60 && s.Pending != 0xd1 {
		return fmt.Errorf("i8042 state: pending command %#x is none the controller takes data for", s.Pending)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.out, k.ctr, k.pending = append([]byte(nil), s.Out...), s.CTR, s.Pending
	return nil
}

type rtcState struct {
	Version int  `json:"version"`
	Index   byte `json:"index"`
}

// SaveState encodes the selected CMOS index; the time is the host's.
func (r *rtc) SaveState() ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return devstate.Encode("rtc", &rtcState{Version: legacyStateVersion, Index: r.idx})
}

// RestoreState sets the state SaveState encoded.
func (r *rtc) RestoreState(b []byte) error {
	var s rtcState
	if err := devstate.Decode("rtc", b, legacyStateVersion, &s); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.idx = s.Index & 0x7f
	return nil
}
