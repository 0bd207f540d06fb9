package recipes

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/images"
	"github.com/xeno-hv/xeno/internal/ipparam"
)

// Size limits: a recipe is a short text, and every file it places in an
// image is read into memory once.
const (
	MaxRecipeSize = 1 << 20
	MaxFileSize   = 64 << 20
)

// Recipe is one parsed and validated recipe.
type Recipe struct {
	Path string `toml:"-"` // the file it was read from
	Dir  string `toml:"-"` // its directory: [[files]] sources are relative to it, and confined to it

	Name      string `toml:"name"`
	Epoch     int64  `toml:"epoch"`
	Seed      string `toml:"seed"`
	Interface string `toml:"interface"`

	HV        HV        `toml:"hv"`
	Kernel    Kernel    `toml:"kernel"`
	Packages  []Package `toml:"packages"`
	Go        []GoProg  `toml:"go"`
	Files     []File    `toml:"files"`
	Init      Init      `toml:"init"`
	Initramfs Initramfs `toml:"initramfs"`
	Network   Network   `toml:"network"`
	Outputs   []Output  `toml:"outputs"`

	lines keyLines
	allow []hostRoot // host directories the operator admitted besides Dir
}

// HV pins the hv line: "1.2" (any stable 1.2.x), "1.2.3" or "1.3.0-dev".
type HV struct {
	Release string `toml:"release"`
}

// Kernel is the kernel to boot, pinned by version and the .deb's sha256:
// either a Debian linux-image package (Package), or a kernel built from a
// Debian linux-source package (Source) with a config fragment and a patch
// series from the xeno source tree, for the recipe's interface.
type Kernel struct {
	Package string `toml:"package"`
	Source  string `toml:"source"`
	Version string `toml:"version"`
	SHA256  string `toml:"sha256"`
	// Config and Patches are paths in the xeno source tree (the module
	// root, as [[go]] packages are): a Kconfig fragment, and a directory
	// whose *.patch files apply in name order.
	Config  string `toml:"config"`
	Patches string `toml:"patches"`
	Cmdline string `toml:"cmdline"`
}

// Name is the pinned Debian package: the linux-image or the linux-source.
func (k Kernel) Name() string {
	if k.Source != "" {
		return k.Source
	}
	return k.Package
}

// Package is a Debian package to take files from.
type Package struct {
	Name    string   `toml:"name"`
	Version string   `toml:"version"`
	SHA256  string   `toml:"sha256"`
	Paths   []string `toml:"paths"` // files or directories inside the package
	Dest    string   `toml:"dest"`  // directory in the image that Paths go under (default "/")
	// BusyboxLinks makes a symlink to /bin/busybox for every applet that
	// the package's busybox lists.
	BusyboxLinks bool `toml:"busybox_links"`
	// Boot names bootloader files the image writers use, not the
	// initramfs: role (images.BootRoles) -> path inside the package.
	Boot map[string]string `toml:"boot"`
}

// GoProg is a Go program of this module compiled into the image.
type GoProg struct {
	Package string `toml:"package"` // "./cmd/xeno-init"
	Dest    string `toml:"dest"`    // "/init"
}

// File is a file written into the initramfs from the recipe itself.
type File struct {
	Path     string `toml:"path"`
	Contents string `toml:"contents"`
	Source   string `toml:"source"`
	Mode     int64  `toml:"mode"`
}

// Init is what xeno-init runs once the system is up; the builder writes it
// to /etc/xeno/init.toml.
type Init struct {
	Run []string `toml:"run"`
}

// Initramfs says how the initramfs is made.
type Initramfs struct {
	Compression string   `toml:"compression"`
	Modules     []string `toml:"modules"`
}

// Network is the guest's static IPv4 address, which goes on the image's
// kernel command line as ip= (internal/ipparam) for xeno-init to set.
type Network struct {
	Address   string `toml:"address"`   // "10.0.2.15/24"; /24 if no prefix
	Gateway   string `toml:"gateway"`   // the default route's router, optional
	Interface string `toml:"interface"` // default "eth0"
}

// Output is one artefact to write, in a format of images.Formats.
type Output struct {
	Format string `toml:"format"`
}

// Error is a problem in a recipe or lock file, at a line.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// Line returns the line of a key path such as "packages.0.sha256".
func (r *Recipe) Line(key string) int { return r.lines.line(key) }

// Errorf makes an Error at the line of key.
func (r *Recipe) Errorf(key, format string, args ...any) error {
	return &Error{File: r.Path, Line: r.Line(key), Msg: fmt.Sprintf(format, args...)}
}

// LoadFile reads, parses and validates the recipe at file, including that
// every [[files]] source is a regular file within MaxFileSize inside the
// recipe's directory tree. allow are more host directories the operator
// admits for sources (xeno build --allow-host-path); a recipe cannot.
func LoadFile(file string, allow ...string) (*Recipe, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("recipes: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("recipes: %w", err)
	}
	if st.Size() > MaxRecipeSize {
		return nil, &Error{File: file, Line: 1, Msg: fmt.Sprintf("recipe is %d bytes, more than the limit of %d", st.Size(), MaxRecipeSize)}
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil && st.Size() > 0 {
		return nil, fmt.Errorf("recipes: %s: %w", file, err)
	}
	r, err := Parse(file, b)
	if err != nil {
		return nil, err
	}
	r.Dir = filepath.Dir(file)
	for _, dir := range allow {
		root, err := newHostRoot(dir)
		if err != nil {
			return nil, fmt.Errorf("recipes: allowed host path %s: %w", dir, err)
		}
		r.allow = append(r.allow, root)
	}
	for i, fl := range r.Files {
		if fl.Source == "" {
			continue
		}
		src, err := r.confinedOpen(fmt.Sprintf("files.%d.source", i), fl.Source)
		if err != nil {
			return nil, err
		}
		src.Close()
	}
	return r, nil
}

var tomlLine = regexp.MustCompile(`^toml: line (\d+)[^:]*: `)

// Parse parses and validates a recipe; file names it in errors.
func Parse(file string, data []byte) (*Recipe, error) {
	if len(data) > MaxRecipeSize {
		return nil, &Error{File: file, Line: 1, Msg: fmt.Sprintf("recipe is %d bytes, more than the limit of %d", len(data), MaxRecipeSize)}
	}
	r := &Recipe{Path: file, lines: scanLines(string(data))}
	md, err := toml.Decode(string(data), r)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			line := pe.Position.Line
			if line == 0 {
				line = r.lines.line(pe.LastKey)
			}
			return nil, &Error{File: file, Line: line, Msg: pe.Message}
		}
		msg := err.Error()
		if m := tomlLine.FindStringSubmatch(msg); m != nil {
			n, _ := strconv.Atoi(m[1])
			return nil, &Error{File: file, Line: n, Msg: strings.TrimPrefix(msg, m[0])}
		}
		return nil, &Error{File: file, Line: 1, Msg: strings.TrimPrefix(msg, "toml: ")}
	}
	if un := md.Undecoded(); len(un) > 0 {
		k := un[0].String()
		// A key of the free-form boot table is checked in validate.
		return nil, r.Errorf(k, "unknown key %q", k)
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	return r, nil
}

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	debNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	// Debian policy 5.6.12: [epoch:]upstream[-revision].
	debVersionRE = regexp.MustCompile(`^([0-9]+:)?[0-9][A-Za-z0-9.+~:-]*$`)
	sha256RE     = regexp.MustCompile(`^[0-9a-f]{64}$`)
	goPkgRE      = regexp.MustCompile(`^\./[A-Za-z0-9_./-]+$`)
	moduleRE     = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// Limits on list lengths, so that a recipe cannot ask for absurd work.
const (
	maxPackages = 64
	maxPaths    = 256
	maxFiles    = 1024
	maxModules  = 256
	maxEpoch    = 1<<33 - 1 // cpio's mtime is 11 octal digits
)

// validate checks the recipe section by section; the first problem is
// the error, at its line.
func (r *Recipe) validate() error {
	for _, check := range []func() error{
		r.checkHead, r.checkKernel, r.checkPackages, r.checkImagePaths, r.checkInit, r.checkInitramfs, r.checkNetwork, r.checkOutputs,
	} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// checkHead checks the top-level keys and [hv].
func (r *Recipe) checkHead() error {
	if r.Name == "" {
		return r.Errorf("name", "missing required key name")
	}
	if !nameRE.MatchString(r.Name) {
		return r.Errorf("name", "name %q: want lower-case letters, digits, '.', '_' or '-', at most 64", r.Name)
	}
	if r.Epoch <= 0 || r.Epoch > maxEpoch {
		return r.Errorf("epoch", "epoch %d: want seconds since 1970, 1..%d (missing keys read as 0)", r.Epoch, maxEpoch)
	}
	if r.Seed == "" {
		return r.Errorf("seed", "missing required key seed (it derives the disk and file-system ids)")
	}
	if r.Interface != "" {
		in, err := abi.ParseInterface(r.Interface)
		if err != nil {
			return r.Errorf("interface", "%v", err)
		}
		if !abi.Known(in) {
			return r.Errorf("interface", "interface %s is not in the interface table", in)
		}
	}
	if r.HV.Release == "" {
		return r.Errorf("hv.release", "missing required key hv.release (e.g. \"1.2\")")
	}
	if _, err := ParseHVPin(r.HV.Release); err != nil {
		return r.Errorf("hv.release", "%v", err)
	}
	return nil
}

// checkKernel checks [kernel]: a prebuilt linux-image or a linux-source
// to build, pinned.
func (r *Recipe) checkKernel() error {
	k := r.Kernel
	switch {
	case k.Package == "" && k.Source == "":
		return r.Errorf("kernel", "missing required key kernel.package (a linux-image-* package) or kernel.source (a linux-source-* package to build)")
	case k.Package != "" && k.Source != "":
		return r.Errorf("kernel.source", "kernel.package and kernel.source both given: boot a Debian kernel or build one, not both")
	}
	if err := checkDeb("kernel", k.Name(), k.Version, k.SHA256, r); err != nil {
		return err
	}
	if k.Package != "" && !strings.HasPrefix(k.Package, "linux-image-") {
		return r.Errorf("kernel.package", "kernel package %q is not a linux-image-* package", k.Package)
	}
	if k.Package != "" && (k.Config != "" || k.Patches != "") {
		key := "kernel.config"
		if k.Config == "" {
			key = "kernel.patches"
		}
		return r.Errorf(key, "%s is for a kernel built from kernel.source, not for the prebuilt %s", key, k.Package)
	}
	if k.Source != "" {
		if !strings.HasPrefix(k.Source, "linux-source-") {
			return r.Errorf("kernel.source", "kernel source %q is not a linux-source-* package", k.Source)
		}
		if k.Config == "" {
			return r.Errorf("kernel.source", "missing required key kernel.config: the config fragment to build %s with", k.Source)
		}
		for _, f := range []struct{ key, p string }{{"kernel.config", k.Config}, {"kernel.patches", k.Patches}} {
			if f.p != "" && (path.IsAbs(f.p) || path.Clean(f.p) != f.p || f.p == ".." || strings.HasPrefix(f.p, "../")) {
				return r.Errorf(f.key, "%q: want a clean path inside the xeno source tree, like kernels/configs/xeno.config", f.p)
			}
		}
	}
	if len(k.Cmdline) > 2048 {
		return r.Errorf("kernel.cmdline", "cmdline is %d bytes, the boot protocol allows 2047", len(k.Cmdline))
	}
	return nil
}

// checkPackages checks [[packages]]: pinned, each once, each giving
// something, and every boot role known and given once.
func (r *Recipe) checkPackages() error {
	if len(r.Packages) > maxPackages {
		return r.Errorf("packages", "%d packages, at most %d", len(r.Packages), maxPackages)
	}
	seen := map[string]bool{r.Kernel.Name(): true}
	roles := map[string]bool{}
	for i, p := range r.Packages {
		key := fmt.Sprintf("packages.%d", i)
		if p.Name == "" {
			return r.Errorf(key+".name", "missing required key name in [[packages]]")
		}
		if err := checkDeb(key, p.Name, p.Version, p.SHA256, r); err != nil {
			return err
		}
		if seen[p.Name] {
			return r.Errorf(key+".name", "package %s is listed twice", p.Name)
		}
		seen[p.Name] = true
		if len(p.Paths) == 0 && len(p.Boot) == 0 {
			return r.Errorf(key, "package %s: give paths = [...] or a boot table, or it adds nothing", p.Name)
		}
		if len(p.Paths) > maxPaths {
			return r.Errorf(key+".paths", "%d paths, at most %d", len(p.Paths), maxPaths)
		}
		for _, pa := range p.Paths {
			if err := checkAbs(pa); err != nil {
				return r.Errorf(key+".paths", "path %q: %v", pa, err)
			}
		}
		if p.Dest != "" {
			if err := checkAbs(p.Dest); err != nil {
				return r.Errorf(key+".dest", "dest %q: %v", p.Dest, err)
			}
		}
		for role, pa := range p.Boot {
			if !slices.Contains(images.BootRoles(), role) {
				return r.Errorf(key+".boot."+role, "unknown boot role %q (want %s)", role, strings.Join(images.BootRoles(), ", "))
			}
			if roles[role] {
				return r.Errorf(key+".boot."+role, "boot role %s given twice", role)
			}
			roles[role] = true
			if err := checkAbs(pa); err != nil {
				return r.Errorf(key+".boot."+role, "path %q: %v", pa, err)
			}
		}
	}
	return nil
}

// checkImagePaths checks [[go]] and [[files]], which write image paths
// that no two may share.
func (r *Recipe) checkImagePaths() error {
	dests := map[string]string{}
	claim := func(dest, key string) error {
		if prev, ok := dests[dest]; ok {
			return r.Errorf(key, "%s is already written by %s (line %d)", dest, prev, r.Line(prev))
		}
		dests[dest] = key
		return nil
	}
	for i, g := range r.Go {
		key := fmt.Sprintf("go.%d", i)
		if !goPkgRE.MatchString(g.Package) || strings.Contains(g.Package, "..") {
			return r.Errorf(key+".package", "package %q: want a package path of this module such as \"./cmd/xeno-init\"", g.Package)
		}
		if err := checkAbs(g.Dest); err != nil {
			return r.Errorf(key+".dest", "dest %q: %v", g.Dest, err)
		}
		if err := claim(g.Dest, key+".dest"); err != nil {
			return err
		}
	}
	if len(r.Files) > maxFiles {
		return r.Errorf("files", "%d files, at most %d", len(r.Files), maxFiles)
	}
	for i, f := range r.Files {
		key := fmt.Sprintf("files.%d", i)
		if err := checkAbs(f.Path); err != nil {
			return r.Errorf(key+".path", "path %q: %v", f.Path, err)
		}
		if (f.Contents == "") == (f.Source == "") {
			return r.Errorf(key, "file %s: give exactly one of contents or source", f.Path)
		}
		if len(f.Contents) > MaxFileSize {
			return r.Errorf(key+".contents", "contents are %d bytes, more than the limit of %d", len(f.Contents), MaxFileSize)
		}
		if f.Mode < 0 || f.Mode > 0o7777 {
			return r.Errorf(key+".mode", "mode %#o: want permission bits such as 0o644", f.Mode)
		}
		if err := claim(f.Path, key+".path"); err != nil {
			return err
		}
	}
	return nil
}

func (r *Recipe) checkInit() error {
	if len(r.Init.Run) > 0 && !path.IsAbs(r.Init.Run[0]) {
		return r.Errorf("init.run", "run %q: the program must be an absolute path", r.Init.Run[0])
	}
	return nil
}

// checkInitramfs checks [initramfs] and fills in its default compression.
func (r *Recipe) checkInitramfs() error {
	switch r.Initramfs.Compression {
	case "":
		r.Initramfs.Compression = "gzip"
	case "gzip", "zstd", "none":
	default:
		return r.Errorf("initramfs.compression", "compression %q: want gzip, zstd or none", r.Initramfs.Compression)
	}
	if len(r.Initramfs.Modules) > maxModules {
		return r.Errorf("initramfs.modules", "%d modules, at most %d", len(r.Initramfs.Modules), maxModules)
	}
	if r.Kernel.Source != "" && len(r.Initramfs.Modules) > 0 {
		return r.Errorf("initramfs.modules", "a kernel built from kernel.source has its drivers built in and no modules; drop initramfs.modules or set the options in kernel.config")
	}
	for _, m := range r.Initramfs.Modules {
		if !moduleRE.MatchString(m) {
			return r.Errorf("initramfs.modules", "module name %q: want a name such as virtio_blk", m)
		}
	}
	return nil
}

// checkNetwork checks [network] and fills in its default interface.
func (r *Recipe) checkNetwork() error {
	n := &r.Network
	if n.Address == "" {
		if n.Gateway != "" || n.Interface != "" {
			return r.Errorf("network", "[network] without address: give the guest's address, e.g. address = \"10.0.2.15/24\"")
		}
		return nil
	}
	if _, err := r.netParam(); err != nil {
		return err
	}
	if n.Interface == "" {
		n.Interface = "eth0"
	}
	if c := r.Cmdline(); len(c) > 2047 {
		return r.Errorf("network", "the kernel command line with [network]'s ip= is %d bytes, the boot protocol allows 2047", len(c))
	}
	return nil
}

// netParam is [network] as the kernel's ip= parameter.
func (r *Recipe) netParam() (ipparam.Config, error) {
	n := r.Network
	p, err := ipparam.ParseAddress(n.Address)
	if err != nil {
		return ipparam.Config{}, r.Errorf("network.address", "address %v", err)
	}
	c := ipparam.Config{Addr: p, Device: n.Interface}
	if c.Device == "" {
		c.Device = "eth0"
	}
	if !ifnameRE.MatchString(c.Device) {
		return c, r.Errorf("network.interface", "interface %q: want a guest interface name such as eth0", n.Interface)
	}
	if n.Gateway != "" {
		if c.Gateway, err = ipparam.ParseGateway(n.Gateway, p); err != nil {
			return c, r.Errorf("network.gateway", "%v", err)
		}
	}
	return c, nil
}

var ifnameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)

// Cmdline is the image's kernel command line: [kernel] cmdline, then
// [network]'s ip= parameter if the recipe has one.
func (r *Recipe) Cmdline() string {
	if r.Network.Address == "" {
		return r.Kernel.Cmdline
	}
	c, err := r.netParam()
	if err != nil {
		return r.Kernel.Cmdline // validate refuses such a recipe
	}
	return strings.TrimSpace(r.Kernel.Cmdline + " " + c.String())
}

// checkOutputs checks [[outputs]] against images.Formats: known, each
// once, and with the boot files each needs given by some package.
func (r *Recipe) checkOutputs() error {
	names := images.FormatNames()
	if len(r.Outputs) == 0 {
		return r.Errorf("outputs", "no [[outputs]]: give at least one format (%s)", strings.Join(names, ", "))
	}
	roles := map[string]bool{}
	for _, p := range r.Packages {
		for role := range p.Boot {
			roles[role] = true
		}
	}
	formats := map[string]bool{}
	for i, o := range r.Outputs {
		key := fmt.Sprintf("outputs.%d.format", i)
		if o.Format == "" {
			return r.Errorf(key, "missing required key format in [[outputs]]")
		}
		f, ok := images.FindFormat(o.Format)
		if !ok {
			return r.Errorf(key, "format %q: want %s or %s", o.Format, strings.Join(names[:len(names)-1], ", "), names[len(names)-1])
		}
		for _, role := range f.Boot {
			if !roles[role] {
				return r.Errorf(key, "format %s needs a package with boot.%s", f.Name, role)
			}
		}
		if formats[o.Format] {
			return r.Errorf(key, "format %s is listed twice", o.Format)
		}
		formats[o.Format] = true
	}
	return nil
}

func checkDeb(key, name, version, sha string, r *Recipe) error {
	if !debNameRE.MatchString(name) {
		return r.Errorf(key+".name", "package name %q is not a Debian package name", name)
	}
	if version == "" {
		return r.Errorf(key+".version", "missing required key version for %s (pin the exact Debian version)", name)
	}
	if !debVersionRE.MatchString(version) || len(version) > 128 {
		return r.Errorf(key+".version", "version %q of %s is not a Debian version", version, name)
	}
	if sha == "" {
		return r.Errorf(key+".sha256", "missing required key sha256 for %s (the .deb's sha256; apt-cache show %s=%s prints it)", name, name, version)
	}
	if !sha256RE.MatchString(sha) {
		return r.Errorf(key+".sha256", "sha256 %q of %s: want 64 lower-case hex digits", sha, name)
	}
	return nil
}

// checkAbs accepts a clean absolute path inside the image.
func checkAbs(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case !strings.HasPrefix(p, "/"):
		return errors.New("must be absolute")
	case path.Clean(p) != p:
		return fmt.Errorf("not clean (want %q)", path.Clean(p))
	case len(p) > 1024:
		return errors.New("longer than 1024 bytes")
	case strings.ContainsAny(p, "\x00\n"):
		return errors.New("contains NUL or newline")
	}
	return nil
}

// HVPin is a parsed [hv] release: a whole stable line, or one release.
type HVPin struct {
	Line    bool // "1.2": any stable 1.2.x
	Release abi.Release
}

// ParseHVPin reads "1.2", "1.2.3" or "1.3.0-dev".
func ParseHVPin(s string) (HVPin, error) {
	if strings.Count(s, ".") == 1 {
		in, err := abi.ParseInterface(s)
		if err != nil || in.Dev {
			return HVPin{}, fmt.Errorf("hv release %q: want a stable line such as \"1.2\", a release \"1.2.3\" or a dev release \"1.3.0-dev\"", s)
		}
		return HVPin{Line: true, Release: abi.Release{Major: in.Major, Minor: in.Minor}}, nil
	}
	rel, err := abi.ParseRelease(s)
	if err != nil {
		return HVPin{}, fmt.Errorf("hv release %q: want a stable line such as \"1.2\", a release \"1.2.3\" or a dev release \"1.3.0-dev\"", s)
	}
	return HVPin{Release: rel}, nil
}

// Matches reports whether release rel satisfies the pin.
func (p HVPin) Matches(rel abi.Release) bool {
	if p.Line {
		return !rel.Dev && rel.Major == p.Release.Major && rel.Minor == p.Release.Minor
	}
	return rel == p.Release
}

func (p HVPin) String() string {
	if p.Line {
		return fmt.Sprintf("%d.%d", p.Release.Major, p.Release.Minor)
	}
	return p.Release.String()
}

// Debs lists every Debian input: the kernel first, then [[packages]] in
// recipe order.
func (r *Recipe) Debs() []Deb {
	out := []Deb{{Name: r.Kernel.Name(), Version: r.Kernel.Version, SHA256: r.Kernel.SHA256, Key: "kernel"}}
	for i, p := range r.Packages {
		out = append(out, Deb{Name: p.Name, Version: p.Version, SHA256: p.SHA256, Key: fmt.Sprintf("packages.%d", i)})
	}
	return out
}

// Deb is one pinned Debian package; Key is its place in the recipe.
type Deb struct {
	Name, Version, SHA256 string
	Key                   string
}

// Has reports whether the recipe asks for an output format.
func (r *Recipe) Has(format string) bool {
	for _, o := range r.Outputs {
		if o.Format == format {
			return true
		}
	}
	return false
}
