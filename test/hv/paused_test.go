package hv_test

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/internal/testenv"
)

// --paused: no guest instruction runs before resume. The serial guest
// prints at once when it runs, so silence on its console while paused,
// then its whole run after resume, shows the vCPUs were held before
// their first KVM_RUN.
func TestPausedStart(t *testing.T) {
	l := startHV(t, "--paused", "--kernel", guest(t, "serial"), "--memory", "64", "--vcpus", "2")
	st := l.call(t, control.CmdStatus).Status
	if st.State != control.StatePaused {
		t.Fatalf("status at start: %+v, want state %q", st, control.StatePaused)
	}
	time.Sleep(300 * time.Millisecond)
	if out := l.out.String(); out != "" {
		t.Fatalf("a --paused guest wrote to its console before resume:\n%s\nstderr:\n%s", out, l.errout)
	}
	if st := l.call(t, control.CmdStatus).Status; st.State != control.StatePaused {
		t.Fatalf("status after 300 ms paused: %+v", st)
	}
	if st := l.call(t, control.CmdResume).Status; st.State != control.StateRunning {
		t.Fatalf("after resume: %+v", st)
	}
	r := l.wait(t)
	expectEnd(t, r, control.ReasonPoweroff)
	if r.result() != "serial PASS" {
		t.Fatalf("result %q\nstdout:\n%s\nstderr:\n%s", r.result(), r.stdout, r.stderr)
	}
}

// --paused without a control socket could never be resumed: a usage error.
func TestPausedNeedsControl(t *testing.T) {
	cmd := exec.CommandContext(t.Context(), testenv.Bin(t, "hv"), "--paused", "--kernel", guest(t, "serial"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if code := cmd.ProcessState.ExitCode(); err == nil || code != control.ExitUsage || !strings.Contains(stderr.String(), "--paused needs --control") {
		t.Fatalf("exit %d (%v), stderr %q; want usage error %d", code, err, stderr.String(), control.ExitUsage)
	}
}

// hv --version prints the build's stamp in `xeno version`'s format: make
// stamps bin/hv and bin/xeno alike, so the two outputs are identical. It
// needs no kernel and no /dev/kvm.
func TestVersionFlag(t *testing.T) {
	hv, err := exec.Command(testenv.Bin(t, "hv"), "--version").Output()
	if err != nil {
		t.Fatalf("hv --version: %v", err)
	}
	xeno, err := exec.Command(testenv.Bin(t, "xeno"), "version").Output()
	if err != nil {
		t.Fatalf("xeno version: %v", err)
	}
	if string(hv) != string(xeno) {
		t.Errorf("hv --version:\n%s\nxeno version:\n%s", hv, xeno)
	}
	for _, k := range []string{"release ", "interface ", "build_id ", "changeset ", "caps xeno-"} {
		if !strings.Contains(string(hv), "\n"+k) && !strings.HasPrefix(string(hv), k) {
			t.Errorf("hv --version lacks a %q line:\n%s", k, hv)
		}
	}
}
