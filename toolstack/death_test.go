package toolstack

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/control"
)

// The on_* policy with xl's semantics, and what xeno adds: an hv that
// died without a reason is kept as crashed, never restarted.
func TestOnDeath(t *testing.T) {
	const (
		d = ActionDestroy
		r = ActionRestart
		p = ActionPreserve
	)
	for _, c := range []struct {
		state             string
		poweroff, reb, cr Action
		reason            string
		act               Action
		preservedAs       string
	}{
		{StateRunning, d, r, d, control.ReasonPoweroff, d, StateShutdown},
		{StateRunning, p, r, d, control.ReasonPoweroff, p, StateShutdown},
		{StateRunning, r, r, d, control.ReasonPoweroff, r, StateShutdown},
		{StateRunning, d, r, d, control.ReasonReboot, r, StateShutdown},
		{StateRunning, d, p, d, control.ReasonReboot, p, StateShutdown},
		{StateRunning, d, d, d, control.ReasonReboot, d, StateShutdown},
		{StateRunning, d, r, d, control.ReasonCrash, d, StateCrashed},
		{StateRunning, d, r, p, control.ReasonCrash, p, StateCrashed},
		{StateRunning, d, r, r, control.ReasonCrash, r, StateCrashed},
		// xl destroy answered by the hv: gone, whatever on_* say.
		{StateRunning, p, p, p, control.ReasonDestroyed, d, ""},
		// Saved and ended by the hv: the snapshot holds it now.
		{StateRunning, p, r, p, control.ReasonSaved, d, ""},
		// kill -9, an hv failure: not the guest's doing.
		{StateRunning, r, r, r, "killed", p, StateCrashed},
		{StateRunning, r, r, r, control.ReasonError, p, StateCrashed},
		// A destroy in progress wins over every on_*.
		{StateDying, r, r, r, control.ReasonReboot, d, ""},
		{StateDying, p, p, p, control.ReasonCrash, d, ""},
	} {
		rec := &Record{State: c.state, OnPoweroff: c.poweroff, OnReboot: c.reb, OnCrash: c.cr}
		act, as := onDeath(rec, c.reason)
		if act != c.act || (act == ActionPreserve && as != c.preservedAs) {
			t.Errorf("%s, on_poweroff=%s on_reboot=%s on_crash=%s, reason %s: got %s (%q), want %s (%q)",
				c.state, c.poweroff, c.reb, c.cr, c.reason, act, as, c.act, c.preservedAs)
		}
	}
}

func TestRestartBrake(t *testing.T) {
	var b restartBrake
	t0 := time.Unix(1000, 0)
	// restartBurst quick restarts go at once; the next one waits.
	for i := range restartBurst {
		if d := b.delay(t0.Add(time.Duration(i) * 100 * time.Millisecond)); d != 0 {
			t.Fatalf("restart %d delayed %v", i+1, d)
		}
	}
	if d := b.delay(t0.Add(time.Second)); d != restartPause {
		t.Errorf("restart %d in 1 s: delay %v, want %v", restartBurst+1, d, restartPause)
	}
	// Once the window has passed since the oldest remembered one, no wait.
	if d := b.delay(t0.Add(restartWindow + time.Second)); d != 0 {
		t.Errorf("slow restart delayed %v", d)
	}
	if len(b.recent) != restartBurst {
		t.Errorf("brake remembers %d restarts, want %d", len(b.recent), restartBurst)
	}
}

// A restart renumbers the domain: new ID, same name and UUID, the
// directory moved with it; preserve keeps it, destroy removes it.
func TestHandleDeath(t *testing.T) {
	ts := newToolstack(t)
	st := ts.State
	r, err := ts.Reserve(plan("g"))
	if err != nil {
		t.Fatal(err)
	}
	r.State, r.OnReboot, r.OnCrash, r.OnPoweroff = StateRunning, ActionRestart, ActionPreserve, ActionDestroy
	if err := st.Save(r); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(st.ConsoleLog(r.ID), []byte("boot\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	next, err := ts.handleDeath(r.ID, control.ReasonReboot, "")
	if err != nil || next <= r.ID {
		t.Fatalf("restart: next ID %d, %v; want > %d", next, err, r.ID)
	}
	if _, err := st.Load(r.ID); err == nil {
		t.Error("old ID still has a record")
	}
	nr, err := st.Load(next)
	if err != nil {
		t.Fatal(err)
	}
	if nr.Name != r.Name || nr.UUID != r.UUID || nr.State != StateCreating || nr.Restarts != 1 || nr.ExitReason != control.ReasonReboot ||
		nr.Control != filepath.Join(st.HVDir(next), controlSocket) {
		t.Errorf("restarted record %+v", nr)
	}
	if b, err := os.ReadFile(st.ConsoleLog(next)); err != nil || string(b) != "boot\n" {
		t.Errorf("console log did not move: %q %v", b, err)
	}

	if n, err := ts.handleDeath(next, control.ReasonCrash, "triple fault"); err != nil || n != 0 {
		t.Fatalf("preserve: %d %v", n, err)
	}
	if pr, err := st.Load(next); err != nil || pr.State != StateCrashed || pr.ExitDetail != "triple fault" || pr.MonitorPid != 0 {
		t.Errorf("preserved record %+v, %v", pr, err)
	}

	if n, err := ts.handleDeath(next, control.ReasonPoweroff, ""); err != nil || n != 0 {
		t.Fatalf("destroy: %d %v", n, err)
	}
	if _, err := os.Stat(st.DomainDir(next)); !os.IsNotExist(err) {
		t.Errorf("destroyed domain's directory: %v", err)
	}
}
