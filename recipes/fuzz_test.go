package recipes

import (
	"os"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the recipe parser: it must never
// panic, and an accepted recipe must satisfy the invariants the builder
// relies on.
func FuzzParse(f *testing.F) {
	for _, file := range []string{"minimal.toml", "host.toml"} {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(base))
	f.Add([]byte("[[packages]]\n[packages.boot]\nx = 1\n[a.b]\n'c'.\"d\" = [\n1,\n]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Parse("f.toml", b)
		if err != nil {
			if e, ok := err.(*Error); ok && e.Line < 1 {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		if r.Name == "" || r.Seed == "" || len(r.Outputs) == 0 || r.Epoch <= 0 {
			t.Fatalf("accepted an incomplete recipe: %+v", r)
		}
		for _, d := range r.Debs() {
			if len(d.SHA256) != 64 || d.Version == "" {
				t.Fatalf("accepted deb %+v", d)
			}
		}
	})
}
