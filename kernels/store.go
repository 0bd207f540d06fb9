package kernels

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/xeno-hv/xeno/debs"
	"github.com/xeno-hv/xeno/internal/atomicfile"
	"github.com/xeno-hv/xeno/internal/hostfile"
	"github.com/xeno-hv/xeno/kernels/kformat"
)

// Store layout, under Dir:
//
//	debs/NAME_VERSION_ARCH.deb[.sha256]   packages as apt downloaded them
//	kernels/SHA256/kernel.json            metadata (Kernel)
//	kernels/SHA256/bzImage                the kernel, named by its sha256
//	kernels/SHA256/config, System.map     from /boot of the .deb
//	kernels/SHA256/modules/               lib/modules/RELEASE of the .deb
//	kernels/SHA256/vmlinux[.sha256]       decompressed once, on demand
//
// Every directory appears by rename, so a reader sees a kernel whole or
// not at all.
const (
	metaFile    = "kernel.json"
	bzImageFile = "bzImage"
	configFile  = "config"
	sysMapFile  = "System.map"
	modulesDir  = "modules"
	vmlinuxFile = "vmlinux"
	manifest    = "modules.sha256"
)

// Bounds on what an import reads from a package.
const (
	maxBzImage     = 128 << 20
	maxSystemMap   = 64 << 20
	maxModuleFile  = 256 << 20
	maxImportBytes = 4 << 30
)

// ErrHashMismatch is wrapped when a stored file no longer has the hash
// recorded at import.
var ErrHashMismatch = errors.New("hash mismatch")

// ErrNoKernel is wrapped when a package holds no /boot/vmlinuz-*.
var ErrNoKernel = errors.New("no kernel inside (no /boot/vmlinuz-*)")

// DefaultCacheDir is $XENO_CACHE, else $XDG_CACHE_HOME/xeno, else
// ~/.cache/xeno.
func DefaultCacheDir() string {
	if d := os.Getenv("XENO_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "xeno")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".cache", "xeno")
	}
	return filepath.Join(os.TempDir(), "xeno-cache")
}

// Store is a content-addressed kernel store rooted at Dir.
type Store struct {
	Dir string
	// Progress, when set, hears how long steps advance: what is being
	// done, and done/total bytes (total 0 when unknown, as for apt's
	// download). An import reports the unpacked bytes of the package
	// against its Installed-Size.
	Progress func(what string, done, total int64)
}

func (s *Store) progress(what string, done, total int64) {
	if s.Progress != nil {
		s.Progress(what, done, total)
	}
}

// Open returns the store at dir, creating it if needed.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("kernels: empty store directory")
	}
	if err := os.MkdirAll(filepath.Join(dir, "kernels"), 0o755); err != nil {
		return nil, fmt.Errorf("kernels: %w", err)
	}
	return &Store{Dir: dir}, nil
}

// Kernel is one stored kernel. Package, Version and DebSHA256 are empty
// for a bare bzImage.
type Kernel struct {
	Release      string              `json:"release"` // uname -r
	Package      string              `json:"package,omitempty"`
	Version      string              `json:"version,omitempty"`
	Architecture string              `json:"architecture,omitempty"`
	DebSHA256    string              `json:"deb_sha256,omitempty"`
	SHA256       string              `json:"sha256"` // of the bzImage
	Size         int64               `json:"size"`
	Protocol     string              `json:"protocol"`
	Compression  kformat.Compression `json:"compression"`
	Banner       string              `json:"banner"`
	ConfigSHA256 string              `json:"config_sha256,omitempty"`
	Modules      int                 `json:"modules"` // number of .ko files
	// ModulesSHA256 is the hash of modules.sha256, the manifest of every
	// file under modules/ with its own hash.
	ModulesSHA256 string `json:"modules_sha256,omitempty"`
	// For a kernel built by Build: the linux-source package=version, the
	// interface it is built for, the build key (a hash of everything
	// below and of the interface and epoch), the compiler and linker, and
	// every input file with its hash.
	Source    string       `json:"source,omitempty"`
	Interface string       `json:"interface,omitempty"`
	BuildKey  string       `json:"build_key,omitempty"`
	Toolchain string       `json:"toolchain,omitempty"`
	Inputs    []BuildInput `json:"inputs,omitempty"`

	dir string
}

// Dir is the kernel's directory in the store.
func (k *Kernel) Dir() string { return k.dir }

// BzImagePath is the stored bzImage. Get and Verify check its hash.
func (k *Kernel) BzImagePath() string { return filepath.Join(k.dir, bzImageFile) }

// ConfigPath is the stored kernel config, or "" for a bare bzImage.
func (k *Kernel) ConfigPath() string {
	if k.ConfigSHA256 == "" {
		return ""
	}
	return filepath.Join(k.dir, configFile)
}

// ModulesDir is the root of the kernel's lib/modules/RELEASE tree, or ""
// when the kernel came without modules.
func (k *Kernel) ModulesDir() string {
	if k.Modules == 0 {
		return ""
	}
	return filepath.Join(k.dir, modulesDir)
}

// Verify rehashes the stored bzImage (and config) against the hashes
// recorded at import.
func (k *Kernel) Verify() error {
	if err := verifyFile(k.BzImagePath(), k.SHA256); err != nil {
		return err
	}
	if k.ConfigSHA256 != "" {
		return verifyFile(filepath.Join(k.dir, configFile), k.ConfigSHA256)
	}
	return nil
}

// BzImage returns the verified bzImage bytes.
func (k *Kernel) BzImage() ([]byte, error) {
	b, err := os.ReadFile(k.BzImagePath())
	if err != nil {
		return nil, fmt.Errorf("kernels: %w", err)
	}
	if sum := sha256Hex(b); sum != k.SHA256 {
		return nil, fmt.Errorf("kernels: %s: %w: sha256 %s, recorded %s", k.BzImagePath(), ErrHashMismatch, sum, k.SHA256)
	}
	return b, nil
}

// Header parses the verified bzImage's setup header.
func (k *Kernel) Header() (*kformat.SetupHeader, error) {
	b, err := k.BzImage()
	if err != nil {
		return nil, err
	}
	h, err := kformat.ParseSetupHeader(b)
	if err != nil {
		return nil, fmt.Errorf("kernels: %s: %w", k.BzImagePath(), err)
	}
	return h, nil
}

// Config parses the verified kernel config; nil for a bare bzImage.
func (k *Kernel) Config() (Config, error) {
	if k.ConfigSHA256 == "" {
		return nil, nil
	}
	p := filepath.Join(k.dir, configFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("kernels: %w", err)
	}
	if sum := sha256Hex(b); sum != k.ConfigSHA256 {
		return nil, fmt.Errorf("kernels: %s: %w: sha256 %s, recorded %s", p, ErrHashMismatch, sum, k.ConfigSHA256)
	}
	return ParseConfig(p, b)
}

// Vmlinux returns the path of the decompressed kernel ELF. It is made
// once per bzImage and kept beside it with its sha256; each call checks
// the cached file against that hash, and the bzImage against its own.
func (k *Kernel) Vmlinux() (string, error) {
	p := filepath.Join(k.dir, vmlinuxFile)
	if rec, err := os.ReadFile(p + ".sha256"); err == nil {
		want := strings.TrimSpace(string(rec))
		if err := verifyFile(p, want); err == nil {
			return p, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
	}
	b, err := k.BzImage()
	if err != nil {
		return "", err
	}
	v, err := kformat.Decompress(b)
	if err != nil {
		return "", fmt.Errorf("kernels: %s: %w", k.BzImagePath(), err)
	}
	// The file first, then the hash that vouches for it: a reader that
	// finds the hash finds the file it describes.
	if err := atomicfile.WriteFile(p, v, 0o644); err != nil {
		return "", fmt.Errorf("kernels: %w", err)
	}
	if err := atomicfile.WriteFile(p+".sha256", []byte(sha256Hex(v)+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("kernels: %w", err)
	}
	return p, nil
}

// ELF parses the cached vmlinux.
func (k *Kernel) ELF() (*kformat.ELFInfo, error) {
	p, err := k.Vmlinux()
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("kernels: %w", err)
	}
	info, err := kformat.ParseELF(b)
	if err != nil {
		return nil, fmt.Errorf("kernels: %s: %w", p, err)
	}
	return info, nil
}

func (s *Store) kernelsDir() string { return filepath.Join(s.Dir, "kernels") }

// lock serialises imports: go test runs packages in parallel, and several
// of them import the same kernel into the default cache.
func (s *Store) lock() (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(s.kernelsDir(), ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("kernels: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("kernels: lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// load reads the metadata of the kernel stored under sha.
func (s *Store) load(sha string) (*Kernel, error) {
	dir := filepath.Join(s.kernelsDir(), sha)
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return nil, fmt.Errorf("kernels: %w", err)
	}
	var k Kernel
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("kernels: %s: %w", filepath.Join(dir, metaFile), err)
	}
	if k.SHA256 != sha {
		return nil, fmt.Errorf("kernels: %s: records sha256 %s but is stored under %s", filepath.Join(dir, metaFile), k.SHA256, sha)
	}
	k.dir = dir
	return &k, nil
}

// List returns the stored kernels sorted by release, then version. It
// reads metadata only; Get verifies hashes.
func (s *Store) List() ([]*Kernel, error) {
	ents, err := os.ReadDir(s.kernelsDir())
	if err != nil {
		return nil, fmt.Errorf("kernels: %w", err)
	}
	var out []*Kernel
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		k, err := s.load(e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Release != out[j].Release {
			return out[i].Release < out[j].Release
		}
		return out[i].Version < out[j].Version
	})
	return out, nil
}

// Get finds one kernel by uname -r, package name, PACKAGE=VERSION or a
// prefix (at least 6 hex digits) of its bzImage sha256, and verifies it.
func (s *Store) Get(nameOrRelease string) (*Kernel, error) {
	all, err := s.List()
	if err != nil {
		return nil, err
	}
	var found []*Kernel
	for _, k := range all {
		if k.Release == nameOrRelease || k.Package == nameOrRelease ||
			(k.Package != "" && k.Package+"="+k.Version == nameOrRelease) ||
			(len(nameOrRelease) >= 6 && strings.HasPrefix(k.SHA256, strings.ToLower(nameOrRelease))) {
			found = append(found, k)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("kernels: no kernel %q in %s (try `xeno kernel list`)", nameOrRelease, s.kernelsDir())
	case 1:
	default:
		var names []string
		for _, k := range found {
			names = append(names, fmt.Sprintf("%s (%s %s, sha256 %.12s)", k.Release, k.Package, k.Version, k.SHA256))
		}
		return nil, fmt.Errorf("kernels: %q is ambiguous: %s", nameOrRelease, strings.Join(names, ", "))
	}
	if err := found[0].Verify(); err != nil {
		return nil, err
	}
	return found[0], nil
}

// Fetch downloads PACKAGE=VERSION with apt (version "" means apt's
// candidate) and imports it. A kernel already imported from that package
// version is verified and returned without touching apt-get download.
func (s *Store) Fetch(pkg, version string) (*Kernel, error) {
	if version == "" {
		v, err := debs.Candidate(pkg)
		if err != nil {
			return nil, err
		}
		version = v
	}
	if k, err := s.stored(pkg, version); k != nil || err != nil {
		return k, err
	}
	// The first of several processes fetching the same kernel downloads
	// and imports it; the others wait here and then find it stored.
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if k, err := s.stored(pkg, version); k != nil || err != nil {
		return k, err
	}
	s.progress(fmt.Sprintf("apt-get download %s=%s", pkg, version), 0, 0)
	p, _, err := debs.Fetch(s.Dir, pkg, version, "")
	if err != nil {
		return nil, err
	}
	pkgInfo, err := debs.Open(p)
	if err != nil {
		return nil, err
	}
	return s.importDeb(pkgInfo)
}

// stored returns the verified kernel imported from pkg=version, or nil.
func (s *Store) stored(pkg, version string) (*Kernel, error) {
	all, err := s.List()
	if err != nil {
		return nil, err
	}
	for _, k := range all {
		if k.Package == pkg && k.Version == version && !k.needsManifest() {
			if err := k.Verify(); err != nil {
				return nil, err
			}
			return k, nil
		}
	}
	return nil, nil
}

// ImportDeb imports a Debian linux-image package: /boot/vmlinuz-RELEASE,
// config-RELEASE, System.map-RELEASE and lib/modules/RELEASE/. RELEASE
// must agree with the version string inside the bzImage.
func (s *Store) ImportDeb(debPath string) (*Kernel, error) {
	pkg, err := debs.Open(debPath)
	if err != nil {
		return nil, err
	}
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	return s.importDeb(pkg)
}

// importDeb is ImportDeb with the store lock held.
func (s *Store) importDeb(pkg *debs.Package) (*Kernel, error) {
	debPath := pkg.Path
	all, err := s.List()
	if err != nil {
		return nil, err
	}
	for _, k := range all {
		if k.DebSHA256 == pkg.SHA256 && !k.needsManifest() {
			return k, k.Verify()
		}
	}
	tmp, err := os.MkdirTemp(s.kernelsDir(), ".import-")
	if err != nil {
		return nil, fmt.Errorf("kernels: %w", err)
	}
	defer os.RemoveAll(tmp)
	x := &extractor{dir: tmp, deb: debPath, modHashes: map[string]string{}}
	if err := os.Mkdir(filepath.Join(tmp, modulesDir), 0o755); err != nil {
		return nil, fmt.Errorf("kernels: %w", err)
	}
	what := "importing " + filepath.Base(debPath)
	var total, done int64
	if kib, err := strconv.ParseInt(pkg.Control["Installed-Size"], 10, 64); err == nil && kib > 0 {
		total = kib << 10
	}
	s.progress(what, 0, total)
	err = pkg.Walk(func(hdr *tar.Header, r io.Reader) error {
		done += hdr.Size
		s.progress(what, min(done, total), total)
		return x.entry(hdr, r)
	})
	if err != nil {
		return nil, err
	}
	s.progress(what, total, total)
	if x.release == "" {
		return nil, fmt.Errorf("kernels: %s: %w", debPath, ErrNoKernel)
	}
	if x.modRelease != "" && x.modRelease != x.release {
		return nil, fmt.Errorf("kernels: %s: modules are for %s but the kernel is %s", debPath, x.modRelease, x.release)
	}
	k, err := describe(filepath.Join(tmp, bzImageFile), debPath+":/boot/vmlinuz-"+x.release)
	if err != nil {
		return nil, err
	}
	if k.Release != x.release {
		return nil, fmt.Errorf("kernels: %s: /boot/vmlinuz-%s says it is %q inside", debPath, x.release, k.Release)
	}
	k.Package = pkg.Control["Package"]
	k.Version = pkg.Control["Version"]
	k.Architecture = pkg.Control["Architecture"]
	k.DebSHA256 = pkg.SHA256
	k.ConfigSHA256 = x.configSHA
	k.Modules = x.modules
	if len(x.modHashes) > 0 {
		m := x.manifest()
		if err := os.WriteFile(filepath.Join(tmp, manifest), m, 0o644); err != nil {
			return nil, fmt.Errorf("kernels: %w", err)
		}
		k.ModulesSHA256 = sha256Hex(m)
	}
	if x.configSHA != "" {
		b, err := os.ReadFile(filepath.Join(tmp, configFile))
		if err != nil {
			return nil, fmt.Errorf("kernels: %w", err)
		}
		if _, err := ParseConfig(debPath+":/boot/config-"+x.release, b); err != nil {
			return nil, err
		}
	}
	return s.commit(tmp, k)
}

// ImportBzImage imports a bare bzImage: no config, no modules.
func (s *Store) ImportBzImage(path string) (*Kernel, error) {
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	tmp, err := os.MkdirTemp(s.kernelsDir(), ".import-")
	if err != nil {
		return nil, fmt.Errorf("kernels: %w", err)
	}
	defer os.RemoveAll(tmp)
	// A FIFO or /dev/zero named as the kernel is refused, not waited on
	// or read without end.
	in, _, err := hostfile.OpenRegular(path, maxBzImage)
	if err != nil {
		return nil, fmt.Errorf("kernels: %w", err)
	}
	defer in.Close()
	if _, err := copyBounded(filepath.Join(tmp, bzImageFile), in, maxBzImage, path); err != nil {
		return nil, err
	}
	k, err := describe(filepath.Join(tmp, bzImageFile), path)
	if err != nil {
		return nil, err
	}
	if k.Release == "" {
		return nil, fmt.Errorf("kernels: %s: no kernel version string in the setup header", path)
	}
	if old, err := s.load(k.SHA256); err == nil {
		return old, old.Verify() // the same bytes, perhaps with modules
	}
	return s.commit(tmp, k)
}

// describe checks the bzImage at p (name is for errors) whole and
// parses it into a Kernel.
func describe(p, name string) (*Kernel, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("kernels: %w", err)
	}
	// The store keeps whole kernels only: a truncated or bit-flipped one
	// is refused here with the reason, not found out at boot.
	if _, _, err := kformat.CheckImage(b); err != nil {
		return nil, fmt.Errorf("kernels: %s: %w", name, err)
	}
	k, _, err := Describe(b)
	if err != nil {
		return nil, fmt.Errorf("kernels: %s: %w", name, err)
	}
	return k, nil
}

// Describe parses bzImage b into what the store would record of it, and
// returns its setup header too. The error names no file.
func Describe(b []byte) (*Kernel, *kformat.SetupHeader, error) {
	h, err := kformat.ParseSetupHeader(b)
	if err != nil {
		return nil, nil, err
	}
	return &Kernel{
		Release:     h.Release(),
		SHA256:      sha256Hex(b),
		Size:        int64(len(b)),
		Protocol:    kformat.ProtocolString(h.Version),
		Compression: kformat.DetectCompression(h.Payload(b)),
		Banner:      h.KernelVersion,
	}, h, nil
}

// commit writes k's metadata into the staged directory tmp and renames it
// into place. A kernel already stored under the same sha256 without
// modules is replaced, so importing the .deb after the bare bzImage
// completes it.
func (s *Store) commit(tmp string, k *Kernel) (*Kernel, error) {
	meta, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("kernels: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, metaFile), append(meta, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("kernels: %w", err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("kernels: %w", err)
	}
	final := filepath.Join(s.kernelsDir(), k.SHA256)
	if old, err := s.load(k.SHA256); err == nil {
		if k.DebSHA256 == "" || (old.DebSHA256 != "" && !old.needsManifest()) {
			return old, old.Verify()
		}
		trash, err := os.MkdirTemp(s.kernelsDir(), ".old-")
		if err != nil {
			return nil, fmt.Errorf("kernels: %w", err)
		}
		defer os.RemoveAll(trash)
		if err := os.Rename(final, filepath.Join(trash, "k")); err != nil {
			return nil, fmt.Errorf("kernels: %w", err)
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, fmt.Errorf("kernels: %w", err)
	}
	k.dir = final
	return k, nil
}

// needsManifest reports an entry imported before modules.sha256 existed;
// importing its .deb again replaces it.
func (k *Kernel) needsManifest() bool { return k.Modules > 0 && k.ModulesSHA256 == "" }

// extractor stages the parts of a linux-image package that the store keeps.
type extractor struct {
	dir, deb   string
	release    string // from /boot/vmlinuz-RELEASE
	modRelease string // from lib/modules/RELEASE
	configSHA  string
	modHashes  map[string]string // path under modules/ -> sha256
	modules    int
	total      int64
}

func (x *extractor) entry(hdr *tar.Header, r io.Reader) error {
	name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
	fail := func(format string, args ...any) error {
		return fmt.Errorf("kernels: %s: %s: %s", x.deb, hdr.Name, fmt.Sprintf(format, args...))
	}
	switch file, rel := bootEntry(hdr); file {
	case bzImageFile:
		if x.release != "" {
			return fail("a second kernel in one package (already have vmlinuz-%s)", x.release)
		}
		x.release = rel
		_, err := x.copy(bzImageFile, r, hdr, maxBzImage)
		return err
	case configFile:
		sum, err := x.copy(configFile, r, hdr, maxConfig)
		x.configSHA = sum
		return err
	case sysMapFile:
		_, err := x.copy(sysMapFile, r, hdr, maxSystemMap)
		return err
	}
	rest, ok := strings.CutPrefix(name, "lib/modules/")
	if !ok {
		return nil // docs, bug-report scripts: not the store's business
	}
	rel, sub, _ := strings.Cut(rest, "/")
	if x.modRelease == "" {
		x.modRelease = rel
	} else if rel != x.modRelease {
		return fail("modules for two releases, %s and %s", x.modRelease, rel)
	}
	if sub == "" {
		return nil
	}
	dst := path.Join(modulesDir, sub)
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := os.MkdirAll(filepath.Join(x.dir, dst), 0o755); err != nil {
			return fmt.Errorf("kernels: %w", err)
		}
	case tar.TypeReg:
		sum, err := x.copy(dst, r, hdr, maxModuleFile)
		if err != nil {
			return err
		}
		x.modHashes[sub] = sum
		if isModule(sub) {
			x.modules++
		}
	case tar.TypeLink:
		target := strings.TrimPrefix(path.Clean("/"+hdr.Linkname), "/")
		tsub, ok := strings.CutPrefix(target, "lib/modules/"+x.modRelease+"/")
		if !ok {
			return fail("hard link to %s, outside the modules tree", hdr.Linkname)
		}
		if err := os.Link(filepath.Join(x.dir, modulesDir, tsub), filepath.Join(x.dir, dst)); err != nil {
			return fmt.Errorf("kernels: %s: %w", x.deb, err)
		}
		sum, ok := x.modHashes[tsub]
		if !ok {
			return fail("hard link to %s, which is not a file stored before it", hdr.Linkname)
		}
		x.modHashes[sub] = sum
		if isModule(sub) {
			x.modules++
		}
	}
	// Symlinks (build/, source/ in some releases) point outside the
	// package and are not kept.
	return nil
}

// manifest lists every stored module file with its sha256, sorted, in
// sha256sum's format.
func (x *extractor) manifest() []byte {
	names := make([]string, 0, len(x.modHashes))
	for n := range x.modHashes {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s  %s\n", x.modHashes[n], n)
	}
	return []byte(b.String())
}

// copy writes one archive entry to rel under the staging directory,
// bounded by limit and by the import's total, and returns its sha256.
func (x *extractor) copy(rel string, r io.Reader, hdr *tar.Header, limit int64) (string, error) {
	if hdr.Size > limit {
		return "", fmt.Errorf("kernels: %s: %s is %d bytes, more than the %d allowed", x.deb, hdr.Name, hdr.Size, limit)
	}
	x.total += hdr.Size
	if x.total > maxImportBytes {
		return "", fmt.Errorf("kernels: %s: more than %d bytes to import", x.deb, int64(maxImportBytes))
	}
	dst := filepath.Join(x.dir, rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", fmt.Errorf("kernels: %w", err)
	}
	return copyBounded(dst, r, limit, x.deb+":"+hdr.Name)
}

// copyBounded copies r into a new file dst, refusing more than limit
// bytes, and returns the sha256 of what it wrote.
func copyBounded(dst string, r io.Reader, limit int64, name string) (string, error) {
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return "", fmt.Errorf("kernels: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, limit+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("kernels: %s: %w", name, err)
	}
	if n > limit {
		return "", fmt.Errorf("kernels: %s: more than %d bytes", name, limit)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func isModule(name string) bool {
	return strings.HasSuffix(name, ".ko") || strings.HasSuffix(name, ".ko.xz") || strings.HasSuffix(name, ".ko.zst")
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func verifyFile(p, want string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("kernels: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("kernels: %s: %w", p, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("kernels: %s: %w: sha256 %s, recorded %s", p, ErrHashMismatch, got, want)
	}
	return nil
}
