package hv_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/hv/snapshot"
	"github.com/xeno-hv/xeno/internal/testenv"
)

// saveCounter runs the counter guest (with extra hv arguments) until it
// has counted a while, saves it with after, and returns the snapshot's
// path and the first hv.
func saveCounter(t *testing.T, after string, extra ...string) (string, *live) {
	t.Helper()
	path, l, _ := saveGuest(t, "counter", "XTF COUNT 20\n", control.Request{Cmd: control.CmdSave, After: after}, extra...)
	return path, l
}

// saveGuest runs guest name until its console shows mark, saves it with
// req (a CmdSave), and returns the snapshot's path, the first hv and the
// save's report.
func saveGuest(t *testing.T, name, mark string, req control.Request, extra ...string) (string, *live, *control.SaveStats) {
	t.Helper()
	l := startHV(t, append([]string{"--kernel", guest(t, name), "--memory", "64"}, extra...)...)
	l.waitFor(t, mark, 60*time.Second)
	l.uptime = l.call(t, control.CmdStatus).Status.UptimeNS
	path := filepath.Join(t.TempDir(), name+".snap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	resp, err := control.CallFile(l.sock, req, f, 60*time.Second)
	if err != nil {
		t.Fatalf("save: %v\nstderr:\n%s", err, l.errout)
	}
	fi, _ := f.Stat()
	t.Logf("saved a 64 MiB %s guest (live %v) in %v: %d bytes", name, req.Live, time.Since(start).Round(time.Millisecond), fi.Size())
	if resp.Save == nil || resp.Save.Bytes != fi.Size() || len(resp.Save.Rounds) == 0 {
		t.Fatalf("the save's report %+v, for a file of %d bytes", resp.Save, fi.Size())
	}
	return path, l, resp.Save
}

// TestSaveRestoreCounter: a guest that counts is saved (xl save's
// default: the domain ends, reason "saved") and restored by a new hv;
// its console goes on at exactly the next number, nothing repeated and
// nothing skipped.
func TestSaveRestoreCounter(t *testing.T) {
	for _, vcpus := range []int{1, 2} {
		t.Run(strconv.Itoa(vcpus)+"vcpu", func(t *testing.T) {
			path, l := saveCounter(t, control.SaveDestroy, "--vcpus", strconv.Itoa(vcpus))
			restoreCounter(t, path, l, vcpus)
		})
	}
}

// restoreCounter waits for the saved counter guest's hv l to end, and
// restores path in a new hv: the count goes on at exactly the next
// number, and the restored domain is the saved one.
func restoreCounter(t *testing.T, path string, l *live, vcpus int) {
	r1 := l.wait(t)
	expectEnd(t, r1, control.ReasonSaved)
	before := testenv.Counts(t, r1.stdout)

	l2 := startHV(t, "--restore", path)
	last := before[len(before)-1]
	l2.waitFor(t, "XTF COUNT "+strconv.Itoa(last+10)+"\n", 60*time.Second)
	st := l2.call(t, control.CmdStatus).Status
	l2.call(t, control.CmdDestroy)
	r2 := l2.wait(t)
	expectEnd(t, r2, control.ReasonDestroyed)
	if st.UptimeNS < l.uptime {
		t.Errorf("restored domain's uptime %d ns, less than the %d ns it had before the save", st.UptimeNS, l.uptime)
	}
	if st.MemoryMiB != 64 || st.VCPUs != vcpus {
		t.Errorf("restored domain: %d MiB, %d vCPUs; want the snapshot's 64 and %d", st.MemoryMiB, st.VCPUs, vcpus)
	}
	// A line cut by the save is finished by the restored guest: the
	// two consoles together are one run.
	all := testenv.Counts(t, r1.stdout+r2.stdout)
	for i, n := range all {
		if n != i {
			t.Fatalf("count %d is %d: the sequence has a gap or a repeat across the restore\nbefore:\n%s\nafter:\n%s", i, n, r1.stdout, r2.stdout)
		}
	}
	if len(all) <= len(before)+5 {
		t.Fatalf("the restored guest counted %d more lines, want more than 5\nafter:\n%s\nstderr:\n%s", len(all)-len(before), r2.stdout, r2.stderr)
	}
	if !strings.Contains(r2.stderr, "restored from a snapshot of hv") {
		t.Errorf("the restoring hv did not say what it restored:\n%s", r2.stderr)
	}
}

// TestSaveResumeAndPause: xl save -c leaves the domain running, -p
// paused; either way the snapshot restores.
func TestSaveResumeAndPause(t *testing.T) {
	path, l := saveCounter(t, control.SaveResume)
	if st := l.call(t, control.CmdStatus).Status; st.State != control.StateRunning {
		t.Errorf("after save -c: state %q, want running", st.State)
	}
	n := len(testenv.Counts(t, l.out.String()))
	l.waitFor(t, "XTF COUNT "+strconv.Itoa(n+5)+"\n", 60*time.Second)
	r, err := control.CallFile(l.sock, control.Request{Cmd: control.CmdSave, After: control.SavePause}, mustCreate(t), 60*time.Second)
	if err != nil {
		t.Fatalf("save -p: %v", err)
	}
	if r.Status.State != control.StatePaused {
		t.Errorf("after save -p: state %q, want paused", r.Status.State)
	}
	l.call(t, control.CmdDestroy)
	l.wait(t)
	// The -c snapshot, restored paused, runs on resume.
	l2 := startHV(t, "--restore", path, "--paused")
	if st := l2.call(t, control.CmdStatus).Status; st.State != control.StatePaused {
		t.Fatalf("--restore --paused: state %q", st.State)
	}
	l2.call(t, control.CmdResume)
	l2.waitFor(t, "XTF COUNT "+strconv.Itoa(n+3)+"\n", 60*time.Second)
	l2.call(t, control.CmdDestroy)
	l2.wait(t)
}

func mustCreate(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "s.snap"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// restoreFails runs hv --restore on path and returns its stderr, after
// checking it refused cleanly: exit code 1 with the exit file saying
// why, and no Go panic.
func restoreFails(t *testing.T, path string, extra ...string) string {
	t.Helper()
	return refused(t, path, runHV(t, append([]string{"--restore", path}, extra...)...)).stderr
}

// refused checks that r, an hv that restored path, refused it.
func refused(t *testing.T, path string, r *run) *run {
	t.Helper()
	if r.code != control.ExitError || r.exit.Reason != control.ReasonError {
		t.Fatalf("hv --restore %s: exit %d, %+v; want a refusal (code %d)\nstderr:\n%s", filepath.Base(path), r.code, r.exit, control.ExitError, r.stderr)
	}
	if strings.Contains(r.stderr, "panic:") || strings.Contains(r.stderr, "goroutine ") {
		t.Fatalf("hv crashed on %s:\n%s", filepath.Base(path), r.stderr)
	}
	return r
}

// TestRestoreRefusesDamage: a truncated snapshot and one with a bit
// flipped are refused with the reason, before the guest runs a thing,
// from a file and on a pipe (--restore fd=3, as xl migrate-receive
// hands it) alike, in the same words.
func TestRestoreRefusesDamage(t *testing.T) {
	path, l := saveCounter(t, control.SaveDestroy)
	l.wait(t)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"truncated-half", good[:len(good)/2], "truncated"},
		{"truncated-trailer", good[:len(good)-1], "truncated"},
		{"flipped-middle", flip(good, len(good)/2), "snapshot"},
		{"flipped-early", flip(good, 200), "snapshot"},
		{"empty", nil, "snapshot"},
	} {
		p := write(c.name, c.data)
		fromFile := refused(t, p, runHV(t, "--restore", p))
		if !strings.Contains(fromFile.stderr, c.want) || !strings.Contains(fromFile.stderr, "--restore") {
			t.Errorf("%s: stderr does not say %q:\n%s", c.name, c.want, fromFile.stderr)
		}
		if strings.Contains(fromFile.stderr, "XTF COUNT") {
			t.Errorf("%s: the guest ran", c.name)
		}
		if c.data == nil {
			continue // a file of no bytes; a pipe of none is the next case's cut
		}
		fromPipe := refused(t, c.name+" on a pipe", runHVStream(t, 30*time.Second, c.data, "--restore", "fd=3"))
		if want := strings.ReplaceAll(fromFile.exit.Detail, p, "fd=3"); fromPipe.exit.Detail != want {
			t.Errorf("%s on a pipe: refused with %q; from the file: %q", c.name, fromPipe.exit.Detail, want)
		}
		if strings.Contains(fromPipe.stdout, "XTF COUNT") {
			t.Errorf("%s on a pipe: the guest ran", c.name)
		}
	}

	// A snapshot whose size the command line contradicts: both numbers.
	stderr := restoreFails(t, path, "--memory", "128")
	if !strings.Contains(stderr, "64 MiB") || !strings.Contains(stderr, "128") {
		t.Errorf("--memory 128 on a 64 MiB snapshot: %s", stderr)
	}
}

func flip(b []byte, at int) []byte {
	c := append([]byte(nil), b...)
	c[at] ^= 0x10
	return c
}

// rewrite copies the snapshot at path with its header changed by edit,
// through the snapshot package.
func rewrite(t *testing.T, path string, edit func(*snapshot.Header)) string {
	t.Helper()
	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	r, err := snapshot.NewReader(bufio.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	h := r.Header()
	edit(&h)
	outPath := filepath.Join(t.TempDir(), "edited.snap")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	bw := bufio.NewWriter(out)
	w, err := snapshot.NewWriter(bw, h)
	if err != nil {
		t.Fatal(err)
	}
	for {
		s, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if s.Kind == "memory" {
			mem := make([]byte, s.Size)
			if err := r.ReadMemory(mem); err != nil {
				t.Fatal(err)
			}
			err = w.Memory(s.GPA, mem)
		} else {
			err = w.Section(s.Kind, s.Data)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	return outPath
}

// TestRestoreInterfaceContract: the snapshot carries what the writing hv
// is and what it admitted; a restoring hv that does not admit that
// interface refuses, naming both versions and the rule, as at creation.
func TestRestoreInterfaceContract(t *testing.T) {
	path, l := saveCounter(t, control.SaveDestroy)
	l.wait(t)
	ver, err := exec.CommandContext(context.Background(), testenv.Bin(t, "hv"), "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	stamp := fields(strings.ReplaceAll(string(ver), " ", "="))
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := snapshot.NewReader(bufio.NewReader(f))
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	h := r.Header()
	if h.Release != stamp["release"] || h.BuildID != stamp["build_id"] || h.Changeset != stamp["changeset"] ||
		!strings.HasPrefix(h.Interface, stamp["interface"]) || h.Compat || h.MemoryMiB != 64 || h.VCPUs != 1 {
		t.Errorf("header %+v does not describe the writing hv %v and the domain", h, stamp)
	}
	edited := rewrite(t, path, func(h *snapshot.Header) { h.Interface = "99.0" })
	stderr := restoreFails(t, edited)
	for _, want := range []string{"guest interface 99.0 refused by hv " + stamp["release"], "(rule ", "snapshot of hv " + h.Release} {
		if !strings.Contains(stderr, want) {
			t.Errorf("refusal does not say %q:\n%s", want, stderr)
		}
	}
	// The same snapshot with its own interface restores: the refusal was
	// the interface's, not the rewrite's.
	same := rewrite(t, path, func(*snapshot.Header) {})
	l2 := startHV(t, "--restore", same)
	l2.waitForRegexp(t, `XTF COUNT \d+\n`, 60*time.Second)
	l2.call(t, control.CmdDestroy)
	l2.wait(t)
}

// TestSaveRestoreBlockIO: a guest that does virtio-blk I/O without a
// pause is saved and restored onto the same disk: its sequence of
// requests goes on with none lost (each read checks the write before
// it) or repeated (each request must be used exactly once), and the disk
// holds every write. Saved live, the pages the device wrote (read data,
// used rings) reach the stream only through the hv's own record of its
// writes, which KVM's dirty log does not see.
func TestSaveRestoreBlockIO(t *testing.T) {
	for _, live := range []bool{false, true} {
		t.Run(map[bool]string{false: "paused", true: "live"}[live], func(t *testing.T) { saveRestoreBlockIO(t, live) })
	}
}

func saveRestoreBlockIO(t *testing.T, live bool) {
	disk := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(disk, make([]byte, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	req := control.Request{Cmd: control.CmdSave, After: control.SaveDestroy, Live: live}
	path, l, st := saveGuest(t, "blk_counter", "XTF BLK 30\n", req, "--disk", disk)
	if live {
		checkLive(t, st)
	}
	r1 := l.wait(t)
	expectEnd(t, r1, control.ReasonSaved)
	l2 := startHV(t, "--restore", path, "--disk", disk)
	seq := func(out string) []int { return testenv.Numbered(t, out, "XTF BLK") }
	before := seq(r1.stdout)
	last := before[len(before)-1]
	l2.waitFor(t, "XTF BLK "+strconv.Itoa(last+20)+"\n", 60*time.Second)
	l2.call(t, control.CmdDestroy)
	r2 := l2.wait(t)
	all := seq(r1.stdout + r2.stdout)
	for i, n := range all {
		if n != i {
			t.Fatalf("request %d is %d across the restore\nbefore:\n%s\nafter:\n%s", i, n, r1.stdout, r2.stdout)
		}
	}
	img, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	for i := range all {
		if got := binary.LittleEndian.Uint64(img[512*i:]); got != uint64(i) {
			t.Fatalf("sector %d holds %d, want %d", i, got, i)
		}
	}
}
