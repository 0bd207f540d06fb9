package images

import (
	"fmt"

	"github.com/xeno-hv/xeno/internal/atomicfile"
)

// Boot roles: the bootloader files that a recipe's packages give the
// image writers, named as a recipe's boot table names them.
const (
	BootIsolinuxBin    = "isolinux_bin"
	BootLdlinuxC32     = "ldlinux_c32"
	BootIsohdpfxBin    = "isohdpfx_bin"
	BootSystemdBootEFI = "systemd_boot_efi"
)

// bootRole ties a role to the BootSpec field that holds its file.
type bootRole struct {
	name  string
	field func(*BootSpec) *[]byte
}

// bootRoles is every role, sorted by name.
func bootRoles() []bootRole {
	return []bootRole{
		{BootIsohdpfxBin, func(s *BootSpec) *[]byte { return &s.IsohdpfxBin }},
		{BootIsolinuxBin, func(s *BootSpec) *[]byte { return &s.IsolinuxBin }},
		{BootLdlinuxC32, func(s *BootSpec) *[]byte { return &s.LdlinuxC32 }},
		{BootSystemdBootEFI, func(s *BootSpec) *[]byte { return &s.SystemdBootEFI }},
	}
}

// BootRoles lists every boot role, sorted.
func BootRoles() []string {
	var out []string
	for _, r := range bootRoles() {
		out = append(out, r.name)
	}
	return out
}

// SetBoot puts data in the field of s that holds role's file.
func (s *BootSpec) SetBoot(role string, data []byte) error {
	for _, r := range bootRoles() {
		if r.name == role {
			*r.field(s) = data
			return nil
		}
	}
	return fmt.Errorf("images: unknown boot role %q", role)
}

// Format is one output format that a recipe may ask for: the table that
// recipes validates against and the builder runs.
type Format struct {
	Name string // as a recipe's [[outputs]] format names it
	Step string // the build's progress step
	// Suffixes are the files it writes, NAME + suffix each.
	Suffixes []string
	// Boot lists the boot roles it needs, in the order a refusal names
	// the first one missing.
	Boot  []string
	write func(spec BootSpec, paths []string) error
}

// Formats lists every output format, in the order docs/recipes.md gives
// them.
func Formats() []Format {
	return []Format{
		{Name: "kernel+initrd", Step: "write kernel+initrd", Suffixes: []string{".vmlinuz", ".initrd"},
			write: writeKernelInitrd},
		// The ISO is hybrid: isolinux for BIOS, systemd-boot for UEFI.
		{Name: "iso", Step: "write ISO", Suffixes: []string{".iso"},
			Boot:  []string{BootIsolinuxBin, BootLdlinuxC32, BootIsohdpfxBin, BootSystemdBootEFI},
			write: func(spec BootSpec, paths []string) error { return WriteISO(paths[0], spec) }},
		{Name: "raw-efi", Step: "write raw EFI disk", Suffixes: []string{".img"},
			Boot:  []string{BootSystemdBootEFI},
			write: func(spec BootSpec, paths []string) error { return WriteRawEFI(paths[0], spec) }},
	}
}

// FormatNames lists the names of Formats, in order.
func FormatNames() []string {
	var out []string
	for _, f := range Formats() {
		out = append(out, f.Name)
	}
	return out
}

// FindFormat returns the format called name.
func FindFormat(name string) (Format, bool) {
	for _, f := range Formats() {
		if f.Name == name {
			return f, true
		}
	}
	return Format{}, false
}

// Write writes the format's files for spec: paths[i] is the file of
// Suffixes[i].
func (f Format) Write(spec BootSpec, paths []string) error {
	if len(paths) != len(f.Suffixes) {
		return fmt.Errorf("images: format %s writes %d files, given %d paths", f.Name, len(f.Suffixes), len(paths))
	}
	return f.write(spec, paths)
}

// writeKernelInitrd writes the kernel and the initramfs as they are, for
// direct kernel boot (hv, QEMU -kernel).
func writeKernelInitrd(spec BootSpec, paths []string) error {
	for i, data := range [][]byte{spec.Kernel, spec.Initrd} {
		if err := atomicfile.WriteFile(paths[i], data, 0o644); err != nil {
			return fmt.Errorf("images: %w", err)
		}
	}
	return nil
}
