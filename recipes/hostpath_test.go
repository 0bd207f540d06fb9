package recipes

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// hostTree makes DIR/outside/secret, and the recipe directory DIR/r with
// inside.txt, sub/deep.txt, a symlink inlink -> inside.txt that stays
// inside, a symlink link -> ../outside/secret that leads out, and a FIFO.
func hostTree(t *testing.T) (dir, rdir string) {
	t.Helper()
	dir = t.TempDir()
	rdir = filepath.Join(dir, "r")
	for _, d := range []string{filepath.Join(dir, "outside"), filepath.Join(rdir, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, s := range map[string]string{"outside/secret": "root:HASH:", "r/inside.txt": "in", "r/sub/deep.txt": "deep"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{"r/inlink": "inside.txt", "r/link": "../outside/secret", "r/sub/up": "../inside.txt"} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(rdir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, rdir
}

// writeSourceRecipe writes DIR/r.toml: base plus one [[files]] entry
// whose source line is line 30.
func writeSourceRecipe(t *testing.T, rdir, source string) string {
	t.Helper()
	src := base + "\n[[files]]\npath = \"/etc/f\"\nsource = " + tomlQuote(source) + "\n"
	rf := filepath.Join(rdir, "r.toml")
	if err := os.WriteFile(rf, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return rf
}

func tomlQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func TestSourceConfinedToRecipeDir(t *testing.T) {
	dir, rdir := hostTree(t)
	secret := filepath.Join(dir, "outside", "secret")
	refused := []struct {
		name, source, want string
	}{
		{"dot-dot escape, shadow-style", "../../../../../../../../etc/shadow", "leads out of the recipe's directory"},
		{"dot-dot escape to an existing file", "../outside/secret", "leads out of the recipe's directory"},
		{"dot-dot escape back in is fine, out is not", "sub/../../outside/secret", "leads out of the recipe's directory"},
		{"absolute path", secret, "is an absolute path outside the recipe's directory"},
		{"absolute /etc/shadow", "/etc/shadow", "is an absolute path outside the recipe's directory"},
		{"symlink leading out", "link", "is a symlink to " + secret},
		{"fifo", "fifo", "is not a regular file: "},
		{"directory", "sub", "is not a regular file"},
		{"missing", "nope", "no such file"},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			rf := writeSourceRecipe(t, rdir, c.source)
			_, err := LoadFile(rf)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("LoadFile: %v, want a *recipes.Error", err)
			}
			if e.File != rf || e.Line != 30 || !strings.Contains(e.Msg, c.want) {
				t.Fatalf("got %v, want %s:30: ...%s", err, rf, c.want)
			}
			if strings.Contains(c.want, "leads out") || strings.Contains(c.want, "absolute") {
				if !strings.Contains(e.Msg, "--allow-host-path") {
					t.Errorf("refusal %q does not name the opt-in", e.Msg)
				}
			}
		})
	}
	for _, source := range []string{"inside.txt", "sub/deep.txt", "inlink", "sub/up", "./sub/../inside.txt"} {
		rf := writeSourceRecipe(t, rdir, source)
		r, err := LoadFile(rf)
		if err != nil {
			t.Fatalf("source %q inside the recipe's tree refused: %v", source, err)
		}
		if _, err := r.ReadSource(0); err != nil {
			t.Fatalf("ReadSource(%q): %v", source, err)
		}
	}
}

func TestAllowHostPathAdmitsOnlyThatDir(t *testing.T) {
	dir, rdir := hostTree(t)
	secret := filepath.Join(dir, "outside", "secret")
	for _, source := range []string{secret, "../outside/secret", "link"} {
		rf := writeSourceRecipe(t, rdir, source)
		r, err := LoadFile(rf, filepath.Join(dir, "outside"))
		if err != nil {
			t.Fatalf("source %q with its directory allowed: %v", source, err)
		}
		data, err := r.ReadSource(0)
		if err != nil || string(data) != "root:HASH:" {
			t.Fatalf("ReadSource(%q) = %q, %v", source, data, err)
		}
	}
	// Allowing one directory does not open its neighbours.
	other := t.TempDir()
	rf := writeSourceRecipe(t, rdir, secret)
	if _, err := LoadFile(rf, other); err == nil || !strings.Contains(err.Error(), rf+":30:") {
		t.Fatalf("source outside the allowed %s: %v", other, err)
	}
	if _, err := LoadFile(rf, filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "allowed host path") {
		t.Fatalf("a missing allowed directory: %v", err)
	}
}

// A source checked at load time and swapped for a symlink before the
// build reads it is judged again, and refused.
func TestSourceSwappedAfterLoadRefused(t *testing.T) {
	dir, rdir := hostTree(t)
	rf := writeSourceRecipe(t, rdir, "sub/deep.txt")
	r, err := LoadFile(rf)
	if err != nil {
		t.Fatal(err)
	}
	deep := filepath.Join(rdir, "sub", "deep.txt")
	if err := os.Remove(deep); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "outside", "secret"), deep); err != nil {
		t.Fatal(err)
	}
	data, err := r.ReadSource(0)
	if err == nil || !strings.Contains(err.Error(), rf+":30:") || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("swapped source: %q, %v", data, err)
	}
	// A whole directory swapped for a link out is caught the same way.
	if err := os.Remove(deep); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(rdir, "sub")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "outside"), filepath.Join(rdir, "sub")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "outside", "secret"), filepath.Join(dir, "outside", "deep.txt")); err != nil {
		t.Fatal(err)
	}
	if data, err := r.ReadSource(0); err == nil || !strings.Contains(err.Error(), rf+":30:") {
		t.Fatalf("source through a swapped directory: %q, %v", data, err)
	}
}
