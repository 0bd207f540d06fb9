package debs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/xeno-hv/xeno/internal/atomicfile"
)

// ErrNotFound is wrapped by Fetch when apt does not know the package or
// the version: a pinned version that has left the archive, or a typo.
var ErrNotFound = errors.New("package not found by apt")

// ErrApt is wrapped by Fetch when apt-get fails for any other reason,
// typically no network.
var ErrApt = errors.New("apt-get download failed")

// Fetch runs `apt-get download NAME=VERSION` in a temporary directory
// inside cacheDir/debs, then renames the .deb to
// cacheDir/debs/NAME_VERSION_ARCH.deb (apt's own file name). Next to it,
// NAME_VERSION_ARCH.deb.sha256 records the hash the file had when apt
// handed it over (apt itself checked it against the signed index).
//
// A file already in the cache is rehashed and reused only if it still has
// its recorded hash, and wantSHA256 when that is given; a mismatch is an
// error naming the file and both hashes, never a silent download. An
// empty version means apt's candidate version.
func Fetch(cacheDir, name, version, wantSHA256 string) (path string, sha string, err error) {
	return FetchContext(context.Background(), cacheDir, name, version, wantSHA256)
}

// FetchContext is Fetch, killing apt-get when ctx is done.
func FetchContext(ctx context.Context, cacheDir, name, version, wantSHA256 string) (path string, sha string, err error) {
	if name == "" || strings.ContainsAny(name, "=/ \t\n") || strings.HasPrefix(name, "-") {
		return "", "", fmt.Errorf("debs: bad package name %q", name)
	}
	if strings.ContainsAny(version, "=/ \t\n*?[") {
		return "", "", fmt.Errorf("debs: %s: bad version %q", name, version)
	}
	wantSHA256 = strings.ToLower(wantSHA256)
	if version == "" {
		if version, err = Candidate(name); err != nil {
			return "", "", err
		}
	}
	dir := filepath.Join(cacheDir, "debs")
	if p, sha, err := cached(dir, name, version, wantSHA256); err != nil || p != "" {
		return p, sha, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("debs: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, ".fetch-")
	if err != nil {
		return "", "", fmt.Errorf("debs: %w", err)
	}
	defer os.RemoveAll(tmp)
	// apt downloads as the _apt user when it can; a temp dir it may
	// write to avoids the "unsandboxed" warning when we run as root.
	_ = os.Chmod(tmp, 0o777)
	cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", name+"="+version)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := aptError(out.String())
		if notFound(msg) {
			return "", "", fmt.Errorf("debs: %s=%s: %w: %s", name, version, ErrNotFound, msg)
		}
		return "", "", fmt.Errorf("debs: %s=%s: %w (%v): %s", name, version, ErrApt, err, msg)
	}
	got, err := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if err != nil || len(got) != 1 {
		return "", "", fmt.Errorf("debs: %s=%s: apt-get download left %d .deb files, want 1", name, version, len(got))
	}
	sha, err = fileSHA256(got[0])
	if err != nil {
		return "", "", err
	}
	final := filepath.Join(dir, filepath.Base(got[0]))
	if wantSHA256 != "" && sha != wantSHA256 {
		return "", "", fmt.Errorf("debs: %s: hash mismatch: sha256 %s, want %s", filepath.Base(final), sha, wantSHA256)
	}
	if err := atomicfile.WriteFile(final+".sha256", []byte(sha+"  "+filepath.Base(final)+"\n"), 0o644); err != nil {
		return "", "", fmt.Errorf("debs: %w", err)
	}
	if err := os.Rename(got[0], final); err != nil {
		return "", "", fmt.Errorf("debs: %w", err)
	}
	return final, sha, nil
}

// cached looks for NAME_VERSION_*.deb in dir and verifies it.
func cached(dir, name, version, want string) (path, sha string, err error) {
	// apt writes an epoch's colon as %3a in file names.
	base := name + "_" + strings.ReplaceAll(version, ":", "%3a") + "_"
	matches, _ := filepath.Glob(filepath.Join(dir, base+"*.deb"))
	for _, p := range matches {
		rec, err := os.ReadFile(p + ".sha256")
		if err != nil {
			continue // a file we did not record is not trusted
		}
		recorded := strings.Fields(string(rec) + " ")[0]
		sha, err := fileSHA256(p)
		if err != nil {
			return "", "", err
		}
		if sha != recorded {
			return "", "", fmt.Errorf("debs: %s: hash mismatch: sha256 %s, recorded at download %s (delete it to fetch again)", p, sha, recorded)
		}
		if want != "" && sha != want {
			return "", "", fmt.Errorf("debs: %s: hash mismatch: sha256 %s, want %s", p, sha, want)
		}
		return p, sha, nil
	}
	return "", "", nil
}

// Candidate asks apt which version it would install of name.
func Candidate(name string) (string, error) {
	cmd := exec.Command("apt-cache", "policy", name)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("debs: %s: %w (apt-cache policy: %v): %s", name, ErrApt, err, aptError(string(out)))
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Candidate:"); ok {
			v = strings.TrimSpace(v)
			if v == "" || v == "(none)" {
				break
			}
			return v, nil
		}
	}
	return "", fmt.Errorf("debs: %s: %w: apt has no candidate version", name, ErrNotFound)
}

// aptError keeps apt's "E:" lines, which say what went wrong; the
// progress lines do not.
func aptError(out string) string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "E: ") {
			lines = append(lines, strings.TrimPrefix(l, "E: "))
		}
	}
	if len(lines) == 0 {
		return strings.TrimSpace(out)
	}
	return strings.Join(lines, "; ")
}

func notFound(msg string) bool {
	for _, s := range []string{"Unable to locate package", "was not found", "Can't select", "has no installation candidate", "Couldn't find any package"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("debs: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("debs: %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
