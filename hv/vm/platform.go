package vm

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/hv/acpi"
	"github.com/xeno-hv/xeno/hv/bus"
	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/hv/uart"
	"github.com/xeno-hv/xeno/hv/virtio"
)

// devices are the domain's devices on its two buses; the PM1 block and the
// virtio-mmio disks are also announced in the ACPI tables.
type devices struct {
	pio, mmio bus.Bus
	pm        *acpi.PM
	kbc       *i8042
	rtc       *rtc
	xeno      *xenoPorts
	virtio    []*virtio.MMIO // device i at virtioAddr(i), on virtioIRQ(i)
	files     []*os.File
	nets      []netDev
	vsock     *virtio.Vsock
	vsockPath string
}

func (d *devices) close() {
	for _, f := range d.files {
		f.Close()
	}
	for _, n := range d.nets {
		n.dev.Close()
	}
	if d.vsock != nil {
		d.vsock.Close()
		os.Remove(d.vsockPath)
	}
}

// addDevices creates the devices and puts them on the buses; irq(gsi)
// drives interrupt line gsi.
func (v *VM) addDevices(irq func(gsi uint32) func(level bool)) error {
	d := &v.dev
	v.uart = uart.New(v.cfg.Console, irq(uartIRQ))
	d.kbc = &i8042{reset: func() { v.stop(control.ReasonReboot, "i8042 reset (0xfe to port 0x64)") }}
	d.pm = acpi.NewPM(irq(acpi.SCIIRQ), func(slpTyp int) {
		if slpTyp == acpi.S5SlpTyp {
			v.stop(control.ReasonPoweroff, "ACPI S5 (PM1a_CNT SLP_EN)")
			return
		}
		v.logf("ignoring ACPI sleep to SLP_TYP %d: only S5 (%d) is supported", slpTyp, acpi.S5SlpTyp)
	})
	d.rtc = &rtc{}
	d.xeno = newXenoPorts(v.cfg, xenoHooks{
		stop:    v.stop,
		console: v.consoleWrite,
		bootTimer: func(ns int64) {
			v.bootTimer.Store(ns)
			v.logf("boot-timer: %.1f µs since start", float64(ns)/1e3)
		},
		badShutdown: func(reason byte) { v.unk.once("shutdown-reason", uint64(reason), true, 1) },
		uptime:      func() time.Duration { return time.Since(v.started) },
	})
	ports := append([]portDevice{
		{"COM1", com1Base, 8, v.uart},
		{"i8042 data", 0x60, 1, i8042Port{d.kbc, 0x60}},
		{"i8042 command", 0x64, 1, i8042Port{d.kbc, 0x64}},
		{"RTC", 0x70, 2, d.rtc},
		{"xeno ports", abi.PortFirst, abi.PortLast - abi.PortFirst + 1, d.xeno},
		{"ACPI PM1a", acpi.PM1aEvt, acpi.PM1aLen, d.pm},
	}, silentPorts()...)
	for _, p := range ports {
		if err := d.pio.Add(p.name, p.base, p.size, p.dev); err != nil {
			return fmt.Errorf("vm: port bus: %w", err)
		}
	}

	if n := len(v.cfg.Disks) + len(v.cfg.Nets) + btoi(v.cfg.Vsock != nil); n > maxVirtio {
		return fmt.Errorf("vm: %d disks, %d network devices and %d vsock: %d virtio devices, at most %d",
			len(v.cfg.Disks), len(v.cfg.Nets), btoi(v.cfg.Vsock != nil), n, maxVirtio)
	}
	for i, disk := range v.cfg.Disks {
		f := disk.File
		if f == nil {
			var err error
			if f, err = OpenDisk(disk); err != nil {
				return fmt.Errorf("vm: disk %d: %w", i, err)
			}
		}
		d.files = append(d.files, f)
		b, err := virtio.NewBlock(f, disk.ReadOnly)
		if err != nil {
			return fmt.Errorf("vm: disk %d: %w", i, err)
		}
		if err := v.addVirtio(fmt.Sprintf("disk %s", disk.Path), b, irq); err != nil {
			return err
		}
	}
	if err := v.addNets(irq); err != nil {
		return err
	}
	if vs := v.cfg.Vsock; vs != nil {
		if err := v.addVsock(*vs, irq); err != nil {
			return err
		}
	}
	return nil
}

// addVsock listens on the vsock's Unix socket and puts the device on
// the next virtio-mmio window.
func (v *VM) addVsock(vs Vsock, irq func(gsi uint32) func(level bool)) error {
	ln, err := listenUnix(vs.UDS)
	if err != nil {
		return fmt.Errorf("vm: vsock: %w", err)
	}
	dev, err := virtio.NewVsock(vs.CID, vs.UDS, ln.(*net.UnixListener))
	if err != nil {
		ln.Close()
		return fmt.Errorf("vm: %w", err)
	}
	v.dev.vsock, v.dev.vsockPath = dev, vs.UDS
	return v.addVirtio(fmt.Sprintf("vsock cid %d", vs.CID), dev, irq)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// addVirtio puts dev on the next virtio-mmio window.
func (v *VM) addVirtio(name string, dev virtio.Device, irq func(gsi uint32) func(level bool)) error {
	i := len(v.dev.virtio)
	t, err := virtio.NewMMIO(v.mem, dev, irq(virtioIRQ(i)))
	if err != nil {
		return fmt.Errorf("vm: virtio %d (%s): %w", i, name, err)
	}
	if err := v.dev.mmio.Add(fmt.Sprintf("virtio-mmio %d (%s)", i, name), virtioAddr(i), virtioSize, t); err != nil {
		return fmt.Errorf("vm: MMIO bus: %w", err)
	}
	v.dev.virtio = append(v.dev.virtio, t)
	return nil
}

// setupPlatform creates the devices, builds the ACPI tables at acpiBase
// and returns their size and the RSDP address.
func (v *VM) setupPlatform() (uint64, uint64, error) {
	if err := v.addDevices(v.irq); err != nil {
		return 0, 0, err
	}
	cfg := acpi.Config{CPUs: v.cfg.VCPUs, IOAPICAddr: ioapicAddr, LAPICAddr: lapicAddr, I8042: true}
	for i := range v.dev.virtio {
		cfg.Virtio = append(cfg.Virtio, acpi.MMIODevice{
			Base: virtioAddr(i), Size: virtioSize, IRQ: virtioIRQ(i)})
	}
	blob, rsdp, err := acpi.Build(cfg, acpiBase)
	if err != nil {
		return 0, 0, fmt.Errorf("vm: %w", err)
	}
	if uint64(len(blob)) > biosEnd-acpiBase {
		return 0, 0, fmt.Errorf("vm: ACPI tables are %d bytes, more than the %d below 1 MiB", len(blob), biosEnd-acpiBase)
	}
	dst, _ := v.mem.Slice(acpiBase, uint64(len(blob)))
	copy(dst, blob)
	return uint64(len(blob)), rsdp, nil
}

// PowerButton presses the ACPI power button: the guest decides what to do.
func (v *VM) PowerButton() error {
	if v.dev.pm == nil {
		return errors.New("no ACPI PM device")
	}
	v.dev.pm.PressPowerButton()
	return nil
}
