package kvmlab

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// The hang report against a real QEMU: a paused TCG machine, whose CPU
// sits at the reset vector, must show its registers and a stack dump,
// and QEMU's CPU use.
func TestHangReport(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (make deps installs it):", err)
	}
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	cmd := exec.Command("qemu-system-x86_64", "-accel", "tcg", "-M", "pc", "-S", "-smp", "2",
		"-display", "none", "-nodefaults", "-qmp", "unix:"+sock+",server=on,wait=off")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i == 500 {
			t.Fatal("QEMU made no QMP socket in 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := hangReport(sock, cmd.Process.Pid)
	for _, want := range []string{
		`QEMU used \d+% of CPU`,
		`(?s)CPU#0\n.*[RE]IP=0*fff0 .*CPU#1\n`,
		`\(qemu\) x/64gx 0x0+ \(CPU 1\)\n0+: 0x`,
		`(?s)x/64gx.*\(qemu\) info registers -a\n\nCPU#0\n`,
		`end of the hang report`,
	} {
		if !regexp.MustCompile(want).MatchString(r) {
			t.Errorf("report does not match %q:\n%s", want, r)
		}
	}
	if regexp.MustCompile(`QEMU monitor:`).MatchString(r) {
		t.Errorf("the monitor failed:\n%s", r)
	}
}
