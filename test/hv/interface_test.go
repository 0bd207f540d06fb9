package hv_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/xeno-hv/xeno/hv/abi"
	"github.com/xeno-hv/xeno/hv/control"
	"github.com/xeno-hv/xeno/hv/vm"
)

// cpuidReport is what the cpuid guest saw.
type cpuidReport struct {
	leaf        map[string]map[string]string // "40000101" -> eax.. -> hex
	r8, r9, r10 uint64
	info        map[int]string // selector -> value; absent = unsupported
	infoLen     map[int]uint32
}

func parseCPUIDGuest(t *testing.T, r *run) cpuidReport {
	t.Helper()
	if r.result() != "cpuid PASS" {
		t.Fatalf("cpuid guest did not finish\nstdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
	rep := cpuidReport{leaf: map[string]map[string]string{}, info: map[int]string{}, infoLen: map[int]uint32{}}
	hex := func(s string) uint64 {
		n, err := strconv.ParseUint(s, 16, 64)
		if err != nil {
			t.Fatalf("bad hex %q", s)
		}
		return n
	}
	for _, l := range r.xtf() {
		switch {
		case strings.HasPrefix(l, "cpuid "):
			f := strings.Fields(l)
			rep.leaf[f[1]] = fields(l)
		case strings.HasPrefix(l, "entry "):
			m := fields(l)
			rep.r8, rep.r9, rep.r10 = hex(m["r8"]), hex(m["r9"]), hex(m["r10"])
		case strings.HasPrefix(l, "info "):
			m := fields(l)
			sel, n := int(hex(m["sel"])), uint32(hex(m["len"]))
			rep.infoLen[sel] = n
			if _, v, ok := strings.Cut(l, " val="); ok {
				rep.info[sel] = v
			}
		}
	}
	return rep
}

// TestInterfacePresented runs the cpuid guest under each interface the hv
// admits and checks it sees exactly that interface: the CPUID leaves, the
// entry registers, and the info selectors the interface defines, no more.
func TestInterfacePresented(t *testing.T) {
	build := abi.Current()
	served := build.Served()
	for _, in := range served {
		g := in.Short()
		if in.Dev {
			g = in.String() + "@" + build.BuildID
		}
		t.Run(g, func(t *testing.T) {
			d := abi.Admit(build, mustInterface(t, g))
			if d.Verdict == abi.Refuse {
				t.Skipf("this build refuses %s: %s", g, d.Reason)
			}
			r := runHV(t, "--kernel", guest(t, "cpuid"), "--memory", "64", "--interface", g,
				"--name", "dom-"+g, "--uuid", "u-"+g)
			expectEnd(t, r, control.ReasonPoweroff)
			rep := parseCPUIDGuest(t, r)
			compat := d.Verdict == abi.Compat
			checkPresented(t, rep, build, d.Admitted, compat, "dom-"+g, "u-"+g)
		})
	}
}

func mustInterface(t *testing.T, s string) abi.Interface {
	t.Helper()
	in, err := abi.ParseInterface(s)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func checkPresented(t *testing.T, rep cpuidReport, build abi.Build, admitted abi.Interface, compat bool, name, uuid string) {
	t.Helper()
	base := rep.leaf["40000100"]
	sig := fmt.Sprintf("%s%s%s", le4(base["ebx"]), le4(base["ecx"]), le4(base["edx"]))
	if sig != abi.CPUIDSignature || base["eax"] != fmt.Sprintf("%08x", abi.CPUIDXenoMax) {
		t.Errorf("leaf 40000100: %v (signature %q)", base, sig)
	}
	r := build.Release
	flags := uint32(0)
	if r.Dev {
		flags |= abi.CPUIDFlagDev
	}
	if compat {
		flags |= abi.CPUIDFlagCompat
	}
	if vm.SoftwareKVM() {
		flags |= abi.CPUIDFlagSyscallFixup
	}
	want := map[string]string{
		"eax": fmt.Sprintf("%08x", r.Major<<16|r.Minor),
		"ebx": fmt.Sprintf("%08x", r.Patch),
		"ecx": fmt.Sprintf("%08x", flags),
		"edx": fmt.Sprintf("%08x", admitted.Word()),
	}
	for k, v := range want {
		if rep.leaf["40000101"][k] != v {
			t.Errorf("leaf 40000101 %s=%s, want %s", k, rep.leaf["40000101"][k], v)
		}
	}
	if rep.r8 != abi.EntryMagic || rep.r9 != uint64(admitted.Word()) || rep.r10 != uint64(flags) {
		t.Errorf("entry registers r8=%#x r9=%#x r10=%#x, want %#x %#x %#x", rep.r8, rep.r9, rep.r10, abi.EntryMagic, admitted.Word(), flags)
	}
	wantInfo := map[int]string{}
	if abi.Has(admitted, abi.FeatInfo) {
		iface := admitted.Short()
		if compat {
			iface += " compat"
		}
		wantInfo = map[int]string{
			abi.SelSignature: "XenoHV", abi.SelRelease: r.String(), abi.SelExtraversion: r.Extraversion(),
			abi.SelChangeset: build.Changeset, abi.SelBuildID: build.BuildID, abi.SelCaps: build.Caps(),
			abi.SelUUID: uuid, abi.SelName: name, abi.SelInterface: iface,
		}
	}
	for sel := 0; sel <= abi.SelUptime+1; sel++ {
		got, ok := rep.info[sel]
		w, wok := wantInfo[sel]
		if sel == abi.SelUptime && abi.Has(admitted, abi.FeatInfoUptime) {
			if n, err := strconv.ParseInt(got, 10, 64); !ok || err != nil || n <= 0 {
				t.Errorf("uptime selector: %q", got)
			}
			continue
		}
		switch {
		case wok && (!ok || got != w || rep.infoLen[sel] != uint32(len(w))):
			t.Errorf("selector %#x: len %#x %q, want %q", sel, rep.infoLen[sel], got, w)
		case !wok && rep.infoLen[sel] != abi.LenUnsupported:
			t.Errorf("selector %#x: len %#x %q, want unsupported (%#x) under %s", sel, rep.infoLen[sel], got, abi.LenUnsupported, admitted)
		}
	}
}

// le4 turns a CPUID register's hex value into its 4 ASCII bytes.
func le4(h string) string {
	n, _ := strconv.ParseUint(h, 16, 32)
	return string([]byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)})
}

// Without --interface the hv presents its native interface.
func TestInterfaceDefaultIsNative(t *testing.T) {
	build := abi.Current()
	r := runHV(t, "--kernel", guest(t, "cpuid"), "--memory", "64")
	expectEnd(t, r, control.ReasonPoweroff)
	native := build.Release.Interface()
	checkPresented(t, parseCPUIDGuest(t, r), build, native, false, "", "")
}

// A refused interface stops the hv before anything runs, with the
// policy's reason; --unchecked-interface starts it with the native one.
func TestInterfaceRefused(t *testing.T) {
	build := abi.Current()
	r := build.Release
	newer := fmt.Sprintf("%d.%d", r.Major, r.Minor+1)
	d := abi.Admit(build, mustInterface(t, newer))
	if d.Verdict != abi.Refuse {
		t.Fatalf("policy admits %s on %s", newer, r)
	}
	res := runHV(t, "--kernel", guest(t, "cpuid"), "--memory", "64", "--interface", newer)
	if res.code != control.ExitError || res.exit.Reason != control.ReasonError || !strings.Contains(res.exit.Detail, d.Reason) {
		t.Fatalf("code %d exit %+v; want error with %q", res.code, res.exit, d.Reason)
	}
	if !strings.Contains(res.stderr, d.Reason) || strings.Contains(res.stdout, "XTF") {
		t.Fatalf("refused guest ran or no reason:\nstdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	}

	res = runHV(t, "--kernel", guest(t, "cpuid"), "--memory", "64", "--interface", newer, "--unchecked-interface")
	expectEnd(t, res, control.ReasonPoweroff)
	checkPresented(t, parseCPUIDGuest(t, res), build, r.Interface(), false, "", "")
}

func TestBadArguments(t *testing.T) {
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--memory", "64"}, control.ExitUsage, "--kernel is required"},
		{[]string{"--kernel", "/nonexistent/k", "--memory", "64"}, control.ExitError, "/nonexistent/k"},
		{[]string{"--kernel", "harness_test.go", "--memory", "64"}, control.ExitError, "harness_test.go"},
		{[]string{"--kernel", "x", "--interface", "one.two"}, control.ExitUsage, "--interface"},
		{[]string{"--kernel", "x", "--boot", "floppy"}, control.ExitUsage, "--boot"},
		{[]string{"--kernel", "x", "--console", "serial9"}, control.ExitError, "console"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			if c.args[1] == "x" {
				c.args[1] = guest(t, "serial")
			}
			r := runHV(t, c.args...)
			if r.code != c.code || !strings.Contains(r.stderr, c.msg) || r.exit.Reason != control.ReasonError {
				t.Fatalf("code %d (want %d), exit %+v, stderr %q (want %q)", r.code, c.code, r.exit, r.stderr, c.msg)
			}
		})
	}
}
