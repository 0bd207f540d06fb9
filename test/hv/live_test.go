package hv_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/control"
)

// syncBuf is a bytes.Buffer safe to read while hv writes to it.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// live is a running hv.
type live struct {
	cmd         *exec.Cmd
	sock        string
	out, errout *syncBuf
	done        chan error
	start       time.Time
	cancel      context.CancelFunc
	uptime      int64 // the domain's, when a test last asked
}

func startHV(t testing.TB, args ...string) *live {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	cmd, sock, _, _ := hvCmd(t, ctx, args...)
	// Each vCPU's registers when the domain ends (docs/hv.md): fatalf
	// destroys a domain that went silent, and they say where it was.
	cmd.Env = append(cmd.Env, "XENO_HV_DUMP=1")
	l := &live{cmd: cmd, sock: sock, out: &syncBuf{}, errout: &syncBuf{}, done: make(chan error, 1), cancel: cancel}
	cmd.Stdout, cmd.Stderr = l.out, l.errout
	l.start = time.Now()
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() { l.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
		cancel()
	})
	return l
}

// waitFor waits until the console shows s, or fails.
func (l *live) waitFor(t testing.TB, s string, timeout time.Duration) time.Duration {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(l.out.String(), s) {
		if time.Now().After(deadline) {
			l.fatalf(t, "console did not show %q within %v", s, timeout)
		}
		select {
		case err := <-l.done:
			l.done <- err
			if !strings.Contains(l.out.String(), s) {
				t.Fatalf("hv ended (%v) before the console showed %q\nstdout:\n%s\nstderr:\n%s", err, s, l.out, l.errout)
			}
		case <-time.After(2 * time.Millisecond):
		}
	}
	return time.Since(l.start)
}

// waitForRegexp waits until the console matches re and returns the time
// since the hv started.
func (l *live) waitForRegexp(t testing.TB, re string, timeout time.Duration) time.Duration {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := l.start.Add(timeout)
	for !rx.MatchString(l.out.String()) {
		if time.Now().After(deadline) {
			l.fatalf(t, "console did not match %q within %v of start", re, timeout)
		}
		select {
		case err := <-l.done:
			l.done <- err
			if !rx.MatchString(l.out.String()) {
				t.Fatalf("hv ended (%v) before the console matched %q\nstdout:\n%s\nstderr:\n%s", err, re, l.out, l.errout)
			}
		case <-time.After(20 * time.Millisecond):
		}
	}
	return time.Since(l.start)
}

// call sends one control command, waiting for the socket to appear. Only
// a missing socket is retried: an hv that accepts and does not answer is
// a hang, and must name its test well inside the lab's idle bound.
func (l *live) call(t testing.TB, cmd string) *control.Response {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r, err := control.Call(l.sock, cmd, 5*time.Second)
		if err == nil {
			return r
		}
		if r != nil || !(errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED)) || time.Now().After(deadline) {
			l.fatalf(t, "control %s: %v", cmd, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fatalf fails the test with the hv's output. A domain still running is
// destroyed, so that the hv prints each vCPU's registers (XENO_HV_DUMP);
// an hv that does not end then is sent SIGQUIT, so that its goroutines'
// stacks show where it hangs.
func (l *live) fatalf(t testing.TB, format string, args ...any) {
	t.Helper()
	ended := func(d time.Duration) bool {
		select {
		case err := <-l.done:
			l.done <- err
			return true
		case <-time.After(d):
			return false
		}
	}
	if !ended(0) {
		_, _ = control.Call(l.sock, control.CmdDestroy, 2*time.Second)
		if !ended(3 * time.Second) {
			_ = l.cmd.Process.Signal(syscall.SIGQUIT)
			ended(5 * time.Second)
		}
	}
	t.Fatalf(format+"\nstdout:\n%s\nstderr:\n%s", append(args, l.out, l.errout)...)
}

// wait waits for the hv to end and collects the run.
func (l *live) wait(t testing.TB) *run {
	t.Helper()
	var err error
	select {
	case err = <-l.done:
	case <-time.After(30 * time.Second):
		l.fatalf(t, "hv did not end within 30 s")
	}
	r := &run{stdout: l.out.String(), stderr: l.errout.String(), elapsed: time.Since(l.start)}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	r.exit = readExit(t, l.sock)
	return r
}

// runHVUntil starts hv, waits for the console to show s, destroys the
// domain and returns the finished run.
func runHVUntil(t testing.TB, s string, args ...string) *run {
	t.Helper()
	l := startHV(t, args...)
	l.waitFor(t, s, 30*time.Second)
	l.call(t, control.CmdDestroy)
	return l.wait(t)
}
