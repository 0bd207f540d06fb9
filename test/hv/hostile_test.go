package hv_test

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/hv/logfile"
	"github.com/xeno-hv/xeno/internal/testenv"
)

// hostileFor is how long TestHostileGuests runs each guest: a few seconds
// in make test, a minute in make soak (-args -hostile=60s; a flag, not an
// environment variable, because kvmlab passes the test binary's flags
// into the lab).
var hostileFor = flag.Duration("hostile", 3*time.Second, "how long TestHostileGuests runs each hostile guest")

// hostileMemMiB is the hostile guests' RAM; the hv's RSS must stay under
// it plus hostileSlackMiB, whatever the guest does.
const (
	hostileMemMiB   = 32
	hostileSlackMiB = 16
)

// TestHostileGuests runs the micro-guests that spray unknown MMIO
// addresses, spray ports and flood the console, each for -hostile, and
// checks what they may cost the host: the hv's RSS stays under guest RAM
// + 16 MiB, hv.log and console.log (and their .1) under logfile.Max,
// unknown accesses are summarised rather than logged one by one, and the
// console log loses no line while a console client that reads nothing is
// told what it lost. Before the bounds, the MMIO spray grew hv.log by
// 8.4 MB/s and the hv by 5 MB/s.
func TestHostileGuests(t *testing.T) {
	testenv.RequireKVM(t)
	for _, name := range []string{"spray_mmio", "spray_port", "flood"} {
		t.Run(name, func(t *testing.T) { runHostile(t, name, *hostileFor) })
	}
}

func runHostile(t *testing.T, name string, d time.Duration) {
	dir := t.TempDir()
	hvLog, conLog, conSock := filepath.Join(dir, "hv.log"), filepath.Join(dir, "console.log"), filepath.Join(dir, "console.sock")
	l := startHV(t, "--kernel", guest(t, name), "--memory", strconv.Itoa(hostileMemMiB),
		"--console", "unix:"+conSock, "--log", hvLog, "--console-log", conLog)
	l.call(t, control.CmdStatus)
	// A console client that reads nothing while the guest runs.
	client, err := net.Dial("unix", conSock)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	logs := []string{hvLog, hvLog + ".1", conLog, conLog + ".1"}
	maxRSS, maxLog := 0, int64(0)
	sample := func() {
		if rss := vmRSSKiB(t, l.cmd.Process.Pid); rss > maxRSS {
			maxRSS = rss
		}
		for _, p := range logs {
			if fi, err := os.Stat(p); err == nil && fi.Size() > maxLog {
				maxLog = fi.Size()
			}
		}
	}
	start, lastNote := time.Now(), time.Now()
	for time.Since(start) < d {
		select {
		case err := <-l.done:
			l.done <- err
			t.Fatalf("hv ended (%v) while the guest ran\nstderr:\n%s\nhv.log:\n%s", err, l.errout, tail(hvLog))
		case <-time.After(100 * time.Millisecond):
		}
		sample()
		if time.Since(lastNote) >= 10*time.Second {
			lastNote = time.Now()
			t.Logf("%v: hv RSS at most %d KiB, largest log %d bytes", time.Since(start).Round(time.Second), maxRSS, maxLog)
		}
	}
	sample()
	got := make(chan []byte, 1)
	go func() {
		client.SetReadDeadline(time.Now().Add(30 * time.Second))
		b, _ := io.ReadAll(client)
		got <- b
	}()
	l.call(t, control.CmdDestroy)
	expectEnd(t, l.wait(t), control.ReasonDestroyed)
	clientGot := <-got

	if limit := (hostileMemMiB + hostileSlackMiB) << 10; maxRSS >= limit {
		t.Errorf("hv RSS reached %d KiB: not under guest RAM + %d MiB (%d KiB)", maxRSS, hostileSlackMiB, limit)
	}
	for _, p := range logs {
		if fi, err := os.Stat(p); err == nil && fi.Size() > logfile.Max {
			t.Errorf("%s holds %d bytes: over the cap %d", filepath.Base(p), fi.Size(), logfile.Max)
		}
	}
	hvText := readBoth(t, hvLog)
	consoleText := readBoth(t, conLog)
	t.Logf("%s for %v: hv RSS at most %d KiB (guest RAM %d MiB); hv.log(+.1) %d bytes, console.log(+.1) %d bytes, console client %d bytes",
		name, d, maxRSS, hostileMemMiB, len(hvText), len(consoleText), len(clientGot))

	switch name {
	case "spray_mmio", "spray_port":
		if !strings.Contains(consoleText, "XTF "+name+" running") {
			t.Fatalf("the guest did not run; console.log:\n%s", consoleText)
		}
		checkUnknownSummarised(t, hvText)
	case "flood":
		n := checkFloodLog(t, consoleText)
		checkFloodClient(t, clientGot)
		t.Logf("flood: %d lines (%d bytes) in %v", n, n*64, d)
	}
}

// checkUnknownSummarised: the first unknown addresses are logged one per
// line, the table fills, and the rest are counted in summary lines.
func checkUnknownSummarised(t *testing.T, log string) {
	t.Helper()
	single := strings.Count(log, "(no device; logged once)")
	if single > 256 {
		t.Errorf("%d unknown accesses logged one by one: the table is not bounded", single)
	}
	if !strings.Contains(log, "further ones are counted") {
		t.Fatalf("no table-full line after %d single lines; hv.log ends:\n%s", single, lastLines(log, 10))
	}
	suppressed := 0
	for _, m := range regexp.MustCompile(`hv: (\d+) more unknown accesses suppressed`).FindAllStringSubmatch(log, -1) {
		n, _ := strconv.Atoi(m[1])
		suppressed += n
	}
	if suppressed == 0 {
		t.Fatalf("no suppressed accesses summarised; hv.log ends:\n%s", lastLines(log, 10))
	}
	t.Logf("%d unknown accesses logged singly, %d counted in summaries", single, suppressed)
}

var floodLine = regexp.MustCompile(`^XTF flood (\d{10}) x{42}$`)

// floodNumbers returns the numbers of the flood lines in s, which must
// follow each other; only the first and last line may be cut (by a
// rotation, a drop or the end).
func floodNumbers(t *testing.T, what, s string) []int {
	t.Helper()
	lines := strings.Split(s, "\n")
	var nums []int
	for i, line := range lines {
		m := floodLine.FindStringSubmatch(strings.TrimRight(line, "\r"))
		if m == nil {
			if i != 0 && i != len(lines)-1 {
				t.Fatalf("%s: line %d is not a flood line: %q", what, i+1, line)
			}
			continue
		}
		n, _ := strconv.Atoi(m[1])
		if len(nums) > 0 && n != nums[len(nums)-1]+1 {
			t.Fatalf("%s: line %d follows %d: lines were lost", what, n, nums[len(nums)-1])
		}
		nums = append(nums, n)
	}
	return nums
}

// checkFloodLog: console.log.1 and console.log are the newest lines the
// guest printed, none missing, and the first if nothing was rotated away.
func checkFloodLog(t *testing.T, s string) int {
	t.Helper()
	nums := floodNumbers(t, "console.log", s)
	if len(nums) == 0 {
		t.Fatalf("no flood lines in console.log: %q", lastLines(s, 3))
	}
	if len(s) < logfile.Max && nums[0] != 0 {
		t.Errorf("console.log starts at line %d though nothing was rotated away", nums[0])
	}
	return nums[len(nums)-1] + 1
}

// checkFloodClient: where the client that did not read lost lines, a
// marker says how many bytes.
func checkFloodClient(t *testing.T, b []byte) {
	t.Helper()
	marker := regexp.MustCompile(`\r\n\[xeno: (\d+) bytes of console output dropped\]\r\n`)
	segs := marker.Split(string(b), -1)
	last := -1
	for i, seg := range segs {
		nums := floodNumbers(t, fmt.Sprintf("console client, part %d of %d", i+1, len(segs)), seg)
		if len(nums) > 0 {
			if nums[0] <= last {
				t.Fatalf("console client: line %d again after %d", nums[0], last)
			}
			last = nums[len(nums)-1]
		}
	}
	t.Logf("console client: %d bytes, %d drop markers", len(b), len(segs)-1)
}

// vmRSSKiB is a process's VmRSS from /proc/PID/status.
func vmRSSKiB(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0 // it ended; the caller notices
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// readBoth is PATH.1 followed by PATH: a capped log in order.
func readBoth(t *testing.T, path string) string {
	t.Helper()
	var all bytes.Buffer
	for _, p := range []string{path + ".1", path} {
		b, err := os.ReadFile(p)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		all.Write(b)
	}
	return all.String()
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	return lastLines(string(b), 20)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
