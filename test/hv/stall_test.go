package hv_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/internal/testenv"
)

// The lab's second run of a stalled micro-guest (testenv.LabLoss) rests
// on reading a real hv's SIGQUIT dump: a guest that runs has its vCPU
// inside KVM_RUN, a paused one does not.
func TestStallDumpReadsKVMRun(t *testing.T) {
	quit := func(l *live) string {
		t.Helper()
		_ = l.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case err := <-l.done:
			l.done <- err
		case <-time.After(10 * time.Second):
			t.Fatal("hv did not end on SIGQUIT")
		}
		return l.errout.String()
	}
	start := func() *live {
		l := startHV(t, "--kernel", guest(t, "dirty_counter"), "--memory", "64")
		l.waitFor(t, "XTF COUNT 2\n", 60*time.Second)
		return l
	}
	// dirty_counter rewrites 4 MiB between port writes, so its vCPU is
	// nearly always inside KVM_RUN; three dumps all outside would be a
	// reader that cannot see it.
	var dump string
	seen := false
	for i := 0; i < 3 && !seen; i++ {
		dump = quit(start())
		seen = testenv.StuckInKVMRun(dump)
	}
	if !seen {
		t.Fatalf("three dumps of a running guest, none read as its vCPU inside KVM_RUN; the last:\n%s", dump)
	}
	l := start()
	l.call(t, control.CmdPause)
	if dump := quit(l); testenv.StuckInKVMRun(dump) {
		t.Fatalf("a paused domain's vCPU was read as inside KVM_RUN:\n%s", dump)
	}
}
