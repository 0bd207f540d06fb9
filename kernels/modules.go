package kernels

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// maxModule bounds a decompressed .ko read for its modinfo.
const maxModule = 64 << 20

// ModuleClosure returns the .ko files under modulesDir (a lib/modules/RELEASE
// root) that loading the named modules needs, dependencies first, so that
// loading them in order succeeds. Debian ships no modules.dep (depmod runs
// at install time), so dependencies come from each module's .modinfo
// "depends=" entry. Names may use '-' or '_' as the kernel treats them
// alike; a name built into the kernel (modules.builtin) needs no file and is
// skipped. .ko, .ko.xz and .ko.zst are read.
func ModuleClosure(modulesDir string, names []string) ([]string, error) {
	index, err := indexModules(modulesDir)
	if err != nil {
		return nil, err
	}
	builtin, err := readBuiltin(modulesDir)
	if err != nil {
		return nil, err
	}
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		name = modName(name)
		switch state[name] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("kernels: %s: module dependency cycle: %s", modulesDir, strings.Join(append(chain, name), " -> "))
		}
		p, ok := index[name]
		if !ok {
			if builtin[name] {
				state[name] = 2
				return nil
			}
			if len(chain) > 0 {
				return fmt.Errorf("kernels: %s: module %s (needed by %s) not found", modulesDir, name, chain[len(chain)-1])
			}
			return fmt.Errorf("kernels: %s: module %s not found", modulesDir, name)
		}
		state[name] = 1
		deps, err := moduleDepends(p)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, p)
		return nil
	}
	for _, n := range names {
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// modName normalises a module name as the kernel does: '-' is '_'.
func modName(s string) string { return strings.ReplaceAll(s, "-", "_") }

func moduleBase(p string) (string, bool) {
	base := filepath.Base(p)
	for _, ext := range []string{".ko", ".ko.xz", ".ko.zst"} {
		if n, ok := strings.CutSuffix(base, ext); ok {
			return modName(n), true
		}
	}
	return "", false
}

// indexModules maps module names to their files under dir.
func indexModules(dir string) (map[string]string, error) {
	if dir == "" {
		return nil, fmt.Errorf("kernels: no modules directory (a bare bzImage has no modules)")
	}
	index := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			if n, ok := moduleBase(p); ok {
				if prev, dup := index[n]; dup {
					return fmt.Errorf("module %s twice: %s and %s", n, prev, p)
				}
				index[n] = p
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("kernels: %s: %w", dir, err)
	}
	return index, nil
}

// readBuiltin reads modules.builtin (kernel/drivers/x/name.ko per line).
func readBuiltin(dir string) (map[string]bool, error) {
	f, err := os.Open(filepath.Join(dir, "modules.builtin"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kernels: %w", err)
	}
	defer f.Close()
	out := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if n, ok := moduleBase(strings.TrimSpace(sc.Text())); ok {
			out[n] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("kernels: %s: %w", f.Name(), err)
	}
	return out, nil
}

// ModuleInfo returns the key=value pairs of a module's .modinfo section;
// keys that repeat (alias, depends on some builds) keep every value.
func ModuleInfo(p string) (map[string][]string, error) {
	b, err := readModule(p)
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("kernels: %s: %w", p, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("kernels: %s: no .modinfo section", p)
	}
	if sec.Size > uint64(len(b)) {
		return nil, fmt.Errorf("kernels: %s: .modinfo of %d bytes in a %d-byte file", p, sec.Size, len(b))
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("kernels: %s: .modinfo: %w", p, err)
	}
	info := map[string][]string{}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if k, v, ok := strings.Cut(string(kv), "="); ok {
			info[k] = append(info[k], v)
		}
	}
	return info, nil
}

func moduleDepends(p string) ([]string, error) {
	info, err := ModuleInfo(p)
	if err != nil {
		return nil, err
	}
	var deps []string
	for _, v := range info["depends"] {
		for _, d := range strings.Split(v, ",") {
			if d = strings.TrimSpace(d); d != "" {
				deps = append(deps, d)
			}
		}
	}
	sort.Strings(deps) // the order loading needs comes from the walk, not modinfo
	return deps, nil
}

// readModule reads a .ko, decompressing .ko.xz and .ko.zst, bounded.
func readModule(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("kernels: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(p, ".xz"):
		xr, err := xz.NewReader(bufio.NewReader(f))
		if err != nil {
			return nil, fmt.Errorf("kernels: %s: %w", p, err)
		}
		r = xr
	case strings.HasSuffix(p, ".zst"):
		zr, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxModule))
		if err != nil {
			return nil, fmt.Errorf("kernels: %s: %w", p, err)
		}
		defer zr.Close()
		r = zr
	}
	b, err := io.ReadAll(io.LimitReader(r, maxModule+1))
	if err != nil {
		return nil, fmt.Errorf("kernels: %s: %w", p, err)
	}
	if len(b) > maxModule {
		return nil, fmt.Errorf("kernels: %s: more than %d bytes decompressed", p, maxModule)
	}
	return b, nil
}

// ModuleClosure is the package-level ModuleClosure over the kernel's
// modules, with every returned file checked against the manifest recorded
// at import.
func (k *Kernel) ModuleClosure(names []string) ([]string, error) {
	paths, err := ModuleClosure(k.ModulesDir(), names)
	if err != nil {
		return nil, err
	}
	if err := k.VerifyModules(paths); err != nil {
		return nil, err
	}
	return paths, nil
}

// VerifyModules checks files under ModulesDir against modules.sha256,
// whose own hash kernel.json records.
func (k *Kernel) VerifyModules(paths []string) error {
	mp := filepath.Join(k.dir, manifest)
	m, err := os.ReadFile(mp)
	if err != nil {
		return fmt.Errorf("kernels: %w", err)
	}
	if sum := sha256Hex(m); sum != k.ModulesSHA256 {
		return fmt.Errorf("kernels: %s: %w: sha256 %s, recorded %s", mp, ErrHashMismatch, sum, k.ModulesSHA256)
	}
	want := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(m)), "\n") {
		if sum, name, ok := strings.Cut(line, "  "); ok {
			want[name] = sum
		}
	}
	root := k.ModulesDir()
	for _, p := range paths {
		rel, err := filepath.Rel(root, p)
		if err != nil || strings.HasPrefix(rel, "..") {
			return fmt.Errorf("kernels: %s is not under %s", p, root)
		}
		sum, ok := want[filepath.ToSlash(rel)]
		if !ok {
			return fmt.Errorf("kernels: %s: not in %s", p, mp)
		}
		if err := verifyFile(p, sum); err != nil {
			return err
		}
	}
	return nil
}

// VerifyAll rehashes everything stored for the kernel: bzImage, config,
// the modules manifest and every file it lists, and the cached vmlinux.
func (k *Kernel) VerifyAll() error {
	if err := k.Verify(); err != nil {
		return err
	}
	if k.ModulesSHA256 != "" {
		var all []string
		err := filepath.WalkDir(k.ModulesDir(), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				all = append(all, p)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("kernels: %w", err)
		}
		if err := k.VerifyModules(all); err != nil {
			return err
		}
	}
	vm := filepath.Join(k.dir, vmlinuxFile)
	if rec, err := os.ReadFile(vm + ".sha256"); err == nil {
		return verifyFile(vm, strings.TrimSpace(string(rec)))
	}
	return nil
}
