package toolstack

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/xeno-hv/xeno/hv/control"
)

// What becomes of a domain whose hv has exited, apart from the monitor's
// loop as in xl's handle_domain_death: the on_* policy decides, and a
// restart is a renumbering step of its own.

// onDeath is xl's on_poweroff / on_reboot / on_crash policy: the action
// for a domain whose hv exited for reason, and the state a preserved
// domain is kept in. It reads r and changes nothing.
func onDeath(r *Record, reason string) (act Action, preservedAs string) {
	if r.State == StateDying {
		// xl destroy is under way: the admin's decision wins.
		return ActionDestroy, ""
	}
	switch reason {
	case control.ReasonPoweroff:
		return r.OnPoweroff, StateShutdown
	case control.ReasonReboot:
		return r.OnReboot, StateShutdown
	case control.ReasonCrash:
		return r.OnCrash, StateCrashed
	case control.ReasonDestroyed, control.ReasonSaved:
		// A saved domain lives on in its snapshot (xl save), not here.
		return ActionDestroy, ""
	}
	// The hv died without saying why (kill -9, an hv bug): that is not
	// a guest crash, so on_crash does not apply. Keep the domain for the
	// admin to look at, and never restart it behind their back.
	return ActionPreserve, StateCrashed
}

// handleDeath applies onDeath to domain id, whose hv exited for reason:
// it removes the record, keeps it preserved, or renumbers it for a
// restart. It returns the restarted domain's new ID, or 0.
func (t *Toolstack) handleDeath(id int, reason, detail string) (int, error) {
	// The hv has ended: its cgroup goes, outside the lock (the kernel
	// may take a moment to let it go).
	if r, err := t.State.Load(id); err == nil {
		t.endJail(r)
	}
	next := 0
	_, err := t.update(id, func(r *Record) error {
		r.HVPid, r.HVStart = 0, 0
		r.Jail = nil
		r.ExitReason, r.ExitDetail = reason, detail
		act, preservedAs := onDeath(r, reason)
		switch act {
		case ActionDestroy:
			return errRemove
		case ActionPreserve:
			r.MonitorPid, r.MonitorStart = 0, 0
			r.State = preservedAs
			return nil
		}
		if err := t.renumber(r); err != nil {
			return err
		}
		next = r.ID
		return nil
	})
	if err != nil && !errors.Is(err, errRemove) {
		return 0, err
	}
	return next, nil
}

// renumber moves r to a new ID for its restart, keeping its name and
// UUID, as Xen gives a rebooted domain a new domid. Its directory (logs
// included) moves with it. Call with the lock held; the caller saves r.
func (t *Toolstack) renumber(r *Record) error {
	nid, err := t.State.nextID()
	if err != nil {
		return err
	}
	if err := os.Rename(t.State.DomainDir(r.ID), t.State.DomainDir(nid)); err != nil {
		return fmt.Errorf("toolstack: restart: %w", err)
	}
	r.ID = nid
	t.setPaths(r)
	r.Restarts++
	r.State = StateCreating
	return nil
}

// The restart brake: more than restartBurst restarts within
// restartWindow makes the monitor pause restartPause before each next one.
const (
	restartBurst  = 5
	restartWindow = 5 * time.Second
	restartPause  = time.Second
)

// restartBrake keeps a restarting domain from spinning through hvs and
// IDs as fast as they start, when its guest dies at boot.
type restartBrake struct {
	recent []time.Time // the last restartBurst restarts at most
}

// delay records a restart at now and returns how long to wait before it.
func (b *restartBrake) delay(now time.Time) time.Duration {
	b.recent = append(b.recent, now)
	if len(b.recent) <= restartBurst {
		return 0
	}
	b.recent = b.recent[1:]
	if now.Sub(b.recent[0]) < restartWindow {
		return restartPause
	}
	return 0
}
