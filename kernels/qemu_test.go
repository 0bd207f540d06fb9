package kernels_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/internal/testenv"
	"github.com/xeno-hv/xeno/kernels/kerneltest"
)

// TestVmlinuxBootsInQEMU hands the vmlinux we decompressed to QEMU, which
// loads an ELF kernel through its XEN_ELFNOTE_PHYS32_ENTRY (PVH). QEMU is
// the outside judge: if our decompression or the note were wrong, the
// kernel would not print its banner and reach memory setup.
func TestVmlinuxBootsInQEMU(t *testing.T) {
	qemu := testenv.RequireCmd(t, "qemu-system-x86_64")
	for _, pin := range []struct{ pkg, version string }{
		{kerneltest.Cloud56, kerneltest.Cloud56Version},
		{kerneltest.Cloud612, kerneltest.Cloud612Version},
	} {
		t.Run(pin.pkg, func(t *testing.T) {
			k := kerneltest.Kernel(t, pin.pkg, pin.version)
			vm, err := k.Vmlinux()
			if err != nil {
				t.Fatal(err)
			}
			serial := filepath.Join(t.TempDir(), "serial.log")
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, qemu, "-M", "pc", "-accel", "tcg", "-m", "512",
				"-display", "none", "-monitor", "none", "-no-reboot", "-serial", "file:"+serial,
				"-kernel", vm, "-append", "console=ttyS0 earlyprintk=ttyS0 panic=-1")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				cmd.Process.Kill()
				cmd.Wait()
			}()
			want := []string{"Linux version " + k.Release, "Debian " + k.Version, "Memory: "}
			var log string
			for ctx.Err() == nil {
				b, _ := os.ReadFile(serial)
				log = string(b)
				done := true
				for _, w := range want {
					done = done && strings.Contains(log, w)
				}
				if done {
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
			t.Fatalf("QEMU did not boot %s far enough to print %q; serial:\n%.3000s", vm, want, log)
		})
	}
}
