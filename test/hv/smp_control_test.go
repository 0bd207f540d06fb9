package hv_test

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/control"
)

func TestSMPGuest(t *testing.T) {
	for _, cpus := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("vcpus=%d", cpus), func(t *testing.T) {
			r := runHV(t, "--kernel", guest(t, "smp"), "--memory", "64", "--vcpus", strconv.Itoa(cpus))
			expectEnd(t, r, control.ReasonPoweroff)
			want := fmt.Sprintf("smp PASS cpus=%d", cpus)
			if got := r.result(); got != want {
				t.Fatalf("result %q, want %q\nstdout:\n%s\nstderr:\n%s", got, want, r.stdout, r.stderr)
			}
			// The MADT lists every vCPU, and each AP reports its own APIC ID.
			var ids []int
			for _, l := range r.xtf() {
				if s, ok := strings.CutPrefix(l, "smp madt cpus="); ok && s != strconv.Itoa(cpus) {
					t.Errorf("MADT lists %s CPUs, want %d", s, cpus)
				}
				if s, ok := strings.CutPrefix(l, "smp ap apic="); ok {
					n, _ := strconv.Atoi(s)
					ids = append(ids, n)
				}
			}
			sort.Ints(ids)
			for i, id := range ids {
				if id != i+1 {
					t.Fatalf("AP APIC IDs %v, want 1..%d", ids, cpus-1)
				}
			}
			if len(ids) != cpus-1 {
				t.Fatalf("%d APs reported, want %d", len(ids), cpus-1)
			}
		})
	}
}

// The control socket: status, pause (the guest stops making progress),
// resume, and the power button (the guest's SCI handler powers off).
func TestControlPowerButton(t *testing.T) {
	for _, cpus := range []int{1, 2} {
		t.Run(fmt.Sprintf("vcpus=%d", cpus), func(t *testing.T) {
			l := startHV(t, "--kernel", guest(t, "powerbutton"), "--memory", "64", "--vcpus", strconv.Itoa(cpus),
				"--name", "pb", "--uuid", "00000000-0000-0000-0000-000000000001")
			l.waitFor(t, "XTF powerbutton waiting", 10*time.Second)
			st := l.call(t, control.CmdStatus).Status
			if st.State != control.StateRunning || st.Name != "pb" || st.VCPUs != cpus || st.MemoryMiB != 64 ||
				st.PID != l.cmd.Process.Pid || st.Interface == "" || st.UptimeNS <= 0 {
				t.Fatalf("status %+v", st)
			}
			if st := l.call(t, control.CmdPause).Status; st.State != control.StatePaused {
				t.Fatalf("after pause: %+v", st)
			}
			// While paused, a power-button press is latched but not acted on.
			l.call(t, control.CmdShutdown)
			time.Sleep(200 * time.Millisecond)
			if strings.Contains(l.out.String(), "pressed") {
				t.Fatalf("a paused guest ran:\n%s", l.out)
			}
			if st := l.call(t, control.CmdResume).Status; st.State != control.StateRunning {
				t.Fatalf("after resume: %+v", st)
			}
			r := l.wait(t)
			expectEnd(t, r, control.ReasonPoweroff)
			if r.result() != "powerbutton PASS" {
				t.Fatalf("stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
			}
			if _, err := os.Stat(l.sock); !os.IsNotExist(err) {
				t.Errorf("control socket left behind: %v", err)
			}
		})
	}
}

func TestControlDestroyAndReboot(t *testing.T) {
	// reboot asks the guest (it sees the power button and powers off,
	// which then counts as a reboot); reset and destroy do not ask.
	for _, c := range []struct {
		cmd, reason string
		asked       bool
	}{
		{control.CmdDestroy, control.ReasonDestroyed, false},
		{control.CmdReboot, control.ReasonReboot, true},
		{control.CmdReset, control.ReasonReboot, false},
	} {
		t.Run(c.cmd, func(t *testing.T) {
			l := startHV(t, "--kernel", guest(t, "powerbutton"), "--memory", "64", "--vcpus", "2")
			l.waitFor(t, "XTF powerbutton waiting", 10*time.Second)
			if fi, err := os.Stat(l.sock); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("control socket: %v, mode %v; want 0600", err, fi.Mode())
			}
			l.call(t, c.cmd)
			r := l.wait(t)
			expectEnd(t, r, c.reason)
			if asked := r.result() == "powerbutton PASS"; asked != c.asked {
				t.Fatalf("%s: guest saw the power button: %v, want %v\nstdout:\n%s", c.cmd, asked, c.asked, r.stdout)
			}
		})
	}
}

// SIGTERM (what a toolstack falls back to) ends the domain as destroyed,
// with the exit file written.
func TestSIGTERMDestroys(t *testing.T) {
	l := startHV(t, "--kernel", guest(t, "powerbutton"), "--memory", "64", "--vcpus", "2")
	l.waitFor(t, "XTF powerbutton waiting", 10*time.Second)
	if err := l.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	expectEnd(t, l.wait(t), control.ReasonDestroyed)
}

func TestControlUnknownCommand(t *testing.T) {
	l := startHV(t, "--kernel", guest(t, "powerbutton"), "--memory", "64")
	l.waitFor(t, "XTF powerbutton waiting", 10*time.Second)
	if _, err := control.Call(l.sock, "explode", 5*time.Second); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("unknown command: err %v", err)
	}
	l.call(t, control.CmdDestroy)
	expectEnd(t, l.wait(t), control.ReasonDestroyed)
}
