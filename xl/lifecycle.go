package xl

import (
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

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
		if _, err := selected(io, ts, []string{dom}); err != nil {
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

// defaultWaitTimeout bounds shutdown -w and reboot -w unless -t says
// otherwise. Xen's xl waits for ever; xendomains bounds its own wait
// (XENDOMAINS_STOP_MAXWAIT). A minute is long enough for a guest that
// acts on the power button, and a script learns about one that does not.
const defaultWaitTimeout = 60 * time.Second

// waitFlags are the flags shared by shutdown and reboot.
type waitFlags struct {
	wait, all bool
	timeout   string // -t, --timeout: seconds, or a Go duration
}

func (w *waitFlags) parse(args []string, extra map[string]*bool) ([]string, time.Duration, error) {
	known := map[string]*bool{"w": &w.wait, "a": &w.all}
	maps.Copy(known, extra)
	pos, err := flagValues(args, known, map[string]*string{"t": &w.timeout, "timeout": &w.timeout})
	if err != nil {
		return nil, 0, err
	}
	d := defaultWaitTimeout
	if w.timeout != "" {
		if d, err = parseTimeout(w.timeout); err != nil {
			return nil, 0, err
		}
	}
	return pos, d, nil
}

// parseTimeout reads -t: whole seconds ("30"), or a Go duration ("90s",
// "2m"); 0 waits for ever.
func parseTimeout(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 {
			return 0, usagef("timeout %q is negative", s)
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, usagef("timeout %q is not SECONDS or a duration like 90s", s)
	}
	return d, nil
}

// shutdownCmd sends the ACPI power button; the guest decides. With -w it
// waits until each domain has stopped (gone, restarted under a new ID, or
// preserved), as xl shutdown -w does, for at most -t. -F is accepted as
// xl's fallback flag: the power button already is the fallback.
func shutdownCmd(io IO, args []string) error {
	var w waitFlags
	var fallback bool
	pos, timeout, err := w.parse(args, map[string]*bool{"F": &fallback})
	if err != nil {
		return err
	}
	return askDomains(io, ask{"shut down", "shut down"}, control.CmdShutdown, pos, w.all, w.wait, timeout)
}

// rebootCmd asks the guest to reboot (the power button; its clean
// poweroff then counts as a reboot and on_reboot applies). -F resets the
// domain without asking, as xl's fallback to an ACPI reset does.
func rebootCmd(io IO, args []string) error {
	var w waitFlags
	var reset bool
	pos, timeout, err := w.parse(args, map[string]*bool{"F": &reset})
	if err != nil {
		return err
	}
	cmd := control.CmdReboot
	if reset {
		cmd = control.CmdReset
	}
	return askDomains(io, ask{"reboot", "rebooted"}, cmd, pos, w.all, w.wait, timeout)
}

// ask names a request in xl's messages.
type ask struct{ infinitive, done string }

// askDomains sends cmd to one domain or to all running ones, and with
// wait waits until each has stopped: gone, restarted under a new ID, or
// preserved. timeout bounds the whole wait (0: for ever).
func askDomains(io IO, a ask, cmd string, pos []string, all, wait bool, timeout time.Duration) error {
	if all != (len(pos) == 0) || len(pos) > 1 {
		return usagef("want one DOM, or -a for all domains")
	}
	ts, err := open()
	if err != nil {
		return err
	}
	recs, err := selected(io, ts, pos)
	if err != nil {
		return err
	}
	var targets []*toolstack.Record
	for _, r := range recs {
		if !all || r.State == toolstack.StateRunning || r.Restarting() {
			targets = append(targets, r)
		}
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
		deadline := time.Now().Add(timeout)
		stopped := 0
		for _, r := range sent {
			fmt.Fprintf(io.Stderr, "Waiting for domain %s (%d) to %s\n", r.Name, r.ID, a.infinitive)
			left := time.Duration(0)
			if timeout > 0 {
				// At least a moment each, so that a domain
				// already stopped is still seen as stopped.
				left = max(time.Until(deadline), time.Millisecond)
			}
			if err := ts.WaitGone(r.ID, left); err != nil {
				var te *toolstack.WaitTimeoutError
				if errors.As(err, &te) {
					te.After = timeout
				}
				errs = append(errs, err)
				continue
			}
			stopped++
		}
		if stopped == len(sent) && len(sent) > 0 {
			fmt.Fprintf(io.Stderr, "All domains have been %s\n", a.done)
		}
	}
	return errors.Join(errs...)
}
