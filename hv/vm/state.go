package vm

import (
	"fmt"
	"strconv"
)

// stateful is a device with state in a snapshot: one section each.
type stateful interface {
	SaveState() ([]byte, error)
	RestoreState(b []byte) error
}

// namedState is a device and the kind of its snapshot section.
type namedState struct {
	kind string
	dev  stateful
}

// deviceStates lists every device of the domain with its section kind:
// the one place a device is named for save and restore.
func (v *VM) deviceStates() []namedState {
	d := &v.dev
	s := []namedState{
		{"dev.uart", v.uart},
		{"dev.acpi-pm", d.pm},
		{"dev.i8042", d.kbc},
		{"dev.rtc", d.rtc},
		{"dev.xeno-ports", d.xeno},
	}
	for i, t := range d.virtio {
		s = append(s, namedState{"dev.virtio." + strconv.Itoa(i), t})
	}
	return s
}

// saveDevices encodes every device's state, by section kind.
func (v *VM) saveDevices(put func(kind string, b []byte) error) error {
	for _, d := range v.deviceStates() {
		b, err := d.dev.SaveState()
		if err != nil {
			return fmt.Errorf("vm: %s: %w", d.kind, err)
		}
		if err := put(d.kind, b); err != nil {
			return err
		}
	}
	return nil
}

// restoreDevices restores every device from sections, which must hold
// one for each and no other device.
func (v *VM) restoreDevices(sections map[string][]byte) error {
	for _, d := range v.deviceStates() {
		b, ok := sections[d.kind]
		if !ok {
			return fmt.Errorf("vm: the snapshot has no section %q: it was taken with other devices", d.kind)
		}
		if err := d.dev.RestoreState(b); err != nil {
			return fmt.Errorf("vm: section %q: %w", d.kind, err)
		}
	}
	return nil
}
