package abi

import (
	"strings"
	"testing"
)

// The decision table of docs/versions.md, cell by cell.
func TestAdmitTable(t *testing.T) {
	const same, other = "build-same", "build-other"
	hvs := map[string]Build{
		"1.2.0":           {Release: Release{1, 2, 0, false}, BuildID: "b120"},
		"1.2.3":           {Release: Release{1, 2, 3, false}, BuildID: "b123"},
		"1.3.0-dev same":  {Release: Release{1, 3, 0, true}, BuildID: same},
		"1.3.0-dev other": {Release: Release{1, 3, 0, true}, BuildID: other},
	}
	guests := map[string]Interface{
		"1.1":     {Major: 1, Minor: 1},
		"1.2":     {Major: 1, Minor: 2},
		"1.3-dev": {Major: 1, Minor: 3, Dev: true, BuildID: same},
	}
	want := map[[2]string]Verdict{
		{"1.1", "1.2.0"}: Compat, {"1.1", "1.2.3"}: Compat, {"1.1", "1.3.0-dev same"}: Compat, {"1.1", "1.3.0-dev other"}: Compat,
		{"1.2", "1.2.0"}: Run, {"1.2", "1.2.3"}: Run, {"1.2", "1.3.0-dev same"}: Compat, {"1.2", "1.3.0-dev other"}: Compat,
		{"1.3-dev", "1.2.0"}: Refuse, {"1.3-dev", "1.2.3"}: Refuse, {"1.3-dev", "1.3.0-dev same"}: Run, {"1.3-dev", "1.3.0-dev other"}: Refuse,
	}
	for cell, v := range want {
		g, b := guests[cell[0]], hvs[cell[1]]
		d := Admit(b, g)
		if d.Verdict != v {
			t.Errorf("guest %s on hv %s: got %s (%s), want %s", cell[0], cell[1], d.Verdict, d.Reason, v)
		}
		for _, must := range []string{g.Short(), b.Release.String(), d.Rule} {
			if !strings.Contains(d.Reason, must) {
				t.Errorf("guest %s on hv %s: reason %q does not name %q", cell[0], cell[1], d.Reason, must)
			}
		}
		if v == Compat && (d.Admitted.Major != g.Major || d.Admitted.Minor != g.Minor) {
			t.Errorf("compat cell %v admitted as %s", cell, d.Admitted)
		}
	}
}

func TestParse(t *testing.T) {
	for _, s := range []string{"1.2.3", "1.3.0-dev", "0.0.0"} {
		r, err := ParseRelease(s)
		if err != nil || r.String() != s {
			t.Errorf("ParseRelease(%q) = %v, %v", s, r, err)
		}
	}
	for _, s := range []string{"", "1.2", "1.2.3.4", "1.x.3", "01.2.3", "1.2.3-rc1", "-1.2.3"} {
		if _, err := ParseRelease(s); err == nil {
			t.Errorf("ParseRelease(%q) accepted", s)
		}
	}
	for _, s := range []string{"1.2", "1.3-dev", "1.3-dev@abc"} {
		in, err := ParseInterface(s)
		if err != nil || in.String() != s {
			t.Errorf("ParseInterface(%q) = %v, %v", s, in, err)
		}
	}
	for _, s := range []string{"1", "1.2@x", "1.3-dev@", "1.2.3", "a.b"} {
		if _, err := ParseInterface(s); err == nil {
			t.Errorf("ParseInterface(%q) accepted", s)
		}
	}
}

func TestCapsAndFeatures(t *testing.T) {
	b := Build{Release: Release{1, 2, 3, false}}
	if got, want := b.Caps(), "xeno-1.2-x86_64 xeno-1.1-x86_64 xeno-1.0-x86_64"; got != want {
		t.Errorf("Caps = %q, want %q", got, want)
	}
	if Has(Interface{Major: 1, Minor: 1}, FeatShutdown) || !Has(Interface{Major: 1, Minor: 2}, FeatShutdown) {
		t.Error("shutdown port must arrive in 1.2, not before")
	}
	if Has(Interface{Major: 1, Minor: 0}, FeatInfo) || !Has(Interface{Major: 1, Minor: 1}, FeatInfo) {
		t.Error("info port must arrive in 1.1, not before")
	}
}

func FuzzParseInterface(f *testing.F) {
	for _, s := range []string{"1.2", "1.3-dev@abc", "", "9.9-dev"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		in, err := ParseInterface(s)
		if err != nil {
			return
		}
		again, err := ParseInterface(in.String())
		if err != nil || again != in {
			t.Fatalf("round trip %q -> %q -> %v, %v", s, in.String(), again, err)
		}
	})
}
