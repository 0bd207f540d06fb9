package vm

import (
	"fmt"

	"github.com/xeno-hv/xeno/hv/acpi"
)

// devices are the optional platform devices: the ACPI PM block and the
// virtio-mmio disks.
type devices struct{}

func (d *devices) pmIn(port uint16, b []byte) bool             { return false }
func (d *devices) pmOut(port uint16, b []byte) bool            { return false }
func (d *devices) mmio(addr uint64, b []byte, write bool) bool { return false }
func (d *devices) close()                                      {}

// setupPlatform builds the ACPI tables at acpiBase and returns their size
// and the RSDP address.
func (v *VM) setupPlatform() (uint64, uint64, error) {
	cfg := acpi.Config{CPUs: v.cfg.VCPUs, IOAPICAddr: ioapicAddr, LAPICAddr: lapicAddr, I8042: true}
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
	return fmt.Errorf("no ACPI PM device yet")
}
