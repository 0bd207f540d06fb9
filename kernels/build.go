package kernels

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xeno-hv/xeno/debs"
)

// BuildSpec is everything a kernel build is made of. Two builds with the
// same spec on machines with the same compiler give the same bzImage.
type BuildSpec struct {
	// Source is a Debian linux-source-X.Y package, pinned by version and
	// by the sha256 of its .deb.
	Source, SourceVersion, SourceSHA256 string
	// Config is a config fragment applied on top of `make tinyconfig`.
	Config string
	// Patches are applied in this order with patch -p1.
	Patches []string
	// Interface is the xeno interface the kernel is built for
	// (CONFIG_XENO_GUEST_INTERFACE), e.g. "1.2" or "1.3-dev"; BuildID is
	// the hv build a -dev interface was made against.
	Interface, BuildID string
	// Epoch is KBUILD_BUILD_TIMESTAMP, as seconds since 1970.
	Epoch int64
	// WorkDir, when set, is an empty or absent directory to build in,
	// and the build never reuses a tree: a cold build, as the
	// reproducibility check wants. Otherwise the store keeps one tree per
	// source and compiler, and patches, configures and rebuilds in it, so
	// that a kernel for another interface, or after a patch changed,
	// recompiles only what changed.
	WorkDir string
	// Jobs is make -j; 0 means one more than the number of CPUs.
	Jobs int
	// Log, when set, gets make's output; a failed build's last lines are
	// in the error either way.
	Log io.Writer
}

// BuildInput is one input of a built kernel, by name and hash.
type BuildInput struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
}

// buildRevision changes whenever this file changes how a tree becomes a
// kernel, so that the store does not serve a kernel built the old way.
const buildRevision = "2"

// Bounds on what a build reads back.
const (
	maxKernelRelease = 256
)

// ErrPatch is wrapped when a patch does not apply.
var ErrPatch = errors.New("patch does not apply")

// toolchain names the compiler and linker a build uses; they are part of
// the build key because another gcc makes other bytes.
func toolchain() (string, error) {
	var parts []string
	for _, c := range [][]string{{"gcc", "--version"}, {"ld", "--version"}} {
		out, err := exec.Command(c[0], c[1:]...).Output()
		if err != nil {
			return "", fmt.Errorf("kernels: %s: %w (make deps installs the kernel build tools)", c[0], err)
		}
		line, _, _ := strings.Cut(string(out), "\n")
		parts = append(parts, strings.TrimSpace(line))
	}
	return strings.Join(parts, "; "), nil
}

// inputs hashes the spec's files: the source .deb by its pinned hash,
// the config fragment and each patch by content.
func (b *BuildSpec) inputs() ([]BuildInput, error) {
	in := []BuildInput{{Name: b.Source + "=" + b.SourceVersion, SHA256: b.SourceSHA256}}
	for _, p := range append([]string{b.Config}, b.Patches...) {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("kernels: %w", err)
		}
		in = append(in, BuildInput{Name: filepath.Base(p), SHA256: sha256Hex(data)})
	}
	return in, nil
}

func keyOf(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s\n", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// localVersion is the kernel's -LOCALVERSION: the interface is in the
// release, so `uname -r` and `xeno kernel list` tell builds apart.
func (b *BuildSpec) localVersion() string {
	return "-xeno-" + b.Interface
}

func (b *BuildSpec) check() error {
	switch {
	case b.Source == "" || b.SourceVersion == "":
		return errors.New("kernels: build: the linux-source package and version are required")
	case len(b.SourceSHA256) != 64:
		return fmt.Errorf("kernels: build: %s=%s: a sha256 of the .deb is required", b.Source, b.SourceVersion)
	case b.Config == "":
		return errors.New("kernels: build: a config fragment is required")
	case !regexp.MustCompile(`^[0-9]+\.[0-9]+(-dev)?$`).MatchString(b.Interface):
		return fmt.Errorf("kernels: build: interface %q is not MAJOR.MINOR or MAJOR.MINOR-dev", b.Interface)
	case strings.ContainsAny(b.BuildID, "\"\\\n"):
		return fmt.Errorf("kernels: build: bad build id %q", b.BuildID)
	}
	return nil
}

// Build returns the kernel that spec describes: from the store when a
// build with the same inputs is there, else built and imported. The
// result records the hash of every input.
func (s *Store) Build(ctx context.Context, b BuildSpec) (*Kernel, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	tc, err := toolchain()
	if err != nil {
		return nil, err
	}
	in, err := b.inputs()
	if err != nil {
		return nil, err
	}
	var parts []string
	for _, i := range in {
		parts = append(parts, i.Name, i.SHA256)
	}
	// A tree is the unpacked source for one toolchain; the patches and
	// the config change inside it, so Kbuild rebuilds only what they
	// touch. The kernel is keyed by everything.
	treeKey := keyOf(in[0].Name, in[0].SHA256, tc, buildRevision)
	key := keyOf(append(parts, tc, buildRevision, b.Interface, b.BuildID, fmt.Sprint(b.Epoch))...)
	if b.WorkDir == "" {
		if k, err := s.built(key); k != nil || err != nil {
			return k, err
		}
	}

	tree := filepath.Join(s.Dir, "trees", treeKey[:16])
	if b.WorkDir != "" {
		// The tree is unpacked into WorkDir: never into a directory
		// that holds anything of the user's.
		if ents, err := os.ReadDir(b.WorkDir); err == nil && len(ents) > 0 {
			return nil, fmt.Errorf("kernels: build: --workdir %s is not empty", b.WorkDir)
		}
		tree = b.WorkDir
	} else {
		if err := os.MkdirAll(filepath.Dir(tree), 0o755); err != nil {
			return nil, fmt.Errorf("kernels: %w", err)
		}
		// One build per tree at a time; a second process asking for the
		// same kernel waits and then finds it stored.
		lockf, err := os.OpenFile(tree+".lock", os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, fmt.Errorf("kernels: %w", err)
		}
		defer lockf.Close()
		if err := unix.Flock(int(lockf.Fd()), unix.LOCK_EX); err != nil {
			return nil, fmt.Errorf("kernels: lock %s: %w", lockf.Name(), err)
		}
		if k, err := s.built(key); k != nil || err != nil {
			return k, err
		}
	}

	src := filepath.Join(tree, "src")
	ready := filepath.Join(tree, ".xeno-tree-ready")
	fresh := false
	if _, err := os.Stat(ready); err != nil || b.WorkDir != "" {
		if err := s.prepareTree(ctx, &b, tree, src); err != nil {
			return nil, err
		}
		if err := os.WriteFile(ready, []byte(treeKey+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("kernels: %w", err)
		}
		fresh = true
	}
	err = syncPatches(ctx, tree, src, b.Patches)
	if errors.Is(err, errTreeDirty) && !fresh {
		// The tree no longer matches its record: start it afresh.
		if err = s.prepareTree(ctx, &b, tree, src); err == nil {
			if err = os.WriteFile(ready, []byte(treeKey+"\n"), 0o644); err == nil {
				err = syncPatches(ctx, tree, src, b.Patches)
			}
		}
	}
	if err != nil {
		return nil, err
	}
	if err := s.configure(ctx, &b, src); err != nil {
		return nil, err
	}
	if err := s.compile(ctx, &b, src); err != nil {
		return nil, err
	}
	k, err := s.importBuild(src, b, in, tc, key)
	if err != nil {
		return nil, err
	}
	if b.WorkDir == "" {
		s.pruneTrees(filepath.Base(tree))
	}
	return k, nil
}

// built returns the stored kernel with build key key, or nil.
func (s *Store) built(key string) (*Kernel, error) {
	all, err := s.List()
	if err != nil {
		return nil, err
	}
	for _, k := range all {
		if k.BuildKey == key {
			return k, k.Verify()
		}
	}
	return nil, nil
}

// pruneTrees removes kept build trees other than keep: each is over a
// gigabyte, and only the newest source/config/patches is rebuilt often.
func (s *Store) pruneTrees(keep string) {
	dir := filepath.Join(s.Dir, "trees")
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if !e.IsDir() || e.Name() == keep {
			continue
		}
		lock := filepath.Join(dir, e.Name()+".lock")
		f, err := os.OpenFile(lock, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.RemoveAll(filepath.Join(dir, e.Name()))
			os.Remove(lock)
		}
		f.Close()
	}
}

// prepareTree unpacks the pinned source into tree/src and applies the
// patches, replacing whatever tree held.
func (s *Store) prepareTree(ctx context.Context, b *BuildSpec, tree, src string) error {
	if err := os.RemoveAll(tree); err != nil {
		return fmt.Errorf("kernels: %w", err)
	}
	if err := os.MkdirAll(src, 0o755); err != nil {
		return fmt.Errorf("kernels: %w", err)
	}
	s.progress(fmt.Sprintf("apt-get download %s=%s", b.Source, b.SourceVersion), 0, 0)
	deb, _, err := debs.Fetch(s.Dir, b.Source, b.SourceVersion, b.SourceSHA256)
	if err != nil {
		return err
	}
	pkg, err := debs.Open(deb)
	if err != nil {
		return err
	}
	if pkg.SHA256 != b.SourceSHA256 {
		return fmt.Errorf("kernels: %s: %w: sha256 %s, want %s", deb, ErrHashMismatch, pkg.SHA256, b.SourceSHA256)
	}
	s.progress("unpack "+filepath.Base(deb), 0, 0)
	found := false
	err = pkg.Walk(func(hdr *tar.Header, r io.Reader) error {
		name := strings.TrimPrefix(hdr.Name, "./")
		if found || hdr.Typeflag != tar.TypeReg || !strings.HasPrefix(name, "usr/src/linux-source-") || !strings.HasSuffix(name, ".tar.xz") {
			return nil
		}
		found = true
		// tar and xz from Debian unpack the 1.4 GB tree about four times
		// faster than Go's xz; the input was verified above.
		cmd := exec.CommandContext(ctx, "tar", "-xJ", "--strip-components=1", "--no-same-owner", "-C", src, "-f", "-")
		cmd.Stdin = r
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("kernels: %s: unpack %s: %w: %s", deb, name, err, lastLines(stderr.String(), 5))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("kernels: %s: no usr/src/linux-source-*.tar.xz inside; is it a linux-source package?", deb)
	}
	return nil
}

// errTreeDirty says a kept tree's sources no longer match the patches it
// records as applied.
var errTreeDirty = errors.New("kernel tree does not match its applied patches")

// syncPatches makes the patches applied to src exactly want, in order.
// tree/applied keeps a copy of each applied patch (NNN-name); when the
// series changed, those are reversed, newest first, and want applied,
// each recorded as soon as it applies, so the record stays true even
// when a patch fails. Kbuild then rebuilds only what the patches touch.
func syncPatches(ctx context.Context, tree, src string, want []string) error {
	dir := filepath.Join(tree, "applied")
	have, _ := filepath.Glob(filepath.Join(dir, "*.patch"))
	sort.Strings(have)
	same := len(have) == len(want)
	for i := 0; same && i < len(want); i++ {
		a, errA := os.ReadFile(have[i])
		b, errB := os.ReadFile(want[i])
		same = errA == nil && errB == nil && bytes.Equal(a, b) && strings.HasSuffix(have[i], "-"+filepath.Base(want[i]))
	}
	if same {
		return nil
	}
	for i := len(have) - 1; i >= 0; i-- {
		cmd := exec.CommandContext(ctx, "patch", "-R", "-p1", "--batch", "--no-backup-if-mismatch", "-r", "-", "-i", have[i])
		cmd.Dir = src
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%w: reversing %s: %v: %s", errTreeDirty, filepath.Base(have[i]), err, lastLines(string(out), 3))
		}
		if err := os.Remove(have[i]); err != nil {
			return fmt.Errorf("kernels: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("kernels: %w", err)
	}
	for i, p := range want {
		if err := applyPatch(ctx, src, p); err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("kernels: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%03d-%s", i, filepath.Base(p))), data, 0o644); err != nil {
			return fmt.Errorf("kernels: %w", err)
		}
	}
	return nil
}

var (
	patchFileRE = regexp.MustCompile(`^(?:patching|checking) file (.+)$`)
	patchHunkRE = regexp.MustCompile(`^Hunk #(\d+) FAILED at (\d+)`)
)

// applyPatch applies one patch, and on failure names the patch, the file
// and each hunk that did not apply.
func applyPatch(ctx context.Context, src, p string) error {
	abs, err := filepath.Abs(p)
	if err != nil {
		return fmt.Errorf("kernels: %w", err)
	}
	cmd := exec.CommandContext(ctx, "patch", "-p1", "--forward", "--batch", "--no-backup-if-mismatch", "-r", "-", "-i", abs)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("kernels: %s: %w", p, ctx.Err())
	}
	var failed []string
	file := ""
	for _, line := range strings.Split(string(out), "\n") {
		if m := patchFileRE.FindStringSubmatch(line); m != nil {
			file = m[1]
		} else if m := patchHunkRE.FindStringSubmatch(line); m != nil {
			failed = append(failed, fmt.Sprintf("%s hunk #%s (at line %s)", file, m[1], m[2]))
		}
	}
	if len(failed) == 0 {
		return fmt.Errorf("kernels: %s: %w: %s", p, ErrPatch, lastLines(string(out), 5))
	}
	return fmt.Errorf("kernels: %s: %w: %s", p, ErrPatch, strings.Join(failed, ", "))
}

// configure writes .config: tinyconfig, then the fragment, then the
// interface, and checks that Kconfig kept every line of the fragment.
func (s *Store) configure(ctx context.Context, b *BuildSpec, src string) error {
	s.progress("configure "+filepath.Base(b.Config), 0, 0)
	if err := s.make(ctx, b, src, nil, "tinyconfig"); err != nil {
		return err
	}
	frag, err := os.ReadFile(b.Config)
	if err != nil {
		return fmt.Errorf("kernels: %w", err)
	}
	want, err := parseFragment(b.Config, frag)
	if err != nil {
		return err
	}
	base, err := os.ReadFile(filepath.Join(src, ".config"))
	if err != nil {
		return fmt.Errorf("kernels: %w", err)
	}
	gen := fmt.Sprintf("CONFIG_LOCALVERSION=%q\n# CONFIG_LOCALVERSION_AUTO is not set\nCONFIG_XENO_GUEST_INTERFACE=%q\nCONFIG_XENO_GUEST_BUILD_ID=%q\n",
		b.localVersion(), b.Interface, b.BuildID)
	all := append(append(append(base, '\n'), frag...), gen...)
	if err := os.WriteFile(filepath.Join(src, ".config"), all, 0o644); err != nil {
		return fmt.Errorf("kernels: %w", err)
	}
	if err := s.make(ctx, b, src, nil, "olddefconfig"); err != nil {
		return err
	}
	got, err := os.ReadFile(filepath.Join(src, ".config"))
	if err != nil {
		return fmt.Errorf("kernels: %w", err)
	}
	have, err := ParseConfig(".config", got)
	if err != nil {
		return err
	}
	var bad []string
	for _, w := range want {
		v := have[strings.TrimPrefix(w.name, "CONFIG_")]
		if v == "" {
			v = "n"
		}
		if v != w.value {
			bad = append(bad, fmt.Sprintf("%s:%d: %s=%s did not stick (Kconfig made it %s: a dependency is off, or it is not in this kernel)", b.Config, w.line, w.name, w.value, v))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("kernels: config:\n  %s", strings.Join(bad, "\n  "))
	}
	return nil
}

type fragmentLine struct {
	name, value string
	line        int
}

var (
	fragSetRE   = regexp.MustCompile(`^(CONFIG_[A-Za-z0-9_]+)=(.*)$`)
	fragUnsetRE = regexp.MustCompile(`^# (CONFIG_[A-Za-z0-9_]+) is not set$`)
)

// parseFragment reads a Kconfig fragment: CONFIG_X=v lines, "# CONFIG_X is
// not set" lines, comments and blank lines. Anything else is an error at
// its line.
func parseFragment(name string, b []byte) ([]fragmentLine, error) {
	var out []fragmentLine
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if m := fragSetRE.FindStringSubmatch(line); m != nil {
			out = append(out, fragmentLine{m[1], m[2], i + 1})
		} else if m := fragUnsetRE.FindStringSubmatch(line); m != nil {
			out = append(out, fragmentLine{m[1], "n", i + 1})
		} else if line != "" && !strings.HasPrefix(line, "#") {
			return nil, fmt.Errorf("kernels: %s:%d: not a config line: %q", name, i+1, line)
		}
	}
	return out, nil
}

// buildEnv fixes everything Kbuild would take from the machine: time,
// user, host, build count, locale and time zone.
func (b *BuildSpec) buildEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		k, _, _ := strings.Cut(e, "=")
		switch k {
		case "KBUILD_BUILD_TIMESTAMP", "KBUILD_BUILD_USER", "KBUILD_BUILD_HOST", "KBUILD_BUILD_VERSION",
			"LC_ALL", "TZ", "SOURCE_DATE_EPOCH", "ARCH", "CROSS_COMPILE", "KCFLAGS", "KCPPFLAGS", "KBUILD_OUTPUT",
			"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "LOCALVERSION":
			continue
		}
		env = append(env, e)
	}
	ts := time.Unix(b.Epoch, 0).UTC().Format("Mon Jan 2 15:04:05 UTC 2006")
	return append(env, "KBUILD_BUILD_TIMESTAMP="+ts, "KBUILD_BUILD_USER=xeno", "KBUILD_BUILD_HOST=xeno",
		"KBUILD_BUILD_VERSION=1", "LC_ALL=C", "TZ=UTC", fmt.Sprintf("SOURCE_DATE_EPOCH=%d", b.Epoch))
}

// make runs make in src; each output line goes to line (if set) and to
// the spec's log, and a failure carries the last lines.
func (s *Store) make(ctx context.Context, b *BuildSpec, src string, line func(string), args ...string) error {
	cmd := exec.CommandContext(ctx, "make", append([]string{"ARCH=x86_64"}, args...)...)
	cmd.Dir = src
	cmd.Env = b.buildEnv()
	// make's children share its process group; Ctrl-C reaches them all,
	// and a cancelled context kills make, whose jobs then stop too.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("kernels: make: %w (make deps installs the kernel build tools)", err)
	}
	var tail []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			t := sc.Text()
			if b.Log != nil {
				fmt.Fprintln(b.Log, t)
			}
			if line != nil {
				line(t)
			}
			tail = append(tail, t)
			if len(tail) > 20 {
				tail = tail[1:]
			}
		}
		io.Copy(io.Discard, pr)
	}()
	err := cmd.Wait()
	pw.Close()
	<-done
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("kernels: make %s: %w", strings.Join(args, " "), ctx.Err())
		}
		return fmt.Errorf("kernels: make %s in %s: %w:\n%s", strings.Join(args, " "), src, err, strings.Join(tail, "\n"))
	}
	return nil
}

// compileSteps is about how many Kbuild steps (CC, AS, LD, AR, ...) a
// cold build of the xeno config prints; it sizes the progress bar only.
const compileSteps = 1300

var kbuildStepRE = regexp.MustCompile(`^  [A-Z0-9_]+ +\S`)

func (s *Store) compile(ctx context.Context, b *BuildSpec, src string) error {
	jobs := b.Jobs
	if jobs <= 0 {
		jobs = runtime.NumCPU() + 1
	}
	var steps int64
	what := fmt.Sprintf("make -j%d bzImage (%s, interface %s)", jobs, b.SourceVersion, b.Interface)
	s.progress(what, 0, compileSteps)
	count := func(line string) {
		if kbuildStepRE.MatchString(line) {
			steps++
			s.progress(what, min(steps, compileSteps-1), compileSteps)
		}
	}
	if err := s.make(ctx, b, src, count, fmt.Sprintf("-j%d", jobs), "bzImage"); err != nil {
		return err
	}
	s.progress(what, compileSteps, compileSteps)
	return nil
}

// importBuild stages the build's bzImage, config and System.map and
// commits them to the store with the record of how they were made. A
// build in the spec's WorkDir is a cold build for comparison: it is
// staged in WorkDir/out and returned without entering the store.
func (s *Store) importBuild(src string, b BuildSpec, in []BuildInput, tc, key string) (*Kernel, error) {
	var stage string
	if b.WorkDir != "" {
		stage = filepath.Join(b.WorkDir, "out")
		if err := os.MkdirAll(stage, 0o755); err != nil {
			return nil, fmt.Errorf("kernels: %w", err)
		}
	} else {
		unlock, err := s.lock()
		if err != nil {
			return nil, err
		}
		defer unlock()
		if stage, err = os.MkdirTemp(s.kernelsDir(), ".import-"); err != nil {
			return nil, fmt.Errorf("kernels: %w", err)
		}
		defer os.RemoveAll(stage)
	}
	copyOut := func(from, to string, limit int64) (string, error) {
		f, err := os.Open(filepath.Join(src, from))
		if err != nil {
			return "", fmt.Errorf("kernels: build output: %w", err)
		}
		defer f.Close()
		return copyBounded(filepath.Join(stage, to), f, limit, from)
	}
	if _, err := copyOut("arch/x86/boot/bzImage", bzImageFile, maxBzImage); err != nil {
		return nil, err
	}
	cfgSHA, err := copyOut(".config", configFile, maxConfig)
	if err != nil {
		return nil, err
	}
	if _, err := copyOut("System.map", sysMapFile, maxSystemMap); err != nil {
		return nil, err
	}
	rel, err := os.ReadFile(filepath.Join(src, "include/config/kernel.release"))
	if err != nil || len(rel) > maxKernelRelease {
		return nil, fmt.Errorf("kernels: build output: kernel.release: %v", err)
	}
	k, err := describe(filepath.Join(stage, bzImageFile), "arch/x86/boot/bzImage")
	if err != nil {
		return nil, err
	}
	if r := strings.TrimSpace(string(rel)); k.Release != r {
		return nil, fmt.Errorf("kernels: build output: bzImage says release %q, kernel.release %q", k.Release, r)
	}
	k.ConfigSHA256 = cfgSHA
	k.Source = b.Source + "=" + b.SourceVersion
	k.Interface = b.Interface
	k.BuildKey = key
	k.Toolchain = tc
	k.Inputs = in
	if b.WorkDir != "" {
		k.dir = stage
		return k, nil
	}
	if old, err := s.load(k.SHA256); err == nil {
		if old.BuildKey != "" {
			return old, old.Verify()
		}
		// The same bytes imported bare before: keep the build's record.
		if err := os.RemoveAll(old.dir); err != nil {
			return nil, fmt.Errorf("kernels: %w", err)
		}
	}
	return s.commit(stage, k)
}

// SortedPatches lists dir/*.patch in name order: the series order.
func SortedPatches(dir string) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(dir, "*.patch"))
	if err != nil {
		return nil, fmt.Errorf("kernels: %w", err)
	}
	sort.Strings(m)
	return m, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
