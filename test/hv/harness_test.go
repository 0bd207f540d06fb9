package hv_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/internal/testenv"
)

// guest returns the path of a built micro-guest.
func guest(t testing.TB, name string) string {
	t.Helper()
	return testenv.Guest(t, name)
}

// run is one finished hv process.
type run struct {
	stdout, stderr string
	code           int
	exit           control.Exit // from the exit file
	elapsed        time.Duration
}

// xtf returns the "XTF ..." lines of the console output, without "XTF ".
func (r *run) xtf() []string {
	var out []string
	for _, l := range strings.Split(r.stdout, "\n") {
		if s, ok := strings.CutPrefix(strings.TrimRight(l, "\r"), "XTF "); ok {
			out = append(out, s)
		}
	}
	return out
}

// result returns the guest's RESULT line ("serial PASS").
func (r *run) result() string {
	for _, l := range r.xtf() {
		if s, ok := strings.CutPrefix(l, "RESULT "); ok {
			return s
		}
	}
	return ""
}

// hvCmd prepares bin/hv with a control socket in a fresh directory.
func hvCmd(t testing.TB, ctx context.Context, args ...string) (*exec.Cmd, string, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	testenv.RequireKVM(t)
	bin := testenv.Bin(t, "hv")
	sock := filepath.Join(t.TempDir(), "control.sock")
	cmd := exec.CommandContext(ctx, bin, append([]string{"--control", sock}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Stdin = nil
	// An hv past its bound, or sent SIGQUIT by live.fatalf, shows every
	// goroutine (and where the vCPU threads are).
	testenv.QuitOnCancel(cmd)
	return cmd, sock, &stdout, &stderr
}

// runHV runs bin/hv to completion (bounded by 30 s: a hang is a failure).
func runHV(t testing.TB, args ...string) *run {
	t.Helper()
	return runHVLong(t, 30*time.Second, args...)
}

// runHVLong is runHV with another bound.
func runHVLong(t testing.TB, bound time.Duration, args ...string) *run {
	t.Helper()
	return runHVStream(t, bound, nil, args...)
}

// runHVStream is runHVLong with stream, if not nil, written to a pipe
// that is the hv's descriptor 3, as xl migrate-receive hands one.
func runHVStream(t testing.TB, bound time.Duration, stream []byte, args ...string) *run {
	t.Helper()
	for try := 1; ; try++ {
		r, sock, timedOut := runHVOnce(t, bound, stream, args...)
		if testenv.LabLoss(t, try, timedOut, r.stderr) {
			continue
		}
		if timedOut {
			t.Fatalf("hv %v: did not end within %v\nstdout:\n%s\nstderr:\n%s", args, bound, r.stdout, r.stderr)
		}
		r.exit = readExit(t, sock)
		return r
	}
}

// runHVOnce is one run of runHVStream, which reads its exit once it is
// known not to have timed out.
func runHVOnce(t testing.TB, bound time.Duration, stream []byte, args ...string) (r *run, sock string, timedOut bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	cmd, sock, stdout, stderr := hvCmd(t, ctx, args...)
	if stream != nil {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer pr.Close()
		cmd.ExtraFiles = []*os.File{pr}
		go func() {
			// An hv that refuses early stops reading: the write
			// fails, which is not the test's concern.
			_, _ = pw.Write(stream)
			pw.Close()
		}()
	}
	start := time.Now()
	err := cmd.Run()
	r = &run{elapsed: time.Since(start)}
	r.stdout, r.stderr = stdout.String(), stderr.String()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("hv %v: %v\nstderr:\n%s", args, err, r.stderr)
	}
	return r, sock, ctx.Err() != nil
}

func readExit(t testing.TB, sock string) control.Exit {
	t.Helper()
	var e control.Exit
	b, err := os.ReadFile(control.ExitFile(sock))
	if err != nil {
		t.Fatalf("exit file: %v", err)
	}
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("exit file %s: %v", b, err)
	}
	return e
}

// expectEnd checks the exit reason, code and file agree.
func expectEnd(t testing.TB, r *run, reason string) {
	t.Helper()
	if r.exit.Reason != reason || r.code != control.ExitCode(reason) || r.exit.Code != r.code {
		t.Fatalf("ended with code %d, exit file %+v; want reason %s (code %d)\nstdout:\n%s\nstderr:\n%s",
			r.code, r.exit, reason, control.ExitCode(reason), r.stdout, r.stderr)
	}
}

// fields parses "k=v k=v" after a prefix into a map.
func fields(line string) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(line))
	sc.Split(bufio.ScanWords)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			m[k] = v
		}
	}
	return m
}
