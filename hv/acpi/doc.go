// Package acpi builds the ACPI tables the hv hands to a guest (RSDP, XSDT,
// RSDT, FADT, FACS, DSDT, MADT) and emulates the PM1 registers behind the
// FADT, which give Linux its poweroff path and a power button.
//
// The Debian cloud kernel has no MP-table parser and no command-line
// virtio-mmio devices, so SMP needs the MADT and the virtio-mmio devices are
// announced in the DSDT as LNRO0005 devices.
package acpi
