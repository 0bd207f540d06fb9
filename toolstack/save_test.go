package toolstack

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/hv/snapshot"
)

// The save, restore and migrate paths that need no KVM. The real hv's
// side, and these commands end to end on micro-guests, are test/xl's
// TestSaveRestoreMigrate in the lab; here a fake control socket stands
// in for the hv, so that every failure can be made to happen.

// controlFake serves a domain's control socket as the hv does for the
// requests save and migrate make: status, pause, resume, destroy and
// save, which writes data to the file passed with it (SCM_RIGHTS), or
// fails with saveErr. destroy ends hvPid, as the hv ends.
type controlFake struct {
	t       *testing.T
	hvPid   int
	saveErr string
	data    []byte
	// crash: the save ends the hv, as a guest that crashes under it
	// does, and fails with the hv's words for it.
	crash bool

	mu     sync.Mutex
	paused bool
	saving bool
	cmds   []string
}

func (f *controlFake) state() (bool, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.paused, append([]string(nil), f.cmds...)
}

func (f *controlFake) serve(sock string) {
	l, err := net.Listen("unix", sock)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go f.handle(c.(*net.UnixConn))
		}
	}()
}

func (f *controlFake) handle(c *net.UnixConn) {
	defer c.Close()
	buf, oob := make([]byte, 1<<20), make([]byte, 64)
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return
	}
	var file *os.File
	if msgs, err := syscall.ParseSocketControlMessage(oob[:oobn]); err == nil && len(msgs) == 1 {
		if fds, err := syscall.ParseUnixRights(&msgs[0]); err == nil && len(fds) == 1 {
			file = os.NewFile(uintptr(fds[0]), "passed")
			defer file.Close()
		}
	}
	line, _, _ := bytes.Cut(buf[:n], []byte("\n"))
	var req control.Request
	if err := json.Unmarshal(line, &req); err != nil {
		return
	}
	f.mu.Lock()
	cmd := req.Cmd + " " + req.After
	if req.Live {
		cmd += " live"
	}
	f.cmds = append(f.cmds, cmd)
	f.mu.Unlock()
	resp := control.Response{OK: true}
	fail := func(msg string) { resp = control.Response{Error: msg} }
	switch req.Cmd {
	case control.CmdStatus:
	case control.CmdPause:
		f.mu.Lock()
		f.paused = true
		f.mu.Unlock()
	case control.CmdResume:
		f.mu.Lock()
		if f.saving {
			fail("a save is in progress: the domain stays paused until it ends")
		} else {
			f.paused = false
		}
		f.mu.Unlock()
	case control.CmdDestroy:
		_ = syscall.Kill(f.hvPid, syscall.SIGKILL)
	case control.CmdSave:
		if file == nil {
			fail("save: no file was passed")
			break
		}
		f.mu.Lock()
		wasPaused := f.paused
		f.paused, f.saving = true, true
		f.mu.Unlock()
		var err error
		if f.crash {
			_ = syscall.Kill(f.hvPid, syscall.SIGKILL)
			err = errors.New("domain has ended (crash: vCPU 0: triple fault (KVM_EXIT_SHUTDOWN))")
		} else if f.saveErr != "" {
			err = errors.New(f.saveErr)
		} else if _, err = file.Write(f.data); err == nil && len(req.Config) > 0 {
			_, err = file.Write(req.Config)
		}
		file.Close()
		f.mu.Lock()
		f.saving = false
		if err != nil && !wasPaused || err == nil && req.After == control.SaveResume {
			f.paused = false
		}
		f.mu.Unlock()
		if err != nil {
			fail("save: " + err.Error())
		} else {
			resp.Save = &control.SaveStats{Live: req.Live, Rounds: []control.SaveRound{{Pages: 10}, {Pages: 2, Paused: true}}, Pages: 12, DowntimeNS: 1e6}
		}
		if err == nil && (req.After == "" || req.After == control.SaveDestroy) {
			defer syscall.Kill(f.hvPid, syscall.SIGKILL)
		}
	}
	if resp.OK {
		// As the hv answers: the status after the request.
		f.mu.Lock()
		st := control.Status{State: control.StateRunning}
		if f.paused {
			st.State = control.StatePaused
		}
		f.mu.Unlock()
		resp.Status = &st
	}
	_ = json.NewEncoder(c).Encode(resp)
}

// runningDomain records domain name as running under a fake hv (a
// process of its own, which destroy ends) answering on a controlFake.
func runningDomain(t *testing.T, ts *Toolstack, name string) (*Record, *controlFake) {
	t.Helper()
	r := startedDomain(t, ts, name, time.Now())
	f := &controlFake{t: t, hvPid: r.HVPid, data: []byte("XENOSNAP...")}
	f.serve(r.Control)
	return r, f
}

// startedDomain records domain name as running under a fake hv started
// at start, with nothing on its control socket yet.
func startedDomain(t *testing.T, ts *Toolstack, name string, start time.Time) *Record {
	t.Helper()
	r, err := ts.Reserve(plan(name))
	if err != nil {
		t.Fatal(err)
	}
	r.State = StateRunning
	r.HVPid, r.HVStart = fakeHV(t)
	r.Start = start.UTC()
	if err := ts.State.Save(r); err != nil {
		t.Fatal(err)
	}
	return r
}

// A save that fails leaves no file and the domain as it was; one that
// succeeds leaves exactly the hv's bytes under FILE, the toolstack's
// config among them, and no temporary file.
func TestSaveFile(t *testing.T) {
	ts := newToolstack(t)
	r, f := runningDomain(t, ts, "s1")
	dir := t.TempDir()
	path := filepath.Join(dir, "s1.snap")
	f.saveErr = "disk full"
	err := ts.Save("s1", path, AfterPause, nil)
	if err == nil || !strings.Contains(err.Error(), "disk full") || !strings.Contains(err.Error(), "save domain s1") {
		t.Fatalf("failed save: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("a failed save left %d files", len(ents))
	}
	if paused, _ := f.state(); paused {
		t.Error("a failed save of a running domain left it paused")
	}
	f.saveErr = ""
	if err := ts.Save("s1", path, AfterResume, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, saved, _ := bytes.Cut(b, f.data)
	var sd SavedDomain
	if err := json.Unmarshal(saved, &sd); err != nil || sd.Version != savedVersion || sd.Config.Name != "s1" || sd.Config.UUID != r.UUID {
		t.Fatalf("the config sent with save: %s (%v)", saved, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d files after a save, want 1", len(ents))
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("snapshot mode %v, want 0600", fi.Mode().Perm())
	}
	if err := ts.Save("s1", path, "later", nil); err == nil {
		t.Error("after \"later\" accepted")
	}
}

// snapFile writes a snapshot with header h (and no other section).
func snapFile(t *testing.T, h snapshot.Header) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "d.snap")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := snapshot.NewWriter(f, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func savedHeader(t *testing.T, iface string, cfg *Config) snapshot.Header {
	t.Helper()
	b, err := json.Marshal(SavedDomain{Version: savedVersion, Config: cfg, Guest: "1.2", Declared: "g.cfg (interface=)"})
	if err != nil {
		t.Fatal(err)
	}
	return snapshot.Header{Release: "1.2.0", BuildID: "b0", Interface: iface, MemoryMiB: int(cfg.MemoryMiB), VCPUs: cfg.VCPUs, Config: b}
}

// CheckRestore decides as xl create does, from the snapshot's header:
// the interface through abi.Admit against the restoring hv (a refusal
// names both versions and the rule), the size and devices against the
// config, and the name and UUID are the saved domain's.
func TestCheckRestore(t *testing.T) {
	cfg := &Config{Name: "web", UUID: NewUUID(), MemoryMiB: 64, VCPUs: 2, OnReboot: ActionRestart}
	hv123 := abi.Build{Release: abi.Release{Major: 1, Minor: 2, Patch: 3}, BuildID: "b3"}
	hv130dev := abi.Build{Release: abi.Release{Major: 1, Minor: 3, Patch: 0, Dev: true}, BuildID: "b4"}

	p, err := CheckRestore(snapFile(t, savedHeader(t, "1.2", cfg)), RestoreOptions{Build: hv123})
	if err != nil {
		t.Fatalf("1.2 on hv 1.2.3: %v", err)
	}
	if p.Config.Name != "web" || p.Config.UUID != cfg.UUID || p.Admitted != "1.2" || p.Compat || p.Guest != "1.2" || p.Rule != abi.RuleStableSame {
		t.Errorf("plan: %+v", p)
	}

	path := snapFile(t, savedHeader(t, "1.3-dev@b9", cfg))
	_, err = CheckRestore(path, RestoreOptions{Build: hv130dev})
	var ref *Refusal
	if !errors.As(err, &ref) || ref.Rule != abi.RuleDevOtherBuild || !strings.Contains(err.Error(), "1.3-dev") || !strings.Contains(err.Error(), "hv 1.3.0-dev") || !strings.Contains(err.Error(), "snapshot of hv 1.2.0, build b0") {
		t.Errorf("a dev snapshot of another build: %v", err)
	}

	// A CFG given at restore replaces the config but not the UUID.
	other := *cfg
	other.Name, other.UUID = "web2", NewUUID()
	p, err = CheckRestore(snapFile(t, savedHeader(t, "1.2", cfg)), RestoreOptions{Build: hv123, Config: &other})
	if err != nil || p.Config.Name != "web2" || p.Config.UUID != cfg.UUID {
		t.Errorf("CFG at restore: %+v, %v", p, err)
	}
	big := other
	big.MemoryMiB = 128
	if _, err := CheckRestore(snapFile(t, savedHeader(t, "1.2", cfg)), RestoreOptions{Build: hv123, Config: &big}); !errors.As(err, &ref) || ref.Rule != "size" || !strings.Contains(err.Error(), "64 MiB and 2 vCPUs") {
		t.Errorf("a CFG of another size: %v", err)
	}
	disk := other
	disk.Disks = []Disk{{Target: "/nonexistent.img", Vdev: "xvda"}}
	if _, err := CheckRestore(snapFile(t, savedHeader(t, "1.2", cfg)), RestoreOptions{Build: hv123, Config: &disk}); !errors.As(err, &ref) || ref.Rule != "devices" {
		t.Errorf("a CFG with a disk more: %v", err)
	}

	h := savedHeader(t, "1.2", cfg)
	h.Config = nil
	if _, err := CheckRestore(snapFile(t, h), RestoreOptions{Build: hv123}); !errors.As(err, &ref) || !strings.Contains(err.Error(), "xl restore CFG FILE") {
		t.Errorf("no config in the snapshot: %v", err)
	}
	h.Config = json.RawMessage(`{"version":7,"config":{}}`)
	if _, err := CheckRestore(snapFile(t, h), RestoreOptions{Build: hv123}); err == nil || !strings.Contains(err.Error(), "version 7") {
		t.Errorf("a config of another version: %v", err)
	}
	if _, err := CheckRestore(snapFile(t, savedHeader(t, "1.2", cfg)), RestoreOptions{Build: hv123, Host: Host{FreeMiB: 32, CPUs: 4}}); !errors.As(err, &ref) || ref.Rule != "memory-fits" {
		t.Errorf("too big for the host: %v", err)
	}
	junk := filepath.Join(t.TempDir(), "junk")
	os.WriteFile(junk, []byte("XENOSNAP\x01\x00\x00\x00\x09"), 0o600)
	if _, err := CheckRestore(junk, RestoreOptions{Build: hv123}); !errors.Is(err, snapshot.ErrCorrupt) {
		t.Errorf("a damaged header: %v", err)
	}
}

// fastMigrate is a migration with short timeouts to the receiver argv.
func fastMigrate(argv ...string) MigrateOptions {
	return MigrateOptions{Receiver: argv, Stderr: io.Discard, ReadyTimeout: 5 * time.Second, AnswerTimeout: 2 * time.Second, ReceiverExit: 2 * time.Second}
}

// Every way a migration fails leaves the source running under its own
// name: a receiver that is not there, that never says it is ready, that
// takes the stream and refuses, that dies in the middle of it, that
// never answers, or that answers nonsense.
func TestMigrateFailuresResumeTheSource(t *testing.T) {
	ready := `echo "` + ReceiverReady + `"; `
	for _, c := range []struct {
		name  string
		argv  []string
		save  string // the fake hv's save error
		want  string
		sends bool // the domain was paused and sent
	}{
		{"no such command", []string{"/nonexistent/ssh", "h"}, "", "start /nonexistent/ssh", false},
		{"exits at once", []string{"sh", "-c", "echo 'ssh: connect to host h: refused' >&2; exit 255"}, "", "did not say", false},
		{"says something else", []string{"sh", "-c", "echo hello; cat >/dev/null"}, "", `but "hello"`, false},
		{"refuses", []string{"sh", "-c", ready + "cat >/dev/null; echo 'error: domain web already exists'; exit 1"}, "", "the receiver refused: domain web already exists", true},
		// Whichever the sender sees first: its hv's write failing, or the
		// receiver's end.
		{"dies in the stream", []string{"sh", "-c", ready + "head -c 3 >/dev/null; exit 1"}, "broken pipe", "broken pipe|closed its output in the middle of the stream", true},
		{"never answers", []string{"sh", "-c", ready + "cat >/dev/null; sleep 30"}, "", "no word from the receiver within 2s", true},
		{"answers nonsense", []string{"sh", "-c", ready + "cat >/dev/null; echo 'restored x'"}, "", `answered "restored x"`, true},
		{"ends silently", []string{"sh", "-c", ready + "cat >/dev/null"}, "", "ended without an answer", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts := newToolstack(t)
			r, f := runningDomain(t, ts, "web")
			f.saveErr = c.save
			start := time.Now()
			_, err := ts.Migrate("web", fastMigrate(c.argv...))
			var me *MigrateError
			if !errors.As(err, &me) && c.sends || err == nil || !containsAny(err.Error(), c.want) || !strings.Contains(err.Error(), "runs on here") {
				t.Fatalf("Migrate: %v; want %q and the domain running on", err, c.want)
			}
			if d := time.Since(start); d > 15*time.Second {
				t.Errorf("the failure took %v", d)
			}
			paused, cmds := f.state()
			if paused {
				t.Errorf("the source is left paused; its hv got %q", cmds)
			}
			sent := strings.Contains(strings.Join(cmds, ","), control.CmdSave)
			if sent != c.sends {
				t.Errorf("the hv got %q; want a save: %v", cmds, c.sends)
			}
			cur, err := ts.State.Load(r.ID)
			if err != nil || cur.Name != "web" || cur.State != StateRunning || !cur.HVAlive() {
				t.Errorf("the source after a failed migration: %+v, %v", cur, err)
			}
		})
	}
}

// A guest that crashes while it is sent ends the migration: the error
// says the domain ended and that its on_crash applies, gives its name
// back, and does not offer `xl unpause` for a domain that is gone.
func TestMigrateSourceEndsUnderIt(t *testing.T) {
	ts := newToolstack(t)
	r, f := runningDomain(t, ts, "web")
	f.crash = true
	_, err := ts.Migrate("web", fastMigrate("sh", "-c", `echo "`+ReceiverReady+`"; cat >/dev/null; exit 1`))
	var me *MigrateError
	if !errors.As(err, &me) || me.Resumed || !strings.Contains(err.Error(), "triple fault") ||
		!strings.Contains(err.Error(), "the domain ended during the migration") || strings.Contains(err.Error(), "unpause") {
		t.Fatalf("Migrate: %v; want the crash, the domain ended, and no unpause", err)
	}
	if cur, err := ts.State.Load(r.ID); err != nil || cur.Name != "web" {
		t.Errorf("the source's record after it ended: %+v, %v; want it named web again for its monitor", cur, err)
	}
	if _, cmds := f.state(); strings.Contains(strings.Join(cmds, ","), control.CmdResume) {
		t.Errorf("the hv that ended was asked to resume: %q", cmds)
	}
}

// A receiver that answers "restored ID" ends the migration: the source
// is destroyed, and while it was sent it was NAME--migratedaway, so that
// a receiver on this host could take the name.
func TestMigrateSuccessDestroysTheSource(t *testing.T) {
	ts := newToolstack(t)
	r, f := runningDomain(t, ts, "web")
	names := filepath.Join(t.TempDir(), "names")
	// The receiver looks at the state directory while the stream comes.
	script := `echo "` + ReceiverReady + `"; cat >/dev/null; cat "$1"/domains/*/record.json | grep '"name"' > "$2"; echo "restored 42"`
	m, err := ts.Migrate("web", fastMigrate("sh", "-c", script, "sh", ts.State.Dir, names))
	if err != nil || m.ID != 42 {
		t.Fatalf("Migrate = %+v, %v", m, err)
	}
	// Live: the hv is asked for a live save and pauses the domain
	// itself; its report comes back.
	if _, cmds := f.state(); !slices.Contains(cmds, control.CmdSave+" "+control.SavePause+" live") || slices.Contains(cmds, control.CmdPause+" ") {
		t.Errorf("the hv got %q; want a live save and no pause", cmds)
	}
	if m.Save == nil || !m.Save.Live || len(m.Save.Rounds) != 2 || m.Save.Pages != 12 {
		t.Errorf("the save's report: %+v", m.Save)
	}
	if b, _ := os.ReadFile(names); !strings.Contains(string(b), `"web--migratedaway"`) {
		t.Errorf("the source's name while it was sent: %s", b)
	}
	if _, err := ts.State.Load(r.ID); err == nil {
		t.Error("the source is still recorded after the migration")
	}
}

// migrate-receive: the banner, then the answer; a stream that is no
// snapshot is refused with the reason in the answer, and nothing is
// left, not even the stream's file.
func TestMigrateReceiveRefusesBadStream(t *testing.T) {
	ts := newToolstack(t)
	var out bytes.Buffer
	_, err := ts.MigrateReceive(strings.NewReader("XENOSNAP\x01\x00\x00\x00"), &out, RestoreOptions{Build: abi.Current()})
	if err == nil || !errors.Is(err, snapshot.ErrTruncated) {
		t.Fatalf("MigrateReceive: %v", err)
	}
	sc := bufio.NewScanner(&out)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) != 2 || lines[0] != ReceiverReady || !strings.HasPrefix(lines[1], "error: ") || !strings.Contains(lines[1], "truncated") {
		t.Errorf("the receiver said %q", lines)
	}
	ents, _ := os.ReadDir(ts.State.Dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "incoming-") {
			t.Errorf("left %s", e.Name())
		}
	}
	if recs, _ := ts.State.Records(); len(recs) != 0 {
		t.Errorf("left %d records", len(recs))
	}
}

// containsAny reports whether s contains one of alternatives, "|"-separated.
func containsAny(s, alternatives string) bool {
	for _, a := range strings.Split(alternatives, "|") {
		if strings.Contains(s, a) {
			return true
		}
	}
	return false
}

// A domain the admin had paused is not resumed by a failed migration.
func TestMigrateFailureKeepsPausedSourcePaused(t *testing.T) {
	ts := newToolstack(t)
	_, f := runningDomain(t, ts, "web")
	f.paused = true
	_, err := ts.Migrate("web", fastMigrate("sh", "-c", `echo "`+ReceiverReady+`"; cat >/dev/null; echo 'error: no'`))
	if err == nil || !strings.Contains(err.Error(), "paused as it was") {
		t.Fatalf("Migrate: %v", err)
	}
	if paused, cmds := f.state(); !paused || strings.Contains(strings.Join(cmds, ","), control.CmdResume) {
		t.Errorf("paused %v after the hv got %q", paused, cmds)
	}
}

// A restored domain's first hv starts from the snapshot: no kernel,
// initramfs, command line or interface (the snapshot holds the guest
// and the interface it was admitted with), the same devices and sockets.
func TestHVArgsRestore(t *testing.T) {
	ts := newToolstack(t)
	p := plan("r")
	p.Config.Kernel, p.Config.Ramdisk, p.Config.Cmdline = "/k", "/i", "console=ttyS0"
	p.Config.Disks = []Disk{{Target: "/d.img", Vdev: "xvda"}}
	p.Guest, p.Unchecked = "1.2", true
	r, err := ts.Reserve(p)
	if err != nil {
		t.Fatal(err)
	}
	args := " " + strings.Join(ts.hvArgs(r, true, "/s.snap"), " ") + " "
	for _, want := range []string{" --restore /s.snap ", " --disk /d.img ", " --memory 64 ", " --paused ", " --control ", " --name r "} {
		if !strings.Contains(args, want) {
			t.Errorf("hv args lack %q: %s", want, args)
		}
	}
	for _, not := range []string{"--kernel", "--initrd", "--cmdline", "--interface", "--unchecked-interface"} {
		if strings.Contains(args, not) {
			t.Errorf("hv args of a restore have %s: %s", not, args)
		}
	}
	// A restart boots the kernel.
	if args := strings.Join(ts.hvArgs(r, false, ""), " "); !strings.Contains(args, "--kernel /k") || !strings.Contains(args, "--interface 1.2") {
		t.Errorf("hv args of a restart: %s", args)
	}
}

// fakeStreamMonitor is `xl __monitor --restore fd=4 ID` for the tests
// of migrate-receive: it reads the stream on fd 4 as the monitor's hv
// would, to its end, keeps it in the state directory's "fed", and says
// "ok". With XENO_TEST_FAKE_HV_REFUSES set it reads that many bytes and
// fails instead, as an hv that refuses the stream does.
func fakeStreamMonitor(arg string) int {
	ready := os.NewFile(3, "ready")
	defer ready.Close()
	if arg != StreamArg(monitorStreamFD) {
		fmt.Fprintf(ready, "fake monitor: --restore %s, want %s\n", arg, StreamArg(monitorStreamFD))
		return 2
	}
	stream := os.NewFile(monitorStreamFD, "stream")
	if n, err := strconv.ParseInt(os.Getenv("XENO_TEST_FAKE_HV_REFUSES"), 10, 64); err == nil {
		_, err := io.CopyN(io.Discard, stream, n)
		stream.Close()
		fmt.Fprintf(ready, "hv: --restore fd=5: snapshot: refused after %d bytes (%v)\n", n, err)
		return 1
	}
	b, err := io.ReadAll(stream)
	if err == nil {
		err = os.WriteFile(filepath.Join(StateDirFromEnv(), "fed"), b, 0o600)
	}
	if err != nil {
		fmt.Fprintln(ready, err)
		return 1
	}
	fmt.Fprint(ready, "ok\n")
	return 0
}

// snapBytes is a snapshot with header h and no other section.
func snapBytes(t *testing.T, h snapshot.Header) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := snapshot.NewWriter(&b, h)
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// zeros yields n zero bytes and counts what was read of it.
type zeros struct{ n, read int64 }

func (z *zeros) Read(p []byte) (int, error) {
	if z.n == 0 {
		return 0, io.EOF
	}
	k := min(int64(len(p)), z.n)
	clear(p[:k])
	z.n -= k
	z.read += k
	return int(k), nil
}

// migrate-receive decides on the stream's header before it reads the
// rest: a refused one is refused with the reason, having read no more
// than the header's bound, starting nothing and leaving nothing.
func TestMigrateReceiveDecidesOnTheHeader(t *testing.T) {
	ts := newToolstack(t)
	cfg := &Config{Name: "web", UUID: NewUUID(), MemoryMiB: 64, VCPUs: 1}
	hv130dev := abi.Build{Release: abi.Release{Major: 1, Minor: 3, Patch: 0, Dev: true}, BuildID: "b4"}
	rest := &zeros{n: 256 << 20}
	var out bytes.Buffer
	_, err := ts.MigrateReceive(io.MultiReader(bytes.NewReader(snapBytes(t, savedHeader(t, "1.3-dev@b9", cfg))), rest), &out, RestoreOptions{Build: hv130dev})
	var ref *Refusal
	if !errors.As(err, &ref) || ref.Check != "interface" || ref.Rule != abi.RuleDevOtherBuild || !strings.Contains(err.Error(), "the stream (snapshot of hv 1.2.0, build b0)") {
		t.Fatalf("MigrateReceive of another build's dev snapshot: %v", err)
	}
	if rest.read > maxHeaderStream {
		t.Errorf("read %d bytes past the header before deciding; the bound is %d", rest.read, maxHeaderStream)
	}
	if !strings.HasPrefix(out.String(), ReceiverReady+"\nerror: toolstack: refused (interface") {
		t.Errorf("the receiver said %q", out.String())
	}
	if recs, _ := ts.State.Records(); len(recs) != 0 {
		t.Errorf("left %d records", len(recs))
	}
}

// An admitted stream goes to the monitor, and on to the hv, whole: from
// its first byte, the header that migrate-receive read included, to its
// last. One the hv refuses leaves no record, and the answer says why.
func TestMigrateReceiveFeedsTheStream(t *testing.T) {
	ts := newToolstack(t)
	ts.XL = os.Args[0]
	t.Setenv("XENO_TEST_FAKE_XL", "1")
	cfg := &Config{Name: "web", UUID: NewUUID(), MemoryMiB: 64, VCPUs: 1}
	hv123 := abi.Build{Release: abi.Release{Major: 1, Minor: 2, Patch: 3}, BuildID: "b3"}
	// The hv reads to the end; the trailer is its to check, so a tail
	// of anything shows where the stream ended.
	stream := append(snapBytes(t, savedHeader(t, "1.2", cfg)), bytes.Repeat([]byte("0123456789abcdef"), 1<<16)...)
	var out bytes.Buffer
	id, err := ts.MigrateReceive(bytes.NewReader(stream), &out, RestoreOptions{Build: hv123})
	if err != nil {
		t.Fatalf("MigrateReceive: %v (said %q)", err, out.String())
	}
	fed, err := os.ReadFile(filepath.Join(ts.State.Dir, "fed"))
	if err != nil || !bytes.Equal(fed, stream) {
		t.Fatalf("the hv got %d bytes (%v), want the %d of the stream", len(fed), err, len(stream))
	}
	if want := fmt.Sprintf("%s\n%s%d\n", ReceiverReady, receiverOK, id); out.String() != want {
		t.Errorf("the receiver said %q, want %q", out.String(), want)
	}
	if r, err := ts.State.Load(id); err != nil || r.Name != "web" || r.UUID != cfg.UUID {
		t.Errorf("the record: %+v, %v", r, err)
	}

	ts = newToolstack(t)
	ts.XL = os.Args[0]
	t.Setenv("XENO_TEST_FAKE_HV_REFUSES", "1000")
	out.Reset()
	start := time.Now()
	_, err = ts.MigrateReceive(io.MultiReader(bytes.NewReader(stream), &zeros{n: 1 << 40}), &out, RestoreOptions{Build: hv123})
	if err == nil || !strings.Contains(err.Error(), "refused after 1000 bytes") || !strings.Contains(out.String(), "error: hv: --restore fd=5") {
		t.Fatalf("MigrateReceive to an hv that refuses: %v (said %q)", err, out.String())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the refusal took %v", d)
	}
	if recs, _ := ts.State.Records(); len(recs) != 0 {
		t.Errorf("left %d records", len(recs))
	}
}

// A record turns running as its hv starts, before the hv listens; an
// on_reboot restart has no caller that waits for the socket, so a command
// right after one must wait for it (CI met xl shutdown -a finding no
// socket), and a domain whose hv never listens is still reported.
func TestControlWaitsForAStartingHV(t *testing.T) {
	ts := newToolstack(t)
	r := startedDomain(t, ts, "late", time.Now())
	f := &controlFake{t: t, hvPid: r.HVPid}
	time.AfterFunc(300*time.Millisecond, func() { f.serve(r.Control) })
	if _, err := ts.Control("late", control.CmdPause); err != nil {
		t.Fatalf("a command to an hv that listens 300 ms after its start: %v", err)
	}
	if paused, _ := f.state(); !paused {
		t.Error("the pause did not reach the hv")
	}

	// An hv that started long ago and does not listen is not waited for.
	startedDomain(t, ts, "deaf", time.Now().Add(-2*startTimeout))
	t0 := time.Now()
	if _, err := ts.Control("deaf", control.CmdPause); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("a command to an hv with no socket: %v", err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("a long-running hv with no socket was waited for %v", d)
	}
}

// A domain between an hv's end and its restart is waited for, so that
// xl shutdown -a does not miss one that the brake holds back for a
// second.
func TestControlWaitsForARestart(t *testing.T) {
	ts := newToolstack(t)
	r, err := ts.Reserve(plan("again"))
	if err != nil {
		t.Fatal(err)
	}
	r.Restarts = 1
	r.MonitorPid, r.MonitorStart = os.Getpid(), procStart(os.Getpid())
	if err := ts.State.Save(r); err != nil {
		t.Fatal(err)
	}
	if !r.Restarting() {
		t.Fatal("a renumbered record with no hv yet is not restarting")
	}
	pid, start := fakeHV(t)
	f := &controlFake{t: t, hvPid: pid}
	time.AfterFunc(300*time.Millisecond, func() {
		if _, err := ts.update(r.ID, func(r *Record) error {
			r.State, r.HVPid, r.HVStart, r.Start = StateRunning, pid, start, time.Now().UTC()
			return nil
		}); err != nil {
			t.Error(err)
		}
		time.Sleep(100 * time.Millisecond)
		f.serve(r.Control)
	})
	if _, err := ts.Control("again", control.CmdShutdown); err != nil {
		t.Fatalf("a command to a restarting domain: %v", err)
	}
	if _, cmds := f.state(); len(cmds) != 1 || !strings.HasPrefix(cmds[0], control.CmdShutdown) {
		t.Errorf("the hv got %q", cmds)
	}
}
