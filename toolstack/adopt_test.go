package toolstack

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/control"
)

// With XENO_TEST_FAKE_XL=1 this test binary is xl for spawnMonitor:
// `__monitor --adopt ID` runs Adopt, as xl's monitor command does, and
// `__monitor --restore fd=4 ID` is fakeStreamMonitor. With
// XENO_TEST_FAKE_HV=1 it is the monitor's hv (fakeHVMain).
func TestMain(m *testing.M) {
	if os.Getenv("XENO_TEST_FAKE_XL") == "1" {
		os.Exit(fakeXL(os.Args[1:]))
	}
	if os.Getenv("XENO_TEST_FAKE_HV") == "1" {
		os.Exit(fakeHVMain(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func fakeXL(args []string) int {
	if len(args) == 4 && args[0] == "__monitor" && args[1] == "--restore" {
		return fakeStreamMonitor(args[2])
	}
	if len(args) != 3 || args[0] != "__monitor" || args[1] != "--adopt" {
		fmt.Fprintf(os.Stderr, "fake xl: unexpected arguments %q\n", args)
		return 2
	}
	id, err := strconv.Atoi(args[2])
	if err != nil {
		return 2
	}
	st, err := OpenState(StateDirFromEnv())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ready := os.NewFile(3, "ready")
	ts := &Toolstack{State: st}
	err = ts.Adopt(id, func(err error) {
		if err != nil {
			fmt.Fprintln(ready, err)
		} else {
			fmt.Fprint(ready, "ok\n")
		}
		ready.Close()
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// fakeHV starts a process that is not our child, as an adopted hv is
// not its adopter's: sh starts sleep in the background and exits. It
// returns sleep's pid and start time.
func fakeHV(t *testing.T) (int, uint64) {
	t.Helper()
	out, err := exec.Command("sh", "-c", "sleep 60 </dev/null >/dev/null 2>&1 & echo $!").Output()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	start := procStart(pid)
	if start == 0 {
		t.Fatalf("fake hv %d: no start time", pid)
	}
	return pid, start
}

// deadPid is the pid of a process that has ended.
func deadPid(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// orphan records a running domain whose hv is pid (0: already gone) and
// whose monitor has died, with on_* set by set.
func orphan(t *testing.T, ts *Toolstack, name string, pid int, start uint64, set func(r *Record)) *Record {
	t.Helper()
	r, err := ts.Reserve(plan(name))
	if err != nil {
		t.Fatal(err)
	}
	r.State = StateRunning
	r.HVPid, r.HVStart = pid, start
	if pid == 0 {
		r.HVPid, r.HVStart = deadPid(t), 1
	}
	r.MonitorPid, r.MonitorStart = deadPid(t), 1
	r.Start = time.Now().UTC()
	r.OnPoweroff, r.OnReboot, r.OnCrash = ActionDestroy, ActionRestart, ActionDestroy
	if set != nil {
		set(r)
	}
	if err := ts.State.Save(r); err != nil {
		t.Fatal(err)
	}
	if !r.Orphaned() {
		t.Fatalf("%s: not orphaned: %+v", name, r)
	}
	return r
}

// writeExit writes the exit file r's hv would write on its way out.
func writeExit(t *testing.T, r *Record, reason string, when time.Time) {
	t.Helper()
	b, _ := json.Marshal(control.Exit{Reason: reason, Code: control.ExitCode(reason), Time: when})
	if err := os.WriteFile(control.ExitFile(r.Control), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// The adopter of a running orphan holds it while its hv runs, and when
// the hv ends applies the reason from the exit file: a clean poweroff is
// a poweroff, not a crash.
func TestAdoptRunningOrphan(t *testing.T) {
	ts := newToolstack(t)
	pid, start := fakeHV(t)
	r := orphan(t, ts, "o", pid, start, func(r *Record) { r.OnPoweroff = ActionPreserve })

	ready := make(chan error, 2)
	done := make(chan error, 1)
	go func() { done <- ts.Adopt(r.ID, func(err error) { ready <- err }) }()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("ready: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the adopter never said it holds the domain")
	}
	cur, err := ts.State.Load(r.ID)
	if err != nil || cur.MonitorPid != os.Getpid() || cur.Orphaned() {
		t.Fatalf("after adoption: %+v, %v", cur, err)
	}
	// A second adopter (another xl command racing) leaves it alone.
	if err := ts.Adopt(r.ID, func(err error) { ready <- err }); err != nil || <-ready != nil {
		t.Errorf("second adopter: %v", err)
	}
	select {
	case err := <-done:
		t.Fatalf("the adopter returned while the hv runs: %v", err)
	case <-time.After(100 * time.Millisecond):
	}

	writeExit(t, r, control.ReasonPoweroff, time.Now())
	_ = syscall.Kill(pid, syscall.SIGKILL)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the adopter did not see its hv end")
	}
	cur, err = ts.State.Load(r.ID)
	if err != nil || cur.State != StateShutdown || cur.ExitReason != control.ReasonPoweroff || cur.MonitorPid != 0 {
		t.Errorf("after the poweroff: %+v, %v", cur, err)
	}
}

// An orphan whose hv ended before anyone adopted it: on_* applies to the
// exit file's reason at once; with none (or a stale one) it is kept
// crashed, never restarted.
func TestAdoptEndedOrphan(t *testing.T) {
	old := time.Now().Add(-time.Hour)
	for _, c := range []struct {
		name    string
		reason  string // "" writes no exit file
		when    time.Time
		set     func(r *Record)
		gone    bool
		state   string
		exitWas string
	}{
		{"poweroff-destroy", control.ReasonPoweroff, time.Now(), nil, true, "", ""},
		{"reboot-preserve", control.ReasonReboot, time.Now(), func(r *Record) { r.OnReboot = ActionPreserve }, false, StateShutdown, control.ReasonReboot},
		{"crash-preserve", control.ReasonCrash, time.Now(), func(r *Record) { r.OnCrash = ActionPreserve }, false, StateCrashed, control.ReasonCrash},
		{"no-exit-file", "", time.Time{}, func(r *Record) { r.OnCrash = ActionRestart }, false, StateCrashed, ReasonVanished},
		{"stale-exit-file", control.ReasonPoweroff, old, nil, false, StateCrashed, ReasonVanished},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts := newToolstack(t)
			r := orphan(t, ts, c.name, 0, 0, c.set)
			if c.reason != "" {
				writeExit(t, r, c.reason, c.when)
			}
			told := 0
			if err := ts.Adopt(r.ID, func(err error) {
				told++
				if err != nil {
					t.Errorf("ready: %v", err)
				}
			}); err != nil {
				t.Fatal(err)
			}
			if told != 1 {
				t.Errorf("ready told %d times", told)
			}
			cur, err := ts.State.Load(r.ID)
			if c.gone {
				if err == nil {
					t.Errorf("record kept: %+v", cur)
				}
				return
			}
			if err != nil || cur.State != c.state || cur.ExitReason != c.exitWas {
				t.Errorf("got %+v, %v; want state %s, reason %s", cur, err, c.state, c.exitWas)
			}
		})
	}
}

// on_poweroff=restart on an orphan that powered off: the adopter renumbers
// it and starts a new hv, and monitors that one.
func TestAdoptRestart(t *testing.T) {
	ts := newToolstack(t)
	hv, err := exec.LookPath("false") // an hv that fails at once
	if err != nil {
		t.Skip("no false(1):", err)
	}
	ts.HV = hv
	// This host may not give every layer of the jail (this build host
	// has no cgroup v2 controllers): allowed off, as with
	// --allow-unjailed=all.
	r := orphan(t, ts, "rs", 0, 0, func(r *Record) { r.OnPoweroff, r.AllowUnjailed = ActionRestart, Layers })
	writeExit(t, r, control.ReasonPoweroff, time.Now())
	if err := ts.Adopt(r.ID, func(error) {}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.State.Load(r.ID); err == nil {
		t.Error("the old ID still has a record")
	}
	nr, err := ts.State.Find("rs")
	if err != nil {
		t.Fatal(err)
	}
	// The new hv ran (and failed): a restart, not a failed create.
	if nr.ID <= r.ID || nr.Restarts != 1 || nr.State != StateCrashed || nr.ExitReason != control.ReasonError {
		t.Errorf("restarted record %+v", nr)
	}
}

// A restart whose hv cannot even start keeps the domain, crashed, with
// the reason: nobody waits on a restart to hear it, so removing the
// record would lose the domain without a word.
func TestRestartThatCannotStartIsKept(t *testing.T) {
	ts := newToolstack(t)
	ts.HV = filepath.Join(t.TempDir(), "no-such-hv")
	r := orphan(t, ts, "rf", 0, 0, func(r *Record) { r.OnPoweroff, r.AllowUnjailed = ActionRestart, Layers })
	writeExit(t, r, control.ReasonPoweroff, time.Now())
	if err := ts.Adopt(r.ID, func(error) {}); err == nil || !strings.Contains(err.Error(), "no-such-hv") {
		t.Fatalf("adopt: %v, want the hv's start failure", err)
	}
	nr, err := ts.State.Find("rf")
	if err != nil {
		t.Fatalf("the domain is gone after a failed restart: %v", err)
	}
	if nr.ID <= r.ID || nr.Restarts != 1 || nr.State != StateCrashed || nr.ExitReason != control.ReasonError ||
		!strings.Contains(nr.ExitDetail, "restart failed") || !strings.Contains(nr.ExitDetail, "no-such-hv") || nr.HVPid != 0 || nr.MonitorPid != 0 {
		t.Errorf("record after a failed restart: %+v", nr)
	}
}

// The whole hand-over as xl does it: AdoptOrphans spawns a monitor
// (here this test binary as xl), which holds the domain and applies its
// end when the hv, not its child, powers off.
func TestAdoptOrphansSpawnsMonitor(t *testing.T) {
	ts := newToolstack(t)
	ts.XL = os.Args[0]
	t.Setenv("XENO_TEST_FAKE_XL", "1")
	pid, start := fakeHV(t)
	r := orphan(t, ts, "sp", pid, start, nil)
	recs, _ := ts.State.Records()
	adopted, err := ts.AdoptOrphans(recs)
	if err != nil || !adopted {
		t.Fatalf("AdoptOrphans: %v %v", adopted, err)
	}
	cur, err := ts.State.Load(r.ID)
	if err != nil || cur.MonitorPid == os.Getpid() || !cur.monitorAlive() {
		t.Fatalf("no live new monitor: %+v %v", cur, err)
	}
	recs, _ = ts.State.Records()
	if adopted, err := ts.AdoptOrphans(recs); adopted || err != nil {
		t.Errorf("a monitored domain adopted again: %v %v", adopted, err)
	}
	writeExit(t, r, control.ReasonPoweroff, time.Now())
	_ = syscall.Kill(pid, syscall.SIGKILL)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := ts.State.Load(r.ID)
		var nd *NoDomainError
		if errors.As(err, &nd) {
			break // on_poweroff=destroy applied
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(ts.State.MonitorLog(r.ID))
			t.Fatalf("record still there after the poweroff; monitor.log:\n%s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Until a monitor has applied it, a dead hv's clean end shows as shut
// down, not crashed.
func TestInspectEndedHV(t *testing.T) {
	ts := newToolstack(t)
	r := orphan(t, ts, "i", 0, 0, nil)
	if in := ts.Inspect(r); in.Flags != FlagCrashed {
		t.Errorf("no exit file: flags %#x, want crashed", in.Flags)
	}
	writeExit(t, r, control.ReasonPoweroff, time.Now())
	if in := ts.Inspect(r); in.Flags != FlagShutdown {
		t.Errorf("exit poweroff: flags %#x, want shutdown", in.Flags)
	}
	writeExit(t, r, control.ReasonCrash, time.Now())
	if in := ts.Inspect(r); in.Flags != FlagCrashed {
		t.Errorf("exit crash: flags %#x, want crashed", in.Flags)
	}
}

// WaitGone gives up after its timeout with an error that says so.
func TestWaitGoneTimeout(t *testing.T) {
	ts := newToolstack(t)
	r, err := ts.Reserve(plan("w"))
	if err != nil {
		t.Fatal(err)
	}
	r.State, r.MonitorPid, r.MonitorStart = StateRunning, os.Getpid(), procStart(os.Getpid())
	if err := ts.State.Save(r); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	err = ts.WaitGone(r.ID, 150*time.Millisecond)
	var te *WaitTimeoutError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "still running after 150ms") {
		t.Errorf("WaitGone: %v", err)
	}
	if d := time.Since(t0); d < 150*time.Millisecond || d > 2*time.Second {
		t.Errorf("WaitGone returned after %v", d)
	}
	r.State = StateShutdown
	if err := ts.State.Save(r); err != nil {
		t.Fatal(err)
	}
	if err := ts.WaitGone(r.ID, 150*time.Millisecond); err != nil {
		t.Errorf("preserved domain: %v", err)
	}
}

// waitExit sees a process that is not its child end, and does not wait
// for a process that reused a recorded pid.
func TestWaitExit(t *testing.T) {
	pid, start := fakeHV(t)
	if _, err := os.Stat("/proc/self"); err != nil {
		t.Skip("no /proc:", err)
	}
	done := make(chan struct{})
	go func() { waitExit(pid, start); close(done) }()
	select {
	case <-done:
		t.Fatal("waitExit returned while the process runs")
	case <-time.After(100 * time.Millisecond):
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("waitExit did not return after the process ended")
	}
	// Our own pid with another start time: a reused pid, so gone.
	reused := make(chan struct{})
	go func() { waitExit(os.Getpid(), procStart(os.Getpid())+1); close(reused) }()
	select {
	case <-reused:
	case <-time.After(5 * time.Second):
		t.Fatal("waitExit waited for a process that reused the pid")
	}
}

// xl create -F hands its domain over on Ctrl-C: only the live monitor
// itself may give the domain away, and the taker then holds it at once
// (no xl command has to find an orphan first). An adopter leaves a
// domain with a live monitor alone.
func TestTakeOverFromLiveMonitor(t *testing.T) {
	ts := newToolstack(t)
	hv, hvStart := fakeHV(t)
	mon, monStart := fakeHV(t) // stands in for the live xl create -F
	r := orphan(t, ts, "fg", hv, hvStart, nil)
	r.MonitorPid, r.MonitorStart = mon, monStart
	if err := ts.State.Save(r); err != nil {
		t.Fatal(err)
	}
	if r.Orphaned() {
		t.Fatal("a domain with a live monitor counts as orphaned")
	}
	if err := ts.TakeOver(r.ID, hv, func(error) {}); err == nil || !strings.Contains(err.Error(), "not monitor") {
		t.Errorf("take-over from a process that is not the monitor: %v", err)
	}
	ready := make(chan error, 2)
	if err := ts.Adopt(r.ID, func(err error) { ready <- err }); err != nil || <-ready != nil {
		t.Errorf("adopter of a monitored domain: %v", err)
	}
	if cur, _ := ts.State.Load(r.ID); cur.MonitorPid != mon {
		t.Fatalf("an adopter took a monitored domain: %+v", cur)
	}

	done := make(chan error, 1)
	go func() { done <- ts.TakeOver(r.ID, mon, func(err error) { ready <- err }) }()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("ready: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the taker never said it holds the domain")
	}
	if cur, err := ts.State.Load(r.ID); err != nil || cur.MonitorPid != os.Getpid() {
		t.Fatalf("after the hand-over: %+v, %v", cur, err)
	}
	writeExit(t, r, control.ReasonPoweroff, time.Now())
	_ = syscall.Kill(hv, syscall.SIGKILL)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the taker did not see its hv end")
	}
}
