package recipes

import "testing"

func TestScanLines(t *testing.T) {
	src := `# comment = 1
name = "x"
cmd = [
  "a]", # ] in a comment
  "b=c",
]
text = """
[not.a.table]
x = 1
"""
[kernel]
"package" = "p"

[[packages]]
name = "a"
boot.isolinux_bin = "/x"

[[packages]]
name = "b"
[packages.boot]
ldlinux_c32 = "/y"
`
	kl := scanLines(src)
	want := map[string]int{
		"name": 2, "cmd": 3, "text": 7, "kernel": 11, "kernel.package": 12,
		"packages.0": 14, "packages.0.name": 15, "packages.0.boot.isolinux_bin": 16,
		"packages.1": 18, "packages.1.name": 19, "packages.1.boot": 20, "packages.1.boot.ldlinux_c32": 21,
		// Without indices, the first occurrence: what Undecoded names.
		"packages.name": 15,
	}
	for k, n := range want {
		if got := kl.line(k); got != n {
			t.Errorf("line(%q) = %d, want %d", k, got, n)
		}
	}
	for _, k := range []string{"not.a.table", "x", "not"} {
		if _, ok := kl[k]; ok {
			t.Errorf("%q inside a multi-line string was taken for a key", k)
		}
	}
	// A missing key reports at its nearest parent.
	if got := kl.line("packages.1.sha256"); got != 18 {
		t.Errorf("missing key: line %d, want 18", got)
	}
}
