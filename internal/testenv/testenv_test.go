package testenv

import "testing"

func TestUntangle(t *testing.T) {
	for in, want := range map[string]string{
		"a\nxeno-init: running as inter[    9.908927] clocksource: Switched\nface 1.2\nb\n": "a\n[    9.908927] clocksource: Switched\nxeno-init: running as interface 1.2\nb\n",
		"hyper[ 1.0] one\nvisor x[ 2.0] two\neno\n":                                         "[ 1.0] one\n[ 2.0] two\nhypervisor xeno\n",
		"[ 1.0] at a line's start stays\nplain\n":                                           "[ 1.0] at a line's start stays\nplain\n",
		"array[1] is not a kernel message\n":                                                "array[1] is not a kernel message\n",
	} {
		if got := Untangle(in); got != want {
			t.Errorf("Untangle(%q)\n = %q\nwant %q", in, got, want)
		}
	}
}
