package hv_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/control"
)

const diskSectors = 64

// makeDisk writes the image test/guests/virtio_blk.S expects: sector 0
// holds byte i = 7i+3, sector 1 is all 0xee, the rest zero.
func makeDisk(t *testing.T) string {
	t.Helper()
	img := make([]byte, diskSectors*512)
	for i := 0; i < 512; i++ {
		img[i] = byte(7*i + 3)
		img[512+i] = 0xee
	}
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVirtioBlockGuest(t *testing.T) {
	for _, ro := range []bool{false, true} {
		name := "rw"
		if ro {
			name = "ro"
		}
		t.Run(name, func(t *testing.T) {
			disk := makeDisk(t)
			before, err := os.ReadFile(disk)
			if err != nil {
				t.Fatal(err)
			}
			arg := disk
			if ro {
				arg += ",ro"
			}
			r := runHV(t, "--kernel", guest(t, "virtio_blk"), "--memory", "64", "--disk", arg)
			expectEnd(t, r, control.ReasonPoweroff)
			if got := r.result(); got != "virtio_blk PASS" {
				t.Fatalf("result %q\nstdout:\n%s\nstderr:\n%s", got, r.stdout, r.stderr)
			}
			var f map[string]string
			for _, l := range r.xtf() {
				if strings.HasPrefix(l, "virtio_blk ") {
					f = fields(l)
				}
			}
			want := map[string]string{"capacity": "64", "flush": "0", "oob": "1", "isr": "1", "id": "xeno:disk.img"}
			if ro {
				want["ro"], want["write"] = "1", "1" // IOERR
			} else {
				want["ro"], want["write"] = "0", "0"
			}
			for k, v := range want {
				if f[k] != v {
					t.Errorf("guest reports %s=%q, want %q\nstdout:\n%s", k, f[k], v, r.stdout)
				}
			}
			after, err := os.ReadFile(disk)
			if err != nil {
				t.Fatal(err)
			}
			wantImg := append([]byte(nil), before...)
			if !ro {
				for i := 0; i < 512; i++ {
					wantImg[512+i] = byte(i) ^ 0x5a
				}
			}
			if !bytes.Equal(after, wantImg) {
				for i := range after {
					if i >= len(wantImg) || after[i] != wantImg[i] {
						t.Fatalf("host file differs at byte %d (sector %d): %#x, want %#x", i, i/512, after[i], wantImg[i])
					}
				}
				t.Fatalf("host file is %d bytes, want %d", len(after), len(wantImg))
			}
		})
	}
}

// TestHostileGuest lets a guest hammer ports, MMIO and the virtqueue with
// garbage; the hv must stay up, answer its control socket, and end the
// domain cleanly when the guest takes the ACPI power button.
func TestHostileGuest(t *testing.T) {
	disk := makeDisk(t)
	before, _ := os.ReadFile(disk)
	l := startHV(t, "--kernel", guest(t, "hostile"), "--memory", "64", "--disk", disk,
		"--cmdline", "xtf.wait=pwrbtn")
	l.waitFor(t, "XTF hostile waiting for the power button", 60*time.Second)
	if out := l.out.String(); !strings.Contains(out, "XTF RESULT hostile PASS") ||
		!strings.Contains(out, "XTF hostile virtio good read after all that") {
		t.Fatalf("guest did not pass every stage, the virtqueue cases included:\n%s", out)
	}
	resp := l.call(t, control.CmdStatus)
	if !resp.OK || resp.Status == nil || resp.Status.State == "" {
		t.Fatalf("status after the hostile run: %+v", resp)
	}
	if resp.Status.State != control.StateRunning && resp.Status.State != control.StateBlocked {
		t.Errorf("state %q after the hostile run", resp.Status.State)
	}
	l.call(t, control.CmdShutdown)
	r := l.wait(t)
	expectEnd(t, r, control.ReasonPoweroff)
	if !strings.Contains(r.stdout, "XTF hostile power button: ACPI S5") {
		t.Errorf("guest did not see the power button:\n%s", r.stdout)
	}
	if strings.Contains(r.stderr, "panic") {
		t.Errorf("hv stderr mentions a panic:\n%s", r.stderr)
	}
	// Only sector 0 was ever read; nothing may have been written.
	if after, _ := os.ReadFile(disk); !bytes.Equal(after, before) {
		t.Error("the hostile guest changed the disk")
	}
}
