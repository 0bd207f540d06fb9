package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/xeno-hv/xeno/builder"
	"github.com/xeno-hv/xeno/kernels"
)

// builderFlags are the flags lock, build and verify share.
func builderFlags(name string, o *builder.Options) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(&o.CacheDir, "cache", kernels.DefaultCacheDir(), "download and build cache directory (env XENO_CACHE)")
	fs.StringVar(&o.HVRelease, "hv-release", "", "build the hv and xeno-init as this release (must match the recipe's [hv] pin)")
	fs.StringVar(&o.SrcDir, "src", "", "compile Go programs from this source tree (default: the tree above the recipe)")
	fs.StringVar(&o.Changeset, "changeset", "", "stamp this changeset instead of the tree's git HEAD")
	fs.Func("allow-host-path", "also let [[files]] sources come from host directory `DIR` (repeatable; by default only the recipe's own directory tree)", func(dir string) error {
		o.AllowHostPaths = append(o.AllowHostPaths, dir)
		return nil
	})
	return fs
}

// parseArgs accepts flags before and after RECIPE, as users type them.
func parseRecipeArgs(fs *flag.FlagSet, args []string) (string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return "", err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != 1 {
		return "", fmt.Errorf("%s: want exactly one RECIPE argument, got %d", fs.Name(), len(pos))
	}
	return pos[0], nil
}

func lockCmd(args []string) error {
	o := builder.Options{Log: os.Stderr}
	fs := builderFlags("lock", &o)
	r, err := parseRecipeArgs(fs, args)
	if err != nil {
		return err
	}
	o.Recipe = r
	_, err = builder.Lock(o)
	return err
}

func buildCmd(args []string) error {
	o := builder.Options{Log: os.Stderr, Progress: true}
	fs := builderFlags("build", &o)
	fs.StringVar(&o.OutDir, "o", ".", "output directory")
	fs.BoolVar(&o.NoBuildCache, "no-build-cache", false, "rebuild Go programs and the initramfs instead of using the cache")
	r, err := parseRecipeArgs(fs, args)
	if err != nil {
		return err
	}
	o.Recipe = r
	// SIGINT or SIGTERM stops the build, which kills its children and
	// removes its staging directory before we exit; a second one kills
	// xeno at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop)
	res, err := builder.Build(ctx, o)
	if err != nil {
		return err
	}
	for _, f := range res.Files {
		fmt.Println(filepath.Join(o.OutDir, f))
	}
	return nil
}

// verifyCmd builds the recipe twice, each in its own temporary directory
// and as its own process with a different time zone, umask, locale and
// working directory; the second also with a fresh Go build cache and no
// xeno build cache, so that nothing is reused. Then it compares bytes.
func verifyCmd(args []string) error {
	var o builder.Options
	fs := builderFlags("verify", &o)
	keep := fs.Bool("keep", false, "keep both build directories")
	r, err := parseRecipeArgs(fs, args)
	if err != nil {
		return err
	}
	recipe, err := filepath.Abs(r)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "xeno-verify-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(work)
	}
	// Both builds compile from one snapshot of the tree, so an edit made
	// while verify runs cannot reach one build only.
	root, err := builder.ModuleRoot(filepath.Dir(recipe))
	if err != nil {
		return err
	}
	src := filepath.Join(work, "src")
	if err := builder.Snapshot(root, src); err != nil {
		return fmt.Errorf("verify: snapshot of %s: %w", root, err)
	}
	if rel, err := filepath.Rel(root, recipe); err == nil && filepath.IsLocal(rel) {
		recipe = filepath.Join(src, rel)
	}
	a, bdir := filepath.Join(work, "a"), filepath.Join(work, "b")
	gocache := filepath.Join(work, "gocache")
	runs := []struct {
		dir, tz, umask, lang string
		extra                []string
		env                  []string
	}{
		{a, "UTC", "022", "C", nil, nil},
		{bdir, "Pacific/Kiritimati", "077", "C.UTF-8", []string{"--no-build-cache"}, []string{"GOCACHE=" + gocache}},
	}
	for i, run := range runs {
		if err := os.MkdirAll(run.dir, 0o755); err != nil {
			return err
		}
		cargs := []string{"-c", `umask "$0" && exec "$@"`, run.umask, self, "build", "-o", run.dir, "--cache", o.CacheDir,
			"--src", src, "--changeset", builder.Changeset(root)}
		if o.HVRelease != "" {
			cargs = append(cargs, "--hv-release", o.HVRelease)
		}
		for _, d := range o.AllowHostPaths {
			// The child runs in run.dir.
			if d, err = filepath.Abs(d); err != nil {
				return err
			}
			cargs = append(cargs, "--allow-host-path", d)
		}
		cargs = append(append(cargs, run.extra...), recipe)
		cmd := exec.Command("sh", cargs...)
		cmd.Dir = run.dir
		cmd.Env = append(os.Environ(), "TZ="+run.tz, "LC_ALL="+run.lang, "LANG="+run.lang)
		cmd.Env = append(cmd.Env, run.env...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		fmt.Fprintf(os.Stderr, "verify: build %d of 2 in %s (TZ=%s umask %s)\n", i+1, run.dir, run.tz, run.umask)
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("verify: build %d failed: %w", i+1, err)
		}
	}
	bad, names, err := builder.Compare(a, bdir)
	if err != nil {
		return err
	}
	if len(bad) == 0 {
		for _, n := range names {
			fmt.Printf("identical  %s\n", n)
		}
		fmt.Printf("verify: %s: %d outputs byte for byte identical across two builds\n", r, len(names))
		return nil
	}
	for _, m := range bad {
		if m.Offset < 0 {
			fmt.Printf("DIFFERS    %s: present in only one build\n", m.File)
			continue
		}
		fmt.Printf("DIFFERS    %s: first difference at byte offset %d (%#x)\n", m.File, m.Offset, m.Offset)
		if m.Offset >= 0 && builder.Diffoscope(os.Stdout, filepath.Join(a, m.File), filepath.Join(bdir, m.File)) {
			continue
		}
	}
	if !*keep {
		fmt.Printf("verify: rerun with --keep to inspect the builds\n")
	} else {
		fmt.Printf("verify: builds kept in %s\n", work)
	}
	return fmt.Errorf("verify: %d of %d outputs differ", len(bad), len(names))
}
