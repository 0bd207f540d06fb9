package recipes

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xeno-hv/xeno/hv/abi"
)

func TestShippedRecipesParse(t *testing.T) {
	for f, kernel := range map[string]string{
		"minimal.toml":      "linux-source-6.1", // the xeno guest kernel, built
		"debian-cloud.toml": "linux-image-6.1.0-56-cloud-amd64-unsigned",
		"host.toml":         "linux-image-6.1.0-56-cloud-amd64-unsigned",
	} {
		r, err := LoadFile(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if r.Kernel.Name() != kernel || r.Kernel.Version != "6.1.192-2" {
			t.Errorf("%s: kernel %s=%s, want %s", f, r.Kernel.Name(), r.Kernel.Version, kernel)
		}
		if len(r.Debs()) != 1+len(r.Packages) {
			t.Errorf("%s: Debs() = %d entries", f, len(r.Debs()))
		}
		l, err := ReadLock(LockPath(f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := l.Check(r); err != nil {
			t.Errorf("%s: lock does not match: %v", f, err)
		}
	}
}

// base is a valid recipe that each bad case breaks in one place.
const base = `name = "t"
epoch = 1
seed = "s"

[hv]
release = "1.2"

[kernel]
package = "linux-image-x"
version = "1.0-1"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

[[packages]]
name = "busybox-static"
version = "1:1.35.0-4"
sha256 = "1111111111111111111111111111111111111111111111111111111111111111"
paths = ["/bin/busybox"]

[[packages]]
name = "other"
version = "2.0"
sha256 = "2222222222222222222222222222222222222222222222222222222222222222"
paths = ["/usr/bin/x"]

[[outputs]]
format = "kernel+initrd"
`

func TestBadRecipes(t *testing.T) {
	cases := []struct {
		name     string
		old, new string
		line     int
		want     string
	}{
		{"unknown top key", `seed = "s"`, "seed = \"s\"\ncolour = 1", 4, `unknown key "colour"`},
		{"unknown key in second package", `paths = ["/usr/bin/x"]`, "paths = [\"/usr/bin/x\"]\nshaa256 = \"x\"", 24, `unknown key "packages.shaa256"`},
		{"wrong type", `epoch = 1`, `epoch = "yesterday"`, 2, "incompatible types"},
		{"bad sha256", `"2222222222222222222222222222222222222222222222222222222222222222"`, `"22"`, 22, "want 64 lower-case hex"},
		{"upper-case sha256", `"2222222222222222222222222222222222222222222222222222222222222222"`, `"222222222222222222222222222222222222222222222222222222222222222A"`, 22, "want 64 lower-case hex"},
		{"missing version", "version = \"2.0\"\n", "", 19, "missing required key version for other"},
		{"missing sha256 of kernel", "sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n", "", 8, "missing required key sha256 for linux-image-x"},
		{"bad version", `version = "2.0"`, `version = "two"`, 21, "is not a Debian version"},
		{"missing package name", `name = "other"`, ``, 19, "missing required key name"},
		{"bad hv release", `release = "1.2"`, `release = "1.2-dev"`, 6, "hv release"},
		{"missing hv", "[hv]\nrelease = \"1.2\"\n", "", 1, "missing required key hv.release"},
		{"bad format", `format = "kernel+initrd"`, `format = "floppy"`, 26, "want kernel+initrd, iso or raw-efi"},
		{"iso without bootloader", `format = "kernel+initrd"`, `format = "iso"`, 26, "format iso needs a package with boot.isolinux_bin"},
		{"relative path", `paths = ["/usr/bin/x"]`, `paths = ["usr/bin/x"]`, 23, "must be absolute"},
		{"syntax error", `seed = "s"`, `seed = "s`, 3, ""},
		{"duplicate package", `name = "other"`, `name = "busybox-static"`, 20, "listed twice"},
		{"bad interface", `seed = "s"`, "seed = \"s\"\ninterface = \"7.7\"", 4, "not in the interface table"},
		{"kernel package and source", `package = "linux-image-x"`, "package = \"linux-image-x\"\nsource = \"linux-source-6.1\"", 10, "both given"},
		{"source without config", `package = "linux-image-x"`, `source = "linux-source-6.1"`, 9, "missing required key kernel.config"},
		{"source not linux-source", `package = "linux-image-x"`, "source = \"linux-image-x\"\nconfig = \"k.config\"", 9, "not a linux-source-* package"},
		{"config escapes the tree", `package = "linux-image-x"`, "source = \"linux-source-6.1\"\nconfig = \"../../etc/k.config\"", 10, "inside the xeno source tree"},
		{"config for a prebuilt kernel", `package = "linux-image-x"`, "package = \"linux-image-x\"\nconfig = \"k.config\"", 10, "for a kernel built from kernel.source"},
		{"bad boot role", `paths = ["/usr/bin/x"]`, "paths = [\"/usr/bin/x\"]\nboot.grub = \"/x\"", 24, "unknown boot role"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(base, c.old) {
				t.Fatalf("base has no %q", c.old)
			}
			src := strings.Replace(base, c.old, c.new, 1)
			_, err := Parse("r.toml", []byte(src))
			if err == nil {
				t.Fatal("accepted")
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not a *recipes.Error", err)
			}
			if e.File != "r.toml" || e.Line != c.line {
				t.Errorf("error at %s:%d, want r.toml:%d: %v", e.File, e.Line, c.line, err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
		})
	}
	if _, err := Parse("r.toml", []byte(base)); err != nil {
		t.Fatalf("base recipe refused: %v", err)
	}
	// A built kernel has no modules to put in the initramfs.
	src := strings.Replace(base, `package = "linux-image-x"`, "source = \"linux-source-6.1\"\nconfig = \"k.config\"", 1)
	if _, err := Parse("r.toml", []byte(src)); err != nil {
		t.Fatalf("kernel.source recipe refused: %v", err)
	}
	src = strings.Replace(src, "[[outputs]]", "[initramfs]\nmodules = [\"virtio_blk\"]\n\n[[outputs]]", 1)
	if _, err := Parse("r.toml", []byte(src)); err == nil || !strings.Contains(err.Error(), "r.toml:27:") || !strings.Contains(err.Error(), "no modules") {
		t.Errorf("modules with kernel.source: %v", err)
	}
}

func TestFileSizeLimit(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxFileSize + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	src := base + "\n[[files]]\npath = \"/big\"\nsource = \"big\"\n"
	rf := filepath.Join(dir, "r.toml")
	if err := os.WriteFile(rf, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadFile(rf)
	if err == nil || !strings.Contains(err.Error(), rf+":30:") || !strings.Contains(err.Error(), "more than the limit") {
		t.Fatalf("got %v, want %s:30: ... more than the limit", err, rf)
	}
	if err := os.WriteFile(rf, []byte(src+strings.Repeat("#", MaxRecipeSize)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(rf); err == nil || !strings.Contains(err.Error(), rf+":1:") {
		t.Fatalf("oversized recipe: %v", err)
	}
}

func TestHVPin(t *testing.T) {
	rel := func(s string) abi.Release {
		r, err := abi.ParseRelease(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	cases := []struct {
		pin, rel string
		ok       bool
	}{
		{"1.2", "1.2.0", true}, {"1.2", "1.2.7", true}, {"1.2", "1.3.0", false}, {"1.2", "1.2.0-dev", false},
		{"1.2.3", "1.2.3", true}, {"1.2.3", "1.2.4", false},
		{"1.3.0-dev", "1.3.0-dev", true}, {"1.3.0-dev", "1.3.0", false},
	}
	for _, c := range cases {
		p, err := ParseHVPin(c.pin)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Matches(rel(c.rel)); got != c.ok {
			t.Errorf("pin %s matches %s = %v, want %v", c.pin, c.rel, got, c.ok)
		}
	}
}

func TestLockCheck(t *testing.T) {
	r, err := Parse("r.toml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	l := &Lock{Path: "r.toml.lock", GoVersion: "go1", HVRelease: "1.2.0", Interface: "1.2"}
	for _, d := range r.Debs() {
		l.Inputs = append(l.Inputs, LockInput{Kind: "deb", Name: d.Name, Version: d.Version, SHA256: d.SHA256})
	}
	dir := t.TempDir()
	lf := filepath.Join(dir, "r.toml.lock")
	if err := l.WriteFile(lf); err != nil {
		t.Fatal(err)
	}
	l2, err := ReadLock(lf)
	if err != nil {
		t.Fatal(err)
	}
	if err := l2.Check(r); err != nil {
		t.Fatalf("matching lock refused: %v", err)
	}
	bad := strings.Replace(base, "2222222222222222222222222222222222222222222222222222222222222222", "3333333333333333333333333333333333333333333333333333333333333333", 1)
	r2, err := Parse("r.toml", []byte(bad))
	if err != nil {
		t.Fatal(err)
	}
	err = l2.Check(r2)
	if err == nil {
		t.Fatal("changed sha256 passed the lock")
	}
	for _, must := range []string{"r.toml:22:", "other=2.0", "3333", "2222", lf} {
		if !strings.Contains(err.Error(), must) {
			t.Errorf("lock error %q does not name %q", err, must)
		}
	}
	if _, err := ReadLock(filepath.Join(dir, "none.lock")); !errors.Is(err, ErrNoLock) {
		t.Errorf("missing lock: %v", err)
	}
}

// [network] becomes the image's ip= parameter; each bad value is
// reported at its own line. base has 26 lines, so [network] is line 28.
func TestNetworkSection(t *testing.T) {
	r, err := Parse("r.toml", []byte(base+"\n[network]\naddress = \"10.0.2.15\"\ngateway = \"10.0.2.2\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Cmdline(), "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off"; got != want {
		t.Errorf("cmdline %q, want %q", got, want)
	}
	src := strings.Replace(base, `version = "1.0-1"`, "version = \"1.0-1\"\ncmdline = \"console=ttyS0\"", 1)
	r, err = Parse("r.toml", []byte(src+"\n[network]\naddress = \"192.168.7.9/16\"\ninterface = \"eth1\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Cmdline(), "console=ttyS0 ip=192.168.7.9:::255.255.0.0::eth1:off"; got != want {
		t.Errorf("cmdline %q, want %q", got, want)
	}
	if r, _ := Parse("r.toml", []byte(base)); r.Cmdline() != "" {
		t.Errorf("no [network], cmdline %q", r.Cmdline())
	}
	for body, want := range map[string]string{
		"address = \"10.0.2.256\"":                         "r.toml:29: address \"10.0.2.256\": want an IPv4 address",
		"address = \"10.0.2.15/40\"":                       "r.toml:29: address \"10.0.2.15/40\": prefix",
		"address = \"10.0.2.0/24\"":                        "r.toml:29: address \"10.0.2.0/24\": that is the network's",
		"address = \"10.0.2.15\"\ngateway = \"10.0.3.1\"":  "r.toml:30: gateway 10.0.3.1 is not in 10.0.2.15/24's network",
		"address = \"10.0.2.15\"\ninterface = \"eth 0\"":   "r.toml:30: interface \"eth 0\"",
		"gateway = \"10.0.2.2\"":                           "r.toml:28: [network] without address",
		"address = \"10.0.2.15\"\nnetmask = \"255.0.0.0\"": "r.toml:30: unknown key \"network.netmask\"",
	} {
		_, err := Parse("r.toml", []byte(base+"\n[network]\n"+body+"\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q:\n got %v\nwant %q", body, err, want)
		}
	}
}
