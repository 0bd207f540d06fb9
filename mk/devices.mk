# Device models (hv/uart, hv/acpi, hv/virtio): iasl disassembles the ACPI
# tables in hv/acpi's tests as an independent check of their layout.
DEB_PKGS += acpica-tools
