package xl_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xeno-hv/xeno/internal/testenv"
)

// xl create refuses, at once and without KVM, a config, kernel, ramdisk
// or disk that is no file of the right kind or too big. Before, a FIFO
// hung xl for good, /dev/zero as the config grew it at about 1 GB/s, and
// /dev/null, /dev/zero and /proc/self/mem passed as rw disks.
func TestFileRefusals(t *testing.T) {
	e := newEnv(t)
	k := guest(t, "shutdown")
	// In the env's own directory, which its xl commands are given access
	// to (testenv.HostileFiles' directory was not found by xl here).
	fifo := filepath.Join(e.dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sparse := e.write("initrd.img", "")
	if err := os.Truncate(sparse, 4<<30); err != nil {
		t.Fatal(err)
	}
	cfg := func(extra string) string {
		return e.write("g.cfg", fmt.Sprintf("name = \"f\"\nkernel = %q\nmemory = 32\ninterface = \"1.2\"\n%s\n", k, extra))
	}
	for _, c := range []struct {
		name string
		cfg  func() string
		want string
	}{
		{"config-zero", func() string { return "/dev/zero" }, "config: /dev/zero: a character device, not a regular file"},
		{"config-fifo", func() string { return fifo }, "config: " + fifo + ": a FIFO, not a regular file"},
		{"kernel-zero", func() string { return cfg(`kernel = "/dev/zero"`) }, "(kernel, rule regular-file): /dev/zero: a character device"},
		{"kernel-fifo", func() string { return cfg(`kernel = "fifo"`) }, "(kernel, rule regular-file): " + fifo + ": a FIFO"},
		{"ramdisk-zero", func() string { return cfg(`ramdisk = "/dev/zero"`) }, "(ramdisk, rule regular-file): /dev/zero: a character device"},
		{"ramdisk-fifo", func() string { return cfg(`ramdisk = "fifo"`) }, "(ramdisk, rule regular-file): " + fifo + ": a FIFO"},
		{"ramdisk-sparse-4GiB", func() string { return cfg(`ramdisk = "initrd.img"`) }, "(ramdisk, rule size): " + sparse + ": 4294967296 bytes, over the limit of 32 MiB"},
		{"disk-null", func() string { return cfg(`disk = ["/dev/null,raw,xvda,rw"]`) }, "(disk, rule disk-type): /dev/null: a character device"},
		{"disk-zero-ro", func() string { return cfg(`disk = ["/dev/zero,raw,xvda,ro"]`) }, "(disk, rule disk-type): /dev/zero: a character device"},
		{"disk-proc-mem", func() string { return cfg(`disk = ["/proc/self/mem,raw,xvda,rw"]`) }, "(disk, rule disk-type): /proc/self/mem: on proc"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := e.cmd(context.Background(), "create", c.cfg())
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			start := time.Now()
			err := testenv.RunBounded(t, cmd, 10*time.Second, 256<<10)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(stderr.String(), c.want) {
				t.Errorf("exit %v, stderr %q; want 1 and %q", err, stderr.String(), c.want)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("took %v", took)
			}
			e.assertClean()
		})
	}
}
