package images

import (
	"slices"
	"testing"
)

// Every format is findable by its name, writes files of distinct
// suffixes, and needs only boot roles that a BootSpec can hold.
func TestFormats(t *testing.T) {
	suffixes := map[string]string{}
	for _, f := range Formats() {
		if g, ok := FindFormat(f.Name); !ok || g.Name != f.Name {
			t.Errorf("FindFormat(%q) = %v, %v", f.Name, g.Name, ok)
		}
		if f.Step == "" || len(f.Suffixes) == 0 || f.write == nil {
			t.Errorf("format %s: incomplete: %+v", f.Name, f)
		}
		for _, s := range f.Suffixes {
			if prev, ok := suffixes[s]; ok {
				t.Errorf("suffix %s written by %s and %s", s, prev, f.Name)
			}
			suffixes[s] = f.Name
		}
		for _, role := range f.Boot {
			if !slices.Contains(BootRoles(), role) {
				t.Errorf("format %s needs unknown role %s", f.Name, role)
			}
			var spec BootSpec
			if err := spec.SetBoot(role, []byte{1}); err != nil {
				t.Errorf("SetBoot(%s): %v", role, err)
			}
		}
	}
	if _, ok := FindFormat("floppy"); ok {
		t.Error("FindFormat found floppy")
	}
	if err := new(BootSpec).SetBoot("grub", nil); err == nil {
		t.Error("SetBoot took an unknown role")
	}
	if !slices.IsSorted(BootRoles()) {
		t.Errorf("BootRoles not sorted: %v", BootRoles())
	}
}
