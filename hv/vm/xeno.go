package vm

import (
	"strconv"
	"sync"
	"time"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/hv/control"
)

// xenoPorts serves the xeno I/O ports (docs/abi.md) exactly as the
// admitted interface defines them: a port whose feature the interface
// lacks behaves as if nothing were there. Its window is abi.PortFirst to
// abi.PortLast.
type xenoPorts struct {
	cfg      Config    // the build and the domain the info port describes
	started  time.Time // domain creation, for the uptime item
	admitted abi.Interface
	hooks    xenoHooks

	mu  sync.Mutex
	sel int
	cur []byte // the selected item, nil if unsupported
	off int

	bootOnce sync.Once
}

// xenoHooks are what the ports do to the domain.
type xenoHooks struct {
	stop        func(reason, detail string) // the shutdown port
	console     func(p []byte)              // the console port
	bootTimer   func(ns int64)              // the first boot-timer write, ns since cfg.Start
	badShutdown func(reason byte)           // a shutdown reason the ABI does not define
}

func newXenoPorts(cfg Config, started time.Time, h xenoHooks) *xenoPorts {
	return &xenoPorts{cfg: cfg, started: started, admitted: cfg.Admitted, hooks: h, sel: -1}
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
			return []byte(strconv.FormatInt(time.Since(x.started).Nanoseconds(), 10)), true
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
		x.bootOnce.Do(func() { x.hooks.bootTimer(time.Since(x.cfg.Start).Nanoseconds()) })
	}
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
