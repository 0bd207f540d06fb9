package builder

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/internal/atomicfile"
)

const abiPkg = "github.com/xeno-hv/xeno/hv/abi"

// ldflags are the same for every Go program of an image: -X of a variable
// a program does not link is ignored, so hv, xl and xeno-init share them.
func (t *target) ldflags() string {
	return strings.Join([]string{
		"-buildid=",
		"-X", abiPkg + ".release=" + t.build.Release.String(),
		"-X", abiPkg + ".buildID=" + t.build.BuildID,
		"-X", abiPkg + ".changeset=" + t.build.Changeset,
		"-X", InitPinnedVar + "=" + t.iface.String(),
	}, " ")
}

// goEnv is the environment of `go build`: the host's, minus every GO*
// setting that changes the output, plus the ones that fix it.
func goEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "GOPATH", "GOCACHE", "GOMODCACHE", "GOPROXY", "GONOSUMDB", "GOPRIVATE", "GONOPROXY", "GOSUMDB", "GOINSECURE", "GOTMPDIR":
			env = append(env, kv)
		default:
			if !strings.HasPrefix(k, "GO") && !strings.HasPrefix(k, "CGO") {
				env = append(env, kv)
			}
		}
	}
	return append(env, "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOAMD64=v1",
		"GOFLAGS=-mod=readonly", "GOTOOLCHAIN=local", "GOEXPERIMENT=")
}

// sourceHash hashes every file of the module that can change a compiled
// program (Go, assembly, go.mod, go.sum), in sorted order. It keys the
// binary cache; scripts/buildid.sh hashes the same kinds of file for the
// build id.
func sourceHash(root string) (string, error) {
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", ".cache", "bin", "testdata", ".tools":
				return filepath.SkipDir
			}
			return nil
		}
		n := d.Name()
		if strings.HasSuffix(n, ".go") || strings.HasSuffix(n, ".s") || n == "go.mod" || n == "go.sum" {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("builder: hashing sources: %w", err)
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("builder: %w", err)
		}
		rel, _ := filepath.Rel(root, f)
		fmt.Fprintf(h, "%s %d\n", rel, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// compileGo builds one program of the module reproducibly, through a cache
// keyed by the source hash, the toolchain, the flags and the package.
func (b *build) compileGo(pkg string) (data []byte, cached bool, err error) {
	key := sha256.Sum256([]byte(strings.Join([]string{"go-v1", b.t.goVersion, b.srcHash, b.t.ldflags(), pkg}, "\x00")))
	file := filepath.Join(b.o.CacheDir, "build", "go", hex.EncodeToString(key[:]))
	if d, err := os.ReadFile(file); err == nil && !b.o.NoBuildCache {
		return d, true, nil
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return nil, false, fmt.Errorf("builder: %w", err)
	}
	// go build writes its output in place, so it writes into a directory
	// of its own and the cache takes the result whole.
	tmp, err := os.MkdirTemp(filepath.Dir(file), ".go-*")
	if err != nil {
		return nil, false, fmt.Errorf("builder: %w", err)
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "out")
	if _, err := runContext(b.ctx, b.t.root, goEnv(), "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", b.t.ldflags(), "-o", out, pkg); err != nil {
		return nil, false, fmt.Errorf("builder: compiling %s: %w", pkg, err)
	}
	d, err := os.ReadFile(out)
	if err != nil {
		return nil, false, fmt.Errorf("builder: %w", err)
	}
	if err := atomicfile.WriteFile(file, d, 0o644); err != nil {
		return nil, false, fmt.Errorf("builder: %w", err)
	}
	return d, false, nil
}

// interfaceOf is what a manifest records: "1.2" or "1.3-dev@BUILDID".
func interfaceOf(in abi.Interface) string { return in.String() }

func copyFile(dst io.Writer, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(dst, f)
	return err
}
