package build

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/internal/testenv"
)

// TestPowerButtonQEMU runs a command that would never end and presses
// the ACPI power button (QEMU's system_powerdown, what `xl shutdown`
// does to a domain): xeno-init must see KEY_POWER and power off.
func TestPowerButtonQEMU(t *testing.T) {
	qemu := testenv.RequireCmd(t, "qemu-system-x86_64")
	out, _ := buildMinimal(t)
	dir := t.TempDir()
	log, mon := filepath.Join(dir, "serial.log"), filepath.Join(dir, "mon.sock")
	// q35: its ICH9 delivers the power button's SCI under TCG; with -M pc
	// (PIIX4) QEMU 7.2 raised no SCI in our runs.
	cmd := exec.Command("timeout", "150", qemu, "-M", "q35", "-accel", "tcg", "-m", "512",
		"-kernel", filepath.Join(out, "minimal.vmlinuz"), "-initrd", filepath.Join(out, "minimal.initrd"),
		"-append", "console=ttyS0 panic=-1 xeno.run=/bin/sleep,600", "-nodefaults", "-serial", "file:"+log,
		"-monitor", "unix:"+mon+",server,nowait", "-display", "none", "-no-reboot")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(120 * time.Second)
	for {
		serial, _ := os.ReadFile(log)
		if bytes.Contains(serial, []byte(`xeno-init: running ["/bin/sleep" "600"]`)) &&
			bytes.Contains(serial, []byte("xeno-init: watching")) {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("qemu ended before the command ran (%v):\n%s", err, tail(serial))
		case <-time.After(500 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("xeno-init did not start the command:\n%s", tail(serial))
		}
	}
	// A press that lands while the kernel is still busy may be lost under
	// TCG on a loaded machine; press again, as a person would.
	for press := 0; ; press++ {
		if press == 3 {
			serial, _ := os.ReadFile(log)
			t.Fatalf("no poweroff after 3 presses of the power button:\n%s", tail(serial))
		}
		pressPowerButton(t, mon)
		select {
		case err := <-done:
			serial, _ := os.ReadFile(log)
			if err != nil {
				t.Fatalf("qemu: %v\n%s", err, tail(serial))
			}
			for _, want := range []string{"xeno-init: power button pressed; powering off", "reboot: Power down"} {
				if !bytes.Contains(serial, []byte(want)) {
					t.Errorf("serial console lacks %q:\n%s", want, tail(serial))
				}
			}
			return
		case <-time.After(20 * time.Second):
		}
	}
}

// pressPowerButton sends system_powerdown to QEMU's human monitor.
func pressPowerButton(t *testing.T, mon string) {
	t.Helper()
	c, err := net.Dial("unix", mon)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Read the banner and the echo of the command: HMP drops input that
	// arrives with the connection already closing.
	buf := make([]byte, 4096)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var got []byte
	for !bytes.Contains(got, []byte("(qemu)")) {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("monitor: %v after %q", err, got)
		}
		got = append(got, buf[:n]...)
	}
	if _, err := c.Write([]byte("system_powerdown\n")); err != nil {
		t.Fatal(err)
	}
	got = nil
	for !bytes.Contains(got, []byte("(qemu)")) {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("monitor: %v after %q", err, got)
		}
		got = append(got, buf[:n]...)
	}
}
