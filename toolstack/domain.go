package toolstack

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/hv/jail"
)

// Toolstack runs domains: one detached hv process per domain, watched by
// one monitor process (xl's daemonised monitor, re-executed as
// `xl __monitor ID`).
type Toolstack struct {
	State *State
	HV    string // the hv binary
	XL    string // the xl binary, re-executed as the monitor
}

// ControlTimeout bounds one control-socket exchange.
const ControlTimeout = 3 * time.Second

// startTimeout bounds how long create waits for a new hv's control socket.
const startTimeout = 30 * time.Second

// CreateOptions are xl create's flags that the toolstack acts on.
type CreateOptions struct {
	Paused bool // -p: the first hv starts with --paused; restarts run
}

// Reserve takes the domain's ID and name under the lock and writes its
// record in state "creating", so that of two concurrent creates with one
// name exactly one proceeds.
func (t *Toolstack) Reserve(p *Plan) (*Record, error) {
	unlock, err := t.State.Lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	recs, err := t.State.Records()
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if r.State == StateCreating && procStart(r.CreatorPid) == 0 && !r.monitorAlive() {
			// A create that died before its monitor took over.
			_ = t.State.Remove(r.ID)
			continue
		}
		if r.Name == p.Config.Name {
			return nil, fmt.Errorf("toolstack: domain %q already exists (ID %d)", r.Name, r.ID)
		}
	}
	id, err := t.State.nextID()
	if err != nil {
		return nil, err
	}
	dir := t.State.DomainDir(id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("toolstack: %w", err)
	}
	r := &Record{
		ID: id, Name: p.Config.Name, UUID: p.Config.UUID, State: StateCreating,
		Config: p.Config, CreatorPid: os.Getpid(),
		Guest: p.Guest, Declared: p.Declared, Admitted: p.Admitted, Compat: p.Compat,
		Unchecked:  p.Unchecked,
		OnPoweroff: p.Config.OnPoweroff, OnReboot: p.Config.OnReboot, OnCrash: p.Config.OnCrash,
	}
	t.setPaths(r)
	if err := t.State.Save(r); err != nil {
		_ = t.State.Remove(id)
		return nil, err
	}
	return r, nil
}

func (t *Toolstack) setPaths(r *Record) {
	dir := t.State.DomainDir(r.ID)
	r.Control = filepath.Join(dir, controlSocket)
	r.Console = filepath.Join(dir, consoleSocket)
}

// StartMonitor starts the detached monitor for a reserved domain and
// waits until its hv answers on the control socket (or fails). On failure
// nothing is left: no process, no record.
func (t *Toolstack) StartMonitor(r *Record, opt CreateOptions) error {
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("toolstack: %w", err)
	}
	defer pr.Close()
	log, err := os.OpenFile(t.State.MonitorLog(r.ID), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		pw.Close()
		_ = t.removeLocked(r.ID)
		return fmt.Errorf("toolstack: %w", err)
	}
	defer log.Close()
	args := []string{"__monitor"}
	if opt.Paused {
		args = append(args, "-p")
	}
	args = append(args, strconv.Itoa(r.ID))
	cmd := exec.Command(t.XL, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.ExtraFiles = []*os.File{pw} // fd 3: the readiness pipe
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// Like xl's daemonised monitor, do not pin the caller's directory.
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), "XENO_STATE_DIR="+t.State.Dir)
	if err := cmd.Start(); err != nil {
		pw.Close()
		_ = t.removeLocked(r.ID)
		return fmt.Errorf("toolstack: start monitor: %w", err)
	}
	pw.Close()
	// The monitor outlives us; do not wait for it, but reap it if it
	// ends while we still run (a failed start).
	go func() { _ = cmd.Wait() }()
	// One line: "ok", or why the domain did not start.
	msg, _ := io.ReadAll(io.LimitReader(pr, 64<<10))
	if s := string(msg); s != "ok\n" {
		if s == "" {
			s = "toolstack: the monitor ended without a word; see " + log.Name()
		}
		_ = t.removeLocked(r.ID)
		return errors.New(strings.TrimSpace(s))
	}
	return nil
}

func (t *Toolstack) removeLocked(id int) error {
	unlock, err := t.State.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	return t.State.Remove(id)
}

// update loads domain id's record under the lock, applies f and saves it.
// If f returns errRemove, the record is removed instead.
func (t *Toolstack) update(id int, f func(r *Record) error) (*Record, error) {
	unlock, err := t.State.Lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	r, err := t.State.Load(id)
	if err != nil {
		return nil, err
	}
	if err := f(r); err != nil {
		if errors.Is(err, errRemove) {
			return r, t.State.Remove(id)
		}
		return r, err
	}
	return r, t.State.Save(r)
}

var errRemove = errors.New("remove the record")

func (r *Record) monitorAlive() bool {
	if r.MonitorPid == os.Getpid() {
		return true
	}
	return r.MonitorPid > 0 && r.MonitorStart != 0 && procStart(r.MonitorPid) == r.MonitorStart
}

var errNotUp = errors.New("hv did not come up")

// waitUp polls the control socket until the hv answers (true), the hv
// exits (false, its wait error) or startTimeout passes (false, errNotUp).
func waitUp(sock string, exited chan error) (bool, error) {
	deadline := time.Now().Add(startTimeout)
	// Poll fast at first (a micro-guest's hv answers within a few ms),
	// then back off.
	interval := 500 * time.Microsecond
	for {
		select {
		case err := <-exited:
			return false, err
		case <-time.After(interval):
		}
		interval = min(2*interval, 10*time.Millisecond)
		if _, err := control.Call(sock, control.CmdStatus, ControlTimeout); err == nil {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, errNotUp
		}
	}
}

// hvArgs is the hv command line for r; paused starts it with no vCPU
// having run.
func (t *Toolstack) hvArgs(r *Record, paused bool) []string {
	c := r.Config
	a := []string{"--kernel", c.Kernel}
	if c.Ramdisk != "" {
		a = append(a, "--initrd", c.Ramdisk)
	}
	if c.Cmdline != "" {
		a = append(a, "--cmdline", c.Cmdline)
	}
	a = append(a, "--memory", strconv.FormatInt(c.MemoryMiB, 10), "--vcpus", strconv.Itoa(c.VCPUs))
	for _, d := range c.Disks {
		s := d.Target
		if d.ReadOnly {
			s += ",ro"
		}
		a = append(a, "--disk", s)
	}
	a = append(a, "--console", "unix:"+r.Console, "--control", r.Control, "--name", r.Name, "--uuid", r.UUID)
	if r.Guest != "" {
		a = append(a, "--interface", r.Guest)
	}
	if r.Unchecked {
		a = append(a, "--unchecked-interface")
	}
	if paused {
		a = append(a, "--paused")
	}
	return a
}

// Monitor is the body of `xl __monitor ID` (and of xl create -F): it
// starts the domain's hv, reports readiness through ready (once), waits
// for the hv to exit and applies on_poweroff / on_reboot / on_crash.
// It returns when the domain is gone or preserved.
func (t *Toolstack) Monitor(id int, opt CreateOptions, ready func(error)) error {
	first := true
	var brake restartBrake
	tell := func(err error) {
		if first {
			first = false
			ready(err)
		}
	}
	for {
		r, err := t.State.Load(id)
		if err != nil {
			tell(err)
			return err
		}
		if r.State == StateDying {
			// Destroyed between a restart and its new hv.
			tell(fmt.Errorf("toolstack: domain %s was destroyed", r.Name))
			return t.removeLocked(id)
		}
		hvlog, err := os.OpenFile(t.State.HVLog(id), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			err = fmt.Errorf("toolstack: %w", err)
			tell(err)
			_ = t.removeLocked(id)
			return err
		}
		os.Remove(control.ExitFile(r.Control))
		// -p applies to the creation only: a domain restarted by
		// on_reboot runs at once, as in xl.
		cmd := exec.Command(t.HV, t.hvArgs(r, opt.Paused && first)...)
		cmd.Stdout, cmd.Stderr = hvlog, hvlog
		// The hv gets its own session: a signal to xl's terminal or to
		// the monitor's group never reaches a guest.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		cmd.Dir = "/"
		start := time.Now()
		if err := cmd.Start(); err != nil {
			hvlog.Close()
			err = fmt.Errorf("toolstack: start %s: %w", t.HV, err)
			tell(err)
			_ = t.removeLocked(id)
			return err
		}
		hvlog.Close()
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()

		if _, err := t.update(id, func(r *Record) error {
			r.HVPid, r.HVStart = cmd.Process.Pid, procStart(cmd.Process.Pid)
			r.MonitorPid, r.MonitorStart = os.Getpid(), procStart(os.Getpid())
			r.Start = start.UTC()
			if r.State != StateDying {
				r.State = StateRunning
			}
			return nil
		}); err != nil {
			_ = cmd.Process.Kill()
			<-exited
			tell(err)
			return err
		}

		up, waitErr := waitUp(r.Control, exited)
		if up {
			checkSockets(r)
			go mirrorConsole(r.Console, t.State.ConsoleLog(id))
			tell(nil)
			waitErr = <-exited
		} else if waitErr == errNotUp {
			_ = cmd.Process.Kill()
			<-exited
			err := fmt.Errorf("toolstack: hv did not answer on %s within %v%s", r.Control, startTimeout, logTail(t.State.HVLog(id)))
			tell(err)
			_ = t.removeLocked(id)
			return err
		}
		reason, detail := exitReason(r.Control, start, waitErr)
		if first {
			switch reason {
			case control.ReasonPoweroff, control.ReasonReboot, control.ReasonCrash:
				// The guest ran and ended before the first status
				// poll: a quick guest, not a failed create.
				tell(nil)
			default:
				err := fmt.Errorf("toolstack: hv exited before the domain was up (%s): %s%s", reason, detail, logTail(t.State.HVLog(id)))
				tell(err)
				_ = t.removeLocked(id)
				return err
			}
		}
		next, err := t.handleDeath(id, reason, detail)
		if err != nil || next == 0 {
			return err
		}
		id = next
		if d := brake.delay(time.Now()); d > 0 {
			fmt.Fprintf(os.Stderr, "xl monitor: domain restarted %d times in %v; waiting %v\n", restartBurst, restartWindow, d)
			time.Sleep(d)
		}
	}
}

// checkSockets makes sure the hv's sockets are 0600, as the contract
// says: whoever can connect can destroy the domain or type on its console.
func checkSockets(r *Record) {
	for _, p := range []string{r.Control, r.Console} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm()&0o077 == 0 {
			continue
		}
		fmt.Fprintf(os.Stderr, "xl monitor: %s has mode %v, setting 0600\n", p, fi.Mode().Perm())
		_ = os.Chmod(p, 0o600)
	}
}

// mirrorConsole appends everything the domain's console prints to a log
// beside the record, so that the output of a guest that has stopped
// (preserved, crashed, or too quick for xl console) can still be read.
// The hv replays its recent output to a new client, so nothing from boot
// is lost.
func mirrorConsole(sock, logPath string) {
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return
	}
	defer conn.Close()
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, conn)
}

// exitReason reads the hv's exit file, or derives the reason from how the
// process ended when the hv could not write one.
func exitReason(sock string, start time.Time, waitErr error) (string, string) {
	if b, err := os.ReadFile(control.ExitFile(sock)); err == nil {
		var e control.Exit
		if json.Unmarshal(b, &e) == nil && e.Reason != "" && !e.Time.Before(start.Add(-time.Second)) {
			return e.Reason, e.Detail
		}
	}
	var ee *exec.ExitError
	if errors.As(waitErr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			if jail.KilledBySeccomp(ws) {
				return "killed", jail.Explain(ee.Pid(), 500*time.Millisecond)
			}
			return "killed", "hv killed by signal " + ws.Signal().String()
		}
		return control.ReasonForCode(ee.ExitCode()), fmt.Sprintf("hv exit code %d without an exit file", ee.ExitCode())
	}
	if waitErr == nil {
		return control.ReasonPoweroff, "hv exit code 0 without an exit file"
	}
	return control.ReasonError, waitErr.Error()
}

func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return "\nhv log (" + path + "):\n  " + strings.Join(lines, "\n  ")
}

// Destroy stops a domain now and removes its record.
func (t *Toolstack) Destroy(dom string) error {
	var r *Record
	var err error
	// A restarting domain moves to a new ID under us: look it up again.
	for try := 0; ; try++ {
		if r, err = t.State.Find(dom); err != nil {
			return err
		}
		r, err = t.update(r.ID, func(r *Record) error { r.State = StateDying; return nil })
		var nd *NoDomainError
		if err == nil || !errors.As(err, &nd) || try == 5 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	if r.HVAlive() {
		if _, err := control.Call(r.Control, control.CmdDestroy, ControlTimeout); err != nil && r.HVAlive() {
			_ = syscall.Kill(r.HVPid, syscall.SIGKILL)
		}
	}
	// The monitor removes the record when it sees the hv go; if there is
	// no monitor (a preserved domain, or it died), remove it here.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		cur, err := t.State.Load(r.ID)
		if err != nil {
			return nil // gone
		}
		if !cur.HVAlive() && !cur.monitorAlive() {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if cur, err := t.State.Load(r.ID); err == nil && cur.HVAlive() {
		_ = syscall.Kill(cur.HVPid, syscall.SIGKILL)
	}
	return t.removeLocked(r.ID)
}

// Control sends cmd to a live domain's hv.
func (t *Toolstack) Control(dom, cmd string) (*Record, error) {
	r, err := t.State.Find(dom)
	if err != nil {
		return nil, err
	}
	if r.State != StateRunning || !r.HVAlive() {
		return r, fmt.Errorf("toolstack: domain %s (ID %d) is not running (state %s)", r.Name, r.ID, r.State)
	}
	if _, err := control.Call(r.Control, cmd, ControlTimeout); err != nil {
		return r, fmt.Errorf("toolstack: domain %s: %w", r.Name, err)
	}
	return r, nil
}

// WaitGone waits until domain id has stopped: its record is gone, moved
// (a restart gives a new ID) or no longer running (preserved).
func (t *Toolstack) WaitGone(id int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		r, err := t.State.Load(id)
		if err != nil {
			var nd *NoDomainError
			if errors.As(err, &nd) {
				return nil
			}
			return err
		}
		if r.State == StateShutdown || r.State == StateCrashed {
			return nil
		}
		if timeout > 0 && time.Now().After(deadline) {
			return fmt.Errorf("toolstack: domain %s (ID %d) still %s after %v", r.Name, r.ID, r.State, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Flags are a domain's state as libxl's dominfo gives it to xl list,
// which draws one column for each (r b p s c d). Drawing is xl's.
type Flags uint8

const (
	FlagRunning  Flags = 1 << iota // its hv runs the guest
	FlagBlocked                    // every vCPU halted
	FlagPaused                     // paused, or still being created
	FlagShutdown                   // stopped and preserved
	FlagCrashed                    // crashed and preserved, or its hv died
	FlagDying                      // xl destroy in progress
)

// Info is a domain as xl list shows it.
type Info struct {
	*Record
	Live  *control.Status // nil unless the hv answered
	Flags Flags
}

// Inspect combines r with its hv's live status.
func (t *Toolstack) Inspect(r *Record) Info {
	in := Info{Record: r}
	switch r.State {
	case StateShutdown:
		in.Flags = FlagShutdown
	case StateCrashed:
		in.Flags = FlagCrashed
	case StateDying:
		in.Flags = FlagDying
	case StateCreating:
		in.Flags = FlagPaused // being built: not yet running, as xl shows a paused new domain
		if r.HVPid == 0 && procStart(r.CreatorPid) == 0 && !r.monitorAlive() {
			in.Flags = FlagCrashed
		}
	default:
		if !r.HVAlive() {
			// Its hv is gone and nobody recorded why: kill -9, or the
			// monitor died too.
			in.Flags = FlagCrashed
			break
		}
		resp, err := control.Call(r.Control, control.CmdStatus, ControlTimeout)
		if err != nil || resp.Status == nil {
			in.Flags = FlagRunning
			break
		}
		in.Live = resp.Status
		switch resp.Status.State {
		case control.StatePaused:
			in.Flags = FlagPaused
		case control.StateBlocked:
			in.Flags = FlagBlocked
		default:
			in.Flags = FlagRunning
		}
	}
	return in
}
