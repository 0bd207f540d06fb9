package kernels

import (
	"archive/tar"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/xeno-hv/xeno/debs"
)

// bootEntry says what a linux-image package's entry is to the store:
// bzImageFile for /boot/vmlinuz-RELEASE, configFile for config-RELEASE,
// sysMapFile for System.map-RELEASE, or "" for anything else. Both the
// import and ReadBoot take a package's kernel by this one rule.
func bootEntry(hdr *tar.Header) (file, release string) {
	name := path.Clean("/" + hdr.Name)
	if hdr.Typeflag != tar.TypeReg || path.Dir(name) != "/boot" {
		return "", ""
	}
	base := path.Base(name)
	for _, f := range []struct{ prefix, file string }{
		{"vmlinuz-", bzImageFile}, {"config-", configFile}, {"System.map-", sysMapFile},
	} {
		if rel, ok := strings.CutPrefix(base, f.prefix); ok {
			return f.file, rel
		}
	}
	return "", ""
}

// BootFiles are the kernel and config of a linux-image package, with
// their paths inside it ("/boot/vmlinuz-RELEASE"); Config is nil when the
// package has none.
type BootFiles struct {
	Kernel, Config         []byte
	KernelPath, ConfigPath string
}

// ReadBoot reads the kernel and config of the linux-image package at
// debPath without importing it.
func ReadBoot(debPath string) (*BootFiles, error) {
	pkg, err := debs.Open(debPath)
	if err != nil {
		return nil, err
	}
	var bf BootFiles
	err = pkg.Walk(func(hdr *tar.Header, r io.Reader) error {
		file, rel := bootEntry(hdr)
		var dst *[]byte
		var limit int64
		switch file {
		case bzImageFile:
			dst, limit, bf.KernelPath = &bf.Kernel, maxBzImage, "/boot/vmlinuz-"+rel
		case configFile:
			dst, limit, bf.ConfigPath = &bf.Config, maxConfig, "/boot/config-"+rel
		default:
			return nil
		}
		if hdr.Size > limit {
			return fmt.Errorf("kernels: %s: %s is %d bytes, more than the %d allowed", debPath, hdr.Name, hdr.Size, limit)
		}
		b, err := io.ReadAll(io.LimitReader(r, limit))
		*dst = b
		return err
	})
	if err != nil {
		return nil, err
	}
	if bf.Kernel == nil {
		return nil, fmt.Errorf("kernels: %s: %w", debPath, ErrNoKernel)
	}
	return &bf, nil
}
