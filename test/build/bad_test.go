package build

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const (
	kernelSHA  = "7ff7fc8da85d313242c20698c6b34542aea447673c7c1975b0d38bd6005100b5"
	busyboxSHA = "3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744"
	otherSHA   = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

// small is a valid recipe that each bad case breaks in one place; its
// hashes are the shipped recipes' (checked against apt-cache show).
const small = `name = "bad"
epoch = 1735689600
seed = "bad"

[hv]
release = "1.2"

[kernel]
package = "linux-image-6.1.0-56-cloud-amd64-unsigned"
version = "6.1.192-2"
sha256 = "` + kernelSHA + `"

[[packages]]
name = "busybox-static"
version = "1:1.35.0-4+deb12u1+b1"
sha256 = "` + busyboxSHA + `"
paths = ["/bin/busybox"]

[[go]]
package = "./cmd/xeno-init"
dest = "/init"

[[outputs]]
format = "kernel+initrd"
`

// writeLock writes a lock for the recipe as `xeno lock` would, but from
// the given pins, so that a test can make the lock and the recipe agree
// on a hash the .deb does not have.
func writeLock(t *testing.T, recipe string, pins [][3]string) {
	t.Helper()
	gover, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		t.Fatal(err)
	}
	ver, _, err := xeno(t, nil, "", "version")
	if err != nil {
		t.Fatal(err)
	}
	rel := regexp.MustCompile(`(?m)^release (\S+)`).FindStringSubmatch(ver)
	in := regexp.MustCompile(`(?m)^interface (\S+)`).FindStringSubmatch(ver)
	if rel == nil || in == nil {
		t.Fatalf("xeno version: %q", ver)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "go_version = %q\nhv_release = %q\nhv_build_id = \"x\"\ninterface = %q\n", strings.TrimSpace(string(gover)), rel[1], in[1])
	for _, p := range pins {
		fmt.Fprintf(&b, "\n[[inputs]]\nkind = \"deb\"\nname = %q\nversion = %q\nsha256 = %q\n", p[0], p[1], p[2])
	}
	if err := os.WriteFile(recipe+".lock", []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

var goodPins = [][3]string{
	{"linux-image-6.1.0-56-cloud-amd64-unsigned", "6.1.192-2", kernelSHA},
	{"busybox-static", "1:1.35.0-4+deb12u1+b1", busyboxSHA},
}

func TestBadInputs(t *testing.T) {
	cases := []struct {
		name     string
		old, new string
		pins     [][3]string // nil: goodPins; empty: no lock file
		big      bool        // create a file over the size limit
		want     []string    // substrings of the error, the first one file:line
	}{
		{name: "unknown key", old: `seed = "bad"`, new: "seed = \"bad\"\ncolour = \"blue\"",
			want: []string{"bad.toml:4:", `unknown key "colour"`}},
		{name: "wrong type", old: `epoch = 1735689600`, new: `epoch = "new year"`,
			want: []string{"bad.toml:2:", "incompatible types"}},
		{name: "wrong sha256 in recipe and lock", old: busyboxSHA, new: otherSHA,
			pins: [][3]string{goodPins[0], {"busybox-static", "1:1.35.0-4+deb12u1+b1", otherSHA}},
			want: []string{"bad.toml:16:", "hash mismatch", busyboxSHA, otherSHA, "busybox-static"}},
		{name: "recipe differs from lock", old: busyboxSHA, new: otherSHA,
			want: []string{"bad.toml:16:", "busybox-static", otherSHA, busyboxSHA, "bad.toml.lock"}},
		{name: "missing version", old: "version = \"1:1.35.0-4+deb12u1+b1\"\n", new: "",
			want: []string{"bad.toml:13:", "missing required key version for busybox-static"}},
		{name: "missing package", old: `name = "busybox-static"`, new: `name = "xeno-no-such-package"`,
			pins: [][3]string{goodPins[0], {"xeno-no-such-package", "1:1.35.0-4+deb12u1+b1", busyboxSHA}},
			want: []string{"bad.toml:16:", "xeno-no-such-package", "not found"}},
		{name: "version apt does not have", old: `version = "1:1.35.0-4+deb12u1+b1"`, new: `version = "1:0.0.1-1"`,
			pins: [][3]string{goodPins[0], {"busybox-static", "1:0.0.1-1", busyboxSHA}},
			want: []string{"bad.toml:16:", "busybox-static=1:0.0.1-1", "not found"}},
		{name: "file over the size limit", old: `[[outputs]]`, new: "[[files]]\npath = \"/big\"\nsource = \"big.bin\"\n\n[[outputs]]", big: true,
			want: []string{"bad.toml:25:", "big.bin", "more than the limit"}},
		{name: "no lock", old: `seed = "bad"`, new: `seed = "bad"`, pins: [][3]string{},
			want: []string{"no lock file", "xeno lock"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			recipe := filepath.Join(dir, "bad.toml")
			if !strings.Contains(small, c.old) {
				t.Fatalf("recipe has no %q", c.old)
			}
			if err := os.WriteFile(recipe, []byte(strings.Replace(small, c.old, c.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			pins := c.pins
			if pins == nil {
				pins = goodPins
			}
			if len(pins) > 0 {
				writeLock(t, recipe, pins)
			}
			if c.big {
				f, err := os.Create(filepath.Join(dir, "big.bin"))
				if err != nil {
					t.Fatal(err)
				}
				f.Truncate(64<<20 + 1)
				f.Close()
			}
			out := filepath.Join(dir, "out")
			_, stderr, err := xeno(t, nil, "", "build", "-o", out, recipe)
			if err == nil {
				t.Fatal("xeno build succeeded")
			}
			want := append([]string{}, c.want...)
			if strings.HasPrefix(want[0], "bad.toml:") {
				want[0] = filepath.Join(dir, want[0])
			}
			for _, w := range want {
				if !strings.Contains(stderr, w) {
					t.Errorf("error does not say %q:\n%s", w, stderr)
				}
			}
			if strings.Count(strings.TrimSpace(stderr), "\n") > 0 && !strings.Contains(stderr, "build: ") {
				t.Errorf("error is not one line:\n%s", stderr)
			}
			t.Logf("%s", stderr)
			ents, _ := os.ReadDir(out)
			for _, e := range ents {
				t.Errorf("failed build left %s in the output directory", e.Name())
			}
		})
	}
}
