package builder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/recipes"
)

// Options are what `xeno lock/build` pass in.
type Options struct {
	Recipe    string // the recipe file
	OutDir    string // where outputs go (build only)
	CacheDir  string // the download and build cache
	HVRelease string // build the hv and xeno-init as this release instead of the running xeno's
	Log       io.Writer
	Progress  bool // draw progress bars (a terminal)
	// NoBuildCache skips the cache of compiled programs and initramfs
	// images (downloads are still reused: they are checked by sha256).
	// verify uses it so that the second build really rebuilds.
	NoBuildCache bool
	// SrcDir is the source tree to compile from; default: the tree above
	// the recipe, else above the working directory. verify builds from
	// a snapshot so that edits made meanwhile cannot reach one build only.
	SrcDir string
	// Changeset overrides `git rev-parse HEAD` of SrcDir (a snapshot has
	// no .git).
	Changeset string
	// AllowHostPaths are host directories [[files]] sources may come
	// from besides the recipe's own directory tree: the operator's
	// opt-in (--allow-host-path), never the recipe's.
	AllowHostPaths []string
}

// target is what a recipe resolves to before anything is fetched.
type target struct {
	recipe    *recipes.Recipe
	root      string // the module root the Go programs are compiled from
	build     abi.Build
	iface     abi.Interface
	goVersion string
}

// InitPinnedVar is the linker variable of xeno-init's pinned interface.
const InitPinnedVar = "github.com/xeno-hv/xeno/initd.pinned"

func resolve(o Options) (*target, error) {
	r, err := recipes.LoadFile(o.Recipe, o.AllowHostPaths...)
	if err != nil {
		return nil, err
	}
	pin, _ := recipes.ParseHVPin(r.HV.Release) // validated by LoadFile
	rel := abi.Current().Release
	if o.HVRelease != "" {
		if rel, err = abi.ParseRelease(o.HVRelease); err != nil {
			return nil, fmt.Errorf("--hv-release: %w", err)
		}
		if !pin.Matches(rel) {
			return nil, fmt.Errorf("%s:%d: recipe pins hv %s, --hv-release is %s", r.Path, r.Line("hv.release"), pin, rel)
		}
	} else if !pin.Matches(rel) {
		return nil, fmt.Errorf("%s:%d: recipe pins hv %s, but this tree builds hv %s (give --hv-release to build another release)", r.Path, r.Line("hv.release"), pin, rel)
	}
	root := o.SrcDir
	if root == "" {
		if root, err = ModuleRoot(r.Dir); err != nil {
			return nil, err
		}
	}
	id, err := run(root, nil, "sh", "scripts/buildid.sh", rel.String())
	if err != nil {
		return nil, fmt.Errorf("builder: build id: %w", err)
	}
	changeset := o.Changeset
	if changeset == "" {
		changeset = Changeset(root)
	}
	gover, err := run(root, nil, "go", "env", "GOVERSION")
	if err != nil {
		return nil, fmt.Errorf("builder: go env GOVERSION: %w", err)
	}
	t := &target{recipe: r, root: root, goVersion: gover,
		build: abi.Build{Release: rel, BuildID: id, Changeset: changeset}}
	t.iface = rel.Interface()
	if t.iface.Dev {
		t.iface.BuildID = id
	}
	if r.Interface != "" {
		in, _ := abi.ParseInterface(r.Interface)
		if in.Dev && in.BuildID == "" {
			in.BuildID = id
		}
		// The pinned interface must be one this hv serves, or the image
		// could never boot on the hv it is built with.
		if d := abi.Admit(t.build, in); d.Verdict == abi.Refuse {
			return nil, fmt.Errorf("%s:%d: %s", r.Path, r.Line("interface"), d.Reason)
		}
		t.iface = in
	}
	return t, nil
}

// Changeset is the tree's git commit, as the Makefile stamps it, or
// "unknown" outside a git checkout.
func Changeset(root string) string {
	c, err := run(root, nil, "git", "rev-parse", "--short=12", "HEAD")
	if err != nil {
		return "unknown"
	}
	return c
}

// ModuleRoot finds the directory of xeno's go.mod at or above dir, else
// above the working directory.
func ModuleRoot(dir string) (string, error) {
	for _, start := range []string{dir, "."} {
		d, err := filepath.Abs(start)
		if err != nil {
			continue
		}
		for {
			b, err := os.ReadFile(filepath.Join(d, "go.mod"))
			if err == nil && bytes.HasPrefix(b, []byte("module github.com/xeno-hv/xeno\n")) {
				return d, nil
			}
			parent := filepath.Dir(d)
			if parent == d {
				break
			}
			d = parent
		}
	}
	return "", errors.New("builder: cannot find the xeno source tree (go.mod of github.com/xeno-hv/xeno) above the recipe or the working directory")
}

func run(dir string, env []string, name string, args ...string) (string, error) {
	return runContext(context.Background(), dir, env, name, args...)
}

// runContext is run, killing the command when ctx is done.
func runContext(ctx context.Context, dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = env
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

func (o Options) logf(format string, args ...any) {
	if o.Log != nil {
		fmt.Fprintf(o.Log, format+"\n", args...)
	}
}
