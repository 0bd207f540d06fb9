package kvmlab

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/internal/testenv"
	"github.com/xeno-hv/xeno/kernels/kerneltest"
)

// labBound bounds one package's tests inside the lab; labIdle is how
// long the lab may print nothing (each test prints as it ends, and none
// of those Main runs takes that long).
const (
	labBound = 45 * time.Minute
	labIdle  = 4 * time.Minute
)

// Main is TestMain for a package whose tests need /dev/kvm. Where it
// opens, or with -short, it only runs the tests. Where it is missing, the
// tests run as usual, each one that calls testenv.RequireKVM skips and is
// queued, and the queued tests then run again inside the lab, from this
// very test binary; the package fails if they fail there.
func Main(m *testing.M) int {
	flag.Parse()
	if testenv.InLab() || testing.Short() || os.Getenv("XENO_BIN") == "" {
		return m.Run()
	}
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
		f.Close()
		return m.Run()
	}
	// RequireKVM and Carry append to these two files while the tests run.
	dir, err := os.MkdirTemp("", "kvmlab-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "kvmlab:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	queue, carry := filepath.Join(dir, "queue"), filepath.Join(dir, "carry")
	for _, f := range []string{queue, carry} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			fmt.Fprintln(os.Stderr, "kvmlab:", err)
			return 1
		}
	}
	os.Setenv(testenv.LabQueueEnv, queue)
	os.Setenv(testenv.LabCarryEnv, carry)
	code := m.Run()
	os.Unsetenv(testenv.LabQueueEnv)
	os.Unsetenv(testenv.LabCarryEnv)
	b, err1 := os.ReadFile(queue)
	carried, err2 := os.ReadFile(carry)
	if err := errors.Join(err1, err2); err != nil {
		fmt.Fprintln(os.Stderr, "kvmlab:", err)
		return 1
	}
	tests, benches := queued(string(b))
	if len(tests)+len(benches) == 0 {
		return code
	}
	if err := Available(); err != nil {
		fmt.Printf("kvmlab: %d tests need /dev/kvm and the lab cannot run here: %v\n", len(tests)+len(benches), err)
		return code
	}
	fmt.Printf("=== kvmlab: no /dev/kvm here; running inside the nested-KVM lab: %s\n", strings.Join(append(tests, benches...), " "))
	labCode := 1
	for try := 1; try <= 2; try++ {
		unlock, err := testenv.LockHeavy()
		if err != nil {
			fmt.Fprintln(os.Stderr, "kvmlab:", err)
			return 1
		}
		res, err := runQueued(tests, benches, string(carried))
		unlock()
		if err == nil {
			fmt.Printf("=== kvmlab: the lab ran %v, exit %d\n", res.Elapsed.Round(time.Second), res.Exit)
			labCode = res.Exit
			break
		}
		fmt.Println(err)
		if res == nil || !(errors.Is(err, ErrHung) || errors.Is(err, ErrNoEnd)) || failed.MatchString(res.Console) {
			break
		}
		// The lab machine itself locked up (docs/kvm-notes.md); what had
		// not finished runs once more, and a second lock-up stands.
		n := runCount()
		tests, benches = unfinished(res.Console, tests, n), unfinished(res.Console, benches, n)
		if try == 1 {
			fmt.Printf("=== kvmlab: the lab machine locked up; running the unfinished once more: %s\n", strings.Join(append(tests, benches...), " "))
		}
	}
	if code == 0 {
		code = labCode
	}
	return code
}

var (
	failed   = regexp.MustCompile(`(?m)^--- FAIL: `)
	finished = regexp.MustCompile(`(?m)^--- (?:PASS|SKIP): (\S+) `)
)

// unfinished is names less the top-level tests that console reports
// passed or skipped count times (go test -count).
func unfinished(console string, names []string, count int) []string {
	done := map[string]int{}
	for _, m := range finished.FindAllStringSubmatch(console, -1) {
		done[m[1]]++
	}
	var out []string
	for _, n := range names {
		if done[n] < count {
			out = append(out, n)
		}
	}
	return out
}

// runCount is this test binary's -test.count, which its lab run is
// given too: a test has finished when it has run that many times.
func runCount() int {
	if f := flag.Lookup("test.count"); f != nil {
		if n, err := strconv.Atoi(f.Value.String()); err == nil && n > 0 {
			return n
		}
	}
	return 1
}

// queued returns the distinct top-level tests and benchmarks in the queue.
func queued(q string) (tests, benches []string) {
	seen := map[string]bool{}
	for _, name := range strings.Fields(q) {
		top, _, _ := strings.Cut(name, "/")
		if seen[top] {
			continue
		}
		seen[top] = true
		if strings.HasPrefix(top, "Benchmark") {
			benches = append(benches, top)
		} else {
			tests = append(tests, top)
		}
	}
	return tests, benches
}

// runQueued runs this test binary inside the lab with just the queued
// tests. Every file it needs sits at the same absolute path as here: the
// binaries of XENO_BIN, the micro-guests and the package's directory.
func runQueued(tests, benches []string, carried string) (*Result, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("kvmlab: %w", err)
	}
	cwd, _ := os.Getwd()
	bin := os.Getenv("XENO_BIN")
	_, here, _, _ := runtime.Caller(0)
	guests := filepath.Join(filepath.Dir(here), "..", "..", "test", "guests")
	spec := Spec{
		HV: filepath.Join(bin, "hv"), XL: filepath.Join(bin, "xl"), Recipe: kerneltest.MinimalRecipe(),
		Files: map[string][]byte{}, MemoryMiB: 3072, Console: os.Stdout, Idle: labIdle,
	}
	dirs := []string{bin, guests, cwd}
	env := fmt.Sprintf("%s=1 XENO_BIN=%s HOME=/root TMPDIR=/tmp", testenv.InLabEnv, shQuote(bin))
	for _, line := range strings.Split(strings.TrimSpace(carried), "\n") {
		if key, dir, ok := strings.Cut(line, " "); ok {
			dirs = append(dirs, dir)
			env += " " + testenv.CarriedEnv(key) + "=" + shQuote(dir)
		}
	}
	for _, dir := range dirs {
		if err := addTree(spec.Files, dir); err != nil {
			return nil, fmt.Errorf("kvmlab: %w", err)
		}
	}
	exe, err := os.ReadFile(self)
	if err != nil {
		return nil, fmt.Errorf("kvmlab: %w", err)
	}
	spec.Files["/lab/package.test"] = exe
	if err := addLibs(spec.Files, self); err != nil {
		return nil, fmt.Errorf("kvmlab: %w", err)
	}
	// -test.v: the lab's run reports each test, so that a lock-up can be
	// told from a failure and the unfinished tests found.
	args := append(childArgs(os.Args[1:]), "-test.v=true")
	if len(tests) > 0 {
		args = append(args, "-test.run=^("+strings.Join(tests, "|")+")$")
	} else {
		args = append(args, "-test.run=^$")
	}
	if len(benches) > 0 {
		args = append(args, "-test.bench=^("+strings.Join(benches, "|")+")$")
	}
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = shQuote(a)
	}
	spec.Script = fmt.Sprintf("cd %s && export %s && /lab/package.test %s\n", shQuote(cwd), env, strings.Join(quoted, " "))
	ctx, cancel := context.WithTimeout(context.Background(), labBound)
	defer cancel()
	return Run(ctx, spec)
}

// childFlag matches the flags the lab's run sets itself, or that name
// files of this machine.
var childFlag = regexp.MustCompile(`^-{1,2}test\.(run|bench|skip|testlogfile|coverprofile|outputdir|gocoverdir|cpuprofile|memprofile|blockprofile|mutexprofile|trace)(=|$)`)

// childArgs is this run's flags less those childFlag matches.
func childArgs(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if m := childFlag.FindStringSubmatch(args[i]); m != nil {
			if m[2] == "" {
				i++ // the value is the next argument
			}
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// addTree adds the regular files under dir to files, at their own paths.
func addTree(files map[string][]byte, dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[p] = data
		return nil
	})
}
