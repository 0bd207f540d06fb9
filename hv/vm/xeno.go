package vm

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/hv/devstate"
)

// xenoPorts serves the xeno I/O ports (docs/abi.md) exactly as the
// admitted interface defines them: a port whose feature the interface
// lacks behaves as if nothing were there. Its window is abi.PortFirst to
// abi.PortLast.
type xenoPorts struct {
	cfg      Config // the build and the domain the info port describes
	admitted abi.Interface
	hooks    xenoHooks

	mu  sync.Mutex
	sel int
	cur []byte // the selected item, nil if unsupported
	off int

	bootDone bool // the boot timer fired: it fires once per domain
}

// xenoHooks are what the ports do to the domain.
type xenoHooks struct {
	stop        func(reason, detail string) // the shutdown port
	console     func(p []byte)              // the console port
	bootTimer   func(ns int64)              // the first boot-timer write, ns since cfg.Start
	badShutdown func(reason byte)           // a shutdown reason the ABI does not define
	uptime      func() time.Duration        // the domain's, for the uptime item
}

func newXenoPorts(cfg Config, h xenoHooks) *xenoPorts {
	return &xenoPorts{cfg: cfg, admitted: cfg.Admitted, hooks: h, sel: -1}
}

func (x *xenoPorts) has(f abi.Feature) bool { return abi.Has(x.admitted, f) }

// item returns the bytes of selector sel, or false if the admitted
// interface does not define it.
func (x *xenoPorts) item(sel int) ([]byte, bool) {
	b := x.cfg.Build
	switch sel {
	case abi.SelSignature:
		return []byte("XenoHV"), true
	case abi.SelRelease:
		return []byte(b.Release.String()), true
	case abi.SelExtraversion:
		return []byte(b.Release.Extraversion()), true
	case abi.SelChangeset:
		return []byte(b.Changeset), true
	case abi.SelBuildID:
		return []byte(b.BuildID), true
	case abi.SelCaps:
		return []byte(b.Caps()), true
	case abi.SelUUID:
		return []byte(x.cfg.UUID), true
	case abi.SelName:
		return []byte(x.cfg.Name), true
	case abi.SelInterface:
		s := x.admitted.Short()
		if x.cfg.Compat {
			s += " compat"
		}
		return []byte(s), true
	case abi.SelUptime:
		if x.has(abi.FeatInfoUptime) {
			return []byte(strconv.FormatInt(x.hooks.uptime().Nanoseconds(), 10)), true
		}
	}
	return nil, false
}

func (x *xenoPorts) Read(off uint64, d []byte) {
	port := abi.PortFirst + uint16(off)
	if !x.has(abi.FeatInfo) || (port != abi.PortInfoData && port != abi.PortInfoLen) {
		fill(d, allOnes)
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	switch port {
	case abi.PortInfoLen:
		n := uint32(abi.LenUnsupported)
		if x.cur != nil {
			n = uint32(len(x.cur))
		}
		put32(d, n)
	case abi.PortInfoData:
		if x.cur == nil {
			fill(d, allOnes)
			return
		}
		for i := range d {
			d[i] = 0
			if x.off < len(x.cur) {
				d[i] = x.cur[x.off]
				x.off++
			}
		}
	}
}

func (x *xenoPorts) Write(off uint64, d []byte) {
	switch abi.PortFirst + uint16(off) {
	case abi.PortInfoSelect:
		if !x.has(abi.FeatInfo) {
			return
		}
		sel := int(le32(d) & 0xffff)
		b, ok := x.item(sel)
		x.mu.Lock()
		x.sel, x.off, x.cur = sel, 0, nil
		if ok {
			x.cur = append([]byte{}, b...)
		}
		x.mu.Unlock()
	case abi.PortConsole:
		if x.has(abi.FeatConsole) {
			x.hooks.console(d[:1])
		}
	case abi.PortShutdown:
		if !x.has(abi.FeatShutdown) {
			return
		}
		switch d[0] {
		case abi.ShutdownPoweroff:
			x.hooks.stop(control.ReasonPoweroff, "shutdown port: poweroff")
		case abi.ShutdownReboot:
			x.hooks.stop(control.ReasonReboot, "shutdown port: reboot")
		case abi.ShutdownCrash:
			x.hooks.stop(control.ReasonCrash, "shutdown port: the guest reported a crash")
		default:
			x.hooks.badShutdown(d[0])
		}
	case abi.PortBootTimer:
		if !x.has(abi.FeatBootTimer) {
			return
		}
		x.mu.Lock()
		first := !x.bootDone
		x.bootDone = true
		x.mu.Unlock()
		if first {
			x.hooks.bootTimer(time.Since(x.cfg.Start).Nanoseconds())
		}
	}
}

const xenoStateVersion = 1

// xenoItemMax bounds a selected item in a snapshot: the longest is the
// domain's name or a build string.
const xenoItemMax = 4096

type xenoState struct {
	Version  int    `json:"version"`
	Sel      int    `json:"sel"`
	Cur      []byte `json:"cur"` // nil: the selected item is unsupported
	Off      int    `json:"off"`
	BootDone bool   `json:"boot_timer_done"`
}

// SaveState encodes the info port's selection and read position, and
// whether the boot timer has fired (docs/devices.md).
func (x *xenoPorts) SaveState() ([]byte, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return devstate.Encode("xeno-ports", &xenoState{Version: xenoStateVersion, Sel: x.sel, Cur: x.cur, Off: x.off, BootDone: x.bootDone})
}

// RestoreState sets the state SaveState encoded. The item keeps the
// bytes the guest was reading, so a read in progress goes on unchanged.
func (x *xenoPorts) RestoreState(b []byte) error {
	var s xenoState
	if err := devstate.Decode("xeno-ports", b, xenoStateVersion, &s); err != nil {
		return err
	}
	switch {
	case s.Sel < -1 || s.Sel > 0xffff:
		return fmt.Errorf("xeno-ports state: selector %d out of range", s.Sel)
	case len(s.Cur) > xenoItemMax:
		return fmt.Errorf("xeno-ports state: item of %d bytes, at most %d", len(s.Cur), xenoItemMax)
	case s.Off < 0 || s.Off > len(s.Cur):
		return fmt.Errorf("xeno-ports state: offset %d in an item of %d bytes", s.Off, len(s.Cur))
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.sel, x.cur, x.off, x.bootDone = s.Sel, s.Cur, s.Off, s.BootDone
	return nil
}

// consoleWrite sends console-port bytes to the domain console, the same
// sink as the UART.
func (v *VM) consoleWrite(p []byte) {
	v.consoleMu.Lock()
	defer v.consoleMu.Unlock()
	if _, err := v.cfg.Console.Write(p); err != nil {
		v.unk.once("console-error", 0, true, len(p))
	}
}
