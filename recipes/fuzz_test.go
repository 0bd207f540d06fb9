package recipes

import (
	"strings"
	"testing"
)

// maxFuzzInput bounds the inputs FuzzParse looks at. Go's minimizer tries
// every cut of an interesting input, about n²/2 parses of average length
// n/3, so its cost grows as n³: a mutated 2.4 KB shipped recipe took more
// than the whole 60 s budget to minimize, and the run reported ~11 execs.
// Every check is reachable with a few hundred bytes (the seeds in
// testdata/fuzz/FuzzParse show how), and the size limits have their own
// test (TestFileSizeLimit).
const maxFuzzInput = 1024

// FuzzParse feeds arbitrary bytes to the recipe parser: it must never
// panic, and an accepted recipe must satisfy the invariants the builder
// relies on. Its corpus is testdata/fuzz/FuzzParse only: small seeds keep
// minimization cheap.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > maxFuzzInput {
			return
		}
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
		if c := r.Cmdline(); len(c) > 2047 || (r.Network.Address != "") != strings.Contains(c, "ip=") && !strings.Contains(r.Kernel.Cmdline, "ip=") {
			t.Fatalf("accepted [network] %+v with command line %q", r.Network, c)
		}
		for _, d := range r.Debs() {
			if len(d.SHA256) != 64 || d.Version == "" {
				t.Fatalf("accepted deb %+v", d)
			}
		}
	})
}
