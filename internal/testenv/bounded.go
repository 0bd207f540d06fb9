package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RunBounded runs cmd, but kills it and fails the test if it runs longer
// than bound (a blocked open) or grows past maxKiB resident (an endless
// read): a regression of the bugs such a test guards against must not
// take the machine with it. It returns cmd.Wait's error.
func RunBounded(t testing.TB, cmd *exec.Cmd, bound time.Duration, maxKiB int64) error {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.After(bound)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	kill := func(format string, args ...any) {
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s: "+format, append([]any{cmd.Args}, args...)...)
	}
	for {
		select {
		case err := <-done:
			return err
		case <-deadline:
			kill("still running after %v: killed", bound)
		case <-tick.C:
			if kib := vmRSS(cmd.Process.Pid); kib > maxKiB {
				kill("grew to %d KiB resident: killed", kib)
			}
		}
	}
}

// vmRSS is pid's resident set in KiB, 0 if unknown.
func vmRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
