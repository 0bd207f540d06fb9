// Package xl_test runs the built xl (and hv) end to end: refusals before
// anything starts, and, with /dev/kvm, the whole domain lifecycle on the
// micro-guests of test/guests.
package xl_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
	"golang.org/x/sys/unix"

	"github.com/xeno-hv/xeno/internal/testenv"
	"github.com/xeno-hv/xeno/kernels/kerneltest"
)

type env struct {
	t     testing.TB
	xl    string
	hv    string
	state string
	dir   string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, xl: testenv.Bin(t, "xl"), dir: t.TempDir()}
	e.hv = filepath.Join(filepath.Dir(e.xl), "hv")
	e.state = filepath.Join(e.dir, "state")
	t.Cleanup(e.cleanup)
	return e
}

func (e *env) cmd(ctx context.Context, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, e.xl, args...)
	c.Env = append(os.Environ(), "XENO_STATE_DIR="+e.state, "XENO_HV="+e.hv)
	c.Dir = e.dir
	return c
}

// run runs xl and returns stdout, stderr and the exit code.
func (e *env) run(args ...string) (string, string, int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := e.cmd(ctx, args...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("xl %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

func (e *env) mustRun(args ...string) string {
	e.t.Helper()
	o, errs, code := e.run(args...)
	if code != 0 {
		e.t.Fatalf("xl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, o, errs)
	}
	return o
}

func (e *env) write(name, body string) string {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// guest returns a built micro-guest, or skips saying which is missing.
func guest(t *testing.T, name string) string {
	t.Helper()
	return testenv.Guest(t, name)
}

type listed struct {
	ID        int       `json:"id"`
	Name      string    `json:"name"`
	State     string    `json:"xl_state"`
	HVPid     int       `json:"hv_pid"`
	Admitted  string    `json:"admitted_interface"`
	Compat    bool      `json:"compat"`
	Restarts  int       `json:"restarts"`
	RecState  string    `json:"state"`
	ExitReson string    `json:"exit_reason"`
	Start     time.Time `json:"start_time"` // the current hv's
}

func (e *env) list() []listed {
	e.t.Helper()
	var out []listed
	if err := json.Unmarshal([]byte(e.mustRun("list", "-l")), &out); err != nil {
		e.t.Fatalf("xl list -l: %v", err)
	}
	return out
}

// monitorLog is domain id's monitor.log.
func (e *env) monitorLog(id int) string {
	b, _ := os.ReadFile(e.st().MonitorLog(id))
	return string(b)
}

func (e *env) find(name string) *listed {
	for _, d := range e.list() {
		if d.Name == name {
			return &d
		}
	}
	return nil
}

// processes returns the pids of processes whose command line mentions
// this test's state directory: its hvs and monitors.
func (e *env) processes() []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cl, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", ent.Name(), "stat"))
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && len(stat) > i+2 && stat[i+2] == 'Z' {
			continue
		}
		env, _ := os.ReadFile(filepath.Join("/proc", ent.Name(), "environ"))
		if bytes.Contains(cl, []byte(e.state)) || bytes.Contains(env, []byte("XENO_STATE_DIR="+e.state+"\x00")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// assertClean checks that nothing is recorded and nothing runs.
func (e *env) assertClean() {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ents, _ := os.ReadDir(filepath.Join(e.state, "domains"))
		procs := e.processes()
		if len(ents) == 0 && len(procs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var names []string
			for _, d := range ents {
				names = append(names, d.Name())
			}
			e.t.Fatalf("left behind: records %v, processes %v", names, procs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// domainLogs is what a failure shows of every domain still on record:
// its record, and the tails of its monitor's log, hv.log and console.log.
func (e *env) domainLogs() string {
	var b strings.Builder
	ents, _ := os.ReadDir(filepath.Join(e.state, "domains"))
	for _, d := range ents {
		id, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		rec, err := e.st().Load(id)
		fmt.Fprintf(&b, "--- domain %d: %+v (%v)\n", id, rec, err)
		for _, f := range []string{e.st().MonitorLog(id), e.st().HVLog(id), e.st().ConsoleLog(id)} {
			body, err := os.ReadFile(f)
			if err != nil {
				fmt.Fprintf(&b, "%s: %v\n", filepath.Base(f), err)
				continue
			}
			if len(body) > 4096 {
				body = body[len(body)-4096:]
			}
			fmt.Fprintf(&b, "%s:\n%s\n", filepath.Base(f), body)
		}
	}
	return b.String()
}

func (e *env) cleanup() {
	if _, err := os.Stat(e.state); err == nil {
		for _, d := range e.listQuiet() {
			e.run("destroy", strconv.Itoa(d.ID))
		}
	}
	for _, pid := range e.processes() {
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Kill()
		}
	}
}

func (e *env) listQuiet() []listed {
	o, _, code := e.run("list", "-l")
	var out []listed
	if code == 0 {
		_ = json.Unmarshal([]byte(o), &out)
	}
	return out
}

func (e *env) waitFor(what string, timeout time.Duration, f func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for !f() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitState waits until xl list shows domain name in state (e.g. "---s--").
func (e *env) waitState(name, state string, timeout time.Duration) {
	e.t.Helper()
	e.waitFor(name+" in state "+state, timeout, func() bool {
		d := e.find(name)
		return d != nil && d.State == state
	})
}

func fakeELF() []byte {
	b := make([]byte, 4096)
	copy(b, "\x7fELF\x02\x01\x01")
	return b
}

// Refusals need no KVM: the check runs before anything starts, and a
// refused domain leaves no record and no process.
func TestRefusals(t *testing.T) {
	e := newEnv(t)
	// A real bzImage header is enough for the check; take a micro-guest
	// if built, else skip the cases that need one.
	k := guest(t, "shutdown")
	for _, tc := range []struct {
		name, cfg string
		want      []string
	}{
		{"newer", `interface = "1.3"`, []string{"newer-than-hv", "1.3", "1.2.0", "g.cfg:4 (interface=)"}},
		{"dev-on-stable", `interface = "1.2-dev@0123456789ab"`, []string{"dev-other-build", "1.2-dev", "1.2.0"}},
		{"unknown", `interface = "7.0"`, []string{"unknown-interface", "7.0"}},
		{"memory", `memory = 8`, []string{"g.cfg:4:10", "out of range"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.write("g.cfg", fmt.Sprintf("name = \"r-%s\"\nkernel = %q\nmemory = 32\n%s\n", tc.name, k, tc.cfg))
			_, errs, code := e.run("create", cfg)
			if code != 1 {
				t.Fatalf("exit %d, want 1; stderr %s", code, errs)
			}
			for _, w := range tc.want {
				if !strings.Contains(errs, w) {
					t.Errorf("refusal %q lacks %q", errs, w)
				}
			}
			e.assertClean()
		})
	}
	t.Run("not-bzimage", func(t *testing.T) {
		elf := e.write("vmlinux", string(fakeELF()))
		cfg := e.write("g.cfg", "name = \"elf\"\nkernel = \"vmlinux\"\n")
		_, errs, code := e.run("create", cfg)
		if code != 1 || !strings.Contains(errs, elf) || !strings.Contains(errs, "bzimage-magic") {
			t.Errorf("exit %d: %s", code, errs)
		}
		e.assertClean()
	})
	t.Run("initramfs-manifest", func(t *testing.T) {
		rd := e.write("initrd.gz", string(gzipCpio(t, "etc/xeno/manifest.toml", "interface = \"1.3\"\n")))
		cfg := e.write("g.cfg", fmt.Sprintf("name = \"rd\"\nkernel = %q\nramdisk = \"initrd.gz\"\n", k))
		_, errs, code := e.run("create", cfg)
		if code != 1 || !strings.Contains(errs, rd+":/etc/xeno/manifest.toml") || !strings.Contains(errs, "newer-than-hv") {
			t.Errorf("exit %d: %s", code, errs)
		}
		e.assertClean()
	})
	t.Run("syntax", func(t *testing.T) {
		cfg := e.write("g.cfg", "name = \"s\"\nmemory = 12M\n")
		_, errs, code := e.run("create", cfg)
		if code != 1 || !strings.Contains(errs, cfg+":2:10:") {
			t.Errorf("exit %d: %s", code, errs)
		}
		// Overrides are xl.cfg lines too, and their errors say so.
		cfg = e.write("g.cfg", fmt.Sprintf("name = \"s\"\nkernel = %q\n", k))
		_, errs, code = e.run("create", cfg, "memory=64", `type="pv"`)
		if code != 1 || !strings.Contains(errs, "command line:1:6") || !strings.Contains(errs, "no PV ABI") {
			t.Errorf("override: exit %d: %s", code, errs)
		}
		e.assertClean()
	})
	t.Run("dry-run-compat", func(t *testing.T) {
		cfg := e.write("g.cfg", fmt.Sprintf("name = \"c\"\nkernel = %q\ninterface = \"1.1\"\n", k))
		o, errs, code := e.run("create", "-n", cfg)
		if code != 0 || !strings.Contains(o, "compat") || !strings.Contains(o, "rule compat-table") || !strings.Contains(o, `"name": "c"`) {
			t.Errorf("exit %d: %s %s", code, o, errs)
		}
		o, _, code = e.run("create", "--dryrun", cfg, `interface="1.3"`)
		if code != 1 || !strings.Contains(o, "REFUSED") || !strings.Contains(o, "newer-than-hv") {
			t.Errorf("dry-run refusal: exit %d: %s", code, o)
		}
		e.assertClean()
	})
	// Refusals consume no domain ID: nothing was ever allocated.
	if _, err := os.Stat(filepath.Join(e.state, "next-id")); !os.IsNotExist(err) {
		t.Errorf("a refused create allocated an ID: %v", err)
	}
}

func gzipCpio(t *testing.T, name, body string) []byte {
	var raw bytes.Buffer
	w := cpio.NewWriter(&raw)
	if err := w.WriteHeader(&cpio.Header{Name: name, Mode: 0o644, Size: int64(len(body))}); err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(body))
	w.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw.Bytes())
	zw.Close()
	return gz.Bytes()
}

// A -dev interface is admitted only by the identical build: build xl
// twice as 1.3.0-dev with two build ids and ask each about one guest.
func TestDevInterfaceIdenticalBuild(t *testing.T) {
	e := newEnv(t)
	goTool := testenv.RequireCmd(t, "go")
	k := guest(t, "shutdown")
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	xls := map[string]string{}
	for _, id := range []string{"devbuildaaaa", "devbuildbbbb"} {
		out := filepath.Join(e.dir, "xl-"+id)
		abi := "github.com/xeno-hv/xeno/hv/abi"
		c := exec.Command(goTool, "build", "-o", out, "-ldflags", fmt.Sprintf("-X %s.release=1.3.0-dev -X %s.buildID=%s", abi, abi, id), "./cmd/xl")
		c.Dir = root
		c.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := c.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, b)
		}
		xls[id] = out
	}
	cfg := e.write("g.cfg", fmt.Sprintf("name = \"dev\"\nkernel = %q\ninterface = \"1.3-dev@devbuildaaaa\"\n", k))
	for id, xl := range xls {
		e.xl = xl
		o, errs, code := e.run("create", "-n", cfg)
		if id == "devbuildaaaa" {
			if code != 0 || !strings.Contains(o, "rule dev-identical-build") {
				t.Errorf("identical build: exit %d %s %s", code, o, errs)
			}
		} else if code != 1 || !strings.Contains(errs, "dev-other-build") || !strings.Contains(errs, "devbuildbbbb") {
			t.Errorf("other build: exit %d %s", code, errs)
		}
	}
	e.assertClean()
}

// xl info reports the hv binary it would run (here $XENO_HV, stamped
// with another build id and release than xl), not xl's own stamp; with no
// runnable hv it falls back to its own stamp and says why.
func TestInfoReportsHVBinary(t *testing.T) {
	e := newEnv(t)
	goTool := testenv.RequireCmd(t, "go")
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	hv := filepath.Join(e.dir, "hv-other")
	abi := "github.com/xeno-hv/xeno/hv/abi"
	c := exec.Command(goTool, "build", "-o", hv, "-ldflags",
		fmt.Sprintf("-X %s.release=1.3.0-dev -X %s.buildID=otherhvbuild -X %s.changeset=0therc0ffee", abi, abi, abi), "./cmd/hv")
	c.Dir = root
	c.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := c.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	e.hv = hv
	o := e.mustRun("info")
	for _, want := range []string{"hv_build_id            : otherhvbuild\n", "hv_changeset           : 0therc0ffee\n",
		"hv_version             : 1.3.0-dev\n", "hv_interface           : 1.3-dev\n", "hv_caps                : xeno-1.3-x86_64",
		"hv_source              : " + hv + " --version\n"} {
		if !strings.Contains(o, want) {
			t.Errorf("xl info lacks %q:\n%s", want, o)
		}
	}
	if strings.Contains(o, "xl_build_id            : otherhvbuild") {
		t.Errorf("the test's xl has the other hv's build id; the test proves nothing:\n%s", o)
	}

	e.hv = filepath.Join(e.dir, "missing-hv")
	o = e.mustRun("info")
	if !strings.Contains(o, "hv_source              : xl's own stamp (hv --version failed: ") || strings.Contains(o, "otherhvbuild") {
		t.Errorf("xl info without an hv:\n%s", o)
	}
}

func kvmEnv(t *testing.T) *env {
	testenv.RequireKVM(t)
	e := newEnv(t)
	if _, err := os.Stat(e.hv); err != nil {
		t.Fatalf("hv not built beside xl: %v", err)
	}
	return e
}

// consoleUntil runs xl console DOM until its output contains marker.
func (e *env) consoleUntil(dom, marker string, timeout time.Duration) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c := e.cmd(ctx, "console", dom)
	var mu sync.Mutex
	var out bytes.Buffer
	c.Stdout = writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
	stdin, _ := c.StdinPipe() // kept open: EOF on stdin must not end the console
	defer stdin.Close()
	if err := c.Start(); err != nil {
		e.t.Fatal(err)
	}
	defer func() { _ = c.Process.Kill(); _ = c.Wait() }()
	for ctx.Err() == nil {
		mu.Lock()
		s := out.String()
		mu.Unlock()
		if strings.Contains(s, marker) {
			// ^] detaches, as for a user.
			stdin.Write([]byte{0x1d})
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	e.t.Fatalf("console of %s never showed %q; got %q", dom, marker, out.String())
	return ""
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// create -> list -> console -> pause/unpause -> shutdown -w -> gone.
func TestLifecycle(t *testing.T) {
	e := kvmEnv(t)
	k := guest(t, "powerbutton")
	cfg := e.write("pb.cfg", fmt.Sprintf("name = \"pb\"\nkernel = %q\nmemory = 32\n", k))
	e.mustRun("create", cfg)
	o := e.mustRun("list")
	if !strings.Contains(o, "pb ") {
		t.Fatalf("xl list lacks the domain:\n%s", o)
	}
	id := strings.TrimSpace(e.mustRun("domid", "pb"))
	if name := strings.TrimSpace(e.mustRun("domname", id)); name != "pb" {
		t.Errorf("domname %s = %q", id, name)
	}
	e.consoleUntil("pb", "XTF powerbutton waiting", 30*time.Second)
	e.mustRun("pause", "pb")
	if d := e.find("pb"); d == nil || d.State != "--p---" {
		t.Errorf("after pause: %+v", d)
	}
	e.mustRun("unpause", id)
	if d := e.find("pb"); d == nil || d.State == "--p---" {
		t.Errorf("after unpause: %+v", d)
	}
	if o := e.mustRun("uptime", "pb"); !strings.Contains(o, "pb") {
		t.Errorf("uptime: %s", o)
	}
	e.mustRun("shutdown", "-w", "pb")
	if d := e.find("pb"); d != nil {
		t.Errorf("still listed after shutdown -w: %+v", d)
	}
	e.assertClean()
}

func TestDestroyAndCompat(t *testing.T) {
	e := kvmEnv(t)
	k := guest(t, "shutdown")
	cfg := e.write("d.cfg", fmt.Sprintf("name = \"d\"\nkernel = %q\nmemory = 32\nextra = \"xtf.how=none\"\ninterface = \"1.1\"\n", k))
	e.mustRun("create", cfg)
	d := e.find("d")
	if d == nil || d.Admitted != "1.1" || !d.Compat {
		t.Fatalf("compat domain: %+v", d)
	}
	if o := e.mustRun("list", "-v"); !strings.Contains(o, "1.1") || !strings.Contains(o, "yes") {
		t.Errorf("list -v: %s", o)
	}
	for _, sock := range []string{"control.sock", "console.sock"} {
		fi, err := os.Stat(filepath.Join(e.state, "domains", strconv.Itoa(d.ID), "hv", sock))
		if err != nil {
			t.Error(err)
		} else if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", sock, fi.Mode())
		}
	}
	if fi, err := os.Stat(e.state); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir: mode %v, want 0700", fi.Mode())
	}
	e.mustRun("destroy", "d")
	if d := e.find("d"); d != nil {
		t.Errorf("listed after destroy: %+v", d)
	}
	e.assertClean()
}

// on_reboot = "restart": a new domain ID, the same name, as Xen does.
func TestRebootRestart(t *testing.T) {
	e := kvmEnv(t)
	k := guest(t, "shutdown")
	cfg := e.write("r.cfg", fmt.Sprintf("name = \"rb\"\nkernel = %q\nmemory = 32\nextra = \"xtf.how=reboot\"\non_reboot = \"restart\"\n", k))
	e.mustRun("create", cfg)
	first := -1
	if d := e.find("rb"); d != nil {
		first = d.ID
	}
	e.waitFor("a restart under a new ID", 30*time.Second, func() bool {
		d := e.find("rb")
		return d != nil && d.ID != first && d.Restarts >= 1
	})
	e.mustRun("destroy", "rb")
	e.assertClean()
}

// on_poweroff = "preserve" keeps the record as shut down until destroy.
func TestPreserve(t *testing.T) {
	e := kvmEnv(t)
	k := guest(t, "shutdown")
	cfg := e.write("p.cfg", fmt.Sprintf("name = \"pv\"\nkernel = %q\nmemory = 32\nextra = \"xtf.how=poweroff\"\non_poweroff = \"preserve\"\n", k))
	e.mustRun("create", cfg)
	e.waitState("pv", "---s--", 30*time.Second)
	// Its console is gone with its hv, but the monitor kept the log.
	if o := e.mustRun("console", "pv"); !strings.Contains(o, "XTF shutdown start") {
		t.Errorf("console of a preserved domain: %q", o)
	}
	e.mustRun("destroy", "pv")
	e.assertClean()
}

// An hv killed with -9 shows as crashed until destroyed.
func TestKilledHVIsCrashed(t *testing.T) {
	e := kvmEnv(t)
	k := guest(t, "shutdown")
	cfg := e.write("k.cfg", fmt.Sprintf("name = \"k9\"\nkernel = %q\nmemory = 32\nextra = \"xtf.how=none\"\n", k))
	e.mustRun("create", cfg)
	d := e.find("k9")
	if d == nil || d.HVPid <= 0 {
		t.Fatalf("no hv pid: %+v", d)
	}
	p, _ := os.FindProcess(d.HVPid)
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	e.waitState("k9", "----c-", 10*time.Second)
	time.Sleep(200 * time.Millisecond)
	if d := e.find("k9"); d == nil || d.State != "----c-" {
		t.Errorf("crashed domain did not stay: %+v", d)
	}
	e.mustRun("destroy", "k9")
	e.assertClean()
}

// Two concurrent creates of one name: exactly one domain.
func TestConcurrentCreate(t *testing.T) {
	e := kvmEnv(t)
	k := guest(t, "shutdown")
	cfg := e.write("c.cfg", fmt.Sprintf("name = \"same\"\nkernel = %q\nmemory = 32\nextra = \"xtf.how=none\"\n", k))
	var wg sync.WaitGroup
	codes := make([]int, 4)
	errs := make([]string, 4)
	for i := range codes {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, errs[i], codes[i] = e.run("create", cfg)
		}(i)
	}
	wg.Wait()
	ok := 0
	for i, c := range codes {
		if c == 0 {
			ok++
		} else if !strings.Contains(errs[i], "already exists") {
			t.Errorf("create %d: exit %d: %s", i, c, errs[i])
		}
	}
	if ok != 1 {
		t.Errorf("%d creates succeeded, want 1", ok)
	}
	if n := len(e.list()); n != 1 {
		t.Errorf("%d domains listed, want 1", n)
	}
	e.mustRun("destroy", "same")
	e.assertClean()
}

// buildMinimal builds recipes/minimal.toml with bin/xeno (the kernel and
// packages come from its cache, XENO_CACHE).
func buildMinimal(t *testing.T) string {
	t.Helper()
	xeno := testenv.Bin(t, "xeno")
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	out := t.TempDir()
	c := exec.Command(xeno, "build", "-o", out, "recipes/minimal.toml")
	c.Dir = root
	if b, err := c.CombinedOutput(); err != nil {
		t.Fatalf("xeno build: %v\n%s", err, b)
	}
	return out
}

// The builder's real output: xl finds the guest's interface in the
// manifest beside the kernel, else inside the initramfs, and checks the
// real Debian bzImage.
func TestDebianImageCheck(t *testing.T) {
	e := newEnv(t)
	img := buildMinimal(t)
	cfg := e.write("deb.cfg", fmt.Sprintf("name = \"deb\"\nkernel = %q\nramdisk = %q\nmemory = 256\n",
		filepath.Join(img, "minimal.vmlinuz"), filepath.Join(img, "minimal.initrd")))
	o := e.mustRun("create", "-n", cfg)
	for _, want := range []string{"boot protocol 2.15", "payload lz4", "declared by " + filepath.Join(img, "minimal.manifest.toml"), "rule stable-same-line"} {
		if !strings.Contains(o, want) {
			t.Errorf("dry run lacks %q:\n%s", want, o)
		}
	}
	if err := os.Remove(filepath.Join(img, "minimal.manifest.toml")); err != nil {
		t.Fatal(err)
	}
	o = e.mustRun("create", "-n", cfg)
	if want := "declared by " + filepath.Join(img, "minimal.initrd") + ":/etc/xeno/manifest.toml"; !strings.Contains(o, want) {
		t.Errorf("dry run lacks %q:\n%s", want, o)
	}
	e.assertClean()
}

// The lifecycle with the Debian kernel and xeno-init, where an
// unmodified Linux reaches init in useful time (hardware KVM): create,
// list, the init's marker on the console, its poweroff preserved as
// shut down, destroy.
func TestLifecycleDebian(t *testing.T) {
	testenv.RequireHardwareKVM(t)
	e := kvmEnv(t)
	img := buildMinimal(t)
	cfg := e.write("deb.cfg", fmt.Sprintf("name = \"deb\"\nkernel = %q\nramdisk = %q\nmemory = 512\nvcpus = 2\nextra = \"console=ttyS0 panic=-1\"\non_poweroff = \"preserve\"\n",
		filepath.Join(img, "minimal.vmlinuz"), filepath.Join(img, "minimal.initrd")))
	e.mustRun("create", cfg)
	if d := e.find("deb"); d == nil || d.Admitted != "1.2" {
		t.Fatalf("xl list: %+v", d)
	}
	e.consoleUntil("deb", "xeno-minimal: up", 120*time.Second)
	e.waitState("deb", "---s--", 120*time.Second)
	e.mustRun("destroy", "deb")
	e.assertClean()
}

// create -c attaches the console at once; -p creates paused; reboot
// restarts under a new ID; shutdown -a -w stops every domain.
func TestCreateFlagsRebootShutdownAll(t *testing.T) {
	e := kvmEnv(t)
	k := guest(t, "powerbutton")
	cfg := e.write("pb.cfg", fmt.Sprintf("kernel = %q\nmemory = 32\n", k))

	// -c: the console follows creation; ^] on stdin detaches.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := e.cmd(ctx, "create", "-c", cfg, `name="con"`)
	var mu sync.Mutex
	var out bytes.Buffer
	c.Stdout = writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
	stdin, _ := c.StdinPipe()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the guest's marker on xl create -c", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(out.String(), "XTF powerbutton waiting")
	})
	stdin.Write([]byte{0x1d})
	if err := c.Wait(); err != nil {
		t.Errorf("xl create -c after ^]: %v", err)
	}
	if d := e.find("con"); d == nil {
		t.Fatal("detaching the console stopped the domain")
	}

	e.mustRun("create", "-p", cfg, `name="paused"`)
	if d := e.find("paused"); d == nil || d.State != "--p---" {
		t.Errorf("create -p: %+v", d)
	}
	e.mustRun("unpause", "paused")
	e.consoleUntil("paused", "XTF powerbutton waiting", 30*time.Second)

	old := e.find("con").ID
	e.mustRun("reboot", "con")
	e.waitFor("con restarted under a new ID", 30*time.Second, func() bool {
		d := e.find("con")
		return d != nil && d.ID != old && d.RecState == "running"
	})

	o, errs, code := e.run("shutdown", "-a", "-w")
	if code != 0 {
		t.Fatalf("shutdown -a -w: %d %s %s\n%s", code, o, errs, e.domainLogs())
	}
	// on_poweroff defaults to destroy: both are gone.
	if l := e.list(); len(l) != 0 {
		t.Errorf("after shutdown -a -w: %+v", l)
	}
	e.assertClean()
}

// create -p starts the hv with --paused: the guest runs nothing, not
// even its first instructions, until xl unpause.
func TestCreatePaused(t *testing.T) {
	e := kvmEnv(t)
	k := guest(t, "powerbutton")
	cfg := e.write("p.cfg", fmt.Sprintf("name = \"p\"\nkernel = %q\nmemory = 32\n", k))
	e.mustRun("create", "-p", cfg)
	d := e.find("p")
	if d == nil || d.State != "--p---" {
		t.Fatalf("xl list -l after create -p: %+v", d)
	}
	if o := e.mustRun("list", "p"); !strings.Contains(o, "--p---") {
		t.Errorf("xl list after create -p lacks state p:\n%s", o)
	}
	// The hv copies the console into console.log from the start.
	conLog := e.st().ConsoleLog(d.ID)
	time.Sleep(300 * time.Millisecond)
	if b, _ := os.ReadFile(conLog); bytes.Contains(b, []byte("XTF")) {
		t.Fatalf("a domain created with -p wrote to its console before unpause:\n%s", b)
	}
	if d := e.find("p"); d == nil || d.State != "--p---" {
		t.Fatalf("still paused after 300 ms? %+v", d)
	}
	e.mustRun("unpause", "p")
	e.consoleUntil("p", "XTF powerbutton waiting", 30*time.Second)
	e.waitFor("the marker in console.log", 10*time.Second, func() bool {
		b, _ := os.ReadFile(conLog)
		return bytes.Contains(b, []byte("XTF powerbutton waiting"))
	})
	if d := e.find("p"); d == nil || d.State == "--p---" {
		t.Errorf("after unpause: %+v", d)
	}
	e.mustRun("shutdown", "-w", "p")
	e.assertClean()
}

// kernel = "RELEASE" names a kernel in the store (kernels.DefaultCacheDir):
// the check resolves it to the stored bzImage and probes that.
func TestKernelFromStore(t *testing.T) {
	e := newEnv(t)
	k := kerneltest.Kernel(t, kerneltest.Cloud56, kerneltest.Cloud56Version)
	cfg := e.write("store.cfg", fmt.Sprintf("name = \"st\"\nkernel = %q\nmemory = 256\n", kerneltest.Cloud56Release))
	o := e.mustRun("create", "-n", cfg)
	if !strings.Contains(o, fmt.Sprintf("%q", k.BzImagePath())) || !strings.Contains(o, `"kernel_release": "`+kerneltest.Cloud56Release+`"`) {
		t.Errorf("kernel not resolved to %s:\n%s", k.BzImagePath(), o)
	}
	if !strings.Contains(o, "boot protocol 2.15") {
		t.Errorf("stored kernel not checked:\n%s", o)
	}
	cfg = e.write("store.cfg", "name = \"st\"\nkernel = \"6.1.0-99-nosuch-amd64\"\n")
	_, errs, code := e.run("create", "-n", cfg)
	if code != 1 || !strings.Contains(errs, cfg+":2:10") || !strings.Contains(errs, "not in the kernel store") {
		t.Errorf("missing release: exit %d: %s", code, errs)
	}
	e.assertClean()
}

// openPTY returns a pseudo-terminal's master and slave.
func openPTY(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// On a terminal, xl console switches it to raw mode (keys go to the
// guest as typed), ^] detaches, and the terminal's mode is restored.
func TestConsoleOnTerminal(t *testing.T) {
	e := kvmEnv(t)
	k := guest(t, "powerbutton")
	cfg := e.write("tty.cfg", fmt.Sprintf("name = \"tty\"\nkernel = %q\nmemory = 32\n", k))
	e.mustRun("create", cfg)
	master, slave := openPTY(t)
	before, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if before.Lflag&unix.ICANON == 0 {
		t.Fatal("a fresh pty should be in canonical mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := e.cmd(ctx, "console", "tty")
	c.Stdin, c.Stdout, c.Stderr = slave, slave, slave
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	buf := make([]byte, 4096)
	for !strings.Contains(got.String(), "XTF powerbutton waiting") {
		master.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, err := master.Read(buf)
		if err != nil {
			t.Fatalf("reading the console through the pty: %v (got %q)", err, got.String())
		}
		got.Write(buf[:n])
	}
	raw, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if raw.Lflag&(unix.ICANON|unix.ECHO) != 0 {
		t.Errorf("terminal not in raw mode while attached: lflag %#x", raw.Lflag)
	}
	master.Write([]byte{0x1d})
	if err := c.Wait(); err != nil {
		t.Errorf("xl console after ^]: %v", err)
	}
	after, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if after.Lflag != before.Lflag || after.Iflag != before.Iflag || after.Oflag != before.Oflag {
		t.Errorf("terminal mode not restored: before %+v after %+v", before, after)
	}
	if d := e.find("tty"); d == nil {
		t.Error("detaching stopped the domain")
	}
	e.mustRun("destroy", "tty")
	e.assertClean()
}

// An hv that fails to start leaves nothing: the create fails with the
// hv's log, and no record or process remains (no KVM needed: the "hv"
// here is a script that fails as the real one does on a bad argument).
func TestFailedStartLeavesNothing(t *testing.T) {
	e := newEnv(t)
	k := guest(t, "shutdown")
	e.hv = e.write("fake-hv", "#!/bin/sh\necho 'hv: cannot open /dev/kvm: simulated' >&2\nexit 1\n")
	os.Chmod(e.hv, 0o755)
	cfg := e.write("f.cfg", fmt.Sprintf("name = \"f\"\nkernel = %q\n", k))
	// Whatever jail layers this host lacks (this build host has no
	// cgroup v2 controllers), they are not what this test is about.
	_, errs, code := e.run("create", "--allow-unjailed=all", cfg)
	if code != 1 || !strings.Contains(errs, "hv exited before the domain was up") || !strings.Contains(errs, "simulated") {
		t.Errorf("exit %d: %s", code, errs)
	}
	e.assertClean()
	if l := e.list(); len(l) != 0 {
		t.Errorf("listed: %+v", l)
	}
}

// A guest that powers off before the first status poll is a domain that
// ran, not a failed create: on_poweroff applies.
func TestQuickGuest(t *testing.T) {
	e := kvmEnv(t)
	k := guest(t, "shutdown")
	cfg := e.write("q.cfg", fmt.Sprintf("name = \"q\"\nkernel = %q\nmemory = 32\nextra = \"xtf.how=poweroff\"\non_poweroff = \"preserve\"\n", k))
	for i := 0; i < 5; i++ {
		e.mustRun("create", cfg)
		e.waitState("q", "---s--", 30*time.Second)
		e.mustRun("destroy", "q")
	}
	e.assertClean()
}

// --unchecked-interface (tests only) lets a refused guest through the
// toolstack and passes the flag on, so the hv also starts it, with its
// native interface; xl list -v says "unchecked".
func TestUncheckedInterface(t *testing.T) {
	e := kvmEnv(t)
	k := guest(t, "shutdown")
	cfg := e.write("u.cfg", fmt.Sprintf("name = \"u\"\nkernel = %q\nmemory = 32\nextra = \"xtf.how=none\"\ninterface = \"1.3\"\n", k))
	if _, _, code := e.run("create", cfg); code != 1 {
		t.Fatalf("without the flag: exit %d, want a refusal", code)
	}
	_, errs, code := e.run("create", "--unchecked-interface", cfg)
	if code != 0 || !strings.Contains(errs, "test only") || !strings.Contains(errs, "newer-than-hv") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if o := e.mustRun("list", "-v", "u"); !strings.Contains(o, "unchecked") {
		t.Errorf("list -v: %s", o)
	}
	id := strings.TrimSpace(e.mustRun("domid", "u"))
	log, _ := os.ReadFile(filepath.Join(e.state, "domains", id, "hv", "hv.log"))
	if !strings.Contains(string(log), "unchecked-interface") {
		t.Errorf("the hv was not told: %s", log)
	}
	e.mustRun("destroy", "u")
	e.assertClean()
}

// A guest that reboots at once is restarted, but not faster than the
// monitor's brake allows: more than 5 restarts within 5 s, and each
// further one waits 1 s. What is checked does not depend on how fast
// this machine starts an hv: every restart's hv start time is read, and
// any two restarts j apart (j >= 5) must be at least min(5, j-4) s apart
// (and, counting from the creation, min(5, j-5)), which the brake
// guarantees and which a quick unbraked loop breaks.
func TestRestartBrake(t *testing.T) {
	const brakeBurst = 5 // restarts in 5 s before the brake (docs/xl.md)
	e := kvmEnv(t)
	k := guest(t, "shutdown")
	// on_crash=preserve: a restart that crashes (the guest only ever
	// asks for a reboot) stays for the failure to show, not destroyed.
	cfg := e.write("b.cfg", fmt.Sprintf("name = \"brake\"\nkernel = %q\nmemory = 32\nextra = \"xtf.how=reboot\"\non_crash = \"preserve\"\n", k))
	created := time.Now()
	e.mustRun("create", cfg)
	const want = 9
	starts := map[int]time.Time{} // restart count -> that hv's start
	var d *listed
	e.waitFor(fmt.Sprintf("%d restarts", want), 90*time.Second, func() bool {
		if d = e.find("brake"); d == nil {
			t.Fatal("domain gone")
		}
		if d.RecState != "running" && d.RecState != "creating" {
			r := e.record(d.ID)
			t.Fatalf("restart %d ended %s (%s: %s); console:\n%s", d.Restarts, d.RecState, r.ExitReason, r.ExitDetail, e.consoleLog(d.ID))
		}
		if d.RecState == "running" {
			starts[d.Restarts] = d.Start
		}
		return d.Restarts >= want
	})
	t.Logf("%d restarts seen of %d", len(starts), d.Restarts)
	for a, ta := range starts {
		for b, tb := range starts {
			// Restarts a+5 .. b, and only from the 6th on, were braked
			// if a and b are less than 5 s apart: each waited 1 s.
			braked := b - max(a+brakeBurst, brakeBurst+1) + 1
			if braked <= 0 {
				continue
			}
			least := time.Duration(min(brakeBurst, braked)) * time.Second
			if span := tb.Sub(ta); span < least {
				t.Errorf("restarts %d and %d started %v apart; the brake allows no less than %v", a, b, span, least)
			}
		}
	}
	if log := e.monitorLog(d.ID); !strings.Contains(log, "waiting 1s") && d.Start.Sub(created) < brakeBurst*time.Second {
		t.Errorf("%d restarts within %v and the monitor never braked; monitor.log:\n%s", d.Restarts, d.Start.Sub(created), log)
	}
	e.mustRun("destroy", "brake")
	e.assertClean()
}
