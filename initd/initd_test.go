package initd

import (
	"bufio"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xeno-hv/xeno/hv/abi"
)

// The guest-side table of issue 6: the guest's pinned interface against
// the release and build id the hv reports through the info port, with
// the toolstack's check bypassed.
func TestDecideTable(t *testing.T) {
	const same, other = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
	hvs := map[string]HVInfo{
		"1.2.0":           {Release: "1.2.0", BuildID: "b120", Caps: "xeno-1.2-x86_64 xeno-1.1-x86_64 xeno-1.0-x86_64"},
		"1.2.3":           {Release: "1.2.3", BuildID: "b123", Caps: "xeno-1.2-x86_64 xeno-1.1-x86_64 xeno-1.0-x86_64"},
		"1.3.0-dev same":  {Release: "1.3.0-dev", BuildID: same, Caps: "xeno-1.3-x86_64 xeno-1.2-x86_64 xeno-1.1-x86_64"},
		"1.3.0-dev other": {Release: "1.3.0-dev", BuildID: other, Caps: "xeno-1.3-x86_64 xeno-1.2-x86_64 xeno-1.1-x86_64"},
	}
	guests := map[string]string{"1.1": "1.1", "1.2": "1.2", "1.3-dev": "1.3-dev@" + same}
	want := map[[2]string]abi.Verdict{
		{"1.1", "1.2.0"}: abi.Compat, {"1.1", "1.2.3"}: abi.Compat, {"1.1", "1.3.0-dev same"}: abi.Compat, {"1.1", "1.3.0-dev other"}: abi.Compat,
		{"1.2", "1.2.0"}: abi.Run, {"1.2", "1.2.3"}: abi.Run, {"1.2", "1.3.0-dev same"}: abi.Compat, {"1.2", "1.3.0-dev other"}: abi.Compat,
		{"1.3-dev", "1.2.0"}: abi.Refuse, {"1.3-dev", "1.2.3"}: abi.Refuse, {"1.3-dev", "1.3.0-dev same"}: abi.Run, {"1.3-dev", "1.3.0-dev other"}: abi.Refuse,
	}
	if len(want) != 12 {
		t.Fatal("table is not 3x4")
	}
	for cell, v := range want {
		g, err := abi.ParseInterface(guests[cell[0]])
		if err != nil {
			t.Fatal(err)
		}
		h := hvs[cell[1]]
		d, err := Decide(g, h)
		if err != nil {
			t.Fatalf("%v: %v", cell, err)
		}
		if d.Verdict != v {
			t.Errorf("guest %s on hv %s: %s (%s), want %s", cell[0], cell[1], d.Verdict, d.Reason, v)
		}
		if v == abi.Refuse {
			line := RefuseLine(g, h, d)
			for _, must := range []string{"xeno-init: refusing to run: guest interface " + g.Short(), "hv release " + h.Release, "rule " + d.Rule} {
				if !strings.Contains(line, must) {
					t.Errorf("refuse line %q lacks %q", line, must)
				}
			}
			if strings.Contains(line, "\n") {
				t.Errorf("refuse line is not one line: %q", line)
			}
		}
	}
}

func TestDecideNewerHVByCaps(t *testing.T) {
	g := abi.Interface{Major: 1, Minor: 2}
	// A 1.9 hv is beyond this guest's table: its caps decide.
	d, err := Decide(g, HVInfo{Release: "1.9.0", Caps: "xeno-1.9-x86_64 xeno-1.2-x86_64"})
	if err != nil || d.Verdict != abi.Compat || d.Rule != RuleHVCaps {
		t.Errorf("1.2 guest on 1.9 hv serving 1.2: %+v, %v", d, err)
	}
	d, _ = Decide(g, HVInfo{Release: "1.9.0", Caps: "xeno-1.9-x86_64 xeno-1.8-x86_64"})
	if d.Verdict != abi.Refuse {
		t.Errorf("1.2 guest on 1.9 hv not serving 1.2: %+v", d)
	}
	if _, err := Decide(g, HVInfo{Release: "garbage"}); err == nil {
		t.Error("a garbage hv release was accepted")
	}
}

// fakeHV answers the info port like an hv with the given items; absent
// items read as LenUnsupported, like an absent device's all-ones.
type fakeHV struct {
	items map[uint16]string
	sel   uint16
	off   int
	outs  map[uint16][]byte
}

func (f *fakeHV) Outw(p uint16, v uint16) {
	if p == abi.PortInfoSelect {
		f.sel, f.off = v, 0
	}
}
func (f *fakeHV) Outb(p uint16, v uint8) {
	if f.outs == nil {
		f.outs = map[uint16][]byte{}
	}
	f.outs[p] = append(f.outs[p], v)
}
func (f *fakeHV) Inl(p uint16) uint32 {
	s, ok := f.items[f.sel]
	if p != abi.PortInfoLen || !ok {
		return abi.LenUnsupported
	}
	return uint32(len(s))
}
func (f *fakeHV) Inb(p uint16) uint8 {
	s := f.items[f.sel]
	if p != abi.PortInfoData || f.off >= len(s) {
		return 0
	}
	f.off++
	return s[f.off-1]
}

func TestReadInfo(t *testing.T) {
	hv := &fakeHV{items: map[uint16]string{
		abi.SelSignature: "XenoHV", abi.SelRelease: "1.2.3", abi.SelBuildID: "abc",
		abi.SelCaps: "xeno-1.2-x86_64", abi.SelInterface: "1.1 compat", abi.SelChangeset: "c0ffee",
	}}
	h, err := ReadInfo(hv)
	if err != nil {
		t.Fatal(err)
	}
	want := HVInfo{Release: "1.2.3", BuildID: "abc", Changeset: "c0ffee", Caps: "xeno-1.2-x86_64", Admitted: "1.1 compat"}
	if h != want {
		t.Errorf("ReadInfo = %+v, want %+v", h, want)
	}
	if ShutdownOffered(h) {
		t.Error("admitted as 1.1 compat, which has no shutdown port")
	}
	if _, err := ReadInfo(&fakeHV{}); err != ErrNoInfoPort {
		t.Errorf("absent port: %v", err)
	}
	// A device claiming a huge item must not be read to its end.
	huge := &fakeHV{items: map[uint16]string{abi.SelSignature: strings.Repeat("x", maxItem+1)}}
	if _, ok := ReadItem(huge, abi.SelSignature); ok {
		t.Error("an item over maxItem was read")
	}
}

func TestCmdlineAndCommand(t *testing.T) {
	cl := ParseCmdline(`console=ttyS0 xeno.run=/bin/sh,-c,"echo hi" quiet xeno.nomodules`)
	if !reflect.DeepEqual(cl.Run, []string{"/bin/sh", "-c", "echo hi"}) || !cl.NoModules {
		t.Errorf("ParseCmdline = %+v", cl)
	}
	cfg, err := ParseConfig([]byte("run = [\"/bin/true\"]\nmodules = [\"/lib/a.ko\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := Command(cl, cfg); got[0] != "/bin/sh" {
		t.Errorf("command line must win: %q", got)
	}
	if got := Command(Cmdline{}, cfg); !reflect.DeepEqual(got, []string{"/bin/true"}) {
		t.Errorf("init.toml must win over the default: %q", got)
	}
	if got := Command(Cmdline{}, Config{}); !reflect.DeepEqual(got, DefaultRun) {
		t.Errorf("default: %q", got)
	}
	if _, err := ParseConfig([]byte("rnu = []\n")); err == nil {
		t.Error("unknown key in init.toml accepted")
	}
}

func TestReadSysHypervisor(t *testing.T) {
	root := t.TempDir()
	if _, ok, err := ReadSysHypervisor(root); ok || err != nil {
		t.Fatalf("no /sys/hypervisor: ok=%v err=%v", ok, err)
	}
	files := map[string]string{
		"type": "xeno\n", "version/major": "1\n", "version/minor": "3\n", "version/extra": ".0-dev\n",
		"xeno/build_id": "abc\n", "xeno/interface": "1.2\n", "xeno/compat": "1\n", "xeno/guest_interface": "1.2\n",
	}
	for name, data := range files {
		p := filepath.Join(root, "sys", "hypervisor", name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(data), 0o644)
	}
	s, ok, err := ReadSysHypervisor(root)
	want := SysHypervisor{Release: "1.3.0-dev", BuildID: "abc", Admitted: "1.2", Compat: true, GuestInterface: "1.2"}
	if !ok || err != nil || s != want {
		t.Fatalf("got %+v ok=%v err=%v, want %+v", s, ok, err, want)
	}
	if err := s.CheckAgainst(HVInfo{Release: "1.3.0-dev", BuildID: "abc", Admitted: "1.2 compat"}); err != nil {
		t.Errorf("agreeing info port: %v", err)
	}
	if err := s.CheckAgainst(HVInfo{Release: "1.3.1-dev", BuildID: "abc", Admitted: "1.2 compat"}); err == nil {
		t.Errorf("a different release is not reported")
	}
	// Another hypervisor's /sys/hypervisor is not ours.
	os.WriteFile(filepath.Join(root, "sys", "hypervisor", "type"), []byte("xen\n"), 0o644)
	if _, ok, _ := ReadSysHypervisor(root); ok {
		t.Errorf("type xen read as xeno")
	}
}

func TestChannelAnswers(t *testing.T) {
	c := &Channel{Interface: "running as interface 1.2 (stable-same-line)",
		Uptime: func() (time.Duration, error) { return 1500 * time.Millisecond, nil }}
	client, server := net.Pipe()
	defer client.Close()
	done := make(chan error, 1)
	go func() { done <- c.ServeConn(server); server.Close() }()
	br := bufio.NewReader(client)
	for _, tc := range []struct{ req, want string }{
		{"interface\n", "running as interface 1.2 (stable-same-line)\n"},
		{"health\r\n", "ok uptime 1.50s\n"},
		{"reboot\n", "error unknown request \"reboot\": want interface or health\n"},
	} {
		client.Write([]byte(tc.req))
		if got, err := br.ReadString('\n'); err != nil || got != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.req, got, err, tc.want)
		}
	}
	// A line past the bound ends the connection after saying so.
	go client.Write([]byte(strings.Repeat("x", channelMaxLine+1)))
	if got, _ := br.ReadString('\n'); !strings.HasPrefix(got, "error request longer") {
		t.Errorf("over-long request: %q", got)
	}
	if err := <-done; !errors.Is(err, bufio.ErrBufferFull) {
		t.Errorf("ServeConn ended with %v", err)
	}
	c.Uptime = func() (time.Duration, error) { return 0, errors.New("no /proc") }
	if got := c.Answer("health"); got != "error no /proc" {
		t.Errorf("health without uptime: %q", got)
	}
}
