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
// lacks behaves as if nothing were there.
type xenoPorts struct {
	v        *VM
	admitted abi.Interface

	mu  sync.Mutex
	sel int
	cur []byte // the selected item, nil if unsupported
	off int

	bootOnce sync.Once
}

func newXenoPorts(v *VM) *xenoPorts {
	return &xenoPorts{v: v, admitted: v.cfg.Admitted, sel: -1}
}

func (x *xenoPorts) has(f abi.Feature) bool { return abi.Has(x.admitted, f) }

// item returns the bytes of selector sel, or false if the admitted
// interface does not define it.
func (x *xenoPorts) item(sel int) ([]byte, bool) {
	b := x.v.cfg.Build
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
		return []byte(x.v.cfg.UUID), true
	case abi.SelName:
		return []byte(x.v.cfg.Name), true
	case abi.SelInterface:
		s := x.admitted.Short()
		if x.v.cfg.Compat {
			s += " compat"
		}
		return []byte(s), true
	case abi.SelUptime:
		if x.has(abi.FeatInfoUptime) {
			return []byte(strconv.FormatInt(time.Since(x.v.started).Nanoseconds(), 10)), true
		}
	}
	return nil, false
}

func (x *xenoPorts) in(port uint16, d []byte) {
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

func (x *xenoPorts) out(port uint16, d []byte) {
	switch port {
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
			x.v.consoleWrite(d[:1])
		}
	case abi.PortShutdown:
		if !x.has(abi.FeatShutdown) {
			return
		}
		switch d[0] {
		case abi.ShutdownPoweroff:
			x.v.stop(control.ReasonPoweroff, "shutdown port: poweroff")
		case abi.ShutdownReboot:
			x.v.stop(control.ReasonReboot, "shutdown port: reboot")
		case abi.ShutdownCrash:
			x.v.stop(control.ReasonCrash, "shutdown port: the guest reported a crash")
		default:
			x.v.unk.once("shutdown-reason", uint64(d[0]), true, 1)
		}
	case abi.PortBootTimer:
		if !x.has(abi.FeatBootTimer) {
			return
		}
		x.bootOnce.Do(func() {
			ns := time.Since(x.v.cfg.Start).Nanoseconds()
			x.v.bootTimer.Store(ns)
			x.v.logf("boot-timer: %.1f µs since start", float64(ns)/1e3)
		})
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
