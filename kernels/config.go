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
