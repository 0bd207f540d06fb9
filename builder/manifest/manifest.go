// Package manifest is the build manifest: what xeno build made, from what,
// for which guest interface. The builder writes it beside its outputs as
// NAME.manifest.toml and into the initramfs at InitramfsPath; the
// toolstack reads the guest's interface back from either, before it
// creates a domain (docs/recipes.md).
package manifest

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/internal/hostfile"
)

const (
	// Suffix names the manifest beside a build's outputs: NAME + Suffix.
	Suffix = ".manifest.toml"
	// InitramfsPath is the manifest inside the initramfs.
	InitramfsPath = "/etc/xeno/manifest.toml"
	// MaxSize bounds what a reader takes in; a manifest is a few KiB.
	MaxSize = 1 << 20
)

// Manifest is one build's record. The copy inside the initramfs has no
// Outputs, Inputs or GoVersion: it is written before the outputs exist.
type Manifest struct {
	Name          string   `toml:"name"`
	Interface     string   `toml:"interface"`
	HVRelease     string   `toml:"hv_release"`
	HVBuildID     string   `toml:"hv_build_id"`
	Epoch         int64    `toml:"epoch"`
	GoVersion     string   `toml:"go_version,omitempty"`
	KernelRelease string   `toml:"kernel_release"`
	Cmdline       string   `toml:"cmdline"`
	Outputs       []Output `toml:"outputs,omitempty"`
	Inputs        []Input  `toml:"inputs,omitempty"`
}

// Output is one written file.
type Output struct {
	File   string `toml:"file"`
	Format string `toml:"format"`
	Size   int64  `toml:"size"`
	SHA256 string `toml:"sha256"`
}

// Input is one input of the build.
type Input struct {
	Kind    string `toml:"kind"` // deb, go, file, kernel-input
	Name    string `toml:"name"`
	Version string `toml:"version,omitempty"`
	SHA256  string `toml:"sha256"`
}

// Encode writes m as TOML after a one-line comment that says what the
// file is.
func (m *Manifest) Encode(comment string) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# " + comment + "\n")
	if err := toml.NewEncoder(&b).Encode(m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return b.Bytes(), nil
}

// ReadFile reads the manifest at path, at most MaxSize bytes of it. A
// missing file's error is os.ErrNotExist. Errors name no package: the
// caller knows what it was looking for.
func ReadFile(path string) (*Manifest, error) {
	// A manifest is found by its name beside a kernel: whatever has that
	// name must not block or make xl read without end.
	b, err := hostfile.ReadRegular(path, MaxSize)
	if err != nil {
		return nil, err
	}
	return Parse(b)
}

// Parse reads a manifest. Its errors name no file: the caller knows it.
func Parse(data []byte) (*Manifest, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("larger than %d bytes", MaxSize)
	}
	var m Manifest
	if _, err := toml.Decode(string(data), &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// GuestInterface is the interface the build's guest was made for. A dev
// interface names its hv build; a manifest that records it only as
// hv_build_id gets it from there.
func (m *Manifest) GuestInterface() (abi.Interface, error) {
	if m.Interface == "" {
		return abi.Interface{}, fmt.Errorf("manifest has no interface = \"MAJOR.MINOR\"")
	}
	in, err := abi.ParseInterface(m.Interface)
	if err != nil {
		return in, err
	}
	if in.Dev && in.BuildID == "" {
		in.BuildID = m.HVBuildID
	}
	return in, nil
}

// Beside lists where the manifest for a build output file may be:
// dir/NAME.manifest.toml for NAME the file name with and without its
// last extension (debian.initrd.gz -> debian.initrd, debian.initrd).
func Beside(file string) []string {
	dir, base := filepath.Split(file)
	out := []string{filepath.Join(dir, base+Suffix)}
	if ext := filepath.Ext(base); ext != "" {
		out = append(out, filepath.Join(dir, strings.TrimSuffix(base, ext)+Suffix))
	}
	return out
}
