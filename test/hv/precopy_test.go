package hv_test

import (
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/internal/testenv"
)

// checkLive fails unless st reports a live save: a first round sent
// while the domain ran, a last one paused, the pages of every round
// summed, and a downtime.
func checkLive(t *testing.T, st *control.SaveStats) {
	t.Helper()
	var pages uint64
	for _, r := range st.Rounds {
		pages += r.Pages
	}
	n := len(st.Rounds)
	if !st.Live || n < 2 || st.Rounds[0].Paused || !st.Rounds[n-1].Paused || pages != st.Pages || st.DowntimeNS <= 0 || st.Stop == "" ||
		(st.DirtyLog != "manual" && st.DirtyLog != "get") {
		t.Fatalf("not a live save's report: %+v", st)
	}
	for i, r := range st.Rounds[:n-1] {
		if r.Paused {
			t.Fatalf("round %d of %d was paused: %+v", i, n, st)
		}
	}
	t.Logf("live save: %d rounds, %d pages, %d bytes, downtime %v (stopped at %s; dirty log %s)", n, st.Pages, st.Bytes, time.Duration(st.DowntimeNS), st.Stop, st.DirtyLog)
	for i, r := range st.Rounds {
		t.Logf("  round %d: %d pages in %v (paused %v)", i, r.Pages, time.Duration(r.TimeNS), r.Paused)
	}
}

// TestLiveSaveCounter: dirty_counter, which keeps its count in a
// register, in RAM and in each of 1024 pages it rewrites on every line,
// is saved live while it counts and restored: the count goes on at
// exactly the next number, and every page holds it (a page a round
// missed would hold an older count, and the guest says FAIL).
func TestLiveSaveCounter(t *testing.T) {
	for _, vcpus := range []int{1, 2} {
		t.Run(strconv.Itoa(vcpus)+"vcpu", func(t *testing.T) {
			req := control.Request{Cmd: control.CmdSave, After: control.SaveDestroy, Live: true}
			path, l, st := saveGuest(t, "dirty_counter", "XTF COUNT 10\n", req, "--vcpus", strconv.Itoa(vcpus))
			checkLive(t, st)
			restoreCounter(t, path, l, vcpus)
		})
	}
}

// TestLiveSaveFailureResumes: a live save whose reader goes away in the
// middle fails, and leaves the domain running as it was, counting on; a
// live save after it works (dirty logging was switched off and on again).
func TestLiveSaveFailureResumes(t *testing.T) {
	l := startHV(t, "--kernel", guest(t, "dirty_counter"), "--memory", "64")
	l.waitFor(t, "XTF COUNT 5\n", 60*time.Second)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		// Less than RAM's non-zero pages: the cut comes in round 0 or
		// in a later round, while the domain runs.
		io.CopyN(io.Discard, pr, 64<<10)
		pr.Close()
	}()
	_, err = control.CallFile(l.sock, control.Request{Cmd: control.CmdSave, After: control.SavePause, Live: true}, pw, 60*time.Second)
	pw.Close()
	if err == nil || !strings.Contains(err.Error(), "pipe") {
		t.Fatalf("a live save into a pipe closed after 64 KiB: %v", err)
	}
	if st := l.call(t, control.CmdStatus).Status; st.State != control.StateRunning {
		t.Fatalf("after a failed live save: state %q, want running", st.State)
	}
	n := len(testenv.Counts(t, l.out.String()))
	l.waitFor(t, "XTF COUNT "+strconv.Itoa(n+3)+"\n", 60*time.Second)
	resp, err := control.CallFile(l.sock, control.Request{Cmd: control.CmdSave, After: control.SaveResume, Live: true}, mustCreate(t), 60*time.Second)
	if err != nil {
		t.Fatalf("a live save after the failed one: %v\nstderr:\n%s", err, l.errout)
	}
	checkLive(t, resp.Save)
	if resp.Status.State != control.StateRunning {
		t.Errorf("after a live save -c: state %q, want running", resp.Status.State)
	}
	l.waitFor(t, "XTF COUNT "+strconv.Itoa(n+6)+"\n", 60*time.Second)
	l.call(t, control.CmdDestroy)
	r := l.wait(t)
	testenv.Counts(t, r.stdout) // no FAIL
	if strings.Contains(r.stderr, "dirty logging off") {
		t.Errorf("the hv could not switch dirty logging off:\n%s", r.stderr)
	}
}
