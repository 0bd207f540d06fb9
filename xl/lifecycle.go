package xl

import (
	"errors"
	"fmt"

	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/toolstack"
)

func oneDom(args []string) (string, error) {
	pos, err := flags(args, nil)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", usagef("want exactly one DOM (a name or an ID)")
	}
	return pos[0], nil
}

func destroyCmd(io IO, args []string) error {
	dom, err := oneDom(args)
	if err != nil {
		return err
	}
	ts, err := open()
	if err != nil {
		return err
	}
	return ts.Destroy(dom)
}

func controlCmd(cmd string) func(IO, []string) error {
	return func(io IO, args []string) error {
		dom, err := oneDom(args)
		if err != nil {
			return err
		}
		ts, err := open()
		if err != nil {
			return err
		}
		_, err = ts.Control(dom, cmd)
		return err
	}
}

var (
	pauseCmd   = controlCmd(control.CmdPause)
	unpauseCmd = controlCmd(control.CmdResume)
)

// shutdownCmd sends the ACPI power button; the guest decides. With -w it
// waits until each domain has stopped (gone, restarted under a new ID, or
// preserved), as xl shutdown -w does. -F is accepted as xl's fallback
// flag: the power button already is the fallback.
func shutdownCmd(io IO, args []string) error {
	var wait, all, fallback bool
	pos, err := flags(args, map[string]*bool{"w": &wait, "a": &all, "F": &fallback})
	if err != nil {
		return err
	}
	return askDomains(io, ask{"shut down", "shut down"}, control.CmdShutdown, pos, all, wait)
}

// rebootCmd asks the guest to reboot (the power button; its clean
// poweroff then counts as a reboot and on_reboot applies). -F resets the
// domain without asking, as xl's fallback to an ACPI reset does.
func rebootCmd(io IO, args []string) error {
	var wait, all, reset bool
	pos, err := flags(args, map[string]*bool{"w": &wait, "a": &all, "F": &reset})
	if err != nil {
		return err
	}
	cmd := control.CmdReboot
	if reset {
		cmd = control.CmdReset
	}
	return askDomains(io, ask{"reboot", "rebooted"}, cmd, pos, all, wait)
}

// ask names a request in xl's messages.
type ask struct{ infinitive, done string }

// askDomains sends cmd to one domain or to all running ones, and with
// wait waits until each has stopped: gone, restarted under a new ID, or
// preserved.
func askDomains(io IO, a ask, cmd string, pos []string, all, wait bool) error {
	if all != (len(pos) == 0) || len(pos) > 1 {
		return usagef("want one DOM, or -a for all domains")
	}
	ts, err := open()
	if err != nil {
		return err
	}
	var targets []*toolstack.Record
	if all {
		recs, err := ts.State.Records()
		if err != nil {
			return err
		}
		for _, r := range recs {
			if r.State == toolstack.StateRunning {
				targets = append(targets, r)
			}
		}
	} else {
		r, err := ts.State.Find(pos[0])
		if err != nil {
			return err
		}
		targets = append(targets, r)
	}
	// Every domain is asked even if one fails; Main reports each
	// failure on its own line.
	var errs []error
	var sent []*toolstack.Record
	for _, r := range targets {
		if _, err := ts.Control(fmt.Sprint(r.ID), cmd); err != nil {
			errs = append(errs, err)
			continue
		}
		sent = append(sent, r)
	}
	if wait {
		for _, r := range sent {
			fmt.Fprintf(io.Stderr, "Waiting for domain %s (%d) to %s\n", r.Name, r.ID, a.infinitive)
			if err := ts.WaitGone(r.ID, 0); err != nil {
				errs = append(errs, err)
			}
		}
		if len(sent) > 0 {
			fmt.Fprintf(io.Stderr, "All domains have been %s\n", a.done)
		}
	}
	return errors.Join(errs...)
}
