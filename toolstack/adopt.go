package toolstack

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// A domain whose monitor died (kill -9, Ctrl-C of xl create -F) keeps
// running with nobody to apply its on_* settings when it ends. The next
// xl command that touches it, or xl monitor --adopt, starts a new monitor
// that takes the domain over: it waits for the hv, which is no longer its
// child, and applies the end reason from the hv's exit file.

// adoptTimeout bounds how long an xl command waits for a new monitor's
// word: it answers once it holds the domain, or once it has applied the
// end of an hv that was already gone.
const adoptTimeout = 10 * time.Second

// ReasonVanished is the end reason of an hv that ended while no monitor
// watched it and left no exit file (kill -9 of both, say). As for an hv
// killed under its monitor, on_crash does not apply: it is kept crashed.
const ReasonVanished = "vanished"

// Orphaned reports whether r needs a monitor and has none: its monitor
// died while the domain ran or was restarting. A record that never had a
// monitor (a create still under way) is not orphaned.
func (r *Record) Orphaned() bool {
	if r.MonitorPid == 0 || r.monitorAlive() {
		return false
	}
	return r.monitored()
}

// monitored reports whether r is in a state that needs a monitor: its hv
// runs, or it is between an hv's end and its restart.
func (r *Record) monitored() bool {
	return r.State == StateRunning || r.Restarting()
}

// Restarting reports whether r is between an hv's end and its restart
// (on_reboot or on_crash restart): renumbered, its new hv not yet started.
func (r *Record) Restarting() bool {
	return r.State == StateCreating && r.Restarts > 0
}

// errMonitored says a domain to adopt already has a live monitor.
var errMonitored = errors.New("the domain has a live monitor")

// AdoptOrphans starts a monitor for each orphaned domain among recs, and
// reports whether it adopted any (the caller's records are then stale).
// A domain that cannot be adopted is reported and the others are still
// tried.
func (t *Toolstack) AdoptOrphans(recs []*Record) (bool, error) {
	adopted := false
	var errs []error
	for _, r := range recs {
		if !r.Orphaned() {
			continue
		}
		if err := t.StartAdopter(r.ID); err != nil {
			errs = append(errs, fmt.Errorf("toolstack: adopt domain %s (ID %d): %w", r.Name, r.ID, err))
			continue
		}
		adopted = true
	}
	return adopted, errors.Join(errs...)
}

// StartAdopter starts `xl __monitor --adopt ID` detached and waits until
// it holds the domain (or found that another monitor does).
func (t *Toolstack) StartAdopter(id int) error {
	return t.spawnMonitor(id, []string{"__monitor", "--adopt", strconv.Itoa(id)}, adoptTimeout)
}

// Adopt is the body of `xl __monitor --adopt ID`: it becomes domain id's
// monitor if the domain is orphaned, waits for its hv to end, applies
// on_* to the reason in the hv's exit file, and monitors any restart as
// Monitor does. ready is told once: when this process holds the domain
// and its hv runs, or when the end of an hv that was already gone has
// been applied. A domain with a live monitor is left alone (ready(nil),
// nil): two xl commands may race to adopt one domain.
func (t *Toolstack) Adopt(id int, ready func(error)) error {
	return t.adopt(id, 0, ready)
}

// TakeOver is the body of `xl __monitor --adopt --handover ID`: Adopt,
// but from the live monitor from, which is handing the domain over (xl
// create -F on Ctrl-C) and exits once ready is told. Unlike an adopter,
// it is refused with an error when the domain is not from's to give.
func (t *Toolstack) TakeOver(id, from int, ready func(error)) error {
	return t.adopt(id, from, ready)
}

// HandOver makes a detached monitor take domain id over from this
// process, which is its live monitor, and returns once it has: the
// caller may then exit without leaving the domain orphaned for a moment.
func (t *Toolstack) HandOver(id int) error {
	return t.spawnMonitor(id, []string{"__monitor", "--adopt", "--handover", strconv.Itoa(id)}, adoptTimeout)
}

func (t *Toolstack) adopt(id, from int, ready func(error)) error {
	told := false
	tell := func(err error) {
		if !told {
			told = true
			ready(err)
		}
	}
	defer tell(nil)
	r, err := t.update(id, func(r *Record) error {
		if from != 0 {
			if r.MonitorPid != from || !r.monitored() {
				return fmt.Errorf("toolstack: domain %s (ID %d) is not monitor %d's to hand over (state %s, monitor %d)", r.Name, id, from, r.State, r.MonitorPid)
			}
		} else if !r.Orphaned() {
			return errMonitored
		}
		r.MonitorPid, r.MonitorStart = os.Getpid(), procStart(os.Getpid())
		return nil
	})
	if errors.Is(err, errMonitored) {
		return nil
	}
	if err != nil {
		tell(err)
		return err
	}
	if r.State == StateCreating {
		// Its monitor died between an hv's end and the restart.
		fmt.Fprintf(os.Stderr, "xl monitor: adopted domain %s (ID %d) during its restart\n", r.Name, id)
		tell(nil)
		return t.monitor(id, CreateOptions{}, nil, false)
	}
	if r.HVAlive() {
		why := "its monitor died"
		if from != 0 {
			why = fmt.Sprintf("handed over by monitor %d", from)
		}
		fmt.Fprintf(os.Stderr, "xl monitor: adopted domain %s (ID %d, hv pid %d): %s\n", r.Name, id, r.HVPid, why)
		// The hv writes console.log itself (--console-log): nothing to
		// mirror.
		tell(nil)
		waitExit(r.HVPid, r.HVStart)
	}
	reason, detail := ReasonVanished, "the hv ended while no monitor watched it and left no exit file"
	if e, ok := readExit(r.Control, r.Start); ok {
		reason, detail = e.Reason, e.Detail
	}
	fmt.Fprintf(os.Stderr, "xl monitor: domain %s (ID %d) ended: %s\n", r.Name, id, reason)
	next, err := t.handleDeath(id, reason, detail)
	tell(err)
	if err != nil || next == 0 {
		return err
	}
	return t.monitor(next, CreateOptions{}, nil, false)
}

// waitExit returns once the process pid that started at start (clock
// ticks, procStart) has ended. It is not our child, so wait(2) cannot
// see it: a pidfd becomes readable when it ends; where pidfd_open is
// missing (Linux < 5.3), /proc is polled.
func waitExit(pid int, start uint64) {
	if fd, err := unix.PidfdOpen(pid, 0); err == nil {
		defer unix.Close(fd)
		// Checked after the open: the pidfd names this very process,
		// not one that reused its pid.
		if procStart(pid) != start {
			return
		}
		for {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			_, err := unix.Poll(fds, -1)
			if err == nil {
				return
			}
			if err != unix.EINTR {
				break
			}
		}
	}
	for procStart(pid) == start {
		time.Sleep(100 * time.Millisecond)
	}
}
