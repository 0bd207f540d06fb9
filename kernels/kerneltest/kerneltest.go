// Package kerneltest gives tests real kernels from the default kernel
// store: Debian's, fetched with apt the first time, and the xeno guest
// kernel, built the first time.
package kerneltest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/builder"
	"github.com/xeno-hv/xeno/debs"
	"github.com/xeno-hv/xeno/kernels"
)

// The two pinned point releases of the Debian 12 cloud kernel that tests
// use: consecutive security updates of one upstream version, so that
// tests can tell kernels apart that differ only in their Debian revision.
const (
	Cloud56        = "linux-image-6.1.0-56-cloud-amd64-unsigned"
	Cloud56Version = "6.1.192-2"
	Cloud56Release = "6.1.0-56-cloud-amd64"

	Cloud55        = "linux-image-6.1.0-55-cloud-amd64-unsigned"
	Cloud55Version = "6.1.192-1"
	Cloud55Release = "6.1.0-55-cloud-amd64"

	// Cloud612 is the Debian 12 backports 6.12 cloud kernel, whose payload
	// is zstd rather than LZ4.
	Cloud612        = "linux-image-6.12.115+deb12-cloud-amd64-unsigned"
	Cloud612Version = "6.12.115-2~deb12u1"
	Cloud612Release = "6.12.115+deb12-cloud-amd64"
)

// Kernel returns pkg=version from the default store
// (kernels.DefaultCacheDir), fetching and importing it if needed. The test
// skips, with apt's reason, when apt cannot download the package (no
// network, or the version left the archive); any other failure fails it.
func Kernel(t testing.TB, pkg, version string) *kernels.Kernel {
	t.Helper()
	s, err := kernels.Open(kernels.DefaultCacheDir())
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.Fetch(pkg, version)
	if errors.Is(err, debs.ErrApt) || errors.Is(err, debs.ErrNotFound) {
		t.Skipf("kerneltest: cannot get %s=%s with apt (no network, or apt-get update not run?): %v", pkg, version, err)
	}
	if err != nil {
		t.Fatalf("kerneltest: %v", err)
	}
	return k
}

// Xeno returns the xeno guest kernel of recipes/minimal.toml built for
// iface ("" for the recipe's own interface), from the default store: a
// cache hit after `make kernel`, else a build of minutes (about 30 s for
// another interface once the tree is kept). It needs a stamped test
// binary (make test), so that the interface is the tree's.
func Xeno(t testing.TB, iface string) *kernels.Kernel {
	t.Helper()
	if os.Getenv("XENO_BIN") == "" {
		t.Skip("XENO_BIN is not set; run `make test`, which builds the xeno kernel first")
	}
	if testing.Short() {
		t.Skip("-short: the xeno kernel takes minutes to build on a fresh machine")
	}
	recipe := MinimalRecipe()
	start := time.Now()
	k, err := builder.BuildKernel(context.Background(),
		builder.Options{Recipe: recipe, CacheDir: kernels.DefaultCacheDir()},
		builder.KernelOptions{Interface: iface})
	if err != nil {
		t.Fatalf("kerneltest: %v", err)
	}
	t.Logf("xeno kernel %s for interface %s (sha256 %.12s) in %v", k.Release, k.Interface, k.SHA256, time.Since(start).Round(time.Second))
	return k
}

// MinimalRecipe is the path of recipes/minimal.toml in this source tree:
// the pins of the xeno kernel and of busybox that tests use.
func MinimalRecipe() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(self), "..", "..", "recipes", "minimal.toml")
}
