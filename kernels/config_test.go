package kernels

import (
	"slices"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig("cfg", []byte("#\n# Automatically generated\nCONFIG_SMP=y\n# CONFIG_X86_MPPARSE is not set\nCONFIG_VIRTIO_MMIO=m\nCONFIG_NR_CPUS=64\nCONFIG_LOCALVERSION=\"\"\n\nCONFIG_RD_ZSTD=y\nCONFIG_RD_GZIP=y\n"))
	if err != nil {
		t.Fatal(err)
	}
	for opt, want := range map[string]string{"SMP": "y", "X86_MPPARSE": "n", "VIRTIO_MMIO": "m", "NR_CPUS": "64", "LOCALVERSION": `""`, "PVH": "n"} {
		if got := c.State(opt); got != want {
			t.Errorf("%s = %q, want %q", opt, got, want)
		}
	}
	if got := c.InitramfsCompressions(); !slices.Equal(got, []string{"gzip", "zstd"}) {
		t.Errorf("InitramfsCompressions = %v", got)
	}
	var whats []string
	for _, n := range c.Needs() {
		whats = append(whats, n.What)
	}
	joined := strings.Join(whats, "\n")
	for _, w := range []string{"ACPI MADT", "virtio_mmio.ko", "DSDT (LNRO0005)", "gzip zstd"} {
		if !strings.Contains(joined, w) {
			t.Errorf("Needs lacks %q:\n%s", w, joined)
		}
	}
	if strings.Contains(joined, "virtio_blk") {
		t.Errorf("Needs asks for virtio_blk, which the config does not have:\n%s", joined)
	}

	_, err = ParseConfig("boot/config-x", []byte("CONFIG_A=y\nthis is not config\n"))
	if err == nil || !strings.Contains(err.Error(), "boot/config-x:2:") {
		t.Errorf("bad line: %v", err)
	}
}
