package recipes

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/xeno-hv/xeno/internal/atomicfile"
)

// Lock is RECIPE.lock: the exact versions and hashes a recipe resolved to.
// `xeno build` refuses any input that differs from it.
type Lock struct {
	Path string `toml:"-"`

	// GoVersion is `go env GOVERSION`: another toolchain compiles other bytes.
	GoVersion string `toml:"go_version"`
	// HVRelease is the exact release the hv and xeno-init are stamped as.
	HVRelease string `toml:"hv_release"`
	// HVBuildID is the build id of the tree at lock time. It is enforced
	// only for a -dev interface, where it is part of the interface; for a
	// stable one it records what the lock was made from (docs/recipes.md).
	HVBuildID string `toml:"hv_build_id"`
	// Interface is the guest interface xeno-init is pinned to.
	Interface string `toml:"interface"`

	Inputs []LockInput `toml:"inputs"`

	lines keyLines
}

// LockInput is one pinned input.
type LockInput struct {
	Kind    string `toml:"kind"` // "deb"
	Name    string `toml:"name"`
	Version string `toml:"version"`
	SHA256  string `toml:"sha256"`
}

// LockPath is where the lock of a recipe lives.
func LockPath(recipe string) string { return recipe + ".lock" }

// ErrNoLock is wrapped when a recipe has no lock file yet.
var ErrNoLock = errors.New("no lock file")

// ReadLock reads and checks a lock file.
func ReadLock(file string) (*Lock, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("recipes: %s: %w", file, ErrNoLock)
	}
	if err != nil {
		return nil, fmt.Errorf("recipes: %w", err)
	}
	if len(b) > MaxRecipeSize {
		return nil, &Error{File: file, Line: 1, Msg: "lock file larger than the limit"}
	}
	l := &Lock{Path: file, lines: scanLines(string(b))}
	md, err := toml.Decode(string(b), l)
	if err != nil {
		return nil, &Error{File: file, Line: 1, Msg: err.Error()}
	}
	if un := md.Undecoded(); len(un) > 0 {
		return nil, &Error{File: file, Line: l.lines.line(un[0].String()), Msg: fmt.Sprintf("unknown key %q", un[0].String())}
	}
	for i, in := range l.Inputs {
		key := fmt.Sprintf("inputs.%d", i)
		if in.Kind != "deb" || in.Name == "" || in.Version == "" || !sha256RE.MatchString(in.SHA256) {
			return nil, &Error{File: file, Line: l.lines.line(key), Msg: "input needs kind = \"deb\", name, version and a 64-digit sha256"}
		}
	}
	if l.GoVersion == "" || l.HVRelease == "" || l.Interface == "" {
		return nil, &Error{File: file, Line: 1, Msg: "lock needs go_version, hv_release and interface"}
	}
	return l, nil
}

// Line returns the line of an input's entry in the lock file.
func (l *Lock) Line(i int) int { return l.lines.line(fmt.Sprintf("inputs.%d", i)) }

// Find returns the locked input called name and its index.
func (l *Lock) Find(name string) (LockInput, int, bool) {
	for i, in := range l.Inputs {
		if in.Name == name {
			return in, i, true
		}
	}
	return LockInput{}, -1, false
}

// Encode renders the lock file, with a header saying what made it.
func (l *Lock) Encode() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# Written by `xeno lock`; `xeno build` refuses inputs that differ.\n")
	buf.WriteString("# Every sha256 is of the .deb as apt downloaded it.\n")
	if err := toml.NewEncoder(&buf).Encode(l); err != nil {
		return nil, fmt.Errorf("recipes: encoding lock: %w", err)
	}
	return buf.Bytes(), nil
}

// WriteFile writes the lock atomically.
func (l *Lock) WriteFile(file string) error {
	b, err := l.Encode()
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(file, b, 0o644); err != nil {
		return fmt.Errorf("recipes: %w", err)
	}
	return nil
}

// Check compares the recipe's pins with the lock: every deb must be in it
// with the same version and sha256, and nothing else.
func (l *Lock) Check(r *Recipe) error {
	debs := r.Debs()
	for _, d := range debs {
		in, i, ok := l.Find(d.Name)
		if !ok {
			return fmt.Errorf("%s:%d: %s=%s is not in the lock %s; run `xeno lock %s`", r.Path, r.Line(d.Key), d.Name, d.Version, l.Path, r.Path)
		}
		if in.Version != d.Version {
			return fmt.Errorf("%s:%d: %s: recipe pins version %s, lock %s:%d has %s; run `xeno lock %s`", r.Path, r.Line(d.Key+".version"), d.Name, d.Version, l.Path, l.Line(i), in.Version, r.Path)
		}
		if in.SHA256 != d.SHA256 {
			return fmt.Errorf("%s:%d: %s=%s: recipe pins sha256 %s, lock %s:%d has %s; run `xeno lock %s`", r.Path, r.Line(d.Key+".sha256"), d.Name, d.Version, d.SHA256, l.Path, l.Line(i), in.SHA256, r.Path)
		}
	}
	if len(l.Inputs) != len(debs) {
		var extra []string
		for _, in := range l.Inputs {
			found := false
			for _, d := range debs {
				found = found || d.Name == in.Name
			}
			if !found {
				extra = append(extra, in.Name)
			}
		}
		return fmt.Errorf("%s: locks %s, which %s does not use; run `xeno lock %s`", l.Path, strings.Join(extra, ", "), r.Path, r.Path)
	}
	return nil
}
