package hv_test

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/internal/testenv"
)

// The hv checks every file it is handed, and reads the kernel and
// initramfs, before it opens /dev/kvm: these refusals need no KVM, and
// each one must come at once and cost the hv almost nothing. Before,
// /dev/zero as --kernel or --initrd grew the hv at about 1 GB/s, a FIFO
// blocked it, a 4 GiB sparse initramfs took 4.1 GB for a 32 MiB guest,
// character devices and /proc/self/mem were taken as disks, and
// --memory 1048576 started.
func TestFileRefusals(t *testing.T) {
	bin := testenv.Bin(t, "hv")
	k := guest(t, "serial")
	fifo, sparse := testenv.HostileFiles(t)
	for _, c := range []struct {
		name string
		args []string
		msg  string
	}{
		{"kernel-zero", []string{"--kernel", "/dev/zero"}, "hv: kernel: /dev/zero: a character device, not a regular file"},
		{"kernel-fifo", []string{"--kernel", fifo}, "hv: kernel: " + fifo + ": a FIFO, not a regular file"},
		{"initrd-zero", []string{"--kernel", k, "--initrd", "/dev/zero"}, "hv: initrd: /dev/zero: a character device, not a regular file"},
		{"initrd-fifo", []string{"--kernel", k, "--initrd", fifo}, "hv: initrd: " + fifo + ": a FIFO, not a regular file"},
		{"initrd-sparse-4GiB", []string{"--kernel", k, "--initrd", sparse}, "hv: initrd: " + sparse + ": 4294967296 bytes, over the limit of 32 MiB"},
		{"disk-null", []string{"--kernel", k, "--disk", "/dev/null"}, "hv: disk: /dev/null: a character device, not a regular file or block device"},
		{"disk-zero-ro", []string{"--kernel", k, "--disk", "/dev/zero,ro"}, "hv: disk: /dev/zero: a character device, not a regular file or block device"},
		{"disk-fifo-ro", []string{"--kernel", k, "--disk", fifo + ",ro"}, "hv: disk: " + fifo + ": a FIFO"},
		{"disk-proc-mem", []string{"--kernel", k, "--disk", "/proc/self/mem"}, "hv: disk: /proc/self/mem: on proc: a kernel interface, not a file"},
		{"memory-1TiB", []string{"--kernel", k, "--memory", "1048576"}, "hv: --memory 1048576 MiB but the host has "},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"--memory", "32"}, c.args...)
			sock := filepath.Join(t.TempDir(), "control.sock")
			cmd := exec.Command(bin, append([]string{"--control", sock}, args...)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			start := time.Now()
			err := testenv.RunBounded(t, cmd, 10*time.Second, 256<<10)
			took := time.Since(start)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != control.ExitError {
				t.Fatalf("exit %v, want %d; stderr:\n%s", err, control.ExitError, stderr.String())
			}
			if !strings.Contains(stderr.String(), c.msg) {
				t.Errorf("stderr %q lacks %q", stderr.String(), c.msg)
			}
			if strings.Contains(stderr.String(), "/dev/kvm") {
				t.Errorf("the refusal came after /dev/kvm: %s", stderr.String())
			}
			if e := readExit(t, sock); e.Reason != control.ReasonError || !strings.Contains("hv: "+e.Detail, c.msg) {
				t.Errorf("exit file %+v", e)
			}
			// A hv that refuses a file stays small: the micro-guest
			// kernel and Go's runtime.
			if rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss; rss > 64<<10 {
				t.Errorf("peak RSS %d KiB", rss)
			}
			if took > 5*time.Second {
				t.Errorf("took %v", took)
			}
		})
	}
}
