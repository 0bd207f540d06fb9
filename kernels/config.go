package kernels

import (
	"fmt"
	"strings"
)

// Config is a kernel .config: option name (without CONFIG_) to value,
// "y", "m", a number or a quoted string; "# CONFIG_X is not set" gives "n".
type Config map[string]string

// maxConfig bounds a config file; Debian's are ~250 KiB.
const maxConfig = 8 << 20

// ParseConfig parses a kernel config file. name is used in errors, which
// point at name:line.
func ParseConfig(name string, b []byte) (Config, error) {
	if len(b) > maxConfig {
		return nil, fmt.Errorf("kernels: %s: config of %d bytes exceeds %d", name, len(b), maxConfig)
	}
	c := Config{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "#") {
			if opt, ok := strings.CutPrefix(line, "# CONFIG_"); ok {
				if k, ok := strings.CutSuffix(opt, " is not set"); ok {
					c[k] = "n"
				}
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k, isOpt := strings.CutPrefix(k, "CONFIG_")
		if !ok || !isOpt || k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("kernels: %s:%d: not a CONFIG_NAME=value line: %q", name, i+1, line)
		}
		c[k] = v
	}
	return c, nil
}

// State returns the value of option name (without CONFIG_), "n" when the
// config does not mention it.
func (c Config) State(name string) string {
	if v, ok := c[name]; ok {
		return v
	}
	return "n"
}

// HypervisorOptions are the options a hypervisor and the image builder
// care about: consoles, virtio transports and devices, paravirt entry
// points, SMP discovery and the initramfs decompressors.
var HypervisorOptions = []string{
	"SERIAL_8250", "SERIAL_8250_CONSOLE",
	"VIRTIO", "VIRTIO_MMIO", "VIRTIO_MMIO_CMDLINE_DEVICES", "VIRTIO_PCI", "VIRTIO_BLK", "VIRTIO_NET", "VIRTIO_CONSOLE",
	"HYPERVISOR_GUEST", "PARAVIRT", "KVM_GUEST", "PVH", "XEN_PVH",
	"ACPI", "X86_MPPARSE", "SMP",
	"BLK_DEV_INITRD", "RD_GZIP", "RD_ZSTD", "RD_XZ", "RD_LZ4", "RD_LZMA", "RD_BZIP2", "RD_LZO",
	"DEVTMPFS", "DEVTMPFS_MOUNT", "MODULES", "MODULE_COMPRESS_XZ", "MODULE_COMPRESS_ZSTD",
	"RANDOMIZE_BASE", "RELOCATABLE", "EFI_STUB", "IKCONFIG",
}

// Need is one thing a hypervisor or image builder must provide, or may
// rely on, for a kernel built with some config, with the options behind it.
type Need struct {
	What    string `json:"what"`
	Because string `json:"because"`
}

// Needs derives from the config what a VMM and an image builder must
// provide for the kernel to boot and reach init, in the terms the hv and
// the builder use.
func (c Config) Needs() []Need {
	var out []Need
	add := func(what, because string) { out = append(out, Need{what, because}) }
	if c.State("SMP") == "y" && c.State("X86_MPPARSE") != "y" {
		add("an ACPI MADT to find CPUs beyond the first", "SMP=y, X86_MPPARSE="+c.State("X86_MPPARSE"))
	}
	if c.State("ACPI") == "y" {
		add("ACPI FADT PM1 registers for poweroff", "ACPI=y")
	}
	switch c.State("VIRTIO_MMIO") {
	case "m":
		add("virtio_mmio.ko (and its dependencies) in the initramfs", "VIRTIO_MMIO=m")
	case "n":
		add("no virtio-mmio devices: the kernel cannot drive them", "VIRTIO_MMIO=n")
	}
	if c.State("VIRTIO_MMIO") != "n" && c.State("VIRTIO_MMIO_CMDLINE_DEVICES") != "y" {
		add("virtio-mmio devices described in the ACPI DSDT (LNRO0005), not on the command line", "VIRTIO_MMIO_CMDLINE_DEVICES="+c.State("VIRTIO_MMIO_CMDLINE_DEVICES"))
	}
	for _, m := range []struct{ opt, mod string }{{"VIRTIO_BLK", "virtio_blk"}, {"VIRTIO_NET", "virtio_net"}, {"VIRTIO_CONSOLE", "virtio_console"}} {
		if c.State(m.opt) == "m" {
			add(m.mod+".ko in the initramfs to use it", m.opt+"=m")
		}
	}
	if c.State("SERIAL_8250_CONSOLE") == "y" {
		add("a 16550 UART at 0x3f8 for console=ttyS0", "SERIAL_8250_CONSOLE=y")
	}
	if c.State("PVH") == "y" {
		add("nothing more to boot vmlinux at its PVH entry (XEN_ELFNOTE_PHYS32_ENTRY)", "PVH=y")
	}
	if c.State("DEVTMPFS") == "y" && c.State("DEVTMPFS_MOUNT") != "y" {
		add("init to mount devtmpfs on /dev itself", "DEVTMPFS_MOUNT="+c.State("DEVTMPFS_MOUNT"))
	}
	if rd := c.InitramfsCompressions(); len(rd) > 0 {
		add("an initramfs compressed with one of: "+strings.Join(rd, " ")+" (or uncompressed)", "RD_*")
	} else if c.State("BLK_DEV_INITRD") == "y" {
		add("an uncompressed initramfs", "no RD_* decompressor")
	}
	return out
}

// InitramfsCompressions lists the initramfs compressions the kernel can
// unpack, by the names `xeno` recipes use.
func (c Config) InitramfsCompressions() []string {
	var out []string
	for _, rd := range []struct{ opt, name string }{
		{"RD_GZIP", "gzip"}, {"RD_ZSTD", "zstd"}, {"RD_XZ", "xz"}, {"RD_LZ4", "lz4"},
		{"RD_LZMA", "lzma"}, {"RD_BZIP2", "bzip2"}, {"RD_LZO", "lzo"},
	} {
		if c.State(rd.opt) == "y" {
			out = append(out, rd.name)
		}
	}
	return out
}
