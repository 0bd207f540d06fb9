package vm

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// threadCPUTime reads a thread's run time without /proc (a jailed hv has
// none): for the calling thread it agrees with CLOCK_THREAD_CPUTIME_ID.
func TestThreadCPUTime(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var ts unix.Timespec
	x := 0
	for i := 0; i < 50_000_000; i++ {
		x += i
	}
	_ = x
	got := threadCPUTime(int32(unix.Gettid()))
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		t.Fatal(err)
	}
	want := ts.Nano()
	if got <= 0 || got > want || want-got > 50_000_000 {
		t.Errorf("threadCPUTime = %d ns, CLOCK_THREAD_CPUTIME_ID = %d ns", got, want)
	}
	if threadCPUTime(0) != 0 {
		t.Error("tid 0 has a run time")
	}
}
