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

	// What a test logs of such a console keeps the lines before the
	// report and the report's instruction pointers, not its vector
	// registers.
	console := "[    1.0] booting\nkvmlab: text ffffffff81000000\nhv: started" + r
	got := failedConsole(console, 2)
	for _, want := range []string{
		`^kvmlab: text ffffffff81000000\nhv: started\n=== kvmlab: the lab hung; QEMU used \d+% of CPU`,
		`(?s)CPU#0\n[RE]IP=0*fff0 .*CPU#1\n[RE]IP=`,
		`end of the hang report\n$`,
	} {
		if !regexp.MustCompile(want).MatchString(got) {
			t.Errorf("failedConsole does not match %q:\n%s", want, got)
		}
	}
	if regexp.MustCompile(`booting|YMM|x/64gx`).MatchString(got) {
		t.Errorf("failedConsole kept more than its share:\n%s", got)
	}
	if got := failedConsole("a\nb\nc\n", 2); got != "b\nc" {
		t.Errorf("failedConsole of a console with no report = %q, want the tail", got)
	}
}
