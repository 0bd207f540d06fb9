package manifest

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	m := &Manifest{Name: "x", Interface: "1.2", HVRelease: "1.2.0", Epoch: 1,
		Outputs: []Output{{File: "x.iso", Format: "iso", Size: 3, SHA256: "ab"}},
		Inputs:  []Input{{Kind: "deb", Name: "busybox", Version: "1", SHA256: "cd"}}}
	b, err := m.Encode("a comment")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "# a comment\n") {
		t.Errorf("no comment line first:\n%s", b)
	}
	p := filepath.Join(t.TempDir(), "x"+Suffix)
	os.WriteFile(p, b, 0o644)
	got, err := ReadFile(p)
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Errorf("read back %+v, %v; want %+v", got, err, m)
	}
	if _, err := ReadFile(p + ".missing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestGuestInterface(t *testing.T) {
	for _, c := range []struct{ iface, buildID, want string }{
		{"1.2", "b1", "1.2"},
		{"1.3-dev", "b1", "1.3-dev@b1"},
		{"1.3-dev@b2", "b1", "1.3-dev@b2"},
		{"", "", ""},
		{"x", "", ""},
	} {
		in, err := (&Manifest{Interface: c.iface, HVBuildID: c.buildID}).GuestInterface()
		if c.want == "" {
			if err == nil {
				t.Errorf("%q: accepted as %v", c.iface, in)
			}
			continue
		}
		if err != nil || in.String() != c.want {
			t.Errorf("%q: %v, %v; want %s", c.iface, in, err, c.want)
		}
	}
}

func TestBeside(t *testing.T) {
	got := Beside("/o/debian.initrd.gz")
	want := []string{"/o/debian.initrd.gz.manifest.toml", "/o/debian.initrd.manifest.toml"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Beside = %v, want %v", got, want)
	}
}
