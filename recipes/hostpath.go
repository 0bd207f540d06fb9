package recipes

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/xeno-hv/xeno/internal/hostfile"
)

// A recipe is input, not code: it may read host files only from its own
// directory tree. The operator can admit more directories on the command
// line (xeno build --allow-host-path DIR); a recipe can never do so
// itself. See docs/recipes.md, "Host files".

// hostRoot is one directory host paths may lie in: as given (made
// absolute), to judge a path lexically before touching it, and with its
// symlinks resolved, to judge where a path really leads.
type hostRoot struct {
	lexical, real string
}

func newHostRoot(dir string) (hostRoot, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return hostRoot{}, err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return hostRoot{}, err
	}
	return hostRoot{lexical: abs, real: real}, nil
}

// within reports whether p lies in the tree at dir; both are absolute
// and clean.
func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && filepath.IsLocal(rel)
}

// hostRoots are the recipe's directory, then the operator's.
func (r *Recipe) hostRoots() ([]hostRoot, error) {
	own, err := newHostRoot(r.Dir)
	if err != nil {
		return nil, fmt.Errorf("recipes: %s: %w", r.Path, err)
	}
	return append([]hostRoot{own}, r.allow...), nil
}

// confinedOpen opens the host file that value names (relative to the
// recipe's directory), for reading: refused, at the line of key, if it is
// not a regular file in one of the recipe's host roots. It judges the
// path three times: as written, before anything is looked up (so a
// refused path is never even probed); with every symlink resolved; and
// as the kernel names the file it opened, so a symlink swapped in between
// cannot lead out either.
func (r *Recipe) confinedOpen(key, value string) (*os.File, error) {
	roots, err := r.hostRoots()
	if err != nil {
		return nil, err
	}
	outside := func(how string) error {
		return r.Errorf(key, "source %q %s the recipe's directory %s; a recipe may name host files only inside its own directory tree (xeno build --allow-host-path DIR admits another directory)", value, how, roots[0].lexical)
	}
	if value == "" || strings.ContainsRune(value, 0) {
		return nil, r.Errorf(key, "source %q: not a file name", value)
	}
	host := value
	if !filepath.IsAbs(host) {
		host = filepath.Join(roots[0].lexical, host)
	}
	host = filepath.Clean(host)
	if !r.inRoots(roots, host, false) {
		if filepath.IsAbs(value) {
			return nil, outside("is an absolute path outside")
		}
		return nil, outside("leads out of")
	}
	real, err := filepath.EvalSymlinks(host)
	if err != nil {
		return nil, r.Errorf(key, "source %q: %v", value, errors.Unwrap(err))
	}
	if !r.inRoots(roots, real, true) {
		return nil, outside(fmt.Sprintf("is a symlink to %s, outside", real))
	}
	// hostfile refuses, before any read, what is not a regular file (a
	// FIFO cannot hang the build) or is over the limit.
	f, _, err := hostfile.OpenRegular(real, MaxFileSize)
	switch {
	case errors.Is(err, hostfile.ErrTooLarge):
		return nil, r.Errorf(key, "source %q is more than the limit of %d bytes", value, MaxFileSize)
	case errors.Is(err, hostfile.ErrNotRegular), errors.Is(err, hostfile.ErrPseudo):
		return nil, r.Errorf(key, "source %q is not a regular file: %v", value, err)
	case err != nil:
		return nil, r.Errorf(key, "source %q: %v", value, err)
	}
	opened, err := openedPath(f, real)
	if err == nil && !r.inRoots(roots, opened, true) {
		err = outside(fmt.Sprintf("was swapped for %s, outside", opened))
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (r *Recipe) inRoots(roots []hostRoot, p string, real bool) bool {
	for _, root := range roots {
		dir := root.lexical
		if real {
			dir = root.real
		}
		if within(dir, p) {
			return true
		}
	}
	return false
}

// openedPath is the path the kernel gives the open file f, which was
// opened as name. Without /proc it resolves name again and requires the
// same file there: weaker, but still no open through a swapped link.
func openedPath(f *os.File, name string) (string, error) {
	if p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd()))); err == nil {
		return p, nil
	}
	again, err := filepath.EvalSymlinks(name)
	if err != nil {
		return "", fmt.Errorf("recipes: %s: %w", name, err)
	}
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("recipes: %s: %w", name, err)
	}
	st2, err := os.Stat(again)
	if err != nil || !os.SameFile(st, st2) {
		return "", fmt.Errorf("recipes: %s changed while it was opened", name)
	}
	return again, nil
}

// ReadSource reads the source of [[files]] entry i, confined as
// confinedOpen says. The builder calls it at build time, so a path that
// changed since LoadFile is judged again.
func (r *Recipe) ReadSource(i int) ([]byte, error) {
	key := fmt.Sprintf("files.%d.source", i)
	f, err := r.confinedOpen(key, r.Files[i].Source)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The file may grow after the Stat: read no more than the limit.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, r.Errorf(key, "source %q: %v", r.Files[i].Source, err)
	}
	if int64(len(data)) > MaxFileSize {
		return nil, r.Errorf(key, "source %q grew past the limit of %d bytes while being read", r.Files[i].Source, MaxFileSize)
	}
	return data, nil
}
