package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/xeno-hv/xeno/builder/manifest"
	"github.com/xeno-hv/xeno/debs"
	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/images"
	"github.com/xeno-hv/xeno/initd"
	"github.com/xeno-hv/xeno/internal/atomicfile"
	"github.com/xeno-hv/xeno/kernels"
	"github.com/xeno-hv/xeno/recipes"
)

// Result is what a build wrote.
type Result struct {
	Manifest     manifest.Manifest
	ManifestPath string
	Files        []string // every output, manifest last, in OutDir
}

// build is the state of one Build.
type build struct {
	// ctx is Build's: cancelled by SIGINT or SIGTERM, it stops the step
	// running (its child processes are killed) and the build.
	ctx     context.Context
	o       Options
	t       *target
	r       *recipes.Recipe
	srcHash string
	stage   string                 // where outputs are written before they move to OutDir
	files   map[string]images.File // image path without leading "/"
	boot    map[string][]byte      // boot role -> file, from the packages
	inputs  []manifest.Input
	outs    []manifest.Output
	kernel  *kernels.Kernel
	man     manifest.Manifest
	spec    images.BootSpec
	prog    *progress
}

// step is one step of a build, shown as progress.
type step struct {
	name string
	run  func() error
}

// Build builds the recipe's outputs into o.OutDir. Cancelling ctx stops
// it, and it removes its staging directory; it also removes those that
// builds which are gone left in o.OutDir.
func Build(ctx context.Context, o Options) (*Result, error) {
	t, err := resolve(o)
	if err != nil {
		return nil, err
	}
	r := t.recipe
	if err := checkLock(t); err != nil {
		return nil, err
	}
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" && v != fmt.Sprint(r.Epoch) {
		o.logf("build: ignoring SOURCE_DATE_EPOCH=%s: the recipe's epoch %d decides (docs/recipes.md)", v, r.Epoch)
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("builder: %w", err)
	}
	stale, err := removeStale(o.OutDir)
	for dir, pid := range stale {
		if pid == "" {
			pid = "unknown"
		}
		o.logf("build: removed %s, left by a build that is gone (pid %s)", dir, pid)
	}
	if err != nil {
		o.logf("build: %v", err)
	}
	b := &build{ctx: ctx, t: t, r: r, files: map[string]images.File{}, boot: map[string][]byte{}}
	steps := []step{
		{"fetch and verify packages", b.fetch},
		{"compile Go programs", b.tree},
		{"write initramfs", b.writeInitramfs},
	}
	for _, out := range r.Outputs {
		// The recipe was validated against the same table.
		f, _ := images.FindFormat(out.Format)
		steps = append(steps, step{f.Step, func() error { return b.write(f) }})
	}
	// newProgress routes o.Log around the bar, so b takes o after it.
	b.prog = newProgress(&o, len(steps))
	b.o = o
	defer b.prog.done()
	if b.srcHash, err = sourceHash(t.root); err != nil {
		return nil, err
	}
	// Everything is written into a staging directory first and renamed
	// into OutDir at the end: a failed build leaves no output behind.
	stage, release, err := newStage(o.OutDir)
	if err != nil {
		return nil, err
	}
	b.stage = stage
	defer release()
	defer os.RemoveAll(b.stage)
	for _, s := range steps {
		if err := context.Cause(ctx); err != nil {
			return nil, fmt.Errorf("build interrupted before %q (%w); removed %s", s.name, err, b.stage)
		}
		b.prog.step(s.name)
		if err := s.run(); err != nil {
			if cause := context.Cause(ctx); cause != nil {
				return nil, fmt.Errorf("build interrupted during %q (%w); removed %s", s.name, cause, b.stage)
			}
			return nil, err
		}
	}
	if err := context.Cause(ctx); err != nil {
		return nil, fmt.Errorf("build interrupted (%w); removed %s", err, b.stage)
	}
	return b.finish()
}

// fetch gets the kernel and every package, verified against their pins.
func (b *build) fetch() error {
	k, err := b.fetchKernel()
	if err != nil {
		return err
	}
	b.kernel = k
	return b.packages()
}

// tree puts everything but the packages' files into the image tree: the
// compiled Go programs, the recipe's files, the kernel modules, the
// init's configuration and the image's own manifest.
func (b *build) tree() error {
	r, t := b.r, b.t
	for i, g := range r.Go {
		data, cached, err := b.compileGo(g.Package)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", r.Path, r.Line(fmt.Sprintf("go.%d", i)), err)
		}
		b.o.logf("build: %s -> %s (%d bytes%s)", g.Package, g.Dest, len(data), cachedNote(cached))
		b.add(g.Dest, images.File{Mode: 0o755, Data: data})
		b.inputs = append(b.inputs, manifest.Input{Kind: "go", Name: g.Package, Version: t.build.BuildID, SHA256: sha(data)})
	}
	if err := b.recipeFiles(); err != nil {
		return err
	}
	mods, err := b.modules(b.kernel)
	if err != nil {
		return err
	}
	cfg := initd.Config{Run: r.Init.Run, Modules: mods}
	var cb bytes.Buffer
	cb.WriteString("# Written by xeno build: what xeno-init runs and loads.\n")
	if err := toml.NewEncoder(&cb).Encode(cfg); err != nil {
		return fmt.Errorf("builder: %w", err)
	}
	b.add(initd.ConfigPath, images.File{Mode: 0o644, Data: cb.Bytes()})
	b.man = manifest.Manifest{Name: r.Name, Interface: interfaceOf(t.iface), HVRelease: t.build.Release.String(),
		HVBuildID: t.build.BuildID, Epoch: r.Epoch, KernelRelease: b.kernel.Release, Cmdline: r.Cmdline()}
	inner, err := b.man.Encode("The image's own manifest, written by xeno build.")
	if err != nil {
		return fmt.Errorf("builder: %w", err)
	}
	b.add(manifest.InitramfsPath, images.File{Mode: 0o644, Data: inner})
	return nil
}

// writeInitramfs makes the initramfs and with it the boot spec that
// every output format writes from.
func (b *build) writeInitramfs() error {
	r := b.r
	initrd, err := b.initramfs()
	if err != nil {
		return err
	}
	kernel, err := b.kernel.BzImage()
	if err != nil {
		return err
	}
	b.spec = images.BootSpec{Kernel: kernel, Initrd: initrd, Cmdline: r.Cmdline(), Label: r.Name,
		Epoch: time.Unix(r.Epoch, 0).UTC(), Seed: r.Seed}
	for role, data := range b.boot {
		if err := b.spec.SetBoot(role, data); err != nil {
			return err
		}
	}
	return nil
}

// write writes one output format into the staging directory and records
// each of its files for the manifest.
func (b *build) write(f images.Format) error {
	var names, paths []string
	for _, suffix := range f.Suffixes {
		names = append(names, b.r.Name+suffix)
		paths = append(paths, filepath.Join(b.stage, b.r.Name+suffix))
	}
	if err := f.Write(b.spec, paths); err != nil {
		return err
	}
	for i, name := range names {
		st, err := os.Stat(paths[i])
		if err != nil {
			return fmt.Errorf("builder: %w", err)
		}
		h, err := fileSHA(paths[i])
		if err != nil {
			return err
		}
		b.outs = append(b.outs, manifest.Output{File: name, Format: f.Name, Size: st.Size(), SHA256: h})
	}
	return nil
}

// finish writes the manifest of every output and input, and moves the
// staged files into OutDir.
func (b *build) finish() (*Result, error) {
	o, r := b.o, b.r
	man := b.man
	man.GoVersion = b.t.goVersion
	man.Outputs = b.outs
	man.Inputs = b.inputs
	outer, err := man.Encode("Written by xeno build: every output's sha256 and every input.")
	if err != nil {
		return nil, fmt.Errorf("builder: %w", err)
	}
	manName := r.Name + manifest.Suffix
	if err := atomicfile.WriteFile(filepath.Join(b.stage, manName), outer, 0o644); err != nil {
		return nil, fmt.Errorf("builder: %w", err)
	}
	res := &Result{Manifest: man, ManifestPath: filepath.Join(o.OutDir, manName)}
	for _, out := range b.outs {
		res.Files = append(res.Files, out.File)
	}
	res.Files = append(res.Files, manName)
	for _, f := range res.Files {
		if err := os.Rename(filepath.Join(b.stage, f), filepath.Join(o.OutDir, f)); err != nil {
			return nil, fmt.Errorf("builder: %w", err)
		}
	}
	for _, out := range b.outs {
		o.logf("build: %s  %s", out.SHA256, filepath.Join(o.OutDir, out.File))
	}
	o.logf("build: wrote %s (interface %s)", res.ManifestPath, man.Interface)
	return res, nil
}

// checkLock refuses a build whose inputs differ from RECIPE.lock.
func checkLock(t *target) error {
	r := t.recipe
	l, err := recipes.ReadLock(recipes.LockPath(r.Path))
	if errors.Is(err, recipes.ErrNoLock) {
		return fmt.Errorf("%s: no lock file %s: run `xeno lock %s` first (build never resolves inputs on its own)", r.Path, recipes.LockPath(r.Path), r.Path)
	}
	if err != nil {
		return err
	}
	if err := l.Check(r); err != nil {
		return err
	}
	if l.GoVersion != t.goVersion {
		return fmt.Errorf("%s: locked Go toolchain %s, this machine has %s; install %s or run `xeno lock %s`", l.Path, l.GoVersion, t.goVersion, l.GoVersion, r.Path)
	}
	if l.HVRelease != t.build.Release.String() {
		return fmt.Errorf("%s: locked hv release %s, building %s; run `xeno lock %s` (or --hv-release %s)", l.Path, l.HVRelease, t.build.Release, r.Path, l.HVRelease)
	}
	if l.Interface != t.iface.String() {
		return fmt.Errorf("%s: locked guest interface %s, this tree gives %s; run `xeno lock %s`", l.Path, l.Interface, t.iface, r.Path)
	}
	return nil
}

func (b *build) add(p string, f images.File) {
	f.Path = strings.TrimPrefix(p, "/")
	b.files[f.Path] = f
}

// fetchKernel fetches the pinned kernel into the kernel store and checks
// that it came from the .deb the recipe pins, or builds it from the
// pinned linux-source for the recipe's interface.
func (b *build) fetchKernel() (*kernels.Kernel, error) {
	r := b.r
	store, err := kernels.Open(b.o.CacheDir)
	if err != nil {
		return nil, err
	}
	// Fetching through debs first verifies the .deb against the pin before
	// the store unpacks anything from it.
	if _, _, err := debs.FetchContext(b.ctx, b.o.CacheDir, r.Kernel.Name(), r.Kernel.Version, r.Kernel.SHA256); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", r.Path, r.Line("kernel.sha256"), err)
	}
	if r.Kernel.Source != "" {
		return b.buildKernel(store)
	}
	k, err := store.Fetch(r.Kernel.Package, r.Kernel.Version)
	if err != nil {
		return nil, fmt.Errorf("%s:%d: %w", r.Path, r.Line("kernel"), err)
	}
	if k.DebSHA256 != r.Kernel.SHA256 {
		return nil, fmt.Errorf("%s:%d: kernel %s=%s in the store came from a .deb with sha256 %s, the recipe pins %s", r.Path, r.Line("kernel.sha256"), r.Kernel.Package, r.Kernel.Version, k.DebSHA256, r.Kernel.SHA256)
	}
	b.inputs = append(b.inputs, manifest.Input{Kind: "deb", Name: r.Kernel.Package, Version: r.Kernel.Version, SHA256: k.DebSHA256})
	b.o.logf("build: kernel %s (%s=%s), bzImage sha256 %s", k.Release, k.Package, k.Version, k.SHA256)
	return k, nil
}

// buildKernel builds (or finds in the store) the recipe's kernel from
// source, for the interface the recipe's guest is pinned to.
func (b *build) buildKernel(store *kernels.Store) (*kernels.Kernel, error) {
	r, t := b.r, b.t
	spec, err := KernelSpec(r, t.root, t.iface)
	if err != nil {
		return nil, err
	}
	last := int64(-1)
	store.Progress = func(what string, done, total int64) {
		if total == 0 {
			b.o.logf("build: kernel: %s", what)
			return
		}
		// Ten lines over a cold build, none for a cached one.
		if pct := done * 10 / total; pct != last {
			last = pct
			b.o.logf("build: kernel: %s: %d%%", what, pct*10)
		}
	}
	k, err := store.Build(b.ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("%s:%d: %w", r.Path, r.Line("kernel.source"), err)
	}
	for _, in := range k.Inputs {
		b.inputs = append(b.inputs, manifest.Input{Kind: "kernel-input", Name: in.Name, SHA256: in.SHA256})
	}
	b.o.logf("build: kernel %s (built from %s for interface %s), bzImage sha256 %s", k.Release, k.Source, k.Interface, k.SHA256)
	return k, nil
}

// KernelSpec is the kernel build a recipe with kernel.source asks for:
// its config and patches from the source tree at root, built for the
// interface iface.
func KernelSpec(r *recipes.Recipe, root string, iface abi.Interface) (kernels.BuildSpec, error) {
	config, err := inTree(r, "kernel.config", root, r.Kernel.Config)
	if err != nil {
		return kernels.BuildSpec{}, err
	}
	spec := kernels.BuildSpec{
		Source: r.Kernel.Source, SourceVersion: r.Kernel.Version, SourceSHA256: r.Kernel.SHA256,
		Config:    config,
		Interface: iface.Short(), BuildID: iface.BuildID, Epoch: r.Epoch,
	}
	if r.Kernel.Patches != "" {
		dir, err := inTree(r, "kernel.patches", root, r.Kernel.Patches)
		if err != nil {
			return spec, err
		}
		p, err := kernels.SortedPatches(dir)
		if err != nil {
			return spec, fmt.Errorf("%s:%d: %w", r.Path, r.Line("kernel.patches"), err)
		}
		if len(p) == 0 {
			return spec, fmt.Errorf("%s:%d: no *.patch in %s", r.Path, r.Line("kernel.patches"), r.Kernel.Patches)
		}
		for i, f := range p {
			if p[i], err = inTree(r, "kernel.patches", root, filepath.ToSlash(filepath.Join(r.Kernel.Patches, filepath.Base(f)))); err != nil {
				return spec, err
			}
		}
		spec.Patches = p
	}
	return spec, nil
}

// inTree resolves rel, a clean relative path the recipe names in the
// source tree at root (validated by recipes.Parse), with its symlinks,
// and refuses it at key's line if it leads out of the tree: the kernel
// build reads it, and its bytes end up in the build's log and outputs.
// It returns rel's path under root.
func inTree(r *recipes.Recipe, key, root, rel string) (string, error) {
	top, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", fmt.Errorf("builder: source tree %s: %w", root, err)
	}
	name := filepath.Join(root, filepath.FromSlash(rel))
	p, err := filepath.EvalSymlinks(name)
	if err != nil {
		return "", fmt.Errorf("%s:%d: %w", r.Path, r.Line(key), err)
	}
	if rp, err := filepath.Rel(top, p); err != nil || !filepath.IsLocal(rp) {
		return "", r.Errorf(key, "%q is a symlink to %s, outside the source tree %s", rel, p, top)
	}
	// The name, not p: a patch's file name is its name in the manifest.
	return name, nil
}

// packages fetches every [[packages]] entry and takes its paths.
func (b *build) packages() error {
	r := b.r
	for i, p := range r.Packages {
		key := fmt.Sprintf("packages.%d", i)
		file, sum, err := debs.FetchContext(b.ctx, b.o.CacheDir, p.Name, p.Version, p.SHA256)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", r.Path, r.Line(key+".sha256"), err)
		}
		b.inputs = append(b.inputs, manifest.Input{Kind: "deb", Name: p.Name, Version: p.Version, SHA256: sum})
		pkg, err := debs.Open(file)
		if err != nil {
			return err
		}
		if pkg.SHA256 != p.SHA256 {
			return fmt.Errorf("%s:%d: %s: sha256 %s, recipe pins %s", r.Path, r.Line(key+".sha256"), file, pkg.SHA256, p.SHA256)
		}
		if err := b.extract(r, key, p, pkg); err != nil {
			return err
		}
		b.o.logf("build: %s=%s: took %d paths, %d boot files", p.Name, p.Version, len(p.Paths), len(p.Boot))
	}
	return nil
}

func (b *build) extract(r *recipes.Recipe, key string, p recipes.Package, pkg *debs.Package) error {
	dest := p.Dest
	if dest == "" {
		dest = "/"
	}
	wanted := func(name string) bool {
		for _, w := range p.Paths {
			if name == w || strings.HasPrefix(name, w+"/") {
				return true
			}
		}
		return false
	}
	roleOf := map[string]string{}
	for role, pa := range p.Boot {
		roleOf[pa] = role
	}
	found := map[string]bool{}
	regular := map[string][]byte{} // for hard links, which point backwards
	err := pkg.Walk(func(hdr *tar.Header, rd io.Reader) error {
		name := path.Clean("/" + strings.TrimPrefix(hdr.Name, "./"))
		role, isBoot := roleOf[name]
		take := wanted(name)
		if !take && !isBoot {
			return nil
		}
		var data []byte
		switch hdr.Typeflag {
		case tar.TypeReg:
			if hdr.Size > recipes.MaxFileSize {
				return fmt.Errorf("%s:%d: %s: %s is %d bytes, more than the limit of %d", r.Path, r.Line(key), pkg.Path, name, hdr.Size, recipes.MaxFileSize)
			}
			d, err := io.ReadAll(io.LimitReader(rd, hdr.Size))
			if err != nil {
				return fmt.Errorf("builder: %s: %s: %w", pkg.Path, name, err)
			}
			data = d
			regular[name] = d
		case tar.TypeLink:
			target := path.Clean("/" + strings.TrimPrefix(hdr.Linkname, "./"))
			d, ok := regular[target]
			if !ok {
				return fmt.Errorf("builder: %s: hard link %s to %s, which was not taken", pkg.Path, name, target)
			}
			data = d
		}
		if isBoot {
			if data == nil {
				return fmt.Errorf("%s:%d: %s: boot file %s is not a regular file", r.Path, r.Line(key+".boot."+role), pkg.Path, name)
			}
			b.boot[role] = data
			found[name] = true
		}
		if !take {
			return nil
		}
		for _, w := range p.Paths {
			if name == w || strings.HasPrefix(name, w+"/") {
				found[w] = true
			}
		}
		imgPath := path.Join(dest, name)
		mode := fs.FileMode(hdr.Mode) & (fs.ModePerm)
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeLink:
			b.add(imgPath, images.File{Mode: mode, Data: data})
		case tar.TypeDir:
			b.add(imgPath, images.File{Mode: fs.ModeDir | mode})
		case tar.TypeSymlink:
			b.add(imgPath, images.File{Mode: fs.ModeSymlink | 0o777, Link: hdr.Linkname})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, w := range p.Paths {
		if !found[w] {
			return fmt.Errorf("%s:%d: %s=%s has no %s", r.Path, r.Line(key+".paths"), p.Name, p.Version, w)
		}
	}
	for role, pa := range p.Boot {
		if !found[pa] {
			return fmt.Errorf("%s:%d: %s=%s has no %s", r.Path, r.Line(key+".boot."+role), p.Name, p.Version, pa)
		}
	}
	if p.BusyboxLinks {
		if err := b.busyboxLinks(r, key, dest); err != nil {
			return err
		}
	}
	return nil
}

// busyboxLinks asks the package's own busybox which applets it has (it is
// static, so it runs on the build host) and links each to it.
func (b *build) busyboxLinks(r *recipes.Recipe, key, dest string) error {
	bbPath := strings.TrimPrefix(path.Join(dest, "/bin/busybox"), "/")
	bb, ok := b.files[bbPath]
	if !ok {
		return fmt.Errorf("%s:%d: busybox_links: the package gave no /bin/busybox", r.Path, r.Line(key+".busybox_links"))
	}
	tmp, err := os.CreateTemp("", "xeno-busybox-")
	if err != nil {
		return fmt.Errorf("builder: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(bb.Data); err != nil {
		tmp.Close()
		return fmt.Errorf("builder: %w", err)
	}
	tmp.Chmod(0o755)
	tmp.Close()
	// busybox picks the applet from argv[0], so it must be called busybox.
	cmd := exec.CommandContext(b.ctx, tmp.Name(), "--list-full")
	cmd.Args[0] = "busybox"
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("%s:%d: busybox --list-full: %v", r.Path, r.Line(key+".busybox_links"), err)
	}
	n := 0
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.Contains(l, "..") {
			continue
		}
		p := strings.TrimPrefix(path.Join(dest, l), "/")
		if _, exists := b.files[p]; exists {
			continue
		}
		target, _ := filepath.Rel(path.Dir("/"+p), "/"+bbPath)
		b.add(p, images.File{Mode: fs.ModeSymlink | 0o777, Link: target})
		n++
	}
	b.o.logf("build: %d busybox applet links", n)
	return nil
}

// recipeFiles adds [[files]].
func (b *build) recipeFiles() error {
	r := b.r
	for i, f := range r.Files {
		mode := fs.FileMode(f.Mode)
		if mode == 0 {
			mode = 0o644
		}
		data := []byte(f.Contents)
		name := "inline:" + f.Path
		if f.Source != "" {
			// Judged again here, not only at load: the path may have
			// been swapped for a symlink since.
			var err error
			if data, err = r.ReadSource(i); err != nil {
				return err
			}
			name = f.Source
		}
		b.add(f.Path, images.File{Mode: mode, Data: data})
		b.inputs = append(b.inputs, manifest.Input{Kind: "file", Name: name, SHA256: sha(data)})
	}
	return nil
}

// modules puts the closure of [initramfs] modules under /lib/modules and
// returns their image paths in load order.
func (b *build) modules(k *kernels.Kernel) ([]string, error) {
	r := b.r
	if len(r.Initramfs.Modules) == 0 {
		return nil, nil
	}
	dir := k.ModulesDir()
	files, err := kernels.ModuleClosure(dir, r.Initramfs.Modules)
	if err != nil {
		return nil, fmt.Errorf("%s:%d: %w", r.Path, r.Line("initramfs.modules"), err)
	}
	var order []string
	for _, f := range files {
		rel, err := filepath.Rel(dir, f)
		if err != nil || strings.HasPrefix(rel, "..") {
			rel = filepath.Base(f)
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("builder: %w", err)
		}
		p := path.Join("/lib/modules", k.Release, filepath.ToSlash(rel))
		b.add(p, images.File{Mode: 0o644, Data: data})
		order = append(order, p)
	}
	b.o.logf("build: %d modules for %s", len(order), strings.Join(r.Initramfs.Modules, ", "))
	return order, nil
}

// initramfs writes the image tree, through a cache keyed by the tree's
// contents, the compression and the epoch: nothing else changes the bytes.
func (b *build) initramfs() ([]byte, error) {
	var list []images.File
	h := sha256.New()
	fmt.Fprintf(h, "initramfs-v1 %s %d\n", b.r.Initramfs.Compression, b.r.Epoch)
	keys := make([]string, 0, len(b.files))
	for k := range b.files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f := b.files[k]
		list = append(list, f)
		fmt.Fprintf(h, "%q %o %q %s\n", f.Path, uint32(f.Mode), f.Link, sha(f.Data))
	}
	file := filepath.Join(b.o.CacheDir, "build", "initrd", hex.EncodeToString(h.Sum(nil)))
	if d, err := os.ReadFile(file); err == nil && !b.o.NoBuildCache {
		b.o.logf("build: initramfs: %d entries, %d bytes (cached)", len(list), len(d))
		return d, nil
	}
	var buf bytes.Buffer
	if err := images.WriteInitramfs(&buf, list, images.Compression(b.r.Initramfs.Compression), time.Unix(b.r.Epoch, 0).UTC()); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err == nil {
		if err := atomicfile.WriteFile(file, buf.Bytes(), 0o644); err != nil {
			b.o.logf("build: cannot cache the initramfs: %v", err)
		}
	}
	b.o.logf("build: initramfs: %d entries, %d bytes", len(list), buf.Len())
	return buf.Bytes(), nil
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func fileSHA(p string) (string, error) {
	h := sha256.New()
	if err := copyFile(h, p); err != nil {
		return "", fmt.Errorf("builder: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func cachedNote(c bool) string {
	if c {
		return ", cached"
	}
	return ""
}

// KernelOptions are what `xeno kernel build` adds to Options.
type KernelOptions struct {
	// Interface overrides the recipe's: build the kernel for it.
	Interface string
	// WorkDir makes a cold build in that directory, outside the store.
	WorkDir string
	Jobs    int
	// Progress hears the store's steps (see kernels.Store.Progress).
	Progress func(what string, done, total int64)
}

// BuildKernel builds the kernel of a recipe with kernel.source, as
// `xeno build` would, and returns it without building any image.
func BuildKernel(ctx context.Context, o Options, ko KernelOptions) (*kernels.Kernel, error) {
	t, err := resolve(o)
	if err != nil {
		return nil, err
	}
	r := t.recipe
	if r.Kernel.Source == "" {
		return nil, fmt.Errorf("%s:%d: the recipe boots the prebuilt %s; kernel build needs kernel.source", r.Path, r.Line("kernel"), r.Kernel.Package)
	}
	iface := t.iface
	if ko.Interface != "" {
		if iface, err = abi.ParseInterface(ko.Interface); err != nil {
			return nil, fmt.Errorf("--interface: %w", err)
		}
		if iface.Dev && iface.BuildID == "" {
			iface.BuildID = t.build.BuildID
		}
	}
	spec, err := KernelSpec(r, t.root, iface)
	if err != nil {
		return nil, err
	}
	spec.WorkDir, spec.Jobs = ko.WorkDir, ko.Jobs
	if o.Log != nil && !o.Progress {
		spec.Log = o.Log
	}
	store, err := kernels.Open(o.CacheDir)
	if err != nil {
		return nil, err
	}
	store.Progress = ko.Progress
	k, err := store.Build(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("%s:%d: %w", r.Path, r.Line("kernel.source"), err)
	}
	return k, nil
}
