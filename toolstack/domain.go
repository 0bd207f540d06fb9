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
	"github.com/xeno-hv/xeno/hv/virtio"
	"github.com/xeno-hv/xeno/toolstack/hostnet"
)

// Toolstack runs domains: one detached hv process per domain, watched by
// one monitor process (xl's daemonised monitor, re-executed as
// `xl __monitor ID`).
type Toolstack struct {
	State *State
	HV    string // the hv binary
	XL    string // the xl binary, re-executed as the monitor
	// MountInfo is where the cgroup v2 mount is looked up; "" is
	// /proc/self/mountinfo (tests give another host's).
	MountInfo string
}

// ControlTimeout bounds one control-socket exchange.
const ControlTimeout = 3 * time.Second

// startTimeout bounds how long create waits for a new hv's control socket.
const startTimeout = 30 * time.Second

// CreateOptions are xl create's flags that the toolstack acts on.
type CreateOptions struct {
	Paused bool // -p: the first hv starts with --paused; restarts run
	// Restore is xl restore's snapshot: the first hv starts from it
	// (hv --restore) instead of the kernel; a restart boots the kernel.
	Restore string
	// Stream, instead of Restore, is a snapshot stream (xl
	// migrate-receive's pipe): the monitor's descriptor monitorStreamFD,
	// then the first hv's, which reads it as it comes. The caller keeps
	// and closes its copy.
	Stream *os.File
}

// monitorStreamFD is CreateOptions.Stream's descriptor in the monitor,
// after the readiness pipe (3): `xl __monitor --restore fd=4 ID`.
const monitorStreamFD = 4

// StreamArg is --restore's value for a stream on descriptor fd, to the
// monitor and to the hv.
func StreamArg(fd int) string { return "fd=" + strconv.Itoa(fd) }

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
	var live []*Record
	for _, r := range recs {
		if r.State == StateCreating && r.Restarts == 0 && procStart(r.CreatorPid) == 0 && !r.monitorAlive() {
			// A create that died before its monitor took over. (A
			// restart whose monitor died is an orphan, adopted.)
			_ = t.State.Remove(r.ID)
			continue
		}
		if r.Name == p.Config.Name {
			return nil, fmt.Errorf("toolstack: domain %q already exists (ID %d)", r.Name, r.ID)
		}
		live = append(live, r)
	}
	// Under the lock, so that concurrent creates cannot each take the
	// same memory.
	if err := checkMemoryLeft(p.Config, p.Host, live); err != nil {
		return nil, err
	}
	id, err := t.State.nextID()
	if err != nil {
		return nil, err
	}
	dir := t.State.DomainDir(id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("toolstack: %w", err)
	}
	if err := os.Mkdir(t.State.HVDir(id), 0o700); err != nil {
		_ = t.State.Remove(id)
		return nil, fmt.Errorf("toolstack: %w", err)
	}
	r := &Record{
		ID: id, Name: p.Config.Name, UUID: p.Config.UUID, State: StateCreating,
		Config: p.Config, CreatorPid: os.Getpid(),
		Guest: p.Guest, Declared: p.Declared, Admitted: p.Admitted, Compat: p.Compat,
		Unchecked:  p.Unchecked,
		OnPoweroff: p.Config.OnPoweroff, OnReboot: p.Config.OnReboot, OnCrash: p.Config.OnCrash,
		AllowUnjailed: p.AllowUnjailed,
	}
	t.setPaths(r)
	if err := restoreVsock(r, p.Vsock); err != nil {
		_ = t.State.Remove(id)
		return nil, err
	}
	if err := t.State.Save(r); err != nil {
		_ = t.State.Remove(id)
		return nil, err
	}
	return r, nil
}

func (t *Toolstack) setPaths(r *Record) {
	dir := t.State.HVDir(r.ID)
	r.Control = filepath.Join(dir, controlSocket)
	r.Console = filepath.Join(dir, consoleSocket)
	// Every domain gets a virtio-vsock device, CID 3 + ID (0-2 are
	// reserved), unless the path is too long for a Unix socket with
	// _PORT appended, which hv refuses.
	r.Vsock, r.VsockCID = "", 0
	if v := filepath.Join(dir, vsockSocket); len(v) <= MaxVsockPath {
		r.Vsock, r.VsockCID = v, uint32(3+r.ID)
	}
}

// restoreVsock gives a restored domain the vsock device its snapshot
// holds (saved, as SavedDomain.Vsock says; nil: as setPaths decided): a
// domain saved without one gets none, and one saved with one is refused
// here, with the reason, where this state directory is too deep for the
// socket, rather than by the hv's "no such part" for its device section.
func restoreVsock(r *Record, saved *bool) error {
	switch {
	case saved == nil || *saved == (r.Vsock != ""):
		return nil
	case !*saved:
		r.Vsock, r.VsockCID = "", 0
		return nil
	}
	sock := filepath.Join(filepath.Dir(r.Control), vsockSocket)
	return &Refusal{Check: "host", Rule: "vsock-path", Msg: fmt.Sprintf(
		"the saved domain has a vsock device, and this domain's vsock socket %s would be %d bytes, more than the %d a Unix socket path with _PORT added can be: use a state directory with a shorter path (XENO_STATE_DIR)",
		sock, len(sock), MaxVsockPath)}
}

// MaxVsockPath is the longest vsock Unix socket path hv --vsock takes.
const MaxVsockPath = virtio.MaxUDSPath

// StartMonitor starts the detached monitor for a reserved domain and
// waits until its hv answers on the control socket (or fails). On failure
// nothing is left: no process, no record.
func (t *Toolstack) StartMonitor(r *Record, opt CreateOptions) error {
	args := []string{"__monitor"}
	if opt.Paused {
		args = append(args, "-p")
	}
	var files []*os.File
	switch {
	case opt.Stream != nil:
		args = append(args, "--restore", StreamArg(monitorStreamFD))
		files = append(files, opt.Stream)
	case opt.Restore != "":
		args = append(args, "--restore", opt.Restore)
	}
	if err := t.spawnMonitor(r.ID, append(args, strconv.Itoa(r.ID)), 0, files...); err != nil {
		_ = t.removeLocked(r.ID)
		return err
	}
	return nil
}

// spawnMonitor starts `xl ARGS` detached, as domain id's monitor, with
// files as its descriptors 4 on, and waits for its one-line word on the
// readiness pipe: "ok", or why it failed. A timeout > 0 bounds that wait.
func (t *Toolstack) spawnMonitor(id int, args []string, timeout time.Duration, files ...*os.File) error {
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("toolstack: %w", err)
	}
	defer pr.Close()
	log, err := os.OpenFile(t.State.MonitorLog(id), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		pw.Close()
		return fmt.Errorf("toolstack: %w", err)
	}
	defer log.Close()
	cmd := exec.Command(t.XL, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.ExtraFiles = append([]*os.File{pw}, files...) // fd 3: the readiness pipe
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// Like xl's daemonised monitor, do not pin the caller's directory.
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), "XENO_STATE_DIR="+t.State.Dir)
	if err := cmd.Start(); err != nil {
		pw.Close()
		return fmt.Errorf("toolstack: start monitor: %w", err)
	}
	pw.Close()
	// The monitor outlives us; do not wait for it, but reap it if it
	// ends while we still run (a failed start).
	go func() { _ = cmd.Wait() }()
	if timeout > 0 {
		_ = pr.SetReadDeadline(time.Now().Add(timeout))
	}
	// One line: "ok", or why the domain did not start.
	msg, rerr := io.ReadAll(io.LimitReader(pr, 64<<10))
	if s := string(msg); s != "ok\n" {
		if errors.Is(rerr, os.ErrDeadlineExceeded) {
			return fmt.Errorf("toolstack: the monitor (pid %d) did not answer within %v; see %s", cmd.Process.Pid, timeout, log.Name())
		}
		if s == "" {
			s = "toolstack: the monitor ended without a word; see " + log.Name()
		}
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
// exits (false, its wait error) or timeout passes (false, errNotUp).
func waitUp(sock string, exited chan error, timeout time.Duration) (bool, error) {
	deadline := time.Now().Add(timeout)
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
// having run; restore, if not "", starts it from that snapshot instead
// of the kernel (the snapshot holds the guest and its interface).
func (t *Toolstack) hvArgs(r *Record, paused bool, restore string) []string {
	c := r.Config
	var a []string
	if restore != "" {
		a = []string{"--restore", restore}
	} else {
		a = []string{"--kernel", c.Kernel}
		if c.Ramdisk != "" {
			a = append(a, "--initrd", c.Ramdisk)
		}
		if cl := c.KernelCmdline(); cl != "" {
			a = append(a, "--cmdline", cl)
		}
	}
	a = append(a, "--memory", strconv.FormatInt(c.MemoryMiB, 10), "--vcpus", strconv.Itoa(c.VCPUs))
	for _, d := range c.Disks {
		s := d.Target
		if d.ReadOnly {
			s += ",ro"
		}
		a = append(a, "--disk", s)
	}
	// The taps are the hv's descriptors 3, 4, ... in vif order
	// (exec.Cmd.ExtraFiles, set up by plugVifs).
	for i, v := range c.Vifs {
		a = append(a, "--net", v.HVArg(3+i))
	}
	if r.Vsock != "" {
		a = append(a, "--vsock", fmt.Sprintf("cid=%d,uds=%s", r.VsockCID, r.Vsock))
	}
	a = append(a, "--console", "unix:"+r.Console, "--control", r.Control, "--name", r.Name, "--uuid", r.UUID,
		"--log", t.State.HVLog(r.ID), "--console-log", t.State.ConsoleLog(r.ID))
	if r.Guest != "" && restore == "" {
		a = append(a, "--interface", r.Guest)
	}
	if r.Unchecked && restore == "" {
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
	return t.monitor(id, opt, ready, true)
}

// monitor is Monitor's loop. With first false, domain id is a restart
// (its creation is long over): ready is never called, and an hv that
// ends at once is a death for on_*, not a failed create.
func (t *Toolstack) monitor(id int, opt CreateOptions, ready func(error), first bool) error {
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
		os.Remove(control.ExitFile(r.Control))
		// The jail (docs/security.md): the hv's directory becomes its
		// uid's, and its cgroup is made.
		jr, err := t.prepareJail(r)
		if err != nil {
			err = fmt.Errorf("toolstack: %w", err)
			tell(err)
			_ = t.removeLocked(id)
			return err
		}
		restarting := !first
		failStart := func(err error) error {
			jr.close()
			_ = removeCgroup(jr.info.Cgroup)
			tell(err)
			if restarting {
				// A create that fails leaves nothing, and its caller
				// hears why. A restart has no caller: the domain stays,
				// crashed, with the reason in xl list -l and its logs,
				// until the admin destroys it.
				return t.preserveFailedRestart(id, err)
			}
			_ = t.removeLocked(id)
			return err
		}
		// The hv writes hv.log and console.log itself, capped (--log,
		// --console-log); this catches what it says before that. An
		// earlier hv of the domain could have left a symlink there: it
		// is not followed.
		hvlog, err := os.OpenFile(t.State.HVLog(id), os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
		if err == nil && jr.info.UID != os.Geteuid() {
			err = hvlog.Chown(jr.info.UID, jr.info.GID)
		}
		if err != nil {
			return failStart(fmt.Errorf("toolstack: %w", err))
		}
		// The taps are made here, as root and before the hv starts (and
		// drops its privileges), for every start: a restart has a new ID,
		// so new vifDOMID.DEVID names. The descriptors survive the hv's
		// new network namespace and its drop to its own uid.
		taps, err := plugVifs(r)
		if err != nil {
			hvlog.Close()
			return failStart(err)
		}
		start := time.Now()
		// -p applies to the creation only: a domain restarted by
		// on_reboot runs at once, as in xl.
		restore, files, upTimeout := "", taps, startTimeout
		if first {
			restore = opt.Restore
		}
		if first && opt.Stream != nil {
			// The hv answers once it has read the whole stream, which
			// takes as long as the sender takes to send it.
			restore = StreamArg(3 + len(taps))
			files = append(taps[:len(taps):len(taps)], opt.Stream)
			upTimeout += liveSaveTimeout(r.Config.MemoryMiB)
		}
		newCmd := func() *exec.Cmd {
			cmd := exec.Command(t.HV, append(jr.hvArgs(), t.hvArgs(r, opt.Paused && first, restore)...)...)
			cmd.ExtraFiles = files
			cmd.Stdout, cmd.Stderr = hvlog, hvlog
			// The hv gets its own session (a signal to xl's terminal
			// or to the monitor's group never reaches a guest), its
			// namespaces and its cgroup.
			cmd.SysProcAttr = jr.sysProcAttr()
			cmd.Dir = "/"
			return cmd
		}
		cmd := newCmd()
		err = cmd.Start()
		if err != nil && jr.cloneNS != 0 {
			// Which layer? Namespaces refused (a container, say) or
			// something else.
			if nsErr := probeNamespaces(t.HV); nsErr != nil {
				if err := jr.dropNamespaces(r.AllowUnjailed, nsErr); err != nil {
					hvlog.Close()
					return failStart(fmt.Errorf("toolstack: %w", err))
				}
				cmd = newCmd()
				err = cmd.Start()
			}
		}
		hvlog.Close()
		jr.close()
		// From here the hv holds the only descriptors to its taps, so
		// the kernel removes them when it ends, however it ends. A
		// stream is the hv's alone to read.
		closeAll(files)
		if err != nil {
			return failStart(fmt.Errorf("toolstack: start %s: %w", t.HV, err))
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if jr.cloneNS != 0 {
			jr.info.Namespaces = observeNamespaces(cmd.Process.Pid)
		} else {
			jr.info.Namespaces = []string{}
		}

		hvStart := procStart(cmd.Process.Pid)
		if _, err := t.update(id, func(r *Record) error {
			r.HVPid, r.HVStart = cmd.Process.Pid, hvStart
			r.MonitorPid, r.MonitorStart = os.Getpid(), procStart(os.Getpid())
			r.Start = start.UTC()
			r.Jail = &jr.info
			if r.State != StateDying {
				r.State = StateRunning
			}
			return nil
		}); err != nil {
			_ = cmd.Process.Kill()
			<-exited
			_ = removeCgroup(jr.info.Cgroup)
			tell(err)
			return err
		}

		up, waitErr := waitUp(r.Control, exited, upTimeout)
		if up {
			// Fail closed: the hv answers only once jailed; check
			// from outside that it is.
			if err := t.checkJail(id, cmd.Process.Pid, hvStart, &jr.info, r.AllowUnjailed); err != nil {
				_ = cmd.Process.Kill()
				<-exited
				return failStart(fmt.Errorf("toolstack: %w%s", err, logTail(t.State.HVLog(id))))
			}
			checkSockets(r)
			tell(nil)
			waitErr = <-exited
		} else if waitErr == errNotUp {
			_ = cmd.Process.Kill()
			<-exited
			return failStart(fmt.Errorf("toolstack: hv did not answer on %s within %v%s", r.Control, upTimeout, logTail(t.State.HVLog(id))))
		}
		reason, detail := exitReason(r.Control, start, waitErr)
		if reason == "killed" {
			detail += oomKilled(jr.info.Cgroup)
		}
		if first {
			switch reason {
			case control.ReasonPoweroff, control.ReasonReboot, control.ReasonCrash:
				// The guest ran and ended before the first status
				// poll: a quick guest, not a failed create.
				tell(nil)
			default:
				return failStart(fmt.Errorf("toolstack: hv exited before the domain was up (%s): %s%s", reason, detail, logTail(t.State.HVLog(id))))
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

// preserveFailedRestart keeps domain id, whose restart could not start
// an hv, as crashed with err as its exit detail, and returns err.
func (t *Toolstack) preserveFailedRestart(id int, err error) error {
	fmt.Fprintf(os.Stderr, "xl monitor: domain %d: restart failed, kept as %s: %v\n", id, StateCrashed, err)
	if _, uerr := t.update(id, func(r *Record) error {
		r.HVPid, r.HVStart = 0, 0
		r.MonitorPid, r.MonitorStart = 0, 0
		r.Jail = nil
		r.State = StateCrashed
		r.ExitReason, r.ExitDetail = control.ReasonError, "restart failed: "+err.Error()
		return nil
	}); uerr != nil {
		return fmt.Errorf("%w (and keeping the domain: %v)", err, uerr)
	}
	return err
}

// plugVifs makes r's taps, vifDOMID.DEVID, each on its bridge and up,
// and returns their descriptors in vif order. On error nothing is left:
// a tap whose descriptor closes is gone.
func plugVifs(r *Record) ([]*os.File, error) {
	var taps []*os.File
	for i, v := range r.Config.Vifs {
		name := v.TapName(r.ID, i)
		err := hostnet.CheckBridge(v.Bridge)
		var f *os.File
		if err == nil {
			f, err = hostnet.OpenTap(name)
		}
		if err == nil {
			taps = append(taps, f)
			err = hostnet.Plug(name, v.Bridge)
		}
		if err != nil {
			closeAll(taps)
			return nil, fmt.Errorf("toolstack: vif %d (%s): %w", i, name, err)
		}
	}
	return taps, nil
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// checkSockets makes sure the hv's sockets are 0600, as the contract
// says: whoever can connect can destroy the domain or type on its console.
func checkSockets(r *Record) {
	for _, p := range []string{r.Control, r.Console} {
		// Lstat: the directory is the hv's, and root must not chmod
		// what a symlink there points to.
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm()&0o077 == 0 {
			continue
		}
		fmt.Fprintf(os.Stderr, "xl monitor: %s has mode %v, setting 0600\n", p, fi.Mode().Perm())
		_ = os.Chmod(p, 0o600)
	}
}

// exitReason reads the hv's exit file, or derives the reason from how the
// process ended when the hv could not write one.
func exitReason(sock string, start time.Time, waitErr error) (string, string) {
	if e, ok := readExit(sock, start); ok {
		return e.Reason, e.Detail
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

// readExit reads the exit file of the hv whose control socket is sock
// and that started at start; a file left by an earlier hv does not count.
func readExit(sock string, start time.Time) (control.Exit, bool) {
	var e control.Exit
	b, err := readHVFile(control.ExitFile(sock), 64<<10)
	if err != nil || json.Unmarshal(b, &e) != nil || e.Reason == "" || e.Time.Before(start.Add(-time.Second)) {
		return control.Exit{}, false
	}
	return e, true
}

// readHVFile reads at most limit bytes of a file in the hv's directory,
// which the hv's uid owns: root follows no symlink it may have planted
// and waits on no FIFO.
func readHVFile(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	return io.ReadAll(io.LimitReader(f, limit))
}

func logTail(path string) string {
	b, err := readHVFile(path, 1<<20)
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
	if cur, err := t.State.Load(r.ID); err == nil {
		if cur.HVAlive() {
			_ = syscall.Kill(cur.HVPid, syscall.SIGKILL)
			waitExit(cur.HVPid, cur.HVStart)
		}
		t.endJail(cur)
	}
	return t.removeLocked(r.ID)
}

// Control sends cmd to a live domain's hv.
func (t *Toolstack) Control(dom, cmd string) (*Record, error) {
	r, err := t.running(dom)
	if err != nil {
		return r, err
	}
	if _, err := control.Call(r.Control, cmd, ControlTimeout); err != nil {
		return r, fmt.Errorf("toolstack: domain %s: %w", r.Name, err)
	}
	return r, nil
}

// running finds dom and checks its hv runs and answers. A domain that is
// restarting is waited for: its monitor starts the new hv within the
// brake's pause and its start timeout.
func (t *Toolstack) running(dom string) (*Record, error) {
	r, err := t.State.Find(dom)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(restartPause + startTimeout)
	for r.Restarting() && r.monitorAlive() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		if r, err = t.State.Load(r.ID); err != nil {
			return nil, err
		}
	}
	if r.State != StateRunning || !r.HVAlive() {
		return r, fmt.Errorf("toolstack: domain %s (ID %d) is not running (state %s)", r.Name, r.ID, r.State)
	}
	AwaitListening(r)
	return r, nil
}

// AwaitListening gives an hv that has just started the time its monitor
// gives it to listen on its control socket (its console socket is open
// by then). A record turns running as its hv starts, before the hv
// listens; xl create returns only once it does, but an on_reboot restart
// has no caller to wait, so a command right after one (xl shutdown -a, as
// CI met) found no socket. It returns when the socket takes a connection,
// the hv ends, or startTimeout after the hv's start; the caller's own
// call then reports what it finds.
func AwaitListening(r *Record) {
	deadline := r.Start.Add(startTimeout)
	for {
		c, err := net.DialTimeout("unix", r.Control, ControlTimeout)
		if err == nil {
			c.Close()
			return
		}
		if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ECONNREFUSED) ||
			time.Now().After(deadline) || !r.HVAlive() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// WaitGone waits until domain id has stopped: its record is gone, moved
// (a restart gives a new ID) or no longer running (preserved). A timeout
// > 0 bounds the wait; its expiry is an error that says so. A domain
// whose monitor died meanwhile is adopted, so that its end is seen.
func (t *Toolstack) WaitGone(id int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	adoptTried := false
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
		if !adoptTried && r.Orphaned() {
			adoptTried = true
			if err := t.StartAdopter(id); err != nil {
				fmt.Fprintf(os.Stderr, "xl: adopt domain %s (ID %d): %v\n", r.Name, r.ID, err)
			}
			continue
		}
		if timeout > 0 && time.Now().After(deadline) {
			return &WaitTimeoutError{Name: r.Name, ID: r.ID, State: r.State, After: timeout}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitTimeoutError says a domain had not stopped when WaitGone's timeout
// expired: the guest ignored the request, or is slow to act on it.
type WaitTimeoutError struct {
	Name  string
	ID    int
	State string
	After time.Duration
}

func (e *WaitTimeoutError) Error() string {
	return fmt.Sprintf("toolstack: domain %s (ID %d) still %s after %v: the guest has not acted on the request (`xl destroy %s` stops it now)", e.Name, e.ID, e.State, e.After, e.Name)
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
			// Its hv is gone and no monitor has applied its end yet
			// (it died, and adopting the domain failed or is under
			// way): the exit file says how it ended, and a clean
			// poweroff or reboot is never shown as a crash.
			in.Flags = FlagCrashed
			if e, ok := readExit(r.Control, r.Start); ok && (e.Reason == control.ReasonPoweroff || e.Reason == control.ReasonReboot) {
				in.Flags = FlagShutdown
			}
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
