package vm

import (
	"errors"
	"fmt"
	"os"

	"github.com/xeno-hv/xeno/hv/acpi"
	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/hv/virtio"
)

// devices are the platform devices behind the ACPI tables: the PM1 block
// (poweroff, power button) and the virtio-mmio disks.
type devices struct {
	pm     *acpi.PM
	blocks []*virtio.Block // device i at virtioBase + i*virtioSize
	files  []*os.File
}

func (d *devices) pmIn(port uint16, b []byte) bool {
	if d.pm == nil || !d.pm.Owns(port) {
		return false
	}
	put32(b, d.pm.Read(port, len(b)))
	return true
}

func (d *devices) pmOut(port uint16, b []byte) bool {
	if d.pm == nil || !d.pm.Owns(port) {
		return false
	}
	d.pm.Write(port, len(b), le32(b))
	return true
}

func (d *devices) mmio(addr uint64, b []byte, write bool) bool {
	if addr < virtioBase {
		return false
	}
	i := (addr - virtioBase) / virtioSize
	if i >= uint64(len(d.blocks)) {
		return false
	}
	off := (addr - virtioBase) % virtioSize
	if write {
		d.blocks[i].Write(off, b)
	} else {
		d.blocks[i].Read(off, b)
	}
	return true
}

func (d *devices) close() {
	for _, f := range d.files {
		f.Close()
	}
}

// setupPlatform creates the PM block, builds the ACPI tables at acpiBase
// and returns their size and the RSDP address.
func (v *VM) setupPlatform() (uint64, uint64, error) {
	v.dev.pm = acpi.NewPM(v.irq(acpi.SCIIRQ), func(slpTyp int) {
		if slpTyp == acpi.S5SlpTyp {
			v.stop(control.ReasonPoweroff, "ACPI S5 (PM1a_CNT SLP_EN)")
			return
		}
		v.logf("ignoring ACPI sleep to SLP_TYP %d: only S5 (%d) is supported", slpTyp, acpi.S5SlpTyp)
	})
	cfg := acpi.Config{CPUs: v.cfg.VCPUs, IOAPICAddr: ioapicAddr, LAPICAddr: lapicAddr, I8042: true}
	if len(v.cfg.Disks) > maxVirtio {
		return 0, 0, fmt.Errorf("vm: %d disks, at most %d", len(v.cfg.Disks), maxVirtio)
	}
	for i, d := range v.cfg.Disks {
		flag := os.O_RDWR
		if d.ReadOnly {
			flag = os.O_RDONLY
		}
		f, err := os.OpenFile(d.Path, flag, 0)
		if err != nil {
			return 0, 0, fmt.Errorf("vm: disk %d: %w", i, err)
		}
		v.dev.files = append(v.dev.files, f)
		b, err := virtio.NewBlock(v.mem, f, d.ReadOnly, v.irq(virtioIRQ(i)))
		if err != nil {
			return 0, 0, fmt.Errorf("vm: disk %d: %w", i, err)
		}
		v.dev.blocks = append(v.dev.blocks, b)
		cfg.Virtio = append(cfg.Virtio, acpi.MMIODevice{
			Base: virtioBase + uint64(i)*virtioSize, Size: virtioSize, IRQ: virtioIRQ(i)})
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
