package toolstack

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/hv/snapshot"
)

// xl migrate and xl migrate-receive. The sender starts the receiver
// (SSHCOMMAND HOST xl migrate-receive), waits for its banner and has its
// hv save the domain live (control.Request.Live, after=pause) into the
// receiver's stdin: RAM goes while the domain runs, in rounds, and the
// hv pauses it only for the last (docs/snapshot.md). The receiver decides
// on the stream's header, starts a new hv that restores from the rest as
// it comes, and answers one line. The sender then destroys its domain, or on any failure
// resumes it and leaves nothing on the target.

// The receiver's words on its stdout, one line each: the banner when it
// is ready for the stream, then "restored ID" or "error: WHY".
const (
	ReceiverReady   = "xl migrate-receive ready"
	receiverOK      = "restored "
	receiverFailed  = "error: "
	migratedAwayTag = "--migratedaway"
)

// Timeouts of a migration unless MigrateOptions says otherwise.
const (
	// The receiver's banner: an ssh connection and an xl starting.
	defaultReadyTimeout = 60 * time.Second
	// Its answer once the stream is sent: its hv has read all but what
	// the pipes hold, and starts within the monitor's startTimeout.
	defaultAnswerTimeout = startTimeout + 30*time.Second
	// How long a failed receiver gets to go once its pipes are closed
	// before it is killed.
	defaultReceiverExit = 30 * time.Second
)

// MigrateOptions are xl migrate's.
type MigrateOptions struct {
	// Receiver is the receiver's command line: SSHCOMMAND's words,
	// HOST, "xl", "migrate-receive".
	Receiver []string
	// Stderr gets the receiver's stderr; Debug, if not nil, a line per
	// step (xl migrate --debug).
	Stderr, Debug io.Writer
	// Zero: the defaults above.
	ReadyTimeout, AnswerTimeout, ReceiverExit time.Duration
}

// MigrateError says a migration failed, and what became of the source.
type MigrateError struct {
	Name    string
	Err     error
	Resumed bool   // the source domain is as it was: running, or paused if it was
	Paused  bool   // it was paused before the migration, and stays so
	Left    string // if not Resumed, why it did not and what to do
}

func (e *MigrateError) Error() string {
	switch {
	case e.Resumed && e.Paused:
		return fmt.Sprintf("toolstack: migrate domain %s: %v; the domain stays here, paused as it was", e.Name, e.Err)
	case e.Resumed:
		return fmt.Sprintf("toolstack: migrate domain %s: %v; the domain runs on here", e.Name, e.Err)
	}
	return fmt.Sprintf("toolstack: migrate domain %s: %v; %s", e.Name, e.Err, e.Left)
}

func (e *MigrateError) Unwrap() error { return e.Err }

// receiver is a started receiver: its stdin's write end for the hv, its
// stdout's lines.
type receiver struct {
	cmd    *exec.Cmd
	stdin  *os.File // the write end, passed to the hv
	stdout *os.File // the read end
	lines  chan string
	exited chan error
}

func startReceiver(argv []string, stderr io.Writer) (*receiver, error) {
	if len(argv) == 0 {
		return nil, errors.New("no receiver command")
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, stderr
	// A receiver killed after its grace may leave children holding
	// its stderr: Wait does not wait for them.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	inR.Close()
	outW.Close()
	rc := &receiver{cmd: cmd, stdin: inW, stdout: outR, lines: make(chan string, 4), exited: make(chan error, 1)}
	go func() {
		// Lines are short; one longer than 4 KiB is cut.
		sc := bufio.NewScanner(io.LimitReader(outR, 64<<10))
		for sc.Scan() {
			rc.lines <- sc.Text()
		}
		close(rc.lines)
	}()
	go func() { rc.exited <- cmd.Wait() }()
	return rc, nil
}

// line waits at most d for the receiver's next line; ok is false if it
// closed its stdout, err says it timed out.
func (rc *receiver) line(d time.Duration) (string, bool, error) {
	select {
	case l, ok := <-rc.lines:
		return l, ok, nil
	case <-time.After(d):
		return "", false, fmt.Errorf("no word from the receiver within %v", d)
	}
}

// ended describes how the receiver ended, waiting a moment for it.
func (rc *receiver) ended() string {
	select {
	case err := <-rc.exited:
		rc.exited <- err
		if err == nil {
			return "exited 0"
		}
		return err.Error()
	case <-time.After(2 * time.Second):
		return "still running"
	}
}

// stop closes the pipes to the receiver, so that one that did not get a
// whole stream refuses it and one that restored meanwhile cannot answer
// (and so destroys what it restored), then waits at most d for it to
// end before killing it.
func (rc *receiver) stop(d time.Duration) {
	rc.stdin.Close()
	rc.stdout.Close()
	select {
	case <-rc.exited:
	case <-time.After(d):
		_ = rc.cmd.Process.Kill()
		<-rc.exited
	}
}

// Migrated is a migration that succeeded.
type Migrated struct {
	ID   int                // the domain's ID on the target
	Save *control.SaveStats // the hv's report of the live save: rounds, pages, downtime
}

// liveSaveTimeout bounds a live save, which sends RAM more than once:
// the hv stops its rounds at 3 times RAM, and the last round and the
// rest take at most one more.
func liveSaveTimeout(memMiB int64) time.Duration { return saveTimeout(4 * memMiB) }

// Migrate moves domain dom to the receiver opt.Receiver starts (xl
// migrate), live. The source domain is renamed NAME--migratedaway while
// it is sent, as xl does, so that a receiver on this host can take the
// name; on success it is destroyed, on any failure it is renamed back
// and resumed (unless it was paused before), and the receiver, its
// stream cut, leaves nothing.
func (t *Toolstack) Migrate(dom string, opt MigrateOptions) (Migrated, error) {
	ready, answer, exitWait := opt.ReadyTimeout, opt.AnswerTimeout, opt.ReceiverExit
	if ready == 0 {
		ready = defaultReadyTimeout
	}
	if answer == 0 {
		answer = defaultAnswerTimeout
	}
	if exitWait == 0 {
		exitWait = defaultReceiverExit
	}
	debug := func(format string, a ...any) {
		if opt.Debug != nil {
			fmt.Fprintf(opt.Debug, "migrate: "+format+"\n", a...)
		}
	}
	r, err := t.running(dom)
	if err != nil {
		return Migrated{}, err
	}
	saved, err := savedOf(r, nil)
	if err != nil {
		return Migrated{}, err
	}
	name := r.Name
	debug("starting the receiver: %s", strings.Join(opt.Receiver, " "))
	rc, err := startReceiver(opt.Receiver, opt.Stderr)
	if err != nil {
		return Migrated{}, fmt.Errorf("toolstack: migrate domain %s: %w; the domain runs on here", name, err)
	}
	// Before anything is done to the domain: the receiver is there.
	l, ok, err := rc.line(ready)
	if err == nil && (!ok || l != ReceiverReady) {
		err = fmt.Errorf("the receiver did not say %q but %q (%s)", ReceiverReady, l, rc.ended())
	}
	if err != nil {
		rc.stop(exitWait)
		return Migrated{}, &MigrateError{Name: name, Err: err, Resumed: true}
	}
	debug("the receiver is ready")

	// A domain the admin paused stays paused if the migration fails.
	st, err := control.Call(r.Control, control.CmdStatus, ControlTimeout)
	wasPaused := err == nil && st.Status != nil && st.Status.State == control.StatePaused
	renamed, paused := false, false
	fail := func(err error, saving <-chan saveResult) (Migrated, error) {
		rc.stop(exitWait)
		if saving != nil {
			// The hv's write fails once the receiver is gone.
			select {
			case <-saving:
			case <-time.After(liveSaveTimeout(r.Config.MemoryMiB)):
			}
		}
		me := &MigrateError{Name: name, Err: err, Resumed: true, Paused: wasPaused}
		ended := !r.HVAlive()
		if paused && !wasPaused && !ended {
			rerr := t.resume(r)
			ended = errors.Is(rerr, errHVEnded)
			if rerr != nil && !ended {
				me.Resumed, me.Left = false, fmt.Sprintf("the domain could not be resumed (%v): `xl unpause %d` resumes it", rerr, r.ID)
			}
		}
		if ended {
			// The guest ended under the migration (it crashed or
			// powered off): there is nothing to resume, and its monitor
			// applies on_crash or on_poweroff as for any end.
			me.Resumed, me.Left = false, fmt.Sprintf("the domain ended during the migration, and its on_poweroff/on_reboot/on_crash applies (`xl list -l %s`, its hv.log)", name)
		}
		if renamed {
			_, rerr := t.update(r.ID, func(cur *Record) error { cur.Name = name; return nil })
			var nd *NoDomainError
			if rerr != nil && !(ended && errors.As(rerr, &nd)) {
				me.Resumed = false
				me.Left += fmt.Sprintf(" the domain is still named %s%s (%v)", name, migratedAwayTag, rerr)
			}
		}
		return Migrated{}, me
	}
	if _, err := t.update(r.ID, func(cur *Record) error {
		if cur.Name != name || cur.State != StateRunning {
			return fmt.Errorf("domain %s (ID %d) changed under the migration (now %s, %s)", name, r.ID, cur.Name, cur.State)
		}
		cur.Name = name + migratedAwayTag
		return nil
	}); err != nil {
		return fail(err, nil)
	}
	renamed = true
	// From here the hv may pause the domain (its last round), and a
	// save that ends in a failure the hv did not see (the answer lost,
	// the receiver refusing) leaves it so: fail resumes it. The hv
	// itself resumes it when its save fails.
	paused = true
	debug("sending %s (ID %d) live", name, r.ID)
	start := time.Now()
	saving := make(chan saveResult, 1)
	go func() {
		req := control.Request{Cmd: control.CmdSave, After: control.SavePause, Config: saved, Live: true}
		resp, err := control.CallFile(r.Control, req, rc.stdin, liveSaveTimeout(r.Config.MemoryMiB))
		// The hv closed its copy: the receiver sees the end.
		rc.stdin.Close()
		saving <- saveResult{resp, err}
	}()
	var stats *control.SaveStats
	var early *string // the receiver's word before the save returned
	earlyEnd := false
	select {
	case s := <-saving:
		if s.err != nil {
			return fail(fmt.Errorf("send: %w (the receiver %s)", s.err, rc.ended()), nil)
		}
		stats = s.stats()
	case l, ok := <-rc.lines:
		// The receiver spoke or ended while the hv's save had not
		// returned: the stream was whole (the hv had written it and
		// the receiver answered at once) or cut, as the save says.
		select {
		case s := <-saving:
			if s.err != nil {
				return fail(fmt.Errorf("send: %w (the receiver said %q and %s)", s.err, l, rc.ended()), nil)
			}
			stats = s.stats()
			early, earlyEnd = &l, !ok
		case <-time.After(answer):
			if !ok {
				return fail(fmt.Errorf("the receiver ended in the middle of the stream (%s)", rc.ended()), saving)
			}
			return fail(fmt.Errorf("the receiver said %q in the middle of the stream", l), saving)
		}
	}
	debug("sent in %v; waiting for the receiver", time.Since(start).Round(time.Millisecond))
	if stats != nil {
		for i, rd := range stats.Rounds {
			how := "live"
			if rd.Paused {
				how = "paused"
			}
			debug("round %d: %d pages in %v, %s", i, rd.Pages, time.Duration(rd.TimeNS).Round(time.Microsecond), how)
		}
		if stats.Stop != "" {
			debug("the rounds stopped at %s", stats.Stop)
		}
		if stats.DirtyLog != "" {
			debug("KVM's dirty log read as %q", stats.DirtyLog)
		}
	}
	if early != nil {
		l, ok, err = *early, !earlyEnd, nil
	} else {
		l, ok, err = rc.line(answer)
	}
	switch {
	case err != nil:
		return fail(err, nil)
	case !ok:
		return fail(fmt.Errorf("the receiver ended without an answer (%s)", rc.ended()), nil)
	case strings.HasPrefix(l, receiverFailed):
		return fail(fmt.Errorf("the receiver refused: %s", strings.TrimPrefix(l, receiverFailed)), nil)
	case !strings.HasPrefix(l, receiverOK):
		return fail(fmt.Errorf("the receiver answered %q", l), nil)
	}
	id, err := strconv.Atoi(strings.TrimPrefix(l, receiverOK))
	if err != nil || id < 1 {
		return fail(fmt.Errorf("the receiver answered %q", l), nil)
	}
	debug("restored there as ID %d in %v; destroying the source", id, time.Since(start).Round(time.Millisecond))
	// The guest runs there: from here the source must not resume.
	rc.stdout.Close()
	select {
	case <-rc.exited:
	case <-time.After(exitWait):
	}
	if err := t.Destroy(strconv.Itoa(r.ID)); err != nil {
		return Migrated{ID: id, Save: stats}, fmt.Errorf("toolstack: domain %s was migrated (ID %d there), but destroying it here failed: %w (`xl destroy %d`)", name, id, err, r.ID)
	}
	return Migrated{ID: id, Save: stats}, nil
}

// saveResult is the hv's answer to a save request.
type saveResult struct {
	resp *control.Response
	err  error
}

func (s saveResult) stats() *control.SaveStats {
	if s.resp == nil {
		return nil
	}
	return s.resp.Save
}

// resume resumes domain r's hv after a failed migration. Its hv refuses
// while its save is still winding down, so it is asked again for a
// while, unless it has ended (errHVEnded).
func (t *Toolstack) resume(r *Record) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := control.Call(r.Control, control.CmdResume, ControlTimeout)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		if !r.HVAlive() {
			return fmt.Errorf("%w: %v", errHVEnded, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// errHVEnded is a resume that found the domain's hv gone.
var errHVEnded = errors.New("the domain's hv has ended")

// maxHeaderStream bounds what migrate-receive reads of the stream before
// it decides: the header's JSON is at most snapshot.MaxHeader, in chunks
// that carry at least one byte for 5 of framing, and the snapshot reader
// reads ahead by at most 64 KiB.
const maxHeaderStream = 6*snapshot.MaxHeader + 128<<10

// MigrateReceive is xl migrate-receive: it says it is ready on out, reads
// the header of the stream from in and decides on it (opt as for xl
// restore), and has the new domain's hv restore from the stream as it
// comes: the hv gets a pipe that carries the bytes read for the header,
// then the rest of in. It answers "restored ID", or "error: WHY" and the
// error. A restored domain whose answer cannot be delivered (the sender
// is gone) is destroyed, so that it does not run twice.
func (t *Toolstack) MigrateReceive(in io.Reader, out io.Writer, opt RestoreOptions) (id int, err error) {
	if _, err := fmt.Fprintln(out, ReceiverReady); err != nil {
		return 0, fmt.Errorf("toolstack: migrate-receive: %w", err)
	}
	defer func() {
		if err != nil {
			msg := strings.ReplaceAll(err.Error(), "\n", "; ")
			fmt.Fprintln(out, receiverFailed+msg)
		}
	}()
	var head bytes.Buffer
	h, sd, err := readSnapshotHeader(io.TeeReader(io.LimitReader(in, maxHeaderStream), &head), "the stream")
	if err != nil {
		return 0, err
	}
	p, err := checkRestore(h, sd, "the stream", opt)
	if err != nil {
		return 0, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("toolstack: migrate-receive: %w", err)
	}
	// Ours is closed once the monitor is done: the hv's and the
	// monitor's ends are then the pipe's last, and a write after the hv
	// ended fails at once.
	defer pr.Close()
	fed := make(chan error, 1)
	go func() { fed <- feed(pw, head.Bytes(), in, snapshot.MaxStream(h.MemoryMiB)) }()
	rec, err := t.Restore(p, CreateOptions{Paused: opt.Paused, Stream: pr})
	if err != nil {
		// The hv's reason comes first; the feed's only if it has one
		// other than the hv having gone.
		select {
		case ferr := <-fed:
			if ferr != nil && !errors.Is(ferr, syscall.EPIPE) {
				err = errors.Join(err, ferr)
			}
		default:
		}
		return 0, err
	}
	// The hv answers only after the end of the stream, which the feed
	// passes on when it ends.
	if ferr := <-fed; ferr != nil {
		derr := t.Destroy(strconv.Itoa(rec.ID))
		return 0, errors.Join(ferr, derr)
	}
	if _, err := fmt.Fprintf(out, "%s%d\n", receiverOK, rec.ID); err != nil {
		derr := t.Destroy(strconv.Itoa(rec.ID))
		return 0, errors.Join(fmt.Errorf("toolstack: migrate-receive: the sender did not get the answer (%w): domain %s (ID %d) destroyed", err, rec.Name, rec.ID), derr)
	}
	return rec.ID, nil
}

// feed writes head, then the rest of in, to the hv's pipe w, and closes
// it, so that the hv sees the stream end where in ends. A stream longer
// than limit (snapshot.MaxStream of its domain, which the hv holds it to
// as well) is cut there.
func feed(w *os.File, head []byte, in io.Reader, limit int64) error {
	defer w.Close()
	if _, err := w.Write(head); err != nil {
		return fmt.Errorf("toolstack: migrate-receive: passing the stream to the hv: %w", err)
	}
	rest := limit - int64(len(head))
	n, err := io.Copy(w, io.LimitReader(in, rest+1))
	switch {
	case err != nil:
		return fmt.Errorf("toolstack: migrate-receive: passing the stream to the hv after %d bytes: %w", int64(len(head))+n, err)
	case n > rest:
		return fmt.Errorf("toolstack: migrate-receive: the stream is longer than %d bytes, the most a live save of this domain sends", limit)
	}
	return nil
}
