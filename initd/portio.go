package initd

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/xeno-hv/xeno/hv/abi"
)

func inb(port uint16) uint8
func inl(port uint16) uint32
func outb(port uint16, v uint8)
func outw(port uint16, v uint16)

// Ports is the guest's access to the xeno I/O ports; tests give a fake hv.
type Ports interface {
	Inb(port uint16) uint8
	Inl(port uint16) uint32
	Outb(port uint16, v uint8)
	Outw(port uint16, v uint16)
}

// hwPorts are the real ports, usable once ioperm granted them.
type hwPorts struct{}

func (hwPorts) Inb(p uint16) uint8      { return inb(p) }
func (hwPorts) Inl(p uint16) uint32     { return inl(p) }
func (hwPorts) Outb(p uint16, v uint8)  { outb(p, v) }
func (hwPorts) Outw(p uint16, v uint16) { outw(p, v) }

// OpenPorts asks the kernel for the xeno port range (PID 1 runs as root,
// so ioperm succeeds unless the kernel forbids it).
func OpenPorts() (Ports, error) {
	if err := unix.Ioperm(abi.PortFirst, abi.PortLast-abi.PortFirst+1, 1); err != nil {
		return nil, fmt.Errorf("ioperm %#x-%#x: %w", abi.PortFirst, abi.PortLast, err)
	}
	return hwPorts{}, nil
}
