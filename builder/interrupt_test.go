package builder

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/images"
	"github.com/xeno-hv/xeno/recipes"
)

// buildRig is a recipe with a matching lock, and an apt-get on PATH that
// records its pid and sleeps: a `xeno build` of it stops in its first
// step, "fetch and verify packages", with its staging directory made, for
// as long as a test needs.
type buildRig struct {
	xeno, root, dir, recipe, out, cache, path string
}

func newBuildRig(t *testing.T, extra string) *buildRig {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the xeno binary")
	}
	root, err := ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	g := &buildRig{dir: t.TempDir()}
	g.xeno = filepath.Join(g.dir, "xeno")
	cmd := exec.Command("go", "build", "-o", g.xeno, "./cmd/xeno")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/xeno: %v\n%s", err, out)
	}
	// A source tree of go.mod and the build-id script only: hashing the
	// real one takes seconds a build, and this build compiles nothing.
	g.root = filepath.Join(g.dir, "src")
	for _, f := range []string{"go.mod", "scripts/buildid.sh"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(g.root, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(g.root, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	g.out, g.cache = filepath.Join(g.dir, "out"), filepath.Join(g.dir, "cache")
	rdir := filepath.Join(g.dir, "r")
	bin := filepath.Join(g.dir, "fakebin")
	for _, d := range []string{g.out, g.cache, rdir, bin, filepath.Join(g.dir, "host")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A host file outside the recipe's directory.
	if err := os.WriteFile(filepath.Join(g.dir, "host", "secret"), []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	apt := "#!/bin/sh\necho $$ > \"$APT_PIDFILE.tmp\" && mv \"$APT_PIDFILE.tmp\" \"$APT_PIDFILE\"\nexec sleep 60\n"
	if err := os.WriteFile(filepath.Join(bin, "apt-get"), []byte(apt), 0o755); err != nil {
		t.Fatal(err)
	}
	g.path = bin + string(os.PathListSeparator) + os.Getenv("PATH")
	g.recipe = filepath.Join(rdir, "r.toml")
	src := `name = "sig"
epoch = 1
seed = "s"

[hv]
release = "1.2"

[kernel]
package = "linux-image-sig"
version = "1.0-1"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

[[outputs]]
format = "kernel+initrd"
` + extra
	if err := os.WriteFile(g.recipe, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	// The lock this tree and toolchain give, as `xeno lock` would write
	// it (without downloading: the fake apt-get never finishes).
	tgt, err := resolve(Options{Recipe: g.recipe, SrcDir: g.root, AllowHostPaths: []string{g.dir}})
	if err != nil {
		t.Fatal(err)
	}
	l := &recipes.Lock{GoVersion: tgt.goVersion, HVRelease: tgt.build.Release.String(), HVBuildID: tgt.build.BuildID, Interface: tgt.iface.String()}
	for _, d := range tgt.recipe.Debs() {
		l.Inputs = append(l.Inputs, recipes.LockInput{Kind: "deb", Name: d.Name, Version: d.Version, SHA256: d.SHA256})
	}
	if err := l.WriteFile(recipes.LockPath(g.recipe)); err != nil {
		t.Fatal(err)
	}
	return g
}

// running is one `xeno build` of the rig.
type running struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	apt    string // the pid file of its apt-get
	done   chan error
}

func (g *buildRig) start(t *testing.T, name string, args ...string) *running {
	t.Helper()
	r := &running{apt: filepath.Join(g.dir, name+".apt.pid"), done: make(chan error, 1)}
	args = append([]string{"build", "-o", g.out, "--cache", g.cache, "--src", g.root}, args...)
	r.cmd = exec.Command(g.xeno, append(args, g.recipe)...)
	r.cmd.Env = append(os.Environ(), "PATH="+g.path, "APT_PIDFILE="+r.apt)
	r.cmd.Stderr = &r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		<-r.done
		if pid := r.aptPid(); pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return r
}

func (r *running) aptPid() int {
	b, err := os.ReadFile(r.apt)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// waitFetching waits until the build runs apt-get, in its first step.
func (r *running) waitFetching(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for r.aptPid() == 0 {
		select {
		case err := <-r.done:
			r.done <- err
			t.Fatalf("xeno build ended before fetching: %v\n%s", err, r.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("xeno build did not reach apt-get in 60 s\n%s", r.stderr.String())
		}
	}
}

func (r *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("xeno build still runs 20 s after its signal\n%s", r.stderr.String())
		return nil
	}
}

func (g *buildRig) stages(t *testing.T) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(g.out, stagePrefix+"*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// SIGINT and SIGTERM stop a build mid-step: it kills its child, removes
// its staging directory and exits non-zero saying so.
func TestBuildSignalRemovesStage(t *testing.T) {
	g := newBuildRig(t, "")
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		b := g.start(t, sig.String())
		b.waitFetching(t)
		if len(g.stages(t)) != 1 {
			t.Fatalf("%v: staging directories mid-build: %v", sig, g.stages(t))
		}
		if err := b.cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		err := b.wait(t)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() <= 0 {
			t.Fatalf("%v: xeno build ended with %v, want a non-zero exit\n%s", sig, err, b.stderr.String())
		}
		if s := g.stages(t); len(s) != 0 {
			t.Errorf("%v: left %v", sig, s)
		}
		if msg := b.stderr.String(); !strings.Contains(msg, "build interrupted") || !strings.Contains(msg, sig.String()) {
			t.Errorf("%v: stderr does not say the build was interrupted by it:\n%s", sig, msg)
		}
		// The child is killed too, not left to run on.
		if pid := b.aptPid(); pid > 0 {
			deadline := time.Now().Add(5 * time.Second)
			for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if syscall.Kill(pid, 0) == nil {
				t.Errorf("%v: apt-get (pid %d) still runs after the build ended", sig, pid)
			}
		}
	}
}

// A build SIGKILLed cannot clean up; the next build removes what it left,
// but not the staging directory of a build that still runs.
func TestNextBuildRemovesStaleStage(t *testing.T) {
	g := newBuildRig(t, "")
	a := g.start(t, "a")
	a.waitFetching(t)
	left := g.stages(t)
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	a.wait(t)
	if len(left) != 1 || len(g.stages(t)) != 1 {
		t.Fatalf("after SIGKILL: stages %v, before %v", g.stages(t), left)
	}

	b := g.start(t, "b")
	b.waitFetching(t)
	now := g.stages(t)
	if len(now) != 1 || now[0] == left[0] {
		t.Fatalf("the next build kept the stale %s: stages %v", left[0], now)
	}
	live := now[0]

	c := g.start(t, "c")
	c.waitFetching(t)
	if s := g.stages(t); len(s) != 2 || !contains(s, live) {
		t.Fatalf("a build removed the stage of a running one: %s gone, stages %v", live, s)
	}
	for _, r := range []*running{b, c} {
		r.cmd.Process.Signal(syscall.SIGTERM)
		r.wait(t)
	}
	if s := g.stages(t); len(s) != 0 {
		t.Errorf("left %v", s)
	}
	if msg := b.stderr.String(); !strings.Contains(msg, "removed "+left[0]) || !strings.Contains(msg, "pid "+strconv.Itoa(a.cmd.Process.Pid)) {
		t.Errorf("the next build does not say what it removed and whose it was:\n%s", msg)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// A staging directory without an owner file is removed only once it is
// old: its build may be between making it and locking it.
func TestRemoveStaleOwnerless(t *testing.T) {
	out := t.TempDir()
	young, old := filepath.Join(out, stagePrefix+"young"), filepath.Join(out, stagePrefix+"old")
	other := filepath.Join(out, "keep")
	for _, d := range []string{young, old, other} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-2 * stageGrace)
	for _, d := range []string{old, other} {
		if err := os.Chtimes(d, past, past); err != nil {
			t.Fatal(err)
		}
	}
	live, release, err := newStage(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(live, past, past); err != nil {
		t.Fatal(err)
	}
	removed, err := removeStale(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[old] != "" {
		t.Errorf("removed %v, want only %s", removed, old)
	}
	for _, d := range []string{young, other, live} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s: %v", d, err)
		}
	}
	release()
	if removed, _ := removeStale(out); removed[live] != strconv.Itoa(os.Getpid()) {
		t.Errorf("released stage not removed with its pid: %v", removed)
	}
}

// The confinement reaches the command line: `xeno build` refuses a
// recipe whose [[files]] source leads out, naming file:line, and builds
// on with --allow-host-path naming where it leads.
func TestBuildRefusesHostPathUnlessAllowed(t *testing.T) {
	g := newBuildRig(t, "\n[[files]]\npath = \"/etc/x\"\nsource = \"../host/secret\"\n")
	host := filepath.Join(g.dir, "host")
	b := g.start(t, "refused")
	err := b.wait(t)
	if err == nil || !strings.Contains(b.stderr.String(), g.recipe+":18:") || !strings.Contains(b.stderr.String(), "leads out") {
		t.Fatalf("xeno build of an escaping source: %v\n%s", err, b.stderr.String())
	}
	ok := g.start(t, "allowed", "--allow-host-path", host)
	ok.waitFetching(t)
	ok.cmd.Process.Signal(syscall.SIGTERM)
	ok.wait(t)
}

// recipeFiles, the build step that reads [[files]], judges the source
// again: a swap after the recipe was loaded is refused there too.
func TestRecipeFilesConfined(t *testing.T) {
	dir := t.TempDir()
	rdir := filepath.Join(dir, "r")
	os.MkdirAll(rdir, 0o755)
	os.WriteFile(filepath.Join(dir, "secret"), []byte("secret"), 0o600)
	os.WriteFile(filepath.Join(rdir, "in"), []byte("inside"), 0o644)
	rf := filepath.Join(rdir, "r.toml")
	src := "name = \"t\"\nepoch = 1\nseed = \"s\"\n[hv]\nrelease = \"1.2\"\n[kernel]\npackage = \"linux-image-x\"\nversion = \"1\"\nsha256 = \"" +
		strings.Repeat("0", 64) + "\"\n[[outputs]]\nformat = \"kernel+initrd\"\n[[files]]\npath = \"/etc/in\"\nsource = \"in\"\n"
	os.WriteFile(rf, []byte(src), 0o644)
	r, err := recipes.LoadFile(rf)
	if err != nil {
		t.Fatal(err)
	}
	b := &build{ctx: context.Background(), r: r, files: map[string]images.File{}}
	if err := b.recipeFiles(); err != nil {
		t.Fatal(err)
	}
	if got := string(b.files["etc/in"].Data); got != "inside" {
		t.Fatalf("etc/in = %q", got)
	}
	os.Remove(filepath.Join(rdir, "in"))
	os.Symlink("../secret", filepath.Join(rdir, "in"))
	b.files = map[string]images.File{}
	if err := b.recipeFiles(); err == nil || !strings.Contains(err.Error(), rf+":14:") {
		t.Fatalf("swapped source: %v (image got %q)", err, b.files["etc/in"].Data)
	}
}
